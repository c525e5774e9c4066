//! Plugin failures in words an admin can read: wasm frame names demangled (`_ZN4core9panicking
//! 5panic17h…E` → `core::panicking::panic`), and the Rust panic hint about `RUST_BACKTRACE`
//! dropped from a plugin's output (the variable cannot be set inside the sandbox).

/// A wasm frame's function name, demangled without its hash when it is a Rust symbol.
pub fn frame_name(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Whether a line of guest output is the standard library's `RUST_BACKTRACE` hint.
pub fn is_backtrace_hint(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("note: run with `RUST_BACKTRACE=")
        || l.starts_with("note: Some details are omitted, run with `RUST_BACKTRACE=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_frames_are_demangled_and_others_kept() {
        assert_eq!(
            frame_name("_ZN4core9panicking5panic17h0123456789abcdefE"),
            "core::panicking::panic"
        );
        assert_eq!(
            frame_name("_RNvCs1234_7mycrate3foo"),
            "mycrate::foo",
            "v0 mangling"
        );
        assert_eq!(frame_name("rust_panic"), "rust_panic");
        assert_eq!(frame_name("func[12]"), "func[12]");
    }

    #[test]
    fn only_the_backtrace_hint_is_recognised() {
        assert!(is_backtrace_hint(
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
        ));
        assert!(!is_backtrace_hint("panicked at src/lib.rs:3:5:"));
        assert!(!is_backtrace_hint(
            "RUST_BACKTRACE is mentioned by the plugin"
        ));
    }
}
