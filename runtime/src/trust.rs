//! Trust in a patch file: read once, sealed, signed when the program asks for it, and mapped from
//! exactly the bytes that were verified.
//!
//! The order, each step refusing with its own [`Error`]:
//! 1. **One read.** The file is opened once; its owner and mode are checked on that descriptor
//!    (`fstat`): a file another user could have written (owned by someone other than the
//!    program's user or root, or writable by group or others) is refused unless the program
//!    allows it ([`allow_patch_files_of_others`]). Its bytes are read through the same descriptor.
//! 2. **Integrity, always.** The file ends in a seal (`dsu_abi::seal`) whose SHA-256 digest
//!    covers every other byte; no seal, or any byte changed, is [`Error::Damaged`].
//! 3. **Authenticity, when the program trusts keys** (`cargo dsu build --trust NAME.pub`, kept
//!    in the build identity, or [`trust_key`] at run time): the seal must carry an Ed25519
//!    signature, by a trusted key, of the library's hash, which covers the manifest (the build
//!    the patch applies to, its revision, its creation time).
//! 4. **Map what was verified.** The verified library bytes are copied into a sealed memfd
//!    (no write, grow or shrink ever again) and the dynamic loader opens `/proc/self/fd/N`:
//!    replacing the file on disk after step 1 cannot run anything, and no constructor of an
//!    unverified file ever runs. Each load is a new inode, so the loader's cache never hands
//!    back an earlier patch loaded from the same path.

use crate::sync::{Mutex, Ordering};
use crate::Error;
use dsu_abi::seal::{self, Seal};
use ed25519_dalek::{Signature, VerifyingKey};
use libloading::os::unix::Library;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Keys trusted at run time ([`trust_key`]), besides those of the build.
static RUNTIME_KEYS: Mutex<Vec<[u8; 32]>> = Mutex::new(Vec::new());
/// Whether patch files another user could have written are accepted.
static OTHERS_FILES: AtomicBool = AtomicBool::new(false);

/// Trusts `key` to sign patches, from now on: once any key is trusted (here or at build time
/// with `cargo dsu build --trust`), only patches signed by a trusted key load.
///
/// `key` is the content of a `NAME.pub` file written by `cargo dsu keygen NAME` (for example
/// `include_bytes!("../release.pub")`), or the 32 bytes of an Ed25519 public key.
pub fn trust_key(key: &[u8]) -> Result<(), Error> {
    let key = parse_public_key(key)?;
    let mut keys = RUNTIME_KEYS.lock().unwrap_or_else(|e| e.into_inner());
    if !keys.contains(&key) {
        keys.push(key);
    }
    Ok(())
}

/// Accepts patch files that a user other than the program's and root owns or may write (off by
/// default: such a file could have been replaced with someone else's code).
pub fn allow_patch_files_of_others(allow: bool) {
    OTHERS_FILES.store(allow, Ordering::SeqCst);
}

/// A public key from a `NAME.pub` file's text or 32 raw bytes.
pub(crate) fn parse_public_key(key: &[u8]) -> Result<[u8; 32], Error> {
    if let Ok(text) = std::str::from_utf8(key) {
        if let Some(k) = text.split_whitespace().find_map(seal::key_from_hex) {
            return check_point(k);
        }
    }
    match <[u8; 32]>::try_from(key) {
        Ok(k) => check_point(k),
        Err(_) => Err(Error::BadKey {
            reason: format!("expected a `cargo dsu keygen` .pub file or 32 bytes, got {} bytes", key.len()),
        }),
    }
}

fn check_point(k: [u8; 32]) -> Result<[u8; 32], Error> {
    VerifyingKey::from_bytes(&k)
        .map(|_| k)
        .map_err(|e| Error::BadKey { reason: format!("not an Ed25519 public key: {e}") })
}

/// The id of a public key, as `cargo dsu keygen` prints it and refusals name it.
pub(crate) fn key_id(key: &[u8; 32]) -> [u8; 8] {
    seal::key_id(&Sha256::digest(key).into())
}

/// Every key the program trusts: the build's (`trust` in its identity, hex, comma-separated)
/// and those given to [`trust_key`].
pub(crate) fn trusted_keys(build_trust: &str) -> Vec<[u8; 32]> {
    let mut keys: Vec<[u8; 32]> =
        build_trust.split(',').filter_map(seal::key_from_hex).collect();
    for k in RUNTIME_KEYS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if !keys.contains(k) {
            keys.push(*k);
        }
    }
    keys
}

/// The ids (hex) of the keys in `keys`, for `status` and refusals.
pub(crate) fn key_ids(keys: &[[u8; 32]]) -> Vec<String> {
    keys.iter().map(|k| seal::hex(&key_id(k))).collect()
}

/// The program's effective user.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Why a file or directory could have been written by someone else than the program's user or
/// root, by its owner (`owned by uid …`); `None` when one of them owns it.
pub(crate) fn foreign_owner(meta: &std::fs::Metadata) -> Option<String> {
    let me = effective_uid();
    (meta.uid() != me && meta.uid() != 0)
        .then(|| format!("owned by uid {}, not by this program's user ({me}) or root", meta.uid()))
}

/// Step 1: the file's bytes, read through one descriptor whose owner and mode were checked.
pub(crate) fn read_patch_file(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |e: std::io::Error| Error::Io { path: path.to_path_buf(), source: e.into() };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Error::NotALibrary { path: path.to_path_buf(), reason: "not a regular file".into() });
    }
    if !OTHERS_FILES.load(Ordering::SeqCst) {
        let unsafe_file = |reason: String| Err(Error::UnsafeFile { path: path.to_path_buf(), reason });
        if let Some(owner) = foreign_owner(&meta) {
            return unsafe_file(format!("it is {owner}"));
        }
        if meta.mode() & 0o022 != 0 {
            return unsafe_file(format!("its mode {:o} lets other users write it", meta.mode() & 0o7777));
        }
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data).map_err(io)?;
    Ok(data)
}

/// A library whose seal was checked: its bytes and their SHA-256.
pub(crate) struct Checked<'a> {
    pub library: &'a [u8],
    pub hash: [u8; 32],
}

/// Steps 2 and 3: checks the seal of `file` (and its signature when `trusted` is not empty);
/// returns the library, the bytes before the seal.
pub(crate) fn check_seal<'a>(path: &Path, file: &'a [u8], trusted: &[[u8; 32]]) -> Result<Checked<'a>, Error> {
    let damaged = |reason: String| Error::Damaged { path: path.to_path_buf(), reason };
    let found = Seal::parse(file).map_err(|e| damaged(e.to_string()))?;
    let library = &file[..found.library_len as usize];
    let library_hash: [u8; 32] = Sha256::digest(library).into();
    if seal_digest(&library_hash, &found) != found.digest {
        return Err(damaged("its bytes differ from those its seal was made for".into()));
    }
    let checked = Checked { library, hash: library_hash };
    if trusted.is_empty() {
        return Ok(checked);
    }
    if !found.signed() {
        return Err(Error::Unsigned { path: path.to_path_buf(), trusted: trusted.len() });
    }
    let Some(key) = trusted.iter().find(|k| key_id(k) == found.key_id) else {
        return Err(Error::UnknownKey {
            path: path.to_path_buf(),
            key_id: seal::hex(&found.key_id),
            trusted: key_ids(trusted).join(", "),
        });
    };
    let bad = || Error::BadSignature { path: path.to_path_buf(), key_id: seal::hex(&found.key_id) };
    let key = VerifyingKey::from_bytes(key).map_err(|_| bad())?;
    key.verify_strict(&seal::signed_message(&library_hash), &Signature::from_bytes(&found.signature))
        .map_err(|_| bad())?;
    Ok(checked)
}

/// What a seal's digest must be: SHA-256 of the library's hash, then the seal's other bytes
/// (`dsu_abi::seal`).
fn seal_digest(library_hash: &[u8; 32], seal: &Seal) -> [u8; 32] {
    Sha256::new().chain_update(library_hash).chain_update(seal.covered()).finalize().into()
}

/// Libraries mapped so far, by the SHA-256 of their bytes: never unloaded, so the same bytes
/// loaded again (a patch re-applied after a rollback) reuse their mapping instead of adding one.
static MAPPED: Mutex<Vec<([u8; 32], &'static Library)>> = Mutex::new(Vec::new());

/// Step 4: maps exactly the checked library, through a sealed memfd, or returns the mapping of
/// the same bytes made earlier. The library is never unloaded: its initialisers have run, its
/// code may be on some thread's stack once applied, its `&'static` data and vtables may be held
/// by live values, and its thread-local destructors run at thread exit.
///
/// # Safety
/// Mapping a library runs its initialisers: the bytes must have been verified as a patch of
/// this program (see `load.rs`).
pub(crate) unsafe fn map_verified(path: &Path, checked: &Checked<'_>, flags: i32) -> Result<&'static Library, Error> {
    let mut mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, lib)) = mapped.iter().find(|(h, _)| *h == checked.hash) {
        return Ok(lib);
    }
    // SAFETY: the caller's contract.
    let lib: &'static Library = Box::leak(Box::new(unsafe { map_new(path, checked.library, flags) }?));
    mapped.push((checked.hash, lib));
    Ok(lib)
}

/// Maps `library` through a new sealed memfd.
///
/// # Safety
/// As [`map_verified`].
unsafe fn map_new(path: &Path, library: &[u8], flags: i32) -> Result<Library, Error> {
    let open_err = |reason: String| Error::Open { path: path.to_path_buf(), reason };
    // SAFETY: the name is a NUL-terminated string; the flags are valid for memfd_create.
    let fd = unsafe { libc::memfd_create(c"dsu-patch".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(open_err(format!("memfd_create: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut memfd = unsafe { std::fs::File::from_raw_fd(fd) };
    memfd.write_all(library).map_err(|e| open_err(format!("writing the memfd: {e}")))?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: `fd` is an open memfd created with sealing allowed; F_ADD_SEALS takes an int.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(open_err(format!("sealing the memfd: {}", std::io::Error::last_os_error())));
    }
    let proc_path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
    // SAFETY: the caller's contract: these bytes are a verified patch of this program.
    let lib = unsafe { Library::open(Some(&proc_path), flags) }.map_err(|e| open_err(e.to_string()))?;
    // The descriptor stays open for the life of the process, as the library stays mapped: were
    // it closed, a later memfd could get the same inode number, and the dynamic loader, which
    // knows libraries by device and inode, would hand back this library for it.
    std::mem::forget(memfd);
    Ok(lib)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn sealed(library: &[u8], signer: Option<&SigningKey>) -> Vec<u8> {
        let hash: [u8; 32] = Sha256::digest(library).into();
        let mut s = Seal { library_len: library.len() as u64, flags: 0, key_id: [0; 8], signature: [0; 64], digest: [0; 32] };
        if let Some(k) = signer {
            s.flags = seal::SIGNED;
            s.key_id = key_id(&k.verifying_key().to_bytes());
            s.signature = k.sign(&seal::signed_message(&hash)).to_bytes();
        }
        s.digest = seal_digest(&hash, &s);
        let mut out = library.to_vec();
        out.extend_from_slice(&s.to_bytes());
        out
    }

    #[test]
    fn every_changed_byte_is_damage_and_signatures_are_checked() {
        let p = Path::new("p.so");
        let lib = b"\x7fELF pretend library bytes".repeat(10);
        let good = sealed(&lib, None);
        assert_eq!(check_seal(p, &good, &[]).unwrap().library, &lib[..]);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(matches!(check_seal(p, &bad, &[]), Err(Error::Damaged { .. })), "byte {i}");
        }
        assert!(matches!(check_seal(p, &lib, &[]), Err(Error::Damaged { .. })), "no seal");

        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let trusted = [key.verifying_key().to_bytes()];
        assert!(matches!(check_seal(p, &good, &trusted), Err(Error::Unsigned { trusted: 1, .. })));
        let signed = sealed(&lib, Some(&key));
        assert_eq!(check_seal(p, &signed, &trusted).unwrap().library, &lib[..]);
        assert!(check_seal(p, &signed, &[]).is_ok(), "a signed patch loads where no key is required");
        let by_other = sealed(&lib, Some(&other));
        assert!(matches!(check_seal(p, &by_other, &trusted), Err(Error::UnknownKey { .. })));
        // A forged signature under the trusted key's id, resealed so the digest holds.
        let mut forged = Seal::parse(&by_other).unwrap();
        forged.key_id = key_id(&trusted[0]);
        let hash: [u8; 32] = Sha256::digest(&lib).into();
        forged.digest = seal_digest(&hash, &forged);
        let mut forged_file = lib.clone();
        forged_file.extend_from_slice(&forged.to_bytes());
        assert!(matches!(check_seal(p, &forged_file, &trusted), Err(Error::BadSignature { .. })));
    }

    #[test]
    fn public_keys_from_files_or_bytes() {
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
        let file = format!("dsu public key {}\n{}\n", seal::hex(&key_id(&key)), seal::hex(&key));
        assert_eq!(parse_public_key(file.as_bytes()).unwrap(), key);
        assert_eq!(parse_public_key(&key).unwrap(), key);
        assert!(matches!(parse_public_key(b"nonsense"), Err(Error::BadKey { .. })));
    }
}
