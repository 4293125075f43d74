//! Why a patch was refused. Every variant names what differs, with both values where there are
//! two; after any of them the program keeps running the version it had.

use dsu_abi::Fingerprint;
use std::path::PathBuf;

/// A refused patch, or a misused runtime.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The patch file could not be read.
    #[error("cannot read patch {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },

    /// The file is not a shared library at all (random bytes, a text file, an object file).
    #[error("{path} is not a patch library: {reason}")]
    NotALibrary { path: PathBuf, reason: String },

    /// The file is a shared library but damaged, for example truncated.
    #[error("patch {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },

    /// A byte of the file differs from what its seal says, or it has no seal: damaged in
    /// transit or storage, or changed after it was made.
    #[error("patch {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },

    /// The program trusts signing keys, and the patch carries no signature.
    #[error("patch {path} is not signed, and this program accepts only patches signed by one of its {trusted} trusted keys")]
    Unsigned { path: PathBuf, trusted: usize },

    /// The patch is signed by a key the program does not trust.
    #[error("patch {path} is signed by key {key_id}, which this program does not trust (it trusts {trusted})")]
    UnknownKey { path: PathBuf, key_id: String, trusted: String },

    /// The signature does not verify under the key it names.
    #[error("patch {path} has a signature by key {key_id} that does not verify: forged, or changed after signing")]
    BadSignature { path: PathBuf, key_id: String },

    /// The patch file could be changed by someone other than the program's user or root.
    #[error("patch {path} is refused: {reason} (allow it with `dsu::allow_patch_files_of_others(true)`)")]
    UnsafeFile { path: PathBuf, reason: String },

    /// A key handed to [`crate::trust_key`] is not a public key.
    #[error("not a dsu public key: {reason}")]
    BadKey { reason: String },

    /// The library has no dsu header: it was not built as a patch.
    #[error("{path} has no `{symbol}` symbol: it is a shared library, but not a dsu patch")]
    MissingHeader { path: PathBuf, symbol: &'static str },

    /// The header's magic bytes are wrong.
    #[error("patch {path} has a bad header magic: expected {expected:02x?}, found {found:02x?}")]
    BadMagic { path: PathBuf, expected: Vec<u8>, found: Vec<u8> },

    /// The patch format's major version is not the one this runtime reads.
    #[error("patch {path} has format version {found}, this runtime reads version {expected}")]
    UnsupportedFormat { path: PathBuf, expected: u16, found: u16 },

    /// The patch was made for another build: another revision, rustc, target, profile or
    /// dependency library.
    #[error(
        "patch {path} was built for another {field}: the running program has {field} `{running}`, \
         the patch applies to `{patch}`"
    )]
    WrongBuild { path: PathBuf, field: &'static str, running: String, patch: String },

    /// A function's signature in the patch differs from the live slot's.
    #[error(
        "patch {path} changes the signature of `{function}`: the live slot has fingerprint \
         {running}, the patch has {patch}; callers compiled against the old signature would \
         reach the new code"
    )]
    SignatureMismatch { path: PathBuf, function: String, running: Fingerprint, patch: Fingerprint },

    /// The patch transforms a state cell from another type than the cell holds.
    #[error(
        "patch {path} transforms state cell `{cell}` from fingerprint {patch}, but the cell \
         holds fingerprint {running}"
    )]
    StateMismatch { path: PathBuf, cell: String, running: Fingerprint, patch: Fingerprint },

    /// The patch's code reaches a state cell whose running value has another type than the one
    /// that code was compiled for, and the patch carries no transform of the cell from the
    /// running type to its own. Applied, it would panic at its first access of the cell.
    #[error(
        "patch {path} expects state cell `{cell}` to hold {patch}, but the running program's \
         cell holds {running}, and the patch carries no transform of the cell between the two{}",
        if transform.is_empty() { String::new() } else { format!(" ({transform})") }
    )]
    CellType {
        path: PathBuf,
        cell: String,
        /// The running value's type and fingerprint (the type name when a version of the program
        /// that holds it has run, else the fingerprint only).
        running: String,
        /// The type the patch's code was compiled for, as written in its source, and its
        /// fingerprint.
        patch: String,
        /// What the patch's transform of the cell, if it has one, goes between; empty if none.
        transform: String,
    },

    /// A live field cell (`dsu::Cell`) holds a value of a type the patch neither transforms nor
    /// names anywhere in its code (every `dsu::Cell<T>` type of the patch's code has a record):
    /// the patch was built for other types, and its code could meet such a cell and fail at the
    /// access.
    #[error(
        "patch {path} does not know the type of {cells} live field cell(s) (`dsu::Cell`): they \
         hold {running}, which the patch neither transforms nor names in any `dsu::Cell<…>` of its \
         code{}. Rebuild the patch from the source the program runs with `cargo dsu patch`",
        if known.is_empty() { String::new() } else { format!(" (its field cells hold {known})") }
    )]
    FieldCellType {
        path: PathBuf,
        /// The live cells' value type and fingerprint.
        running: String,
        /// How many live cells hold it.
        cells: usize,
        /// The types the patch's `dsu::Cell`s hold, as written, with their fingerprints.
        known: String,
    },

    /// The patch was made by a tool older than this runtime's format 1.2 and carries no
    /// state-cell records: the types its code expects of state cells cannot be checked.
    #[error(
        "patch {path} has format 1.{minor}, which carries no state-cell records (1.{needed} and \
         later do): the types its code expects of state cells cannot be checked. Rebuild it with \
         this version of cargo-dsu"
    )]
    NoCellRecords { path: PathBuf, minor: u16, needed: u16 },

    /// A state transformer failed; nothing changed.
    #[error(
        "patch {path} was not applied: the transformer of state cell `{cell}` from `{from_type}` \
         to `{to_type}` failed: {reason}. Nothing changed; the program keeps running its version"
    )]
    TransformFailed { path: PathBuf, cell: String, from_type: String, to_type: String, reason: String },

    /// A transformer of field cells (`dsu::Cell`) failed; nothing changed.
    #[error(
        "patch {path} was not applied: the transformer of field cells (`dsu::Cell`) from \
         `{from_type}` to `{to_type}` ({cells} live) failed: {reason}. Nothing changed; the program \
         keeps running its version"
    )]
    FieldTransformFailed { path: PathBuf, from_type: String, to_type: String, cells: usize, reason: String },

    /// The patch changes no function of the running version.
    #[error("patch {path} changes nothing in the running version (already applied?)")]
    NothingToApply { path: PathBuf },

    /// The dynamic loader refused the library.
    #[error("cannot load patch {path}: {reason}")]
    Open { path: PathBuf, reason: String },

    /// The mapped library differs from the file that was verified, or its table is inconsistent.
    #[error("patch {path} is inconsistent: {reason}")]
    Inconsistent { path: PathBuf, reason: String },

    /// The patch is applied already (and not rolled back), or queued.
    #[error("patch {path} is already {state}: the program runs (or will run) revision {revision}")]
    AlreadyApplied { path: PathBuf, revision: String, state: &'static str },

    /// The outcome of an update round is no longer kept (only the last 64 rounds' are).
    #[error("the outcome of update round {round} is no longer kept; see `dsu::status()`")]
    OutcomeUnknown { round: u64 },

    /// The running program cannot take patches.
    #[error("the running program is not updateable: {reason}")]
    NotUpdateable { reason: String },

    /// The program did not reach a moment when every registered thread was at an update point
    /// or idle before the update timeout (or a thread waited for the update inside a cell
    /// scope, where it never applies); the update was abandoned and nothing changed. `running`
    /// names the threads still running; `holding`, those of them inside a state cell's scope
    /// ([`crate::State::with`], [`crate::CellRef`]), which count as running wherever they are.
    #[error(
        "update abandoned after {waited:?}: these threads were still running updateable code, \
         not at an update point or idle: {}{}. Nothing changed; the program keeps its version. \
         Add update points to their loops, or declare their blocking waits with `dsu::idle` (an \
         `.await` with `dsu::idle_async`)",
        running.join(", "),
        holding_note(holding)
    )]
    UpdateTimeout { waited: std::time::Duration, running: Vec<String>, holding: Vec<String> },

    /// A rollback cannot be done.
    #[error("rollback refused: {reason}. Nothing changed; the program keeps its version")]
    RollbackRefused { reason: String },

    /// A state cell was asked for with another type than the one it holds.
    #[error(
        "state cell `{name}` holds a `{found}`, but this code expects a `{expected}`"
    )]
    StateType { name: String, expected: String, found: String },
}

/// The part of [`Error::UpdateTimeout`]'s message about threads inside a cell scope.
fn holding_note(holding: &[String]) -> String {
    match holding {
        [] => String::new(),
        [one] => format!(
            "; thread `{one}` holds a state cell (inside `with` or a `CellRef`), and no \
             update applies while a thread holds one: end the access before the thread blocks \
             or waits for an update"
        ),
        more => format!(
            "; threads {} hold a state cell (inside `with` or a `CellRef`), and no update \
             applies while a thread holds one: end the access before the thread blocks or waits \
             for an update",
            more.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ),
    }
}
