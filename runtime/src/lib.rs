//! Dynamic software updating for Rust: replace the code of a running program without a restart
//! and without losing its state.
//!
//! # The problem
//!
//! A long-running service is fixed or upgraded today by a graceful restart: start the new
//! binary, hand the sockets over, drain the old process. Every byte of in-memory state (caches,
//! sessions, counters) is lost or must be serialised and reloaded. dsu keeps the process and
//! swaps the code in place, at moments the program chooses.
//!
//! # The model
//!
//! * **Slots.** `#[dsu::updateable]` on a function (or an `impl` block) turns each function into
//!   a *slot*, an atomic code pointer, plus its original body. Callers do not change: a call
//!   loads the slot and jumps, which costs what a non-inlined call costs. `#[tracing::instrument]`
//!   on an updateable function stays on its body, so the span covers the body (or the whole
//!   future of an `async fn`).
//! * **Update points.** A patch is applied only at an *update point*: entering a function marked
//!   `#[dsu::update_point]`, or a call to [`update_point()`]. Put them at request or event-loop
//!   boundaries. With nothing pending, an update point is one relaxed atomic load.
//! * **Threads.** An update applies only when every thread registered with the runtime is at an
//!   update point or idle. A thread registers at its first update point, idle section
//!   ([`idle`], [`IdleGuard`], and [`idle_async`] for an `.await`) or poll of an updateable
//!   `async fn`; tokio workers count as idle between polls. With dsu's `tokio` feature, a thread
//!   that registers inside a tokio runtime, such as the thread of a `#[tokio::main]` loop with
//!   update points, counts as idle between update points too: it may be awaiting. Threads at
//!   update points wait for the update; the last one to arrive applies it. An update that cannot
//!   reach that moment within [`set_update_timeout`] is abandoned.
//! * **Rollback.** [`rollback`] returns to the version before the newest patch, code always,
//!   state through inverse transformers (`#[dsu::transform(to = dsu_old::T)]`). An operator
//!   can ask for updates and rollbacks from outside through [`control::serve`] and
//!   `cargo dsu load|rollback|status --socket PATH`.
//! * **One runtime.** A patch is the updateable crate built again from newer source, as a
//!   library. `cargo dsu` builds the program's dependencies, std and this runtime once, as
//!   shared libraries that the program and every patch link to, so patched code runs on the
//!   host's allocator, tokio runtime, logger, panic handler and dependency globals.
//! * **Verification.** [`load`] reads the patch file before mapping it: a fixed header (magic,
//!   format version), then a manifest naming the exact build it applies to (crate, source
//!   revision and tree, rustc, target, profile, dependency library), then each function's stable
//!   path, signature fingerprint and body hash, then the value type each state cell its code
//!   reaches was compiled for. Anything that differs from the running program is refused with an
//!   [`Error`] naming both values, and the program keeps running.
//!
//!   The refusals: [`Error::NotALibrary`], [`Error::Malformed`], [`Error::MissingHeader`],
//!   [`Error::BadMagic`], [`Error::UnsupportedFormat`], [`Error::NoCellRecords`] (a patch older
//!   than format 1.2, without state-cell records), [`Error::WrongBuild`],
//!   [`Error::SignatureMismatch`], [`Error::CellType`] (the patch's code expects a state cell to
//!   hold another type than the running program's cell will hold, and the patch does not
//!   transform the cell from the one to the other: applied, its first access of the cell would
//!   fail), [`Error::FieldCellType`] (a live field cell holds a type the patch neither names nor
//!   transforms), [`Error::NothingToApply`], [`Error::Open`], [`Error::Inconsistent`],
//!   [`Error::StateMismatch`]; when applying, [`Error::TransformFailed`],
//!   [`Error::FieldTransformFailed`] and [`Error::UpdateTimeout`].
//! * **Never unload.** A loaded patch library stays mapped for the life of the process.
//! * **Statics.** A patch shares every `static`, `static mut`, `OnceLock`/`LazyLock`,
//!   `thread_local!` and `lazy_static!` of the program's crates with the running program (the
//!   program exports them, a patch declares them): its code counts in the program's counters and
//!   finds what the program initialised. Their types cannot change.
//! * **State cells.** State whose type changes lives in a cell owned by the runtime, whose
//!   values a transformer moves to the new type: a [`State`] static, found by name, or a
//!   [`Cell`], a field of any value (a struct in an `Arc` shared by tasks), registered with the
//!   runtime while it lives. Access is scoped, as a `thread_local!`'s is: `with` runs a closure
//!   with `&T`, and `access` returns a guard ([`CellRef`]) that stays on its thread. A reference to the
//!   value never outlives its scope, and a thread inside one counts as running: an update waits
//!   for it, and an update point or idle section reached inside a scope does not apply one (an
//!   update that times out meanwhile names the thread and says it holds a state cell).
//! * **Types and transformers.** `#[dsu::updateable]` on a struct or enum gives it a structural
//!   fingerprint ([`Fingerprinted`]): field names, order and types, variants, size and
//!   alignment. A cell hands its value only to code compiled for the same fingerprint. When a
//!   patch changes a type, `#[dsu::transform(from = dsu_old::Entry)]` functions ([`Transform`])
//!   move the values of every state cell that holds it, through containers: each named cell, and
//!   every live field cell whose value's type changes; `cargo dsu patch` supplies the old
//!   definitions as `dsu_old`. An update is transactional: all transformers succeed, or nothing
//!   changes. What keeps its type (map keys, unchanged fields, whole unchanged containers) moves
//!   into the new value instead of being copied, and once the update has committed, what is left
//!   of the old values is freed.
//!
//! # Using it
//!
//! ```ignore
//! static HITS: dsu::State<AtomicU64> = dsu::State::new("hits", || AtomicU64::new(0));
//!
//! #[dsu::updateable]
//! fn greet(name: &str) -> String {
//!     HITS.with(|hits| hits.fetch_add(1, Ordering::Relaxed));
//!     format!("hello, {name}")
//! }
//!
//! #[dsu::update_point]
//! fn handle(request: &str) -> String {
//!     greet(request)
//! }
//!
//! // A worker blocked on I/O is idle: an update may apply meanwhile.
//! let (stream, _) = dsu::idle(|| listener.accept())?;
//!
//! // The same for an `.await` on a thread that counts as running (without the `tokio`
//! // feature, or outside a tokio runtime): idle while the accept is pending.
//! let (stream, _) = dsu::idle_async(listener.accept()).await?;
//!
//! // Somewhere in the program, when told about a new patch:
//! match dsu::load("target/dsu/patches/app-v2.so") {
//!     Ok(report) => log::info!("patch queued: {:?}", report.changed),
//!     Err(e) => log::warn!("patch refused: {e}"),
//! }
//! ```
//!
//! # Performance
//!
//! A call through a slot is one load and an indirect call; an idle update point is one relaxed
//! load. Figures and the commands that measure them are in `docs/PERFORMANCE.md`.
//!
//! # Limitations
//!
//! * Generic functions, `const fn`, `extern` functions and functions with `impl Trait` in their
//!   signature cannot be updateable. In an updateable `impl` block such methods stay plain
//!   methods, and the build warns about each one (the `deprecated` lint: `#[allow(deprecated)]` on
//!   the method silences it).
//! * A thread that runs updateable code but never reaches an update point, an idle section or an
//!   updateable future is not registered, and an update does not wait for it: it may finish a
//!   call in the previous version (which stays mapped). The same holds for code an executor
//!   thread runs outside updateable futures (a tokio worker, or with the `tokio` feature a thread
//!   that registered inside a tokio runtime, between its update points and awaits), and for code
//!   a thread runs while an [`idle_async`] future it polled is pending. Their state cell accesses
//!   are waited for: a scope registers its thread, which counts as running inside it (an exiting
//!   thread that can no longer register counts among the untracked scopes, which no update
//!   applies beside). An updateable `async fn` reads its slot at its future's first poll. A
//!   registered thread that blocks outside an idle section, or inside a state cell's scope, holds
//!   every update up until the timeout.
//! * Type changes are supported for types and state cells in any module of any crate of the
//!   program's updateable set (the binary's crate and the library crates it reaches through path
//!   dependencies). A function whose signature mentions a changed type, or whose signature
//!   changed, is routed: code compiled for the old signature keeps calling the old version, code
//!   compiled for the new one calls the new version.
//! * A state transform copies every value (the old one stays untouched until the update
//!   commits, then is freed): see `docs/PERFORMANCE.md` for its throughput.
//! * Field cells are found by the type of their value: code that is not updateable and reads a
//!   field cell whose type a patch changes is not found before load (a named cell's is), and gets
//!   [`Error::StateType`] at its first access after the update.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod control;
mod trust;
mod elf;
mod error;
mod fingerprint;
mod load;
#[cfg(not(loom))]
mod protocol;
/// The update protocol, public only in a model-checking build (`--cfg loom`), for its models in
/// `tests/loom_protocol.rs`; never in a program's.
#[cfg(loom)]
#[doc(hidden)]
pub mod protocol;
mod cell;
mod slot;
mod sync;
mod transform;
mod update;

pub use dsu_macros::{transform, update_point, updateable};
pub use error::Error;
pub use fingerprint::Fingerprinted;
pub use load::{load, load_and_apply, LoadReport};
pub use trust::{allow_patch_files_of_others, trust_key};
pub use transform::{CellTransform, Transform, TransformError};
pub use cell::{Cell, CellRef, State};
pub use protocol::{
    idle, idle_async, registered_threads, set_update_timeout, update_timeout, IdleAsync, IdleGuard,
    DEFAULT_UPDATE_TIMEOUT,
};
pub use update::{
    is_pending, rollback, rollback_and_wait, status, update_point, AppliedPatch, RollbackReport,
    Status, UpdateKind, HISTORY_KEPT,
};

/// The build identity and fingerprint types, for programs that report them.
pub use dsu_abi::{BuildIdentity, Fingerprint};

/// Used by the code `#[dsu::updateable]` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::slot::Slot;
    pub use crate::protocol::Tracked;
    pub use crate::update::update_point;
    pub use crate::transform::{carry, CellTransform, Staged, Transform, TransformError};
    pub use crate::fingerprint::{field_fingerprint, Probe, ProbeFallback};
    pub use crate::cell::field::FieldCellInfo;
    pub use crate::cell::named::CellInfo;
    pub use crate::Fingerprinted;
    pub use dsu_abi::{Fingerprint, FnInfo, FnLink};

    /// Checks the seal (and, with `trusted` keys, the signature) of a patch file's bytes, as
    /// `dsu::load` does first; the length of the library inside. For benchmarks and fuzzing.
    pub fn check_seal(file: &[u8], trusted: &[[u8; 32]]) -> Result<usize, crate::Error> {
        crate::trust::check_seal(std::path::Path::new("<bytes>"), file, trusted).map(|c| c.library.len())
    }

    /// Reads a patch library's bytes as `dsu::load` does behind the seal, before anything runs
    /// (the ELF file, the header, the manifest and every record). For fuzzing: a fuzzer that
    /// had to pass the seal's digest first would never reach these readers.
    pub fn read_patch_library(library: &[u8]) -> Result<(), crate::Error> {
        crate::load::read_patch(std::path::Path::new("<bytes>"), library).map(drop)
    }

    /// Opens an update round (or joins the open one) with nothing more queued; its number. For
    /// tests of the update protocol without a patch library.
    pub fn open_round() -> u64 {
        crate::update::open_round()
    }

    /// Waits, parked, until round `round` has closed; its outcome (`Err(UpdateTimeout)` if it
    /// was abandoned). For tests.
    pub fn wait_for_round(round: u64) -> Result<(), crate::Error> {
        crate::update::wait_for(round)
    }

    /// The state in the update protocol (`"running"`, `"idle"` or `"parked"`) of the registered
    /// thread called `name`; `"running"` inside a cell scope, as the protocol counts it. For
    /// tests.
    pub fn thread_state(name: &str) -> Option<&'static str> {
        crate::protocol::thread_state(name)
    }

    /// Queues an update that runs these cell transforms and changes no code, and opens its round;
    /// its number. For tests of cell transforms without a patch library.
    pub fn queue_cell_transforms(
        cells: Vec<&'static crate::CellTransform>,
        inverse: Vec<&'static crate::CellTransform>,
    ) -> u64 {
        crate::update::queue_transforms(cells, inverse)
    }

    /// How many live field cells (`dsu::Cell`) hold a value of type `T`. For tests.
    pub fn live_field_cells<T: crate::Fingerprinted>() -> usize {
        crate::cell::field::live_count(T::FINGERPRINT)
    }

    /// The build identity the recipe handed to the compiler, or empty outside `cargo dsu`.
    pub const fn build_identity(from_env: Option<&'static str>) -> &'static str {
        match from_env {
            Some(s) => s,
            None => "",
        }
    }
}
