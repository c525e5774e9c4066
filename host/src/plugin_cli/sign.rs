//! `comfyhost plugin keygen` and `comfyhost plugin sign`: an author's signing key (minisign
//! format, Ed25519) and the detached signature of a plugin directory (`plugin.minisig`, with the
//! signer's public key in `plugin.pub`). What is signed is described in
//! [`comfyhost_runtime::signing`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use comfyhost_runtime::registry::message_of_dir;
use comfyhost_runtime::signing::{self, PUBLIC_KEY_FILE, SIGNATURE_FILE};

/// Environment variable naming the secret key file `sign` uses when `--key` is not given.
pub const SIGNING_KEY_ENV: &str = "COMFYHOST_SIGNING_KEY";

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Writes `<out>.pub` (public key, give it to admins) and `<out>.key` (secret key, keep it).
    #[arg(long, default_value = "comfyhost-signing")]
    pub out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// A plugin directory: `plugin.toml`, the component and the schema it names.
    pub dir: PathBuf,
    /// The secret key file (default: the file named by COMFYHOST_SIGNING_KEY).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A signed plugin directory.
    pub dir: PathBuf,
    /// The public key file the signature must be made with.
    #[arg(long)]
    pub public_key: PathBuf,
}

/// Checks a plugin directory's signature against one public key (as the host does under the
/// `trusted` mode with that key trusted).
pub fn verify(a: &VerifyArgs) -> anyhow::Result<()> {
    let pk = std::fs::read_to_string(&a.public_key)
        .with_context(|| format!("reading {}", a.public_key.display()))?;
    let (public_key, key_id) = signing::parse_public_key(&pk)?;
    let (manifest, message) = message_of_dir(&a.dir)
        .with_context(|| format!("reading the plugin in {}", a.dir.display()))?;
    let files = signing::read_files(&a.dir)?
        .with_context(|| format!("{} has no {SIGNATURE_FILE}", a.dir.display()))?;
    let policy = signing::TrustPolicy {
        mode: signing::TrustMode::Trusted,
        keys: vec![signing::TrustedKey {
            key_id: key_id.clone(),
            name: "given key".into(),
            public_key,
        }],
    };
    signing::check(&policy, &message, Some(&files))?;
    println!(
        "{} {}: good signature by key {key_id}",
        manifest.id, manifest.version
    );
    Ok(())
}

pub fn keygen(a: &KeygenArgs) -> anyhow::Result<()> {
    let pub_path = with_ext(&a.out, "pub");
    let key_path = with_ext(&a.out, "key");
    for p in [&pub_path, &key_path] {
        if p.exists() && !a.force {
            bail!("{} exists; pass --force to replace it", p.display());
        }
    }
    let (pk, sk, key_id) =
        signing::generate_keypair("comfyhost plugin signing key").context("generating a key")?;
    write_secret(&key_path, &sk)?;
    std::fs::write(&pub_path, &pk).with_context(|| format!("writing {}", pub_path.display()))?;
    println!("key id {key_id}");
    println!(
        "public key: {} (admins add it to the trust policy)",
        pub_path.display()
    );
    println!(
        "secret key: {} (keep it secret; not password-protected)",
        key_path.display()
    );
    Ok(())
}

pub fn sign(a: &SignArgs) -> anyhow::Result<()> {
    let key_path = match &a.key {
        Some(k) => k.clone(),
        None => std::env::var_os(SIGNING_KEY_ENV)
            .map(PathBuf::from)
            .with_context(|| format!("no --key given and {SIGNING_KEY_ENV} is not set"))?,
    };
    let sk = std::fs::read_to_string(&key_path)
        .with_context(|| format!("reading the secret key {}", key_path.display()))?;
    let (manifest, message) = message_of_dir(&a.dir)
        .with_context(|| format!("reading the plugin in {}", a.dir.display()))?;
    let comment = format!("comfyhost plugin {} {}", manifest.id, manifest.version);
    let files = signing::sign(&sk, &message, &comment)
        .with_context(|| format!("signing with {}", key_path.display()))?;
    let key_id = signing::parse_public_key(&files.public_key)?.1;
    std::fs::write(a.dir.join(SIGNATURE_FILE), &files.signature)
        .with_context(|| format!("writing {SIGNATURE_FILE}"))?;
    std::fs::write(a.dir.join(PUBLIC_KEY_FILE), &files.public_key)
        .with_context(|| format!("writing {PUBLIC_KEY_FILE}"))?;
    println!(
        "signed {} {} with key {key_id}: {}",
        manifest.id,
        manifest.version,
        a.dir.join(SIGNATURE_FILE).display()
    );
    Ok(())
}

fn with_ext(p: &Path, ext: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
