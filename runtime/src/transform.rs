//! State transformers: how a value of an old type becomes a value of the new one, moving what
//! did not change.
//!
//! [`Transform<Old>`] is implemented by the new type. An update is all or nothing, so the old
//! value must survive a transform that fails; and an update of a million entries must not copy a
//! million keys. Both hold because a transform *moves without taking*: it builds the new value
//! with bitwise copies of the parts that keep their type (*carried* parts: keys, unchanged
//! fields, whole unchanged subtrees), while the old value stays intact and valid. Until the
//! update settles, a carried part has two owners on paper, and the update decides which one
//! keeps it:
//!
//! * **commit** ([`Transform::release_old`]): the new value keeps everything; the old one frees
//!   only what was not carried (removed fields, values a transformer replaced, the old
//!   containers' own memory);
//! * **abort** ([`Transform::release_new`]): the old value keeps everything; the new one frees
//!   only what it made.
//!
//! Containers compose: when `Entry: Transform<dsu_old::Entry>`, a `HashMap<String, Entry>`, a
//! `Vec<Entry>` or a `Mutex<Option<Box<Entry>>>` transforms from its old counterpart with no
//! extra code, its keys carried and its entries transformed (on several threads for large
//! collections, `transform/build.rs`). A type that did not change transforms to itself as one
//! bitwise copy ([`Transform::IDENTITY`]), so an unchanged `Vec<String>` inside a changed struct
//! costs one copy of three words, whatever its length.
//!
//! Who writes transformers: `#[dsu::transform(from = dsu_old::T)] fn(&dsu_old::T) -> T` (safe
//! code; its values are fresh and both sides are dropped whole), `cargo dsu patch` (derived
//! transformers of trivial changes, which carry the fields that keep their type), and
//! `#[dsu::updateable]` (the identity of an unchanged type). The trait is `unsafe` to implement
//! by hand.
//!
//! A patch carries one [`CellTransform`] per state cell whose type changes; the runtime runs them
//! all before anything switches (see `update.rs`), and settles each one: every new value
//! installed and every old value retired, or every new value discarded.

use crate::Fingerprinted;
use dsu_abi::Fingerprint;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;

mod build;
mod impls;
#[cfg(test)]
mod tests;

/// Why a transformer could not produce the new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError(pub String);

impl std::fmt::Display for TransformError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransformError {}

impl From<String> for TransformError {
    fn from(s: String) -> Self {
        TransformError(s)
    }
}

impl From<&str> for TransformError {
    fn from(s: &str) -> Self {
        TransformError(s.to_string())
    }
}

/// Makes a value of `Self` from a value of the old type `Old`, moving the parts that keep their
/// type and leaving the old value intact until the update settles.
///
/// Write transformers with `#[dsu::transform(from = dsu_old::T)]` on a function (or
/// `#[dsu::transform(from = dsu_old::T, default)]` on the type, which `cargo dsu patch` derives);
/// both implement this trait soundly.
///
/// # The protocol
///
/// [`transform`](Transform::transform) reads `old` and returns a new value that may own parts of
/// `old` bitwise. When it returns `Ok(new)`, the caller settles the pair exactly once:
///
/// * commit: [`release_old`](Transform::release_old) on the old value, after which it is gone
///   (neither used nor dropped again); `new` is then an ordinary value;
/// * abort: [`release_new`](Transform::release_new) on `new`, after which it is gone; `old` is
///   then an ordinary value again.
///
/// Until then neither is dropped or changed. When `transform` returns an error or panics, it has
/// released what it made: `old` is as it was and there is nothing to settle.
///
/// Transformers run while the update is being applied, with the runtime locked, perhaps on
/// several threads at once for entries of one collection: they must not call into the dsu runtime
/// themselves (`dsu::load`, `dsu::status`, update points, cells).
///
/// # Safety
///
/// An implementation promises that, for every `old`, each way of settling frees every part of
/// the pair exactly once: what `transform` made is freed by `release_new` on abort and kept on
/// commit; what it carried is kept by the new value on commit and left to the old one on abort;
/// what it neither carried nor replaced is freed by `release_old` on commit. Which parts are
/// carried must follow from `old` alone (its type and its contents), since `release_old` sees
/// nothing else; a partial release never runs a `Drop` impl of the value as a whole (so a type
/// with one is carried whole or not at all). [`IDENTITY`](Transform::IDENTITY) and
/// [`FRESH`](Transform::FRESH) must be true only as they say.
#[diagnostic::on_unimplemented(
    message = "no dsu transformer makes a `{Self}` from a `{Old}`",
    label = "no transformer for this type",
    note = "unchanged types: mark them `#[dsu::updateable]`; changed ones: write `#[dsu::transform(from = dsu_old::T)] fn(&dsu_old::T) -> T`"
)]
pub unsafe trait Transform<Old>: Sized {
    /// `Self` is `Old`, and `transform` moves the value whole: one bitwise copy, and nothing to
    /// release either way. Containers of such values move whole too.
    const IDENTITY: bool = false;

    /// The new value shares nothing with the old one that the old one frees: both are dropped
    /// whole (`release_old` and `release_new` drop). An `Arc` whose other holders keep the old
    /// value can be transformed only into such values.
    const FRESH: bool = false;

    /// Makes the new value from `old`, which stays intact and valid.
    ///
    /// # Safety
    /// The caller settles an `Ok` result as the trait's protocol says, and keeps `old` in place
    /// and unchanged until then.
    unsafe fn transform(old: &Old) -> Result<Self, TransformError>;

    /// Commit: frees what of `old` the new value made from it did not take.
    ///
    /// # Safety
    /// `old` was transformed into a value that is kept; `*old` is not used or dropped afterwards.
    unsafe fn release_old(old: *mut Old) {
        // SAFETY: the caller's contract; by default the new value took nothing (`FRESH`).
        unsafe { std::ptr::drop_in_place(old) }
    }

    /// Abort: frees what of `new` its transform made, leaving the parts it carried to the old
    /// value.
    ///
    /// # Safety
    /// `new` was made by [`Transform::transform`] and is discarded; `*new` is not used or dropped
    /// afterwards.
    unsafe fn release_new(new: *mut Self) {
        // SAFETY: the caller's contract; by default the new value carried nothing (`FRESH`).
        unsafe { std::ptr::drop_in_place(new) }
    }
}

/// A bitwise copy of `value`: the carried part of a new value (generated transformers use it for
/// the fields that keep their type).
///
/// # Safety
/// Inside [`Transform::transform`] only: the copy becomes part of the new value, and the pair is
/// settled as [`Transform`] says (whoever does not keep the part must not drop it).
#[inline(always)]
pub unsafe fn carry<T>(value: &T) -> T {
    // SAFETY: `value` is a valid, aligned `T`; the caller's contract keeps one owner in the end.
    unsafe { std::ptr::read(value) }
}

/// A value made by `New::transform`, held until the value it is part of is whole: dropped, it is
/// released as an abort does (`release_new`), never dropped whole, so a later field's failure or
/// panic leaves the old value's parts alone.
pub struct Staged<Old, New: Transform<Old>> {
    new: ManuallyDrop<New>,
    _old: PhantomData<fn(&Old)>,
}

impl<Old, New: Transform<Old>> Staged<Old, New> {
    /// `New::transform(old)`, staged.
    ///
    /// # Safety
    /// As [`Transform::transform`]: the value it holds carries parts of `old`, which must stay in
    /// place and unchanged until the whole is settled.
    #[inline]
    pub unsafe fn transform(old: &Old) -> Result<Self, TransformError> {
        // SAFETY: the caller's contract; if this `Staged` is dropped instead of taken, `Drop`
        // settles it as an abort.
        let new = unsafe { New::transform(old)? };
        Ok(Staged { new: ManuallyDrop::new(new), _old: PhantomData })
    }

    /// The value, now part of a whole that is settled as one.
    #[inline]
    pub fn into_inner(self) -> New {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the value is taken exactly once.
        unsafe { ManuallyDrop::take(&mut this.new) }
    }
}

impl<Old, New: Transform<Old>> Drop for Staged<Old, New> {
    fn drop(&mut self) {
        // SAFETY: the value was made by `New::transform` and not taken: the whole it was to be
        // part of failed, so it is discarded and the old value keeps what it carried.
        unsafe { New::release_new(&mut *self.new) }
    }
}

/// A state cell's change of type, carried by a patch: the cell's name, the fingerprints of the
/// old and new types, and the monomorphised code that transforms one into the other and settles
/// the pair.
///
/// `repr(C)` with the two fingerprints first: they hold no address, so the loader reads them
/// from the patch file before mapping it (`dsu_abi::cell_transform_fingerprints`).
#[repr(C)]
pub struct CellTransform {
    pub from: Fingerprint,
    pub to: Fingerprint,
    /// The cell's stable name.
    pub name: &'static str,
    from_type: fn() -> &'static str,
    to_type: fn() -> &'static str,
    run: unsafe fn(*const ()) -> Result<*const (), TransformError>,
    drop_new: unsafe fn(*const ()),
    /// Commit: frees an old value without the parts the installed new value took (`retire`).
    retire: unsafe fn(*const ()),
    /// Drops and frees a new value that was installed, when its cell goes away: stored with the
    /// cell's version, so a value is always dropped by code compiled for its type.
    free_new: unsafe fn(*const ()),
    /// A named cell's transform (`name` is the cell's) or a field cells' (applied to every live
    /// `dsu::Cell` whose value has the fingerprint `from`; `name` is the value type as written).
    kind: CellKind,
}

/// What a [`CellTransform`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CellKind {
    /// The `dsu::State` cell of that name.
    Named,
    /// Every live `dsu::Cell` whose value has the transform's `from` fingerprint.
    Field,
}

// The layout the loader reads from the file: `from` at bytes 0..16, `to` at 16..32.
const _: () = {
    assert!(std::mem::offset_of!(CellTransform, from) == 0);
    assert!(std::mem::offset_of!(CellTransform, to) == 16);
    assert!(dsu_abi::CELL_TRANSFORM_FINGERPRINTS == 32);
};

impl CellTransform {
    /// The transform of cell `name` from `Old` to `New`. The patch's generated root holds one
    /// per changed cell.
    pub const fn new<Old, New>(name: &'static str) -> Self
    where
        Old: Fingerprinted + 'static,
        New: Transform<Old> + Fingerprinted + Send + Sync + 'static,
    {
        CellTransform {
            from: Old::FINGERPRINT,
            to: New::FINGERPRINT,
            name,
            from_type: std::any::type_name::<Old>,
            to_type: std::any::type_name::<New>,
            run: run::<Old, New>,
            drop_new: drop_new::<Old, New>,
            retire: retire::<Old, New>,
            free_new: free_value::<New>,
            kind: CellKind::Named,
        }
    }

    /// The transform of every live field cell (`dsu::Cell<Old>`) whose value is an `Old` into
    /// a `New`; `type_text` is the new value type as written, for messages. The patch's generated
    /// code holds one per old type of field cell it changes.
    pub const fn field<Old, New>(type_text: &'static str) -> Self
    where
        Old: Fingerprinted + 'static,
        New: Transform<Old> + Fingerprinted + Send + Sync + 'static,
    {
        CellTransform { kind: CellKind::Field, ..Self::new::<Old, New>(type_text) }
    }

    /// Whether this is the transform of field cells (by fingerprint) rather than of a named cell.
    pub(crate) fn is_field(&self) -> bool {
        self.kind == CellKind::Field
    }

    /// How to drop and free a value this transform made, once it is installed: what its cell's
    /// version keeps for when the cell goes away.
    pub(crate) fn new_value_drop(&self) -> unsafe fn(*const ()) {
        self.free_new
    }

    pub fn from_type(&self) -> &'static str {
        (self.from_type)()
    }

    pub fn to_type(&self) -> &'static str {
        (self.to_type)()
    }

    /// Transforms the cell value at `old`, which must be an `Old`; returns the new value, boxed
    /// and leaked, to be installed (then the old one [retired](CellTransform::retire)) or
    /// [discarded](CellTransform::discard). A panic in the transformer is caught and returned as
    /// an error; the old value is then as it was.
    ///
    /// # Safety
    /// `old` must point at a live value of this transform's `Old` type (the runtime checks the
    /// cell's current fingerprint equals `from` first), which stays in place and unchanged until
    /// the result is retired or discarded.
    pub(crate) unsafe fn run(&self, old: *const ()) -> Result<*const (), TransformError> {
        let run = self.run;
        // SAFETY: the caller's contract.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { run(old) })) {
            Ok(r) => r,
            Err(payload) => Err(TransformError(format!("panicked: {}", panic_message(&*payload)))),
        }
    }

    /// Abort: frees a value made by [`CellTransform::run`] that will not be installed, leaving
    /// the old value whole.
    ///
    /// # Safety
    /// `new` must come from this transform's `run` and not be installed or discarded yet.
    pub(crate) unsafe fn discard(&self, new: *const ()) {
        let drop_new = self.drop_new;
        // SAFETY: the caller's contract.
        settle("discarding a transformed value", || unsafe { drop_new(new) });
    }

    /// Commit: frees the old value `old` once the value `run` made from it is installed and no
    /// code can reach `old`, without the parts the new value took.
    ///
    /// # Safety
    /// `old` is the value a call of this transform's `run` read, boxed as cells box their values
    /// (`Box<Old>`), and that call's result is installed; `old` is not used afterwards.
    pub(crate) unsafe fn retire(&self, old: *const ()) {
        let retire = self.retire;
        // SAFETY: the caller's contract.
        settle("retiring an old value", || unsafe { retire(old) });
    }
}

/// Runs a release: a panic there (a `Drop` impl of a removed field) cannot undo the update, so it
/// is reported and what was left is leaked rather than freed twice.
fn settle(what: &str, release: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(release)) {
        tracing::warn!(
            target: "dsu",
            panic = %panic_message(&*payload),
            "a drop panicked while {what}; the rest of that value is leaked"
        );
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// Drops and frees an installed value whole, when its cell goes away (`new_value_drop`).
unsafe fn free_value<New>(value: *const ()) {
    // SAFETY: the cell's version contract: `value` came from `Box::into_raw` of a `New` (made by
    // `run`, or by the cell's own code) and is no longer reachable.
    drop(unsafe { Box::from_raw(value as *mut New) });
}

unsafe fn run<Old, New: Transform<Old>>(old: *const ()) -> Result<*const (), TransformError> {
    // SAFETY: `CellTransform::run`'s contract: `old` is a live `Old`, left in place until the
    // result is settled by `drop_new` or `retire`.
    let old = unsafe { &*(old as *const Old) };
    // SAFETY: as above; `Box::new` cannot unwind (allocation failure aborts), so the value is
    // never dropped whole.
    unsafe { New::transform(old) }.map(|new| Box::into_raw(Box::new(new)) as *const ())
}

unsafe fn drop_new<Old, New: Transform<Old>>(new: *const ()) {
    // SAFETY: `CellTransform::discard`'s contract: `new` came from `Box::into_raw` of a `New`
    // in `run`. `ManuallyDrop<New>` has `New`'s layout, so the box frees the same allocation and
    // drops nothing.
    let mut boxed = unsafe { Box::from_raw(new as *mut ManuallyDrop<New>) };
    // SAFETY: the transform's result is discarded; `boxed` only frees memory afterwards.
    unsafe { New::release_new(&mut **boxed) };
}

unsafe fn retire<Old, New: Transform<Old>>(old: *const ()) {
    // SAFETY: `CellTransform::retire`'s contract: `old` is a `Box<Old>`'s pointer; as in
    // `drop_new`, the `ManuallyDrop` box frees the allocation and drops nothing.
    let mut boxed = unsafe { Box::from_raw(old as *mut ManuallyDrop<Old>) };
    // SAFETY: the value made from it is installed: the commit releases the old one.
    unsafe { New::release_old(&mut **boxed) };
}
