//! Keys, seals and signatures on the patch side: `cargo dsu keygen`, `cargo dsu sign`,
//! `cargo dsu patch --sign` and `cargo dsu build --trust`.
//!
//! Every patch file `cargo dsu patch` writes ends in a seal (`dsu_abi::seal`): a SHA-256 digest
//! of all its other bytes, and, when a key is given, an Ed25519 signature of the library's hash.
//! The program checks the seal before anything else (`runtime/src/trust.rs`).
//!
//! Key files are text: `NAME.key` holds `dsu secret key <id> <seed hex>` and is created with mode
//! 0600 (a key readable by group or others is refused); `NAME.pub` holds
//! `dsu public key <id> <key hex>`. The id is the first 8 bytes of the public key's SHA-256,
//! what a program names in `status` and in refusals.

use anyhow::{bail, Context, Result};
use dsu_abi::seal::{self, Seal};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A key's id, hex.
pub fn key_id(public: &VerifyingKey) -> String {
    seal::hex(&key_id_bytes(public))
}

/// A key's id, as a seal holds it.
fn key_id_bytes(public: &VerifyingKey) -> [u8; 8] {
    seal::key_id(&Sha256::digest(public.as_bytes()).into())
}

/// What a seal's digest must be: SHA-256 of the library's hash, then the seal's other bytes
/// (`dsu_abi::seal`).
pub fn seal_digest(library_hash: &[u8; 32], seal: &Seal) -> [u8; 32] {
    Sha256::new().chain_update(library_hash).chain_update(seal.covered()).finalize().into()
}

/// A key pair `cargo dsu keygen` wrote.
pub struct KeyPair {
    /// `NAME.key`.
    pub secret: PathBuf,
    /// `NAME.pub`.
    pub public: PathBuf,
    /// The key's id.
    pub id: String,
}

/// Writes a new key pair `NAME.key` (mode 0600) and `NAME.pub`; never overwrites either.
pub fn keygen(name: &Path) -> Result<KeyPair> {
    let secret_path = with_suffix(name, "key");
    let public_path = with_suffix(name, "pub");
    for p in [&secret_path, &public_path] {
        if p.exists() {
            bail!("{} exists; keys are never overwritten", p.display());
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let id = key_id(&key.verifying_key());
    let mut secret = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .with_context(|| format!("creating {}", secret_path.display()))?;
    writeln!(secret, "dsu secret key {id} {}", seal::hex(&seed))?;
    std::fs::write(&public_path, format!("dsu public key {id} {}\n", seal::hex(key.verifying_key().as_bytes())))
        .with_context(|| format!("writing {}", public_path.display()))?;
    Ok(KeyPair { secret: secret_path, public: public_path, id })
}

fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// The signing key in `path`, refused when group or others may read it.
pub fn read_secret_key(path: &Path) -> Result<SigningKey> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); a secret key must be mode 0600",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed = text
        .strip_prefix("dsu secret key ")
        .and_then(|rest| rest.split_whitespace().find_map(seal::key_from_hex))
        .with_context(|| format!("{} is not a dsu secret key (`cargo dsu keygen` writes one)", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public key in `path` (a `NAME.pub`), checked to be one.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = text
        .strip_prefix("dsu public key ")
        .and_then(|rest| rest.split_whitespace().find_map(seal::key_from_hex))
        .with_context(|| format!("{} is not a dsu public key (`cargo dsu keygen` writes one)", path.display()))?;
    VerifyingKey::from_bytes(&key).with_context(|| format!("{} holds no valid Ed25519 key", path.display()))
}

/// The build identity's `trust` field for these public keys: hex, comma-separated, in order.
pub fn trust_field(keys: &[PathBuf]) -> Result<String> {
    let keys: Vec<String> =
        keys.iter().map(|p| read_public_key(p).map(|k| seal::hex(k.as_bytes()))).collect::<Result<_>>()?;
    Ok(keys.join(","))
}

/// Seals `library` (the bytes of a built patch), signed by `key` when given.
pub fn seal(library: &[u8], key: Option<&SigningKey>) -> Vec<u8> {
    let hash: [u8; 32] = Sha256::digest(library).into();
    let mut s = Seal { library_len: library.len() as u64, flags: 0, key_id: [0; 8], signature: [0; 64], digest: [0; 32] };
    if let Some(k) = key {
        s.flags = seal::SIGNED;
        s.key_id = key_id_bytes(&k.verifying_key());
        s.signature = k.sign(&seal::signed_message(&hash)).to_bytes();
    }
    s.digest = seal_digest(&hash, &s);
    let mut out = Vec::with_capacity(library.len() + seal::SEAL_LEN);
    out.extend_from_slice(library);
    out.extend_from_slice(&s.to_bytes());
    out
}

/// The library inside a sealed patch file, after checking the seal's digest: a damaged file is
/// not signed.
pub fn unseal(file: &[u8], path: &Path) -> Result<Vec<u8>> {
    let s = Seal::parse(file).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let library = &file[..s.library_len as usize];
    let hash: [u8; 32] = Sha256::digest(library).into();
    if seal_digest(&hash, &s) != s.digest {
        bail!("{} is damaged: its bytes differ from those its seal was made for", path.display());
    }
    Ok(library.to_vec())
}

/// `cargo dsu sign FILE --key KEY`: replaces the seal of a patch file by one signed with `key`.
/// Writes a new file and renames it over the old, so a program that mapped the old one is safe.
pub fn sign_file(path: &Path, key: &Path) -> Result<String> {
    let key = read_secret_key(key)?;
    let file = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let library = unseal(&file, path)?;
    write_new(path, &seal(&library, Some(&key)))?;
    Ok(key_id(&key.verifying_key()))
}

/// Writes `bytes` to `path` through a new file renamed into place.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = with_suffix(path, "tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_seal_and_sign_round_trip() {
        let dir = std::env::temp_dir().join(format!("dsu-sign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let KeyPair { secret, public, id } = keygen(&dir.join("release")).unwrap();
        assert_eq!(id, key_id(&read_public_key(&public).unwrap()));
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(keygen(&dir.join("release")).is_err(), "never overwrites");
        let key = read_secret_key(&secret).unwrap();
        assert_eq!(read_public_key(&public).unwrap(), key.verifying_key());

        let patch = dir.join("p.so");
        std::fs::write(&patch, seal(b"library bytes", None)).unwrap();
        let id = sign_file(&patch, &secret).unwrap();
        let signed = std::fs::read(&patch).unwrap();
        let s = Seal::parse(&signed).unwrap();
        assert!(s.signed());
        assert_eq!(seal::hex(&s.key_id), id);
        assert_eq!(unseal(&signed, &patch).unwrap(), b"library bytes");

        let mut damaged = signed.clone();
        damaged[0] ^= 1;
        std::fs::write(&patch, &damaged).unwrap();
        assert!(sign_file(&patch, &secret).unwrap_err().to_string().contains("damaged"));

        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret_key(&secret).unwrap_err().to_string().contains("readable by other users"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
