//! AWS Signature Version 4 (header form), pure Rust over `sha2` + `hmac`.
//!
//! The caller gives the decoded path, the decoded query pairs and the headers it will send
//! (including `host` and `x-amz-date`); [`sign`] returns the `authorization` header value and
//! the intermediate strings (for tests and debugging). Paths are URI-encoded once, as S3 wants.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// `sha256("")`, the payload hash of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Access key pair (and optional session token, sent by the caller as `x-amz-security-token`).
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// What a signature is scoped to.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`; must equal the `x-amz-date` header sent.
    pub amz_date: &'a str,
}

/// The request to sign.
#[derive(Debug, Clone)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// Decoded path, starting with `/`.
    pub path: &'a str,
    /// Decoded query pairs, any order.
    pub query: &'a [(&'a str, &'a str)],
    /// Every header that will be signed (and sent), any case, any order.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
}

/// Result of [`sign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signed_headers: String,
    /// Hex signature.
    pub signature: String,
    /// The `authorization` header value.
    pub authorization: String,
}

/// Signs `req` with `creds` for `scope`.
pub fn sign(req: &SignableRequest<'_>, creds: &Credentials, scope: &Scope<'_>) -> Signature {
    let date = scope.amz_date.get(..8).unwrap_or(scope.amz_date);
    let (canonical_headers, signed_headers) = canonical_headers(req.headers);
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(req.path, false),
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        req.payload_hash
    );
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{credential_scope}\n{}",
        scope.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(&creds.secret_key, date, scope.region, scope.service);
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key
    );
    Signature {
        canonical_request,
        string_to_sign,
        signed_headers,
        signature,
        authorization,
    }
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Hex SHA-256 of `bytes` (the `x-amz-content-sha256` value).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// RFC 3986 encoding as SigV4 wants: unreserved characters stay, everything else is `%XX`
/// (upper case); `/` stays when `encode_slash` is false (paths).
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `(canonical headers block, signed header list)`.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => merged.push((name, vec![value])),
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let block: String = merged
        .iter()
        .map(|(n, v)| format!("{n}:{}\n", v.join(",")))
        .collect();
    let signed = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, signed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // AWS SigV4 test suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html).
    fn suite_creds() -> Credentials {
        Credentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }
    const SUITE_DATE: &str = "20150830T123600Z";
    const SUITE_HOST: (&str, &str) = ("Host", "example.amazonaws.com");
    const SUITE_STAMP: (&str, &str) = ("X-Amz-Date", SUITE_DATE);

    fn suite_scope() -> Scope<'static> {
        Scope {
            region: "us-east-1",
            service: "service",
            amz_date: SUITE_DATE,
        }
    }

    fn suite(method: &str, path: &str, query: &[(&str, &str)]) -> Signature {
        sign(
            &SignableRequest {
                method,
                path,
                query,
                headers: &[SUITE_HOST, SUITE_STAMP],
                payload_hash: EMPTY_SHA256,
            },
            &suite_creds(),
            &suite_scope(),
        )
    }

    #[test]
    fn get_vanilla() {
        let s = suite("GET", "/", &[]);
        assert_eq!(
            s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let s = suite("GET", "/", &[("Param2", "value2"), ("Param1", "value1")]);
        assert_eq!(
            s.signature,
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn post_vanilla() {
        let s = suite("POST", "/", &[]);
        assert_eq!(
            s.signature,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    #[test]
    fn get_utf8_path_is_percent_encoded() {
        let s = suite("GET", "/\u{1234}", &[]);
        assert!(s.canonical_request.starts_with("GET\n/%E1%88%B4\n"));
        assert_eq!(
            s.signature,
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
        );
    }

    #[test]
    fn get_unreserved_characters_stay() {
        let s = suite(
            "GET",
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            &[],
        );
        assert_eq!(
            s.signature,
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_names_lowercased() {
        let (block, signed) = canonical_headers(&[
            ("My-Header1", "  a   b  "),
            ("host", "h"),
            ("my-header1", "c"),
        ]);
        assert_eq!(block, "host:h\nmy-header1:a b,c\n");
        assert_eq!(signed, "host;my-header1");
    }

    /// The S3 documentation's "GET Object" example (sig-v4-header-based-auth.html): a signed
    /// range header and `x-amz-content-sha256`.
    #[test]
    fn s3_get_object_example() {
        let creds = Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let s = sign(
            &SignableRequest {
                method: "GET",
                path: "/test.txt",
                query: &[],
                headers: &[
                    ("Host", "examplebucket.s3.amazonaws.com"),
                    ("Range", "bytes=0-9"),
                    ("x-amz-content-sha256", EMPTY_SHA256),
                    ("x-amz-date", "20130524T000000Z"),
                ],
                payload_hash: EMPTY_SHA256,
            },
            &creds,
            &Scope {
                region: "us-east-1",
                service: "s3",
                amz_date: "20130524T000000Z",
            },
        );
        assert_eq!(
            s.signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            s.signed_headers,
            "host;range;x-amz-content-sha256;x-amz-date"
        );
    }

    // Query strings: the suite's query cases, S3's documented sub-resource and list examples,
    // and the three multipart requests cross-checked against botocore 1.43 (`S3SigV4Auth`).

    #[test]
    fn suite_query_cases() {
        let s = suite("GET", "/", &[("Param1", "value2"), ("Param1", "value1")]);
        assert!(
            s.canonical_request
                .starts_with("GET\n/\nParam1=value1&Param1=value2\n")
        );
        assert_eq!(
            s.signature,
            "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"
        );
        let s = suite("GET", "/", &[("Param1", "value1")]);
        assert_eq!(
            s.signature,
            "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"
        );
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let s = suite("GET", "/", &[(unreserved, unreserved)]);
        assert_eq!(
            s.signature,
            "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"
        );
        let s = suite("GET", "/", &[("\u{1234}", "bar")]);
        assert!(s.canonical_request.contains("\n%E1%88%B4=bar\n"));
        assert_eq!(
            s.signature,
            "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"
        );
    }

    fn s3_doc_get(query: &[(&str, &str)]) -> Signature {
        sign(
            &SignableRequest {
                method: "GET",
                path: "/",
                query,
                headers: &[
                    ("Host", "examplebucket.s3.amazonaws.com"),
                    ("x-amz-content-sha256", EMPTY_SHA256),
                    ("x-amz-date", "20130524T000000Z"),
                ],
                payload_hash: EMPTY_SHA256,
            },
            &Credentials {
                access_key: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            },
            &Scope {
                region: "us-east-1",
                service: "s3",
                amz_date: "20130524T000000Z",
            },
        )
    }

    /// sig-v4-header-based-auth.html: "GET Bucket Lifecycle" (a value-less sub-resource, like
    /// `?uploads`) and "Get Bucket (List Objects)" (pairs given out of order).
    #[test]
    fn s3_documented_query_examples() {
        let s = s3_doc_get(&[("lifecycle", "")]);
        assert!(s.canonical_request.starts_with("GET\n/\nlifecycle=\n"));
        assert_eq!(
            s.signature,
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        let s = s3_doc_get(&[("prefix", "J"), ("max-keys", "2")]);
        assert!(
            s.canonical_request
                .starts_with("GET\n/\nmax-keys=2&prefix=J\n")
        );
        assert_eq!(
            s.signature,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    /// The multipart requests as the plugin signs them, against botocore's signatures for the
    /// same requests (upload ids with `+ / =` must be encoded in the canonical query).
    #[test]
    fn multipart_requests_match_botocore() {
        let sign_mp = |method: &'static str, query: &[(&str, &str)], body: &[u8]| {
            let hash = sha256_hex(body);
            sign(
                &SignableRequest {
                    method,
                    path: "/renders/comfy/a b.mp4",
                    query,
                    headers: &[
                        ("host", "127.0.0.1:9000"),
                        ("x-amz-date", "20251123T120000Z"),
                        ("x-amz-content-sha256", &hash),
                    ],
                    payload_hash: &hash,
                },
                &suite_creds(),
                &Scope {
                    region: "us-east-1",
                    service: "s3",
                    amz_date: "20251123T120000Z",
                },
            )
        };
        let create = sign_mp("POST", &[("uploads", "")], b"");
        assert!(
            create
                .canonical_request
                .starts_with("POST\n/renders/comfy/a%20b.mp4\nuploads=\n")
        );
        assert_eq!(
            create.signature,
            "4c76adb5a514ee050d8e39949ea9520b7db7c59b03dbf31afac183ecf1a2b6a1"
        );
        let part = sign_mp(
            "PUT",
            &[("uploadId", "Ab+c/d="), ("partNumber", "12")],
            b"part-bytes",
        );
        assert!(
            part.canonical_request
                .contains("\npartNumber=12&uploadId=Ab%2Bc%2Fd%3D\n")
        );
        assert_eq!(
            part.signature,
            "51c03c78f9bd79dc8a83f2dc0f6a2a3e8e9efa285cf8643253db18eaff39b2c6"
        );
        let complete = sign_mp(
            "POST",
            &[("uploadId", "Ab+c/d=")],
            b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        );
        assert_eq!(
            complete.signature,
            "f03875807a685a50cedb32e13be3bb71963b73258710b9c7f13b89cc1be82cdd"
        );
    }

    #[test]
    fn uri_encode_rules() {
        assert_eq!(uri_encode("a b/c$d", false), "a%20b/c%24d");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}
