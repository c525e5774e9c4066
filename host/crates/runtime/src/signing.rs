//! Plugin signatures: what is signed, how a signature is made and checked, and the admin's
//! trust policy (`any` / `signed` / `trusted`).
//!
//! # What is signed
//!
//! A plugin version is its `plugin.toml`, its component (`.wasm`) and, when the manifest names
//! one, its config schema. The signed message is a small canonical text (UTF-8, `\n` line ends):
//!
//! ```text
//! comfyhost-plugin-signature v1
//! id <plugin id>
//! <sha256 hex>  <file name>        one line per file, sorted by file name
//! ```
//!
//! (the file lines are `sha256sum` lines). Changing any byte of any of the files, renaming the
//! component or the schema, or re-using a signature for another plugin id changes the message.
//!
//! # Format
//!
//! The signature is a [minisign](https://jedisct1.github.io/minisign/) detached signature
//! (Ed25519 over the BLAKE2b-512 prehash of the message, plus a signed trusted comment) in
//! `plugin.minisig` beside the plugin; the signer's minisign public key is in `plugin.pub`
//! (so that the `signed` mode can check a signature by a key the admin has not listed). The key
//! id shown everywhere is minisign's: 16 upper-case hex digits. Keys are minisign keys, so
//! `minisign -V -p plugin.pub -m <message file> -x plugin.minisig` checks a signature too.

use std::io::Cursor;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// File beside the plugin holding its detached signature.
pub const SIGNATURE_FILE: &str = "plugin.minisig";
/// File beside the plugin holding the signer's public key.
pub const PUBLIC_KEY_FILE: &str = "plugin.pub";
const HEADER: &str = "comfyhost-plugin-signature v1";

/// Why a signature or key is unusable, or a plugin fails the trust policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("the plugin is unsigned and the trust policy is `{0}`")]
    Unsigned(TrustMode),
    #[error("the plugin is signed by key {key_id}, which is not a trusted key")]
    UntrustedKey { key_id: String },
    #[error(
        "the signature does not match the plugin's files (tampered or re-built after signing): {0}"
    )]
    BadSignature(String),
    #[error("unreadable public key: {0}")]
    BadKey(String),
    #[error("unreadable signature: {0}")]
    BadSignatureFile(String),
}

/// How strict installs are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMode {
    /// Unsigned plugins are allowed (shown as unsigned); a signature present must be valid.
    #[default]
    Any,
    /// Any valid signature; unsigned plugins are refused.
    Signed,
    /// Only signatures by a trusted key.
    Trusted,
}

impl std::fmt::Display for TrustMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrustMode::Any => "any",
            TrustMode::Signed => "signed",
            TrustMode::Trusted => "trusted",
        })
    }
}

impl std::str::FromStr for TrustMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(TrustMode::Any),
            "signed" => Ok(TrustMode::Signed),
            "trusted" => Ok(TrustMode::Trusted),
            other => Err(format!(
                "unknown trust mode {other:?} (expected any, signed or trusted)"
            )),
        }
    }
}

/// A key the admin trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    pub key_id: String,
    pub name: String,
    /// The minisign public key (base64 line).
    pub public_key: String,
}

/// The admin's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPolicy {
    pub mode: TrustMode,
    pub keys: Vec<TrustedKey>,
}

/// Who signed a plugin version (after the signature was checked).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// `None`: unsigned.
    pub key_id: Option<String>,
    /// The trusted key's name, when the key is trusted.
    pub key_name: Option<String>,
}

/// The signature files of a version, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureFiles {
    pub signature: String,
    pub public_key: String,
}

/// One file of a plugin version, for the canonical message.
pub struct SignedFile<'a> {
    pub name: &'a str,
    pub sha256_hex: String,
}

impl<'a> SignedFile<'a> {
    pub fn from_bytes(name: &'a str, bytes: &[u8]) -> Self {
        Self {
            name,
            sha256_hex: hex::encode(Sha256::digest(bytes)),
        }
    }
}

/// The canonical message signed for a plugin version (see the module doc).
pub fn message(id: &str, files: &[SignedFile<'_>]) -> String {
    let mut sorted: Vec<&SignedFile<'_>> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut out = format!("{HEADER}\nid {id}\n");
    for f in sorted {
        out.push_str(&format!(
            "{}  {}\n",
            f.sha256_hex.to_ascii_lowercase(),
            f.name
        ));
    }
    out
}

/// A new key pair: `(public key file text, secret key file text, key id)`. The secret key is
/// not password-protected (it is meant for CI secrets stores and build machines).
pub fn generate_keypair(comment: &str) -> Result<(String, String, String), TrustError> {
    let kp = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| TrustError::BadKey(e.to_string()))?;
    let pk = kp
        .pk
        .to_box()
        .map_err(|e| TrustError::BadKey(e.to_string()))?
        .into_string();
    let sk = kp
        .sk
        .to_box(Some(comment))
        .map_err(|e| TrustError::BadKey(e.to_string()))?
        .into_string();
    Ok((pk, sk, key_id_of(kp.pk.keynum())))
}

/// Signs `message` with the secret key file text `secret_key` (unencrypted). Returns the
/// signature file text and the public key file text.
pub fn sign(
    secret_key: &str,
    message: &str,
    trusted_comment: &str,
) -> Result<SignatureFiles, TrustError> {
    let sk_box = minisign::SecretKeyBox::from_string(secret_key)
        .map_err(|e| TrustError::BadKey(e.to_string()))?;
    let sk = sk_box.into_unencrypted_secret_key().map_err(|e| {
        TrustError::BadKey(format!("{e} (only unencrypted secret keys are supported)"))
    })?;
    let pk =
        minisign::PublicKey::from_secret_key(&sk).map_err(|e| TrustError::BadKey(e.to_string()))?;
    let sig = minisign::sign(
        Some(&pk),
        &sk,
        Cursor::new(message.as_bytes()),
        Some(trusted_comment),
        Some("comfyhost plugin signature"),
    )
    .map_err(|e| TrustError::BadKey(e.to_string()))?;
    let public_key = pk
        .to_box()
        .map_err(|e| TrustError::BadKey(e.to_string()))?
        .into_string();
    Ok(SignatureFiles {
        signature: sig.into_string(),
        public_key,
    })
}

/// Parses a public key given as a minisign key file or its base64 line; returns the base64
/// line and the key id.
pub fn parse_public_key(text: &str) -> Result<(String, String), TrustError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or_else(|| TrustError::BadKey("empty public key".into()))?;
    let pk =
        minisign::PublicKey::from_base64(line).map_err(|e| TrustError::BadKey(e.to_string()))?;
    Ok((line.to_owned(), key_id_of(pk.keynum())))
}

/// Checks `files` (if any) over `message` against `policy`. An unsigned version passes only
/// under `any`; a signature, when present, must be valid in every mode.
pub fn check(
    policy: &TrustPolicy,
    message: &str,
    files: Option<&SignatureFiles>,
) -> Result<Signer, TrustError> {
    let Some(files) = files else {
        return match policy.mode {
            TrustMode::Any => Ok(Signer::default()),
            mode => Err(TrustError::Unsigned(mode)),
        };
    };
    let sig = minisign::SignatureBox::from_string(&files.signature)
        .map_err(|e| TrustError::BadSignatureFile(e.to_string()))?;
    let key_id = key_id_of(sig.keynum());
    let trusted = policy.keys.iter().find(|k| k.key_id == key_id);
    // A trusted key is checked with the admin's copy, never with the one shipped beside it.
    let pk_text = match trusted {
        Some(k) => k.public_key.clone(),
        None => files.public_key.clone(),
    };
    if trusted.is_none() && policy.mode == TrustMode::Trusted {
        return Err(TrustError::UntrustedKey { key_id });
    }
    let (pk_line, pk_id) = parse_public_key(&pk_text)?;
    if pk_id != key_id {
        return Err(TrustError::BadSignature(format!(
            "signed by key {key_id} but the public key beside it is {pk_id}"
        )));
    }
    let pk = minisign::PublicKey::from_base64(&pk_line)
        .map_err(|e| TrustError::BadKey(e.to_string()))?;
    minisign::verify(
        &pk,
        &sig,
        Cursor::new(message.as_bytes()),
        true,
        false,
        false,
    )
    .map_err(|e| TrustError::BadSignature(e.to_string()))?;
    Ok(Signer {
        key_id: Some(key_id),
        key_name: trusted.map(|k| k.name.clone()),
    })
}

/// The signature files in `dir`, when the signature file exists. A signature without its
/// public key file is still returned (a trusted key does not need it).
pub fn read_files(dir: &Path) -> Result<Option<SignatureFiles>, TrustError> {
    let sig_path = dir.join(SIGNATURE_FILE);
    let signature = match std::fs::read_to_string(&sig_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(TrustError::BadSignatureFile(format!(
                "{}: {e}",
                sig_path.display()
            )));
        }
    };
    let public_key = std::fs::read_to_string(dir.join(PUBLIC_KEY_FILE)).unwrap_or_default();
    Ok(Some(SignatureFiles {
        signature,
        public_key,
    }))
}

fn key_id_of(keynum: &[u8]) -> String {
    let mut le = [0u8; 8];
    let n = keynum.len().min(8);
    le[..n].copy_from_slice(&keynum[..n]);
    format!("{:016X}", u64::from_le_bytes(le))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(wasm: &[u8]) -> String {
        message(
            "demo",
            &[
                SignedFile::from_bytes("plugin.toml", b"id = \"demo\""),
                SignedFile::from_bytes("demo.wasm", wasm),
            ],
        )
    }

    fn trusted(pk: &str, name: &str) -> TrustedKey {
        let (public_key, key_id) = parse_public_key(pk).unwrap();
        TrustedKey {
            key_id,
            name: name.into(),
            public_key,
        }
    }

    #[test]
    fn message_lists_files_sorted_with_their_hashes() {
        let m = msg(b"\0asm");
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "id demo");
        assert!(lines[2].ends_with("  demo.wasm"), "{m}");
        assert!(lines[3].ends_with("  plugin.toml"), "{m}");
    }

    #[test]
    fn trusted_key_passes_under_trusted_and_names_the_signer() {
        let (pk, sk, id) = generate_keypair("test").unwrap();
        let files = sign(&sk, &msg(b"\0asm"), "demo 0.1.0").unwrap();
        let policy = TrustPolicy {
            mode: TrustMode::Trusted,
            keys: vec![trusted(&pk, "Workshop")],
        };
        let signer = check(&policy, &msg(b"\0asm"), Some(&files)).unwrap();
        assert_eq!(signer.key_id.as_deref(), Some(id.as_str()));
        assert_eq!(signer.key_name.as_deref(), Some("Workshop"));
    }

    #[test]
    fn unsigned_and_unknown_keys_are_refused_by_mode() {
        let (_, sk, id) = generate_keypair("other").unwrap();
        let files = sign(&sk, &msg(b"\0asm"), "x").unwrap();
        let (pk2, _, _) = generate_keypair("trusted").unwrap();
        let trusted_policy = TrustPolicy {
            mode: TrustMode::Trusted,
            keys: vec![trusted(&pk2, "Workshop")],
        };
        assert_eq!(
            check(&trusted_policy, &msg(b"\0asm"), Some(&files)).unwrap_err(),
            TrustError::UntrustedKey { key_id: id.clone() }
        );
        assert_eq!(
            check(&trusted_policy, &msg(b"\0asm"), None).unwrap_err(),
            TrustError::Unsigned(TrustMode::Trusted)
        );
        let signed_policy = TrustPolicy {
            mode: TrustMode::Signed,
            keys: vec![],
        };
        let s = check(&signed_policy, &msg(b"\0asm"), Some(&files)).unwrap();
        assert_eq!(s.key_id.as_deref(), Some(id.as_str()));
        assert_eq!(s.key_name, None);
        assert!(check(&TrustPolicy::default(), &msg(b"\0asm"), None).is_ok());
    }

    #[test]
    fn one_changed_byte_breaks_the_signature_in_every_mode() {
        let (pk, sk, _) = generate_keypair("test").unwrap();
        let files = sign(&sk, &msg(b"\0asm\x01"), "x").unwrap();
        for mode in [TrustMode::Any, TrustMode::Signed, TrustMode::Trusted] {
            let policy = TrustPolicy {
                mode,
                keys: vec![trusted(&pk, "k")],
            };
            let err = check(&policy, &msg(b"\0asm\x02"), Some(&files)).unwrap_err();
            assert!(matches!(err, TrustError::BadSignature(_)), "{mode}: {err}");
        }
    }

    #[test]
    fn a_public_key_swapped_beside_the_signature_is_caught() {
        let (_, sk, _) = generate_keypair("a").unwrap();
        let (pk_b, _, _) = generate_keypair("b").unwrap();
        let mut files = sign(&sk, &msg(b"x"), "x").unwrap();
        files.public_key = pk_b;
        let policy = TrustPolicy {
            mode: TrustMode::Signed,
            keys: vec![],
        };
        assert!(matches!(
            check(&policy, &msg(b"x"), Some(&files)).unwrap_err(),
            TrustError::BadSignature(_)
        ));
    }
}
