//! The seal at the end of every patch file: what makes a changed byte detectable and, when keys
//! are configured, a patch authentic. Bytes only; the hashing and signing live in the runtime
//! (`trust.rs`) and in `cargo dsu` (`sign.rs`).
//!
//! A patch file is the shared library followed by a fixed [`SEAL_LEN`]-byte seal:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | [`SEAL_MAGIC`] |
//! | 8 | length of the library before the seal, little-endian (the file is that plus the seal) |
//! | 4 | flags: [`SIGNED`] when a signature follows |
//! | 4 | reserved, zero |
//! | 8 | id of the signing key ([`key_id`] of its public key), zero when unsigned |
//! | 64 | Ed25519 signature of [`signed_message`], zero when unsigned |
//! | 32 | the seal digest: SHA-256 of (SHA-256 of the library, then the 96 seal bytes above) |
//!
//! The seal digest covers every byte of the file but itself: the library through its own hash
//! (computed once, and also what is signed), the signature block directly. A loader computes it
//! before it reads anything else, so any changed byte is refused as damaged. The signature covers
//! the library's hash, and with it the manifest inside the library: the build the patch applies
//! to, the revision it brings, and when it was made; a signed patch cannot be replayed on
//! another build. Signing an existing patch rewrites only the seal.

/// First bytes of the seal.
pub const SEAL_MAGIC: [u8; 8] = *b"DSUSEAL\x01";
/// Bytes of the seal.
pub const SEAL_LEN: usize = 8 + 8 + 4 + 4 + 8 + 64 + 32;
/// Flag: the seal carries a signature.
pub const SIGNED: u32 = 1;
/// Bytes of the seal before its digest: what the digest covers besides the library's hash.
pub const SEAL_COVERED: usize = SEAL_LEN - 32;
/// What a signature signs is this domain string, then the library's SHA-256.
pub const SIGNATURE_DOMAIN: &[u8] = b"dsu patch signature v1\0";

/// A parsed seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Bytes of the library before the seal.
    pub library_len: u64,
    pub flags: u32,
    pub key_id: [u8; 8],
    pub signature: [u8; 64],
    pub digest: [u8; 32],
}

/// Why a file's seal cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// The file is shorter than a seal.
    TooShort(usize),
    /// The file does not end in a seal.
    NoSeal,
    /// The seal's library length does not match the file.
    Length { said: u64, found: u64 },
    /// Reserved bits are set.
    Reserved,
}

impl core::fmt::Display for SealError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SealError::TooShort(n) => write!(f, "{n} bytes is shorter than a patch's seal ({SEAL_LEN} bytes)"),
            SealError::NoSeal => f.write_str("the file does not end in a dsu seal (not made by `cargo dsu patch`, or cut short)"),
            SealError::Length { said, found } => {
                write!(f, "the seal says the library has {said} bytes, the file holds {found}")
            }
            SealError::Reserved => f.write_str("the seal has reserved bits set"),
        }
    }
}

impl Seal {
    /// Reads the seal at the end of `file` and checks its shape (not its digest): the library
    /// is `file[..library_len]`.
    pub fn parse(file: &[u8]) -> Result<Seal, SealError> {
        if file.len() < SEAL_LEN {
            return Err(SealError::TooShort(file.len()));
        }
        let s = &file[file.len() - SEAL_LEN..];
        if s[..8] != SEAL_MAGIC {
            return Err(SealError::NoSeal);
        }
        let library_len = u64::from_le_bytes(s[8..16].try_into().unwrap());
        let found = (file.len() - SEAL_LEN) as u64;
        if library_len != found {
            return Err(SealError::Length { said: library_len, found });
        }
        let flags = u32::from_le_bytes(s[16..20].try_into().unwrap());
        if flags & !SIGNED != 0 || s[20..24] != [0; 4] {
            return Err(SealError::Reserved);
        }
        Ok(Seal {
            library_len,
            flags,
            key_id: s[24..32].try_into().unwrap(),
            signature: s[32..96].try_into().unwrap(),
            digest: s[96..128].try_into().unwrap(),
        })
    }

    /// Whether the seal carries a signature.
    pub fn signed(&self) -> bool {
        self.flags & SIGNED != 0
    }

    /// The seal's bytes; `digest` is what [`Seal::covered`] and the library hash to.
    pub fn to_bytes(&self) -> [u8; SEAL_LEN] {
        let mut out = [0u8; SEAL_LEN];
        out[..SEAL_COVERED].copy_from_slice(&self.covered());
        out[96..].copy_from_slice(&self.digest);
        out
    }

    /// The seal bytes the digest covers (all but the digest).
    pub fn covered(&self) -> [u8; SEAL_COVERED] {
        let mut out = [0u8; SEAL_COVERED];
        out[..8].copy_from_slice(&SEAL_MAGIC);
        out[8..16].copy_from_slice(&self.library_len.to_le_bytes());
        out[16..20].copy_from_slice(&self.flags.to_le_bytes());
        out[24..32].copy_from_slice(&self.key_id);
        out[32..96].copy_from_slice(&self.signature);
        out
    }
}

/// The message a signature signs: [`SIGNATURE_DOMAIN`], then the library's SHA-256.
pub fn signed_message(library_hash: &[u8; 32]) -> [u8; SIGNATURE_DOMAIN.len() + 32] {
    let mut out = [0u8; SIGNATURE_DOMAIN.len() + 32];
    out[..SIGNATURE_DOMAIN.len()].copy_from_slice(SIGNATURE_DOMAIN);
    out[SIGNATURE_DOMAIN.len()..].copy_from_slice(library_hash);
    out
}

/// A public key's id: the first 8 bytes of its SHA-256 (`sha256` computed by the caller).
pub fn key_id(public_key_sha256: &[u8; 32]) -> [u8; 8] {
    public_key_sha256[..8].try_into().unwrap()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> alloc::string::String {
    let mut s = alloc::string::String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap());
        s.push(char::from_digit((b & 15) as u32, 16).unwrap());
    }
    s
}

/// The 32 bytes written as 64 hex digits in `text`, if it is that.
pub fn key_from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16);
        out[i] = (d(chunk[0])? * 16 + d(chunk[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_checks_its_shape() {
        let lib = [7u8; 200];
        let seal = Seal { library_len: 200, flags: SIGNED, key_id: [1; 8], signature: [2; 64], digest: [3; 32] };
        let mut file = lib.to_vec();
        file.extend_from_slice(&seal.to_bytes());
        assert_eq!(Seal::parse(&file), Ok(seal));
        assert_eq!(Seal::parse(&file[1..]), Err(SealError::Length { said: 200, found: 199 }));
        assert_eq!(Seal::parse(&lib), Err(SealError::NoSeal));
        assert_eq!(Seal::parse(&file[..10]), Err(SealError::TooShort(10)));
        let mut reserved = file.clone();
        reserved[200 + 21] = 1;
        assert_eq!(Seal::parse(&reserved), Err(SealError::Reserved));
    }

    #[test]
    fn hex_round_trips() {
        let k = [0xabu8; 32];
        assert_eq!(key_from_hex(&hex(&k)), Some(k));
        assert_eq!(key_from_hex("zz"), None);
        assert_eq!(key_from_hex(&"g".repeat(64)), None);
    }
}
