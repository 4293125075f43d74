//! What a dsu host, its patches and `cargo dsu` must agree on.
//!
//! Everything here is read across a trust boundary: the loader reads a patch's header, manifest
//! and function table *from the file* before the library is mapped, so every structure is plain
//! bytes with no pointers, no padding and a fixed byte order. The one structure that holds
//! pointers ([`FnLink`]) is read only after the data it points at has been verified.
//!
//! Compatibility rule: within a major [`FORMAT_MAJOR`], fields are only ever appended; a reader
//! ignores trailing fields it does not know.

#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod seal;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// First bytes of every patch blob.
pub const PATCH_MAGIC: [u8; 8] = *b"DSUPATCH";
/// Bumped when a reader of the previous major could misread a patch.
pub const FORMAT_MAJOR: u16 = 1;
/// Bumped when fields are appended, or when a patch carries more records.
///
/// 1.1: routed functions in the manifest. 1.2: one [`CellInfo`] record per state cell of the
/// patch's updateable set ([`STATE_CELL_PREFIX`]); a loader refuses an older patch, whose cell
/// types it cannot check ([`CELL_RECORDS_MINOR`]). 1.3: the build identity's trusted keys
/// ([`BuildIdentity::trust`]) and the manifest's creation time; the file ends in a seal
/// ([`seal`]). 1.4: one [`FieldCellInfo`] record per `dsu::Cell<T>` type the set's code names
/// ([`FIELD_CELL_PREFIX`]), and field-cell transforms ([`FIELD_TRANSFORM_PREFIX`]). 1.5: carried
/// functions in the manifest ([`Manifest::carried`]).
pub const FORMAT_MINOR: u16 = 5;
/// The first minor version whose patches carry a [`CellInfo`] record for every state cell.
pub const CELL_RECORDS_MINOR: u16 = 2;

/// Dynamic symbol holding a patch's header and manifest (a byte array, see [`encode_patch_blob`]).
pub const HEADER_SYMBOL: &str = "__dsu_patch";
/// Prefix of the dynamic symbol holding one function's [`FnInfo`].
pub const FN_INFO_PREFIX: &str = "__dsu_fn_";
/// Prefix of the dynamic symbol holding one function's [`FnLink`].
pub const FN_LINK_PREFIX: &str = "__dsu_link_";
/// Prefix of the dynamic symbol of one state cell's transform in a patch (a `dsu::CellTransform`,
/// read only after the patch's identity and functions have been verified).
pub const CELL_TRANSFORM_PREFIX: &str = "__dsu_cell_";
/// Prefix of a patch's exported inverse state-cell transforms (`CellTransform` from the patch's
/// type back to the type it replaced), used to roll the patch back.
pub const CELL_INVERSE_PREFIX: &str = "__dsu_uncell_";
/// Prefix of the dynamic symbol holding one state cell's [`CellInfo`] in a patch:
/// `__dsu_state_` + [`symbol_safe`]`(cell name)`.
pub const STATE_CELL_PREFIX: &str = "__dsu_state_";
/// Prefix of the dynamic symbol holding one [`FieldCellInfo`] in a patch (see
/// [`field_cell_symbol`]).
pub const FIELD_CELL_PREFIX: &str = "__dsu_fieldcell_";
/// Prefix of the dynamic symbol of one field-cell transform in a patch (a `dsu::CellTransform`
/// of the field kind, applied to every live `dsu::Cell` whose value has its `from` fingerprint;
/// see [`field_transform_symbol`]).
pub const FIELD_TRANSFORM_PREFIX: &str = "__dsu_fieldxf_";
/// Prefix of a patch's inverse field-cell transforms (new type back to old), for a rollback.
pub const FIELD_INVERSE_PREFIX: &str = "__dsu_unfieldxf_";
/// Prefix of the dynamic symbol under which a program exports one static of its updateable set:
/// `__dsu_static_` + [`symbol_safe`]`(stable path)` (`app::greeting::HITS`). A patch declares the
/// statics it shares with the program under these names, so its code reaches the program's
/// instances (`cargo-dsu`'s `compare/statics.rs`).
pub const STATIC_PREFIX: &str = "__dsu_static_";
/// Prefix of the dynamic symbol holding the layout record of one exported static (size,
/// alignment and structural fingerprint of its type, four little-endian `u64`), which the patch
/// build reads from the program's file and checks the patch's type of the static against.
pub const STATIC_LAYOUT_PREFIX: &str = "__dsu_layout_";
/// Glob the host exports dynamically so the runtime finds its own function table, and patches
/// the program's statics.
pub const HOST_EXPORT_GLOB: &str = "__dsu_*";
/// Environment variable through which the build recipe hands the build identity to the macros.
pub const BUILD_ENV: &str = "DSU_BUILD";
/// `--cfg` set when the updateable crate is compiled as a patch.
pub const PATCH_CFG: &str = "dsu_patch";
/// The cfg key `cargo dsu patch` sets, as `dsu_transform = "<old type>::<function>"`, for each
/// transformer function a patch compiles: one of a type the patch changes, new or changed since
/// the revision the patch starts from. Every other transformer in the source is left out.
pub const TRANSFORMER_CFG: &str = "dsu_transform";

/// Name of the [`FnLink`] symbol that belongs to the [`FnInfo`] symbol `info_symbol`.
///
/// Returns `None` when `info_symbol` is not a function-info symbol.
pub fn link_symbol_for(info_symbol: &str) -> Option<String> {
    let rest = info_symbol.strip_prefix(FN_INFO_PREFIX)?;
    let mut s = String::with_capacity(FN_LINK_PREFIX.len() + rest.len());
    s.push_str(FN_LINK_PREFIX);
    s.push_str(rest);
    Some(s)
}

/// Turns the item-local part of a stable path (`Counter::bump`,
/// `<Counter as fmt::Display>::fmt`) into characters every linker's version script accepts.
///
/// The macros append this to `module_path!()`; it is only used for symbol names, never shown.
pub fn symbol_safe(local_path: &str) -> String {
    let mut out = String::with_capacity(local_path.len());
    for c in local_path.chars() {
        match c {
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => out.push(c),
            _ => out.push('_'),
        }
    }
    out
}

/// The symbol of the [`FieldCellInfo`] of the `dsu::Cell<T>` type written `type_text` in the
/// module `place`: one per module and type, whatever the order the items come in.
pub fn field_cell_symbol(place: &str, type_text: &str) -> String {
    hashed_symbol(FIELD_CELL_PREFIX, place, type_text)
}

/// The symbol of the field-cell transform from the old value type `old_key` (any text that names
/// the old type the same way wherever it is written), under `prefix`
/// ([`FIELD_TRANSFORM_PREFIX`] or [`FIELD_INVERSE_PREFIX`]): one per old type in a patch.
pub fn field_transform_symbol(prefix: &str, old_key: &str) -> String {
    hashed_symbol(prefix, "", old_key)
}

fn hashed_symbol(prefix: &str, a: &str, b: &str) -> String {
    use core::fmt::Write as _;
    let h = fnv128_continue(fnv128_continue(FNV128_OFFSET, a.as_bytes()), &[0]);
    let h = fnv128_continue(h, b.as_bytes());
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    let _ = write!(s, "{h:032x}");
    s
}

// ---------------------------------------------------------------------------------------------
// Hashing and fingerprints
// ---------------------------------------------------------------------------------------------

const FNV128_OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
const FNV128_PRIME: u128 = 0x0000000001000000000000000000013B;

/// FNV-1a, 128 bits, usable in `const` context.
pub const fn fnv128(bytes: &[u8]) -> u128 {
    fnv128_continue(FNV128_OFFSET, bytes)
}

const fn fnv128_continue(mut h: u128, bytes: &[u8]) -> u128 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u128;
        h = h.wrapping_mul(FNV128_PRIME);
        i += 1;
    }
    h
}

/// 64-bit hash of a function body, used to tell which functions a patch changes.
pub const fn body_hash(text: &str) -> u64 {
    let h = fnv128(text.as_bytes());
    (h ^ (h >> 64)) as u64
}

/// A structural fingerprint: equal fingerprints mean equal structure, as far as the inputs go.
///
/// For a function signature the inputs are the normalised text of the signature (with `Self`
/// spelled out) and the size and alignment of every argument and the return type, computed by
/// the compiler that builds the crate. `TypeId` is not used: it differs between a host and a
/// patch built from the same source, and it stays equal across some layout changes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// Fingerprint of a piece of text.
    pub const fn of_text(text: &str) -> Self {
        Fingerprint(fnv128(text.as_bytes()).to_le_bytes())
    }

    /// Fingerprint from a value computed earlier by [`Fingerprint::of_text`] (how the macros
    /// embed the text part without embedding the text).
    pub const fn from_u128(v: u128) -> Self {
        Fingerprint(v.to_le_bytes())
    }

    /// Mixes the size and alignment of one type into the fingerprint.
    pub const fn with_layout(self, size: usize, align: usize) -> Self {
        let mut h = u128::from_le_bytes(self.0);
        h = fnv128_continue(h, &(size as u64).to_le_bytes());
        h = fnv128_continue(h, &(align as u64).to_le_bytes());
        Fingerprint(h.to_le_bytes())
    }

    /// Mixes another fingerprint into this one (order matters).
    pub const fn with(self, other: Fingerprint) -> Self {
        Fingerprint(fnv128_continue(u128::from_le_bytes(self.0), &other.0).to_le_bytes())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().rev() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Per-function table
// ---------------------------------------------------------------------------------------------

/// Magic at the start of every [`FnInfo`].
pub const FN_INFO_MAGIC: [u8; 8] = *b"DSUFN\0\0\x01";
/// Bytes of [`FnInfo`] before the variable-length part.
pub const FN_INFO_FIXED: usize = 40;

/// What a host or patch says about one updateable function, as position-independent bytes.
///
/// Exported under [`FN_INFO_PREFIX`]` + module path + `[`symbol_safe`]`(local path)`. `N` is
/// `path.len() + build.len()`; the macros compute it.
#[repr(C)]
pub struct FnInfo<const N: usize> {
    magic: [u8; 8],
    signature: [u8; 16],
    body: [u8; 8],
    path_len: [u8; 4],
    build_len: [u8; 4],
    bytes: [u8; N],
}

impl<const N: usize> FnInfo<N> {
    /// Builds the record at compile time. Panics (a compile error in const context) when
    /// `N != path.len() + build.len()`.
    pub const fn new(path: &str, build: &str, signature: Fingerprint, body: u64) -> Self {
        assert!(path.len() + build.len() == N, "FnInfo length mismatch");
        let mut bytes = [0u8; N];
        let p = path.as_bytes();
        let b = build.as_bytes();
        let mut i = 0;
        while i < p.len() {
            bytes[i] = p[i];
            i += 1;
        }
        let mut j = 0;
        while j < b.len() {
            bytes[p.len() + j] = b[j];
            j += 1;
        }
        FnInfo {
            magic: FN_INFO_MAGIC,
            signature: signature.0,
            body: body.to_le_bytes(),
            path_len: (p.len() as u32).to_le_bytes(),
            build_len: (b.len() as u32).to_le_bytes(),
            bytes,
        }
    }
}

/// A parsed [`FnInfo`], borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FnInfoView<'a> {
    pub path: &'a str,
    pub build: &'a str,
    pub signature: Fingerprint,
    pub body: u64,
}

/// Why bytes could not be read as a structure of this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    Truncated { needed: usize, found: usize },
    /// The magic bytes differ.
    BadMagic { expected: Vec<u8>, found: Vec<u8> },
    /// A string field is not UTF-8.
    NotUtf8(&'static str),
    /// The format's major version is not one this reader knows.
    UnsupportedMajor { expected: u16, found: u16 },
    /// A field has a value this reader cannot accept.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { needed, found } => {
                write!(f, "truncated: needs {needed} bytes, found {found}")
            }
            DecodeError::BadMagic { expected, found } => {
                write!(f, "bad magic: expected {expected:02x?}, found {found:02x?}")
            }
            DecodeError::NotUtf8(what) => write!(f, "{what} is not UTF-8"),
            DecodeError::UnsupportedMajor { expected, found } => {
                write!(f, "format major version {found}, this runtime reads {expected}")
            }
            DecodeError::Invalid(what) => write!(f, "invalid {what}"),
        }
    }
}

impl<'a> FnInfoView<'a> {
    /// Length of the whole record, read from its fixed part.
    pub fn total_len(fixed: &[u8]) -> Result<usize, DecodeError> {
        if fixed.len() < FN_INFO_FIXED {
            return Err(DecodeError::Truncated { needed: FN_INFO_FIXED, found: fixed.len() });
        }
        if fixed[..8] != FN_INFO_MAGIC {
            return Err(DecodeError::BadMagic {
                expected: FN_INFO_MAGIC.to_vec(),
                found: fixed[..8].to_vec(),
            });
        }
        let p = u32::from_le_bytes(fixed[32..36].try_into().unwrap()) as usize;
        let b = u32::from_le_bytes(fixed[36..40].try_into().unwrap()) as usize;
        Ok(FN_INFO_FIXED + p + b)
    }

    /// Parses a whole record.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let total = Self::total_len(bytes)?;
        if bytes.len() < total {
            return Err(DecodeError::Truncated { needed: total, found: bytes.len() });
        }
        let p = u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
        let path = core::str::from_utf8(&bytes[FN_INFO_FIXED..FN_INFO_FIXED + p])
            .map_err(|_| DecodeError::NotUtf8("function path"))?;
        let build = core::str::from_utf8(&bytes[FN_INFO_FIXED + p..total])
            .map_err(|_| DecodeError::NotUtf8("build identity"))?;
        Ok(FnInfoView {
            path,
            build,
            signature: Fingerprint(bytes[8..24].try_into().unwrap()),
            body: u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// State cells
// ---------------------------------------------------------------------------------------------

/// Magic at the start of every [`CellInfo`].
pub const CELL_INFO_MAGIC: [u8; 8] = *b"DSUCELL\x01";
/// Bytes of [`CellInfo`] before the variable-length part.
pub const CELL_INFO_FIXED: usize = 32;

/// What a patch says about one state cell its code reaches: the cell's name and the structural
/// fingerprint of the value type that code was compiled for, as position-independent bytes, so
/// the loader reads it from the file before mapping.
///
/// Layout (all little-endian, no padding): magic (8), fingerprint (16), name length (u32), type
/// text length (u32), then the name and the type as written in the source (for messages only;
/// the fingerprint decides). Exported under [`STATE_CELL_PREFIX`]. `N` is
/// `name.len() + type_text.len()`.
#[repr(C)]
pub struct CellInfo<const N: usize> {
    magic: [u8; 8],
    fingerprint: [u8; 16],
    name_len: [u8; 4],
    type_len: [u8; 4],
    bytes: [u8; N],
}

impl<const N: usize> CellInfo<N> {
    /// Builds the record at compile time. Panics (a compile error in const context) when
    /// `N != name.len() + type_text.len()`.
    pub const fn new(name: &str, type_text: &str, fingerprint: Fingerprint) -> Self {
        Self::with_magic(CELL_INFO_MAGIC, name, type_text, fingerprint)
    }

    const fn with_magic(magic: [u8; 8], name: &str, type_text: &str, fingerprint: Fingerprint) -> Self {
        assert!(name.len() + type_text.len() == N, "CellInfo length mismatch");
        let mut bytes = [0u8; N];
        let (n, t) = (name.as_bytes(), type_text.as_bytes());
        let mut i = 0;
        while i < n.len() {
            bytes[i] = n[i];
            i += 1;
        }
        let mut j = 0;
        while j < t.len() {
            bytes[n.len() + j] = t[j];
            j += 1;
        }
        CellInfo {
            magic,
            fingerprint: fingerprint.0,
            name_len: (n.len() as u32).to_le_bytes(),
            type_len: (t.len() as u32).to_le_bytes(),
            bytes,
        }
    }
}

/// A parsed [`CellInfo`], borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellInfoView<'a> {
    /// The cell's name, as `dsu::State::new` gives it.
    pub name: &'a str,
    /// The value type as written in the source.
    pub type_text: &'a str,
    pub fingerprint: Fingerprint,
}

impl<'a> CellInfoView<'a> {
    /// Parses a whole record: exactly the bytes of one [`CellInfo`], no more, no less.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (name, type_text, fingerprint) = parse_cell_record(bytes, CELL_INFO_MAGIC, &STATE_CELL_LABELS)?;
        if name.is_empty() {
            return Err(DecodeError::Invalid("state cell name (empty)"));
        }
        Ok(CellInfoView { name, type_text, fingerprint })
    }
}

/// Parses the layout [`CellInfo`] and [`FieldCellInfo`] share: magic, fingerprint, two lengths,
/// two strings; `labels` name its parts in errors.
fn parse_cell_record<'a>(
    bytes: &'a [u8],
    magic: [u8; 8],
    labels: &RecordLabels,
) -> Result<(&'a str, &'a str, Fingerprint), DecodeError> {
    if bytes.len() < CELL_INFO_FIXED {
        return Err(DecodeError::Truncated { needed: CELL_INFO_FIXED, found: bytes.len() });
    }
    if bytes[..8] != magic {
        return Err(DecodeError::BadMagic { expected: magic.to_vec(), found: bytes[..8].to_vec() });
    }
    let n = u32::from_le_bytes(bytes[24..28].try_into().unwrap()) as usize;
    let t = u32::from_le_bytes(bytes[28..32].try_into().unwrap()) as usize;
    let total = n
        .checked_add(t)
        .and_then(|v| v.checked_add(CELL_INFO_FIXED))
        .ok_or(DecodeError::Invalid(labels.length))?;
    if bytes.len() < total {
        return Err(DecodeError::Truncated { needed: total, found: bytes.len() });
    }
    if bytes.len() > total {
        return Err(DecodeError::Invalid(labels.trailing));
    }
    let name = core::str::from_utf8(&bytes[CELL_INFO_FIXED..CELL_INFO_FIXED + n])
        .map_err(|_| DecodeError::NotUtf8(labels.name))?;
    let type_text = core::str::from_utf8(&bytes[CELL_INFO_FIXED + n..total])
        .map_err(|_| DecodeError::NotUtf8(labels.ty))?;
    Ok((name, type_text, Fingerprint(bytes[8..24].try_into().unwrap())))
}

/// How a decode error names the parts of one kind of cell record.
struct RecordLabels {
    length: &'static str,
    trailing: &'static str,
    name: &'static str,
    ty: &'static str,
}

const STATE_CELL_LABELS: RecordLabels = RecordLabels {
    length: "state cell record length",
    trailing: "state cell record length (trailing bytes)",
    name: "state cell name",
    ty: "state cell type",
};

const FIELD_CELL_LABELS: RecordLabels = RecordLabels {
    length: "field cell record length",
    trailing: "field cell record length (trailing bytes)",
    name: "field cell place",
    ty: "field cell type",
};

/// Magic at the start of every [`FieldCellInfo`].
pub const FIELD_CELL_INFO_MAGIC: [u8; 8] = *b"DSUFCEL\x01";

/// What a patch says about one `dsu::Cell<T>` type its code names (a field cell: a versioned
/// value inside another value, created at run time, found by the runtime through its value's
/// fingerprint, not by a name): where the type is written and the structural fingerprint of `T`
/// as that code was compiled, so the loader can check, from the file, that every live field cell
/// holds a type the patch knows or transforms.
///
/// The layout of [`CellInfo`] with its own magic ([`FIELD_CELL_INFO_MAGIC`]); the "name" is the
/// place, the module path the type is written in (for messages). Exported under
/// [`field_cell_symbol`]. `N` is `place.len() + type_text.len()`.
#[repr(transparent)]
pub struct FieldCellInfo<const N: usize>(CellInfo<N>);

impl<const N: usize> FieldCellInfo<N> {
    /// Builds the record at compile time. Panics (a compile error in const context) when
    /// `N != place.len() + type_text.len()`.
    pub const fn new(place: &str, type_text: &str, fingerprint: Fingerprint) -> Self {
        FieldCellInfo(CellInfo::with_magic(FIELD_CELL_INFO_MAGIC, place, type_text, fingerprint))
    }
}

/// A parsed [`FieldCellInfo`], borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldCellInfoView<'a> {
    /// The module path the type is written in.
    pub place: &'a str,
    /// `T` of `dsu::Cell<T>`, as written in the source.
    pub type_text: &'a str,
    pub fingerprint: Fingerprint,
}

impl<'a> FieldCellInfoView<'a> {
    /// Parses a whole record: exactly the bytes of one [`FieldCellInfo`], no more, no less.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (place, type_text, fingerprint) = parse_cell_record(bytes, FIELD_CELL_INFO_MAGIC, &FIELD_CELL_LABELS)?;
        Ok(FieldCellInfoView { place, type_text, fingerprint })
    }
}

/// Bytes at the start of a `dsu::CellTransform` (exported under [`CELL_TRANSFORM_PREFIX`] and
/// [`CELL_INVERSE_PREFIX`]) that hold no address: the fingerprints of the type it transforms
/// from (bytes 0..16) and to (16..32). The runtime lays the struct out so (`repr(C)`, these two
/// fields first), and the loader reads them from the file before mapping.
pub const CELL_TRANSFORM_FINGERPRINTS: usize = 32;

/// The `(from, to)` fingerprints of a cell transform, read from the bytes of its symbol.
pub fn cell_transform_fingerprints(bytes: &[u8]) -> Result<(Fingerprint, Fingerprint), DecodeError> {
    if bytes.len() < CELL_TRANSFORM_FINGERPRINTS {
        return Err(DecodeError::Truncated { needed: CELL_TRANSFORM_FINGERPRINTS, found: bytes.len() });
    }
    Ok((Fingerprint(bytes[0..16].try_into().unwrap()), Fingerprint(bytes[16..32].try_into().unwrap())))
}

/// The relocated half of a function's table entry: where its slot and code are.
///
/// Exported under [`FN_LINK_PREFIX`]; read only after the library is mapped and its
/// [`FnInfo`] has been verified. It holds no address of an exported symbol: a reference to an
/// exported symbol could be bound to the host's definition of the same name at load time.
#[repr(C)]
pub struct FnLink {
    /// This library's own slot for the function (an `AtomicPtr<()>`).
    pub slot: *const core::sync::atomic::AtomicPtr<()>,
    /// This library's implementation of the function.
    pub imp: *const (),
}

// SAFETY: an `FnLink` only holds addresses of statics and functions; it is never written after
// compile time, so sharing it between threads is sound.
unsafe impl Sync for FnLink {}

impl FnLink {
    pub const fn new(slot: *const core::sync::atomic::AtomicPtr<()>, imp: *const ()) -> Self {
        FnLink { slot, imp }
    }
}

// ---------------------------------------------------------------------------------------------
// Build identity, manifest, header
// ---------------------------------------------------------------------------------------------

/// The exact build a patch applies to. Two builds with equal identities can exchange patches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildIdentity {
    /// Name of the updateable crate.
    pub crate_name: String,
    /// Source revision (a git commit id, or `none`), with `+dirty` for an unclean work tree.
    pub revision: String,
    /// Hash of the crate's source tree as built.
    pub tree: String,
    /// Hash of `rustc -vV`.
    pub rustc: String,
    /// Target triple.
    pub target: String,
    /// Cargo profile.
    pub profile: String,
    /// Hash of the shared dependency library (`libdsu_deps_<H>.so`).
    pub deps: String,
    /// The public keys (hex, comma-separated) the build trusts to sign patches
    /// (`cargo dsu build --trust`), empty when it trusts none (format 1.3).
    pub trust: String,
}

impl BuildIdentity {
    /// Field names and values, in a fixed order; used for encoding and for naming differences.
    pub fn fields(&self) -> [(&'static str, &str); 8] {
        [
            ("crate", &self.crate_name),
            ("revision", &self.revision),
            ("tree", &self.tree),
            ("rustc", &self.rustc),
            ("target", &self.target),
            ("profile", &self.profile),
            ("deps", &self.deps),
            ("trust", &self.trust),
        ]
    }

    /// The first field that differs, as `(field, self's value, other's value)`.
    pub fn first_difference<'a>(
        &'a self,
        other: &'a BuildIdentity,
    ) -> Option<(&'static str, &'a str, &'a str)> {
        self.fields()
            .into_iter()
            .zip(other.fields())
            .find(|((_, a), (_, b))| a != b)
            .map(|((name, a), (_, b))| (name, a, b))
    }

    /// `key=value;key=value…`: the form handed to the macros through [`BUILD_ENV`].
    pub fn to_env_string(&self) -> String {
        let mut s = String::new();
        for (i, (k, v)) in self.fields().iter().enumerate() {
            if i > 0 {
                s.push(';');
            }
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }

    /// Parses [`BuildIdentity::to_env_string`]'s form. Unknown keys are ignored.
    pub fn from_env_string(s: &str) -> Result<Self, DecodeError> {
        let mut id = BuildIdentity::default();
        for part in s.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or(DecodeError::Invalid("build identity"))?;
            let v = String::from(v);
            match k {
                "crate" => id.crate_name = v,
                "revision" => id.revision = v,
                "tree" => id.tree = v,
                "rustc" => id.rustc = v,
                "target" => id.target = v,
                "profile" => id.profile = v,
                "deps" => id.deps = v,
                "trust" => id.trust = v,
                _ => {}
            }
        }
        if id.crate_name.is_empty() || id.deps.is_empty() {
            return Err(DecodeError::Invalid("build identity"));
        }
        Ok(id)
    }

    /// The identity of this build after a patch from `revision`/`tree` has been applied.
    pub fn at_source(&self, revision: &str, tree: &str) -> Self {
        BuildIdentity { revision: revision.into(), tree: tree.into(), ..self.clone() }
    }
}

/// What a patch says about itself, beyond its function table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The build (or the version reached by earlier patches) this patch applies to.
    pub applies_to: BuildIdentity,
    /// Revision of the source the patch was built from.
    pub source_revision: String,
    /// Tree hash of the source the patch was built from.
    pub source_tree: String,
    /// Version of the tool that made the patch.
    pub created_by: String,
    /// When the patch was made, in seconds since the Unix epoch (format 1.3; 0 before).
    pub created_at: u64,
    /// Functions whose signature changes with a type the patch changes (format 1.1). For these,
    /// callers compiled against the old layout keep the old version; only copies of the slot
    /// with the new signature switch. A function whose own signature changed is routed too: to
    /// the runtime it is a new function under the old path.
    pub routed: Vec<String>,
    /// Functions the patch switches although their code did not change (format 1.5): they call a
    /// function whose signature changed, and their compiled calls now go to its new version. A
    /// carried function keeps its signature; the loader checks it as any other.
    pub carried: Vec<String>,
}

/// Bytes of the fixed header: magic, major, minor, flags, manifest length.
pub const HEADER_LEN: usize = 8 + 2 + 2 + 4 + 8;

/// The fixed header at the start of a patch blob, checked before anything else is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchHeader {
    pub major: u16,
    pub minor: u16,
    pub flags: u32,
    pub manifest_len: u64,
}

impl PatchHeader {
    /// Reads and checks the fixed header: magic first, then the major version.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 8 {
            return Err(DecodeError::Truncated { needed: HEADER_LEN, found: bytes.len() });
        }
        if bytes[..8] != PATCH_MAGIC {
            return Err(DecodeError::BadMagic {
                expected: PATCH_MAGIC.to_vec(),
                found: bytes[..8].to_vec(),
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated { needed: HEADER_LEN, found: bytes.len() });
        }
        let major = u16::from_le_bytes([bytes[8], bytes[9]]);
        if major != FORMAT_MAJOR {
            return Err(DecodeError::UnsupportedMajor { expected: FORMAT_MAJOR, found: major });
        }
        Ok(PatchHeader {
            major,
            minor: u16::from_le_bytes([bytes[10], bytes[11]]),
            flags: u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
            manifest_len: u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        })
    }
}

/// Encodes header + manifest: the contents of a patch's [`HEADER_SYMBOL`].
pub fn encode_patch_blob(manifest: &Manifest) -> Vec<u8> {
    let mut body = Vec::new();
    let mut put = |s: &str| {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    };
    for (_, v) in manifest.applies_to.fields() {
        put(v);
    }
    put(&manifest.source_revision);
    put(&manifest.source_tree);
    put(&manifest.created_by);
    body.extend_from_slice(&(manifest.routed.len() as u32).to_le_bytes());
    for r in &manifest.routed {
        body.extend_from_slice(&(r.len() as u32).to_le_bytes());
        body.extend_from_slice(r.as_bytes());
    }
    body.extend_from_slice(&manifest.created_at.to_le_bytes());
    body.extend_from_slice(&(manifest.carried.len() as u32).to_le_bytes());
    for c in &manifest.carried {
        body.extend_from_slice(&(c.len() as u32).to_le_bytes());
        body.extend_from_slice(c.as_bytes());
    }

    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&PATCH_MAGIC);
    out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a patch blob: the header is checked before the manifest is read.
pub fn decode_patch_blob(bytes: &[u8]) -> Result<(PatchHeader, Manifest), DecodeError> {
    let header = PatchHeader::parse(bytes)?;
    let len = usize::try_from(header.manifest_len).map_err(|_| DecodeError::Invalid("length"))?;
    let needed = HEADER_LEN.checked_add(len).ok_or(DecodeError::Invalid("length"))?;
    if bytes.len() < needed {
        return Err(DecodeError::Truncated { needed, found: bytes.len() });
    }
    let mut rest = &bytes[HEADER_LEN..needed];
    fn take_from(rest: &mut &[u8], what: &'static str) -> Result<String, DecodeError> {
        if rest.len() < 4 {
            return Err(DecodeError::Truncated { needed: 4, found: rest.len() });
        }
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        if rest.len() < 4 + n {
            return Err(DecodeError::Truncated { needed: 4 + n, found: rest.len() });
        }
        let s = core::str::from_utf8(&rest[4..4 + n]).map_err(|_| DecodeError::NotUtf8(what))?;
        *rest = &rest[4 + n..];
        Ok(String::from(s))
    }
    macro_rules! take {
        ($what:expr) => {
            take_from(&mut rest, $what)
        };
    }
    let applies_to = BuildIdentity {
        crate_name: take!("crate")?,
        revision: take!("revision")?,
        tree: take!("tree")?,
        rustc: take!("rustc")?,
        target: take!("target")?,
        profile: take!("profile")?,
        deps: take!("deps")?,
        trust: if header.minor >= 3 { take!("trust")? } else { String::new() },
    };
    let mut manifest = Manifest {
        applies_to,
        source_revision: take!("source revision")?,
        source_tree: take!("source tree")?,
        created_by: take!("created by")?,
        created_at: 0,
        routed: Vec::new(),
        carried: Vec::new(),
    };
    fn take_list(rest: &mut &[u8], what: &'static str, out: &mut Vec<String>) -> Result<(), DecodeError> {
        if rest.len() < 4 {
            return Err(DecodeError::Truncated { needed: 4, found: rest.len() });
        }
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        *rest = &rest[4..];
        for _ in 0..n {
            out.push(take_from(rest, what)?);
        }
        Ok(())
    }
    // 1.1: routed functions (absent in 1.0 patches).
    if header.minor >= 1 {
        take_list(&mut rest, "routed function", &mut manifest.routed)?;
    }
    // 1.3: the creation time.
    if header.minor >= 3 {
        if rest.len() < 8 {
            return Err(DecodeError::Truncated { needed: 8, found: rest.len() });
        }
        manifest.created_at = u64::from_le_bytes(rest[..8].try_into().unwrap());
        rest = &rest[8..];
    }
    // 1.5: carried functions.
    if header.minor >= 5 {
        take_list(&mut rest, "carried function", &mut manifest.carried)?;
    }
    // Fields appended by later minor versions follow here and are ignored.
    Ok((header, manifest))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn identity() -> BuildIdentity {
        BuildIdentity {
            crate_name: "app".into(),
            revision: "abc".into(),
            tree: "t1".into(),
            rustc: "r".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            profile: "debug".into(),
            deps: "d1".into(),
            trust: String::new(),
        }
    }

    #[test]
    fn blob_round_trips_and_checks_magic_first() {
        let m = Manifest {
            applies_to: identity(),
            source_revision: "def".into(),
            source_tree: "t2".into(),
            created_by: "dsu 0.1.0".into(),
            created_at: 1_700_000_000,
            routed: alloc::vec!["app::describe".into()],
            carried: alloc::vec!["app::handle".into(), "app::Store::get".into()],
        };
        let blob = encode_patch_blob(&m);
        let (h, back) = decode_patch_blob(&blob).unwrap();
        assert_eq!(h.major, FORMAT_MAJOR);
        assert_eq!(back, m);

        let mut bad = blob.clone();
        bad[0] = b'X';
        assert!(matches!(decode_patch_blob(&bad), Err(DecodeError::BadMagic { .. })));
        let mut future = blob.clone();
        future[8] = 9;
        assert!(matches!(
            decode_patch_blob(&future),
            Err(DecodeError::UnsupportedMajor { found: 9, .. })
        ));
        for cut in [3, HEADER_LEN - 1, HEADER_LEN + 5, blob.len() - 1] {
            assert!(
                matches!(decode_patch_blob(&blob[..cut]), Err(DecodeError::Truncated { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn appended_fields_are_ignored() {
        let m = Manifest { applies_to: identity(), ..Default::default() };
        let mut blob = encode_patch_blob(&m);
        blob.extend_from_slice(&[1, 0, 0, 0, b'x']);
        let len = u64::from_le_bytes(blob[16..24].try_into().unwrap()) + 5;
        blob[16..24].copy_from_slice(&len.to_le_bytes());
        assert_eq!(decode_patch_blob(&blob).unwrap().1, m);
    }

    #[test]
    fn identity_env_round_trip_and_difference() {
        let a = identity();
        let b = BuildIdentity::from_env_string(&a.to_env_string()).unwrap();
        assert_eq!(a, b);
        let c = BuildIdentity { rustc: "other".into(), ..a.clone() };
        assert_eq!(a.first_difference(&c), Some(("rustc", "r", "other")));
        assert_eq!(a.first_difference(&a), None);
    }

    #[test]
    fn fn_info_round_trip() {
        const PATH: &str = "app::greet";
        const BUILD: &str = "crate=app;deps=x";
        static INFO: FnInfo<{ PATH.len() + BUILD.len() }> =
            FnInfo::new(PATH, BUILD, Fingerprint::of_text("fn(&str) -> String"), 7);
        // SAFETY: INFO is a live static of exactly size_of_val(&INFO) bytes, all initialised
        // (FnInfo is made of byte arrays only, so it has no padding).
        let bytes = unsafe {
            core::slice::from_raw_parts(&INFO as *const _ as *const u8, core::mem::size_of_val(&INFO))
        };
        let v = FnInfoView::parse(bytes).unwrap();
        assert_eq!(v.path, PATH);
        assert_eq!(v.build, BUILD);
        assert_eq!(v.body, 7);
        assert_eq!(v.signature, Fingerprint::of_text("fn(&str) -> String"));
        assert!(matches!(FnInfoView::parse(&bytes[..20]), Err(DecodeError::Truncated { .. })));
    }

    /// The bytes of a `CellInfo` static, as the loader reads them from a file.
    fn cell_info_bytes<const N: usize>(info: &'static CellInfo<N>) -> &'static [u8] {
        // SAFETY: `info` is a live static of exactly size_of::<CellInfo<N>>() bytes, all
        // initialised (CellInfo is made of byte arrays only, so it has no padding).
        unsafe { core::slice::from_raw_parts(info as *const _ as *const u8, core::mem::size_of::<CellInfo<N>>()) }
    }

    #[test]
    fn cell_info_round_trip() {
        const NAME: &str = "store";
        const TYPE: &str = "Mutex<HashMap<String, Entry>>";
        static INFO: CellInfo<{ NAME.len() + TYPE.len() }> =
            CellInfo::new(NAME, TYPE, Fingerprint::of_text("store type"));
        let bytes = cell_info_bytes(&INFO);
        assert_eq!(bytes.len(), CELL_INFO_FIXED + NAME.len() + TYPE.len(), "no padding");
        assert_eq!(&bytes[..8], &CELL_INFO_MAGIC);
        let v = CellInfoView::parse(bytes).unwrap();
        assert_eq!(v.name, NAME);
        assert_eq!(v.type_text, TYPE);
        assert_eq!(v.fingerprint, Fingerprint::of_text("store type"));
    }

    #[test]
    fn field_cell_info_round_trip_and_is_not_a_state_cell_record() {
        const PLACE: &str = "kv::store";
        const TYPE: &str = "Mutex<State>";
        static INFO: FieldCellInfo<{ PLACE.len() + TYPE.len() }> =
            FieldCellInfo::new(PLACE, TYPE, Fingerprint::of_text("state"));
        // SAFETY: a live static of exactly its size, made of byte arrays only (no padding).
        let bytes = unsafe {
            core::slice::from_raw_parts(&INFO as *const _ as *const u8, core::mem::size_of_val(&INFO))
        };
        assert_eq!(bytes.len(), CELL_INFO_FIXED + PLACE.len() + TYPE.len(), "no padding");
        let v = FieldCellInfoView::parse(bytes).unwrap();
        assert_eq!((v.place, v.type_text, v.fingerprint), (PLACE, TYPE, Fingerprint::of_text("state")));
        // Each kind of record is refused where the other is expected.
        assert!(matches!(CellInfoView::parse(bytes), Err(DecodeError::BadMagic { .. })));
        static STATE: CellInfo<{ "s".len() + TYPE.len() }> = CellInfo::new("s", TYPE, Fingerprint::of_text("state"));
        assert!(matches!(FieldCellInfoView::parse(cell_info_bytes(&STATE)), Err(DecodeError::BadMagic { .. })));
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(FieldCellInfoView::parse(cut), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn field_symbols_depend_on_place_and_type_only() {
        let a = field_cell_symbol("kv::store", "Mutex<State>");
        assert!(a.starts_with(FIELD_CELL_PREFIX) && a.len() == FIELD_CELL_PREFIX.len() + 32, "{a}");
        assert_eq!(a, field_cell_symbol("kv::store", "Mutex<State>"));
        assert_ne!(a, field_cell_symbol("kv::other", "Mutex<State>"));
        // The separator keeps the two parts apart.
        assert_ne!(field_cell_symbol("ab", "c"), field_cell_symbol("a", "bc"));
        let t = field_transform_symbol(FIELD_TRANSFORM_PREFIX, "Mutex<old:kv::State>");
        assert!(t.starts_with(FIELD_TRANSFORM_PREFIX));
        assert_ne!(t, field_transform_symbol(FIELD_TRANSFORM_PREFIX, "Mutex<kv::State>"));
    }

    #[test]
    fn garbled_cell_info_is_refused() {
        static INFO: CellInfo<{ "hits".len() + "AtomicU64".len() }> =
            CellInfo::new("hits", "AtomicU64", Fingerprint::of_text("u64"));
        let good = cell_info_bytes(&INFO).to_vec();

        // Every cut is refused as truncated, never read past its end.
        for cut in 0..good.len() {
            assert!(
                matches!(CellInfoView::parse(&good[..cut]), Err(DecodeError::Truncated { .. })),
                "cut at {cut}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            CellInfoView::parse(&longer),
            Err(DecodeError::Invalid("state cell record length (trailing bytes)"))
        );
        let mut magic = good.clone();
        magic[3] ^= 0xff;
        assert!(matches!(CellInfoView::parse(&magic), Err(DecodeError::BadMagic { .. })));
        // Lengths that claim more than the file holds, or overflow.
        let mut huge = good.clone();
        huge[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(CellInfoView::parse(&huge), Err(DecodeError::Truncated { .. })));
        huge[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(CellInfoView::parse(&huge).is_err());
        // Lengths that move the boundary between name and type: still inside, still checked.
        let mut shifted = good.clone();
        shifted[24..28].copy_from_slice(&0u32.to_le_bytes());
        shifted[28..32].copy_from_slice(&13u32.to_le_bytes());
        assert_eq!(CellInfoView::parse(&shifted), Err(DecodeError::Invalid("state cell name (empty)")));
        let mut utf8 = good.clone();
        utf8[CELL_INFO_FIXED] = 0xff;
        assert_eq!(CellInfoView::parse(&utf8), Err(DecodeError::NotUtf8("state cell name")));
        let mut utf8 = good.clone();
        *utf8.last_mut().unwrap() = 0xc3;
        assert_eq!(CellInfoView::parse(&utf8), Err(DecodeError::NotUtf8("state cell type")));
    }

    #[test]
    fn cell_transform_fingerprints_need_their_bytes() {
        let mut bytes = [0u8; 48];
        bytes[..16].copy_from_slice(&Fingerprint::of_text("old").0);
        bytes[16..32].copy_from_slice(&Fingerprint::of_text("new").0);
        assert_eq!(
            cell_transform_fingerprints(&bytes),
            Ok((Fingerprint::of_text("old"), Fingerprint::of_text("new")))
        );
        assert_eq!(
            cell_transform_fingerprints(&bytes[..31]),
            Err(DecodeError::Truncated { needed: 32, found: 31 })
        );
    }

    #[test]
    fn fingerprints_see_layout() {
        let f = Fingerprint::of_text("fn(Entry)");
        assert_ne!(f.with_layout(8, 4), f.with_layout(16, 8));
        assert_eq!(f.with_layout(8, 4), f.with_layout(8, 4));
    }

    #[test]
    fn symbol_names() {
        assert_eq!(symbol_safe("<Counter as fmt::Display>::fmt"), "_Counter_as_fmt::Display_::fmt");
        assert_eq!(link_symbol_for("__dsu_fn_app::greet").as_deref(), Some("__dsu_link_app::greet"));
        assert_eq!(link_symbol_for("other"), None);
    }
}
