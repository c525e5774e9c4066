//! Python-style widget value conversion (`int(val)`, `float(val)`, `str(val)`, `bool(val)`),
//! the comparison helpers used by min/max and combo checks.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::pyfmt::{py_str, py_type_name, str_repr};

/// Converts `val` like ComfyUI's validator does for `input_type`; `Err` holds Python's message.
pub fn convert(input_type: &str, val: &Value) -> Result<Value, String> {
    match input_type {
        "INT" => to_int(val),
        "FLOAT" => to_float(val),
        "STRING" => Ok(Value::String(py_str(val))),
        "BOOLEAN" => Ok(Value::Bool(truthy(val))),
        _ => Ok(val.clone()),
    }
}

fn to_int(val: &Value) -> Result<Value, String> {
    match val {
        Value::Number(n) if !n.is_f64() => Ok(val.clone()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            Ok(Value::Number(Number::from(f.trunc() as i64)))
        }
        Value::Bool(b) => Ok(Value::Number(Number::from(i64::from(*b)))),
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            if let Ok(i) = t.parse::<i64>() {
                Ok(Value::Number(Number::from(i)))
            } else if let Ok(u) = t.parse::<u64>() {
                Ok(Value::Number(Number::from(u)))
            } else {
                Err(format!(
                    "invalid literal for int() with base 10: {}",
                    str_repr(s)
                ))
            }
        }
        other => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            py_type_name(other)
        )),
    }
}

fn to_float(val: &Value) -> Result<Value, String> {
    let f = match val {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            t if t.parse::<f64>().is_ok() => t.parse::<f64>().unwrap_or(0.0),
            _ => {
                return Err(format!(
                    "could not convert string to float: {}",
                    str_repr(s)
                ));
            }
        },
        other => {
            return Err(format!(
                "float() argument must be a string or a real number, not '{}'",
                py_type_name(other)
            ));
        }
    };
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "cannot represent non-finite float in JSON".to_string())
}

fn truthy(val: &Value) -> bool {
    match val {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Orders two JSON numbers exactly when both are integers, else as floats.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return None;
    };
    match (as_i128(x), as_i128(y)) {
        (Some(i), Some(j)) => Some(i.cmp(&j)),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

fn as_i128(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Python `==` between JSON values (numbers compare by value: `1 == 1.0`).
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(Ordering::Equal),
        (Value::Bool(x), Value::Number(_)) | (Value::Number(_), Value::Bool(x)) => {
            let n = if matches!(a, Value::Number(_)) { a } else { b };
            n.as_f64() == Some(f64::from(u8::from(*x)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn int_conversion_matches_python() {
        assert_eq!(convert("INT", &json!("12")).unwrap(), json!(12));
        assert_eq!(convert("INT", &json!(2.7)).unwrap(), json!(2));
        assert_eq!(convert("INT", &json!(true)).unwrap(), json!(1));
        assert_eq!(
            convert("INT", &json!("abc")).unwrap_err(),
            "invalid literal for int() with base 10: 'abc'"
        );
        assert_eq!(
            convert("INT", &json!(null)).unwrap_err(),
            "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'"
        );
        assert_eq!(
            convert("INT", &json!(18446744073709551615u64)).unwrap(),
            json!(18446744073709551615u64)
        );
    }

    #[test]
    fn float_string_and_bool_conversion() {
        assert_eq!(convert("FLOAT", &json!(1)).unwrap(), json!(1.0));
        assert_eq!(
            convert("FLOAT", &json!("x")).unwrap_err(),
            "could not convert string to float: 'x'"
        );
        assert_eq!(convert("STRING", &json!(5)).unwrap(), json!("5"));
        assert_eq!(convert("BOOLEAN", &json!("")).unwrap(), json!(false));
    }

    #[test]
    fn comparisons_are_exact_for_big_ints() {
        assert_eq!(
            compare(
                &json!(18446744073709551615u64),
                &json!(18446744073709551614u64)
            ),
            Some(Ordering::Greater)
        );
        assert!(py_eq(&json!(1), &json!(1.0)));
        assert!(!py_eq(&json!("1"), &json!(1)));
    }
}
