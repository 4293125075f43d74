//! The runtime's one piece of global state: what functions the running program has, which copies
//! of each slot exist, the patches waiting for an update point, and the history.
//!
//! A patch is verified and queued by [`crate::load`]; the update protocol (`protocol/`) decides
//! when every thread is at a safe point and then applies the round through [`APPLIER`] (the
//! runtime's `Applier`): [`apply_now`] applies every queued patch or rollback in order, each
//! transactionally.

use crate::cell::field::{self, RecordPtr};
use crate::cell::{named, CellRecord, Version};
use crate::sync::{AtomicPtr, Mutex, MutexGuard, Ordering};
use crate::transform::CellTransform;
use crate::Error;
use dsu_abi::{BuildIdentity, Fingerprint, FnInfoView};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Applies pending patches, if any, once every thread registered with the runtime is at an
/// update point or idle; until then the calling thread waits here (see [`crate::idle`] and
/// [`crate::set_update_timeout`]). Call it where no updateable function of the program is in the
/// middle of work that the new version could not continue: at a request or event-loop boundary.
/// `#[dsu::update_point]` on a function does the same on entry.
///
/// When nothing is pending this is one relaxed atomic load (of a thread-local flag).
#[inline(always)]
pub fn update_point() {
    crate::protocol::update_point();
}

/// Whether a verified patch or rollback waits for an update point.
pub fn is_pending() -> bool {
    crate::protocol::round_open()
}

/// A function's implementation in one library; only ever a function of the slot's signature.
#[derive(Clone, Copy)]
pub(crate) struct CodePtr(pub *const ());

// SAFETY: a CodePtr is the address of code in a library that is never unloaded; sending the
// address between threads is sound.
unsafe impl Send for CodePtr {}

/// What the running program (or the version pending patches will reach) has for one function.
struct FnRecord {
    /// The signature of the newest version.
    signature: Fingerprint,
    body: u64,
    /// Every copy of this function's slot (the host's and each applied patch's), with the
    /// signature the code around it was compiled for. A new implementation goes only into copies
    /// of its own signature: after a routed change, callers compiled for the old layout keep the
    /// old version.
    copies: Vec<(&'static AtomicPtr<()>, Fingerprint)>,
}

/// One function of a verified patch.
pub(crate) struct PatchFn {
    pub path: String,
    pub signature: Fingerprint,
    pub body: u64,
    pub changed: bool,
    pub slot: &'static AtomicPtr<()>,
    pub imp: CodePtr,
}

/// A verified patch waiting for an update point.
pub(crate) struct PreparedPatch {
    pub path: PathBuf,
    pub target: BuildIdentity,
    pub functions: Vec<PatchFn>,
    /// The patch's cell transforms: of named cells whose type it changes, and of field cells by
    /// the old type of their values.
    pub cells: Vec<&'static CellTransform>,
    /// The patch's inverse transforms (new type back to old), one per transform it can roll back.
    pub inverse: Vec<&'static CellTransform>,
}

/// What waits for the next update point.
enum Op {
    Patch(Box<PreparedPatch>),
    Rollback,
}

/// What an applied update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// A patch was applied.
    Patch,
    /// The newest applied patch was rolled back.
    Rollback,
}

/// An update that has been applied: a patch, or the rollback of one.
#[derive(Debug, Clone)]
pub struct AppliedPatch {
    /// Whether a patch was applied or rolled back.
    pub kind: UpdateKind,
    /// The patch file (for a rollback, the patch that was rolled back).
    pub path: PathBuf,
    /// The source revision the program runs after it.
    pub revision: String,
    /// When it was applied.
    pub applied_at: SystemTime,
    /// How long the program paused for it: from the moment the first thread parked (or the
    /// update started, if none had to) until every parked thread had resumed.
    pub pause: Duration,
    /// The part of the pause spent waiting for every registered thread to reach an update point
    /// or be idle (the rest went to applying and resuming).
    pub waiting: Duration,
    /// Functions whose code it replaced, added or restored.
    pub changed: Vec<String>,
    /// The update round that applied it.
    round: u64,
}

/// How many updates [`Status::applied`] keeps (the newest), and how many applied patches in a
/// row can be rolled back. A program that updates for ever keeps no more than that of them.
pub const HISTORY_KEPT: usize = 64;

/// What the runtime knows about the running program.
#[derive(Debug, Clone)]
pub struct Status {
    /// The build the process started as.
    pub build: BuildIdentity,
    /// The source revision it runs now.
    pub revision: String,
    /// Updates applied (patches and rollbacks), oldest first: the last [`HISTORY_KEPT`].
    pub applied: Vec<AppliedPatch>,
    /// Updates applied since the program started (patches and rollbacks).
    pub updates: u64,
    /// Patches and rollbacks verified and waiting for an update point.
    pub pending: usize,
    /// The files of the pending patches, in the order they will be applied.
    pub pending_patches: Vec<PathBuf>,
    /// The last refusal: of a patch by `load`, of a rollback, or of an update at the moment it
    /// was to be applied (a failed transformer, a timeout).
    pub last_refusal: Option<String>,
    /// Threads registered with the update protocol.
    pub threads: usize,
    /// The ids of the keys the program trusts to sign patches (`cargo dsu build --trust`,
    /// [`crate::trust_key`]); when there is one, only signed patches load.
    pub trusted_keys: Vec<String>,
}

impl Status {
    /// Whether only patches signed by a trusted key load.
    pub fn requires_signatures(&self) -> bool {
        !self.trusted_keys.is_empty()
    }
}

/// How to undo one applied patch.
struct Undo {
    path: PathBuf,
    /// The version before the patch.
    previous: BuildIdentity,
    /// Each function the patch changed or added.
    fns: Vec<FnUndo>,
    /// The cell transforms it applied, and its inverse transforms.
    cells: Vec<&'static CellTransform>,
    inverse: Vec<&'static CellTransform>,
}

/// How to undo a patch's change of one function.
struct FnUndo {
    path: String,
    /// The signature of the implementation the patch installed.
    signature: Fingerprint,
    /// The code callers of that signature ran before the patch; `None` when there were none (an
    /// added function, or a routed one with a new signature).
    code: Option<CodePtr>,
    /// The function's signature and body before the patch; `None` when the patch added it.
    record: Option<(Fingerprint, u64)>,
}

pub(crate) struct Runtime {
    host: BuildIdentity,
    current: BuildIdentity,
    /// The version the program reaches once every pending patch is applied; new patches must
    /// apply to this one.
    expected: BuildIdentity,
    live: HashMap<String, FnRecord>,
    /// Signature and body of every function once every pending patch is applied.
    expected_fns: HashMap<String, (Fingerprint, u64)>,
    /// Fingerprint of each state cell a pending patch transforms, once applied.
    expected_cells: HashMap<String, Fingerprint>,
    /// The field transforms of the pending updates, in order, as `(from, to, new type's name)`:
    /// what live field cells will hold once they are applied.
    expected_fields: Vec<(Fingerprint, Fingerprint, &'static str)>,
    pending: Vec<Op>,
    /// Patches in effect, oldest first: what a rollback undoes.
    stack: Vec<Undo>,
    /// The last [`HISTORY_KEPT`] updates applied.
    history: Vec<AppliedPatch>,
    /// Updates applied since the program started.
    updates: u64,
    /// Applied patches whose undo entry was dropped (beyond [`HISTORY_KEPT`]).
    forgotten_undos: u64,
    last_refusal: Option<String>,
}

impl Runtime {
    pub fn expected(&self) -> &BuildIdentity {
        &self.expected
    }

    /// Whether the patch from `applies_to` to `target` is already applied (on the undo stack,
    /// not rolled back) or queued: `Some("applied")`, `Some("queued")`, or `None`.
    pub fn already(&self, applies_to: &BuildIdentity, target: &BuildIdentity) -> Option<&'static str> {
        let queued = self.pending.iter().any(|op| matches!(op, Op::Patch(p) if p.target == *target));
        if queued {
            return Some("queued");
        }
        let applied = self.stack.iter().enumerate().any(|(i, undo)| {
            let to = self.stack.get(i + 1).map_or(&self.current, |next| &next.previous);
            undo.previous == *applies_to && to == target
        });
        applied.then_some("applied")
    }

    /// Every key the program trusts to sign patches: its build's and those trusted at run time.
    pub fn trusted_keys(&self) -> Vec<[u8; 32]> {
        crate::trust::trusted_keys(&self.host.trust)
    }

    /// The signature and body hash a function will have once pending patches are applied.
    pub fn expected_fn(&self, path: &str) -> Option<(Fingerprint, u64)> {
        self.expected_fns.get(path).copied()
    }

    /// The fingerprint a state cell will have once pending patches are applied; `None` when no
    /// code has created the cell yet.
    pub fn expected_cell(&self, name: &str) -> Option<Fingerprint> {
        self.expected_cells.get(name).copied().or_else(|| {
            // SAFETY: under the runtime's lock (`&self` is borrowed from it), which the applier
            // holds while it replaces and frees versions.
            named::cell(name).map(|c| unsafe { c.current() }.fingerprint)
        })
    }

    /// The types live field cells will hold once the pending updates are applied: each
    /// fingerprint with its type's name and how many cells hold it now.
    pub fn expected_field_types(&self) -> Vec<(Fingerprint, String, usize)> {
        let mut live: Vec<(Fingerprint, String, usize)> =
            field::live_types().into_iter().map(|(f, name, n)| (f, name.to_string(), n)).collect();
        for (from, to, to_type) in &self.expected_fields {
            for cell in live.iter_mut().filter(|c| c.0 == *from) {
                *cell = (*to, to_type.to_string(), cell.2);
            }
        }
        live
    }

    pub fn queue(&mut self, patch: PreparedPatch) {
        for f in &patch.functions {
            self.expected_fns.insert(f.path.clone(), (f.signature, f.body));
        }
        for c in &patch.cells {
            if c.is_field() {
                self.expected_fields.push((c.from, c.to, c.to_type()));
            } else {
                self.expected_cells.insert(c.name.to_string(), c.to);
            }
        }
        self.expected = patch.target.clone();
        self.pending.push(Op::Patch(Box::new(patch)));
    }

    /// Queues a rollback of the newest applied patch, if it can be undone.
    fn queue_rollback(&mut self) -> Result<RollbackReport, Error> {
        if !self.pending.is_empty() {
            return Err(Error::RollbackRefused {
                reason: "an update is pending; roll back after it is applied".into(),
            });
        }
        let Some(undo) = self.stack.last() else {
            if self.forgotten_undos > 0 {
                return Err(Error::RollbackRefused {
                    reason: format!(
                        "the last {HISTORY_KEPT} patches in a row have been rolled back; older ones \
                         cannot be (the runtime keeps what undoing the last {HISTORY_KEPT} needs)"
                    ),
                });
            }
            return Err(Error::RollbackRefused {
                reason: format!("no patch is applied: the program runs its build `{}`", self.current.revision),
            });
        };
        for ct in &undo.cells {
            if ct.is_field() {
                if inverse_of(&undo.inverse, ct).is_none() {
                    return Err(Error::RollbackRefused {
                        reason: format!(
                            "patch {} changed the values of field cells (`dsu::Cell`) from `{}` \
                             to `{}` and carries no inverse transformer; add \
                             `#[dsu::transform(to = dsu_old::…)]` for each changed type to make it \
                             reversible",
                            undo.path.display(),
                            ct.from_type(),
                            ct.to_type()
                        ),
                    });
                }
                continue;
            }
            if inverse_of(&undo.inverse, ct).is_none() {
                return Err(Error::RollbackRefused {
                    reason: format!(
                        "patch {} changed state cell `{}` from `{}` to `{}` and carries no inverse \
                         transformer; add `#[dsu::transform(to = dsu_old::…)]` for each changed \
                         type to make it reversible",
                        undo.path.display(),
                        ct.name,
                        ct.from_type(),
                        ct.to_type()
                    ),
                });
            }
        }
        let report = RollbackReport {
            path: undo.path.clone(),
            from_revision: self.current.revision.clone(),
            to_revision: undo.previous.revision.clone(),
            cells: undo.cells.iter().filter(|c| !c.is_field()).map(|c| c.name.to_string()).collect(),
        };
        self.expected = undo.previous.clone();
        for f in &undo.fns {
            match f.record {
                Some(sb) => {
                    self.expected_fns.insert(f.path.clone(), sb);
                }
                None => {
                    self.expected_fns.remove(&f.path);
                }
            }
        }
        for ct in &undo.cells {
            if ct.is_field() {
                self.expected_fields.push((ct.to, ct.from, ct.from_type()));
            } else {
                self.expected_cells.insert(ct.name.to_string(), ct.from);
            }
        }
        self.pending.push(Op::Rollback);
        Ok(report)
    }

    /// Runs `transforms` (of named cells, and of field cells by the old type of their values)
    /// on their cells, each into a new value, and installs the new values only if all
    /// succeeded; then frees the old values and versions. `path` names the patch in an error.
    ///
    /// **Why freeing is sound.** This runs as the applier: the update protocol has found no
    /// thread it counts as running, and a thread inside a cell scope counts as running, whatever
    /// its state (`protocol/`): a registered thread through its depth, a thread that is not
    /// registered yet by registering at its first scope, an exiting thread whose registration is
    /// gone through the count of untracked scopes. A scope is entered before a version is read
    /// and left after the last use of the reference it gives (the guard, `CellRef`, lends it only
    /// for a borrow of itself, and stays on its thread), so no reference into any value exists
    /// now on another thread. A scope entered meanwhile on a thread the protocol counts as idle
    /// waits for the coordinator's lock, which the applier holds, and then reads the new version.
    /// On this thread, transformers may read cells (their scopes see the values as they were:
    /// nothing is installed before every transformer has run), and the old values are freed only
    /// after the last transformer has returned. So once a version is replaced nothing reaches it,
    /// and it is freed: its value by the transform that read it (`retire`), the version record
    /// with it.
    ///
    /// The field-cell registry is held from the listing of the cells to transform until the new
    /// values are installed: a cell created or dropped meanwhile on another thread waits, and is
    /// either listed (and transformed) or not there; one created on this thread with a value of
    /// an old type (by a transformer) would escape the transform, and fails the update.
    fn transform_cells(
        path: &std::path::Path,
        transforms: &[&'static CellTransform],
        round: u64,
    ) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let registry = field::Applying::begin();
        // Listed before any transformer runs.
        let targets: Vec<(&'static CellTransform, Vec<RecordPtr>)> =
            transforms.iter().filter(|ct| ct.is_field()).map(|ct| (*ct, registry.cells_of(ct.from))).collect();
        let mut staged: Vec<Staged> = Vec::new();
        let mut failure: Option<(&'static CellTransform, String)> = None;
        for ct in transforms.iter().copied().filter(|ct| !ct.is_field()) {
            // A cell no code has created yet has nothing to transform: the new code creates it.
            let Some(record) = named::cell(ct.name) else { continue };
            // SAFETY: this is the applier; versions are replaced only below.
            let current = unsafe { record.current() };
            if current.fingerprint != ct.from {
                failure = Some((ct, format!("the cell holds `{}` now", current.type_name)));
                break;
            }
            // SAFETY: the cell's current value has fingerprint `ct.from`, so it is the
            // transform's old type.
            match unsafe { ct.run(current.value) } {
                Ok(new) => staged.push(Staged { cell: Target::Named(record), ct, new }),
                Err(e) => {
                    failure = Some((ct, e.0));
                    break;
                }
            }
        }
        'field: for (ct, records) in targets.iter().filter(|_| failure.is_none()) {
            for &record in records {
                // SAFETY: listed under the registry's hold, which this thread keeps: registered
                // and alive (a drop on this thread is deferred), its version current.
                let current = unsafe { record.current() };
                // SAFETY: listed by the fingerprint `ct.from`: the value is the old type.
                match unsafe { ct.run(current.value) } {
                    Ok(new) => staged.push(Staged { cell: Target::Field(record), ct, new }),
                    Err(e) => {
                        failure = Some((ct, e.0));
                        break 'field;
                    }
                }
            }
        }
        if failure.is_none() {
            if let Some((ct, _)) = targets.iter().find(|(ct, listed)| registry.count_of(ct.from) > listed.len()) {
                failure = Some((
                    ct,
                    "a transformer created a `dsu::Cell` holding the old type while the update was \
                     applied; it would have been left untransformed"
                        .to_string(),
                ));
            }
        }
        if let Some((ct, reason)) = failure {
            registry.end();
            for s in staged {
                // SAFETY: `new` was made by `s.ct.run` and never installed.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { s.ct.discard(s.new) }));
                if r.is_err() {
                    tracing::warn!(target: "dsu", "dropping a value of an abandoned update panicked");
                }
            }
            return Err(if ct.is_field() {
                Error::FieldTransformFailed {
                    path: path.to_path_buf(),
                    from_type: ct.from_type().to_string(),
                    to_type: ct.to_type().to_string(),
                    cells: targets.iter().find(|(t, _)| std::ptr::eq(*t, ct)).map_or(0, |(_, l)| l.len()),
                    reason,
                }
            } else {
                Error::TransformFailed {
                    path: path.to_path_buf(),
                    cell: ct.name.to_string(),
                    from_type: ct.from_type().to_string(),
                    to_type: ct.to_type().to_string(),
                    reason,
                }
            });
        }
        let mut replaced = Vec::with_capacity(staged.len());
        for s in staged {
            let version = Version::transformed(s.ct, s.new);
            let old = match s.cell {
                Target::Named(record) => record.replace(version),
                Target::Field(record) => registry.install(record, version),
            };
            replaced.push((s.ct, old));
        }
        for ct in transforms.iter().copied().filter(|ct| ct.is_field()) {
            registry.supersede(ct);
        }
        registry.end();
        // Freed off the pause, once the parked threads have resumed (`cell/retire.rs`), unless
        // the transforms were quick: freeing costs about what making took, and handing a few
        // small values to another thread would cost more than freeing them here.
        if started.elapsed() < std::time::Duration::from_millis(1) {
            crate::cell::retire::now(replaced);
        } else {
            crate::cell::retire::later(round, replaced);
        }
        Ok(())
    }

    /// Applies one patch: every state transform first, each into a new value; then, only if
    /// all succeeded, the new values and the new code together.
    fn apply(&mut self, patch: PreparedPatch, round: u64) -> Result<(), Error> {
        Self::transform_cells(&patch.path, &patch.cells, round)?;
        // With a type change, all of the patch's code replaces the running code: even a function
        // whose body is unchanged was compiled against the new types.
        let switch_all = !patch.cells.is_empty();
        let mut changed = Vec::new();
        let mut undo = Undo {
            path: patch.path.clone(),
            previous: self.current.clone(),
            fns: Vec::new(),
            cells: patch.cells.clone(),
            inverse: patch.inverse.clone(),
        };
        for f in patch.functions {
            let existed = self.live.contains_key(&f.path);
            let record = self.live.entry(f.path.clone()).or_insert_with(|| FnRecord {
                signature: f.signature,
                body: f.body,
                copies: Vec::new(),
            });
            // The code callers of this signature ran before the patch: where the patch's own
            // slot copy goes back to on a rollback.
            let before = record
                .copies
                .iter()
                .find(|(_, sig)| *sig == f.signature)
                .map(|(copy, _)| CodePtr(copy.load(Ordering::Acquire) as *const ()));
            // A fresh patch's own slot holds the patch's code: identical code when the function is
            // unchanged, the new code when it changed. A patch loaded again after a rollback is
            // the same mapped library: its slot is known already, and holds what the rollback
            // restored until the loop below stores the new code again.
            if !record.copies.iter().any(|(copy, _)| std::ptr::eq(*copy, f.slot)) {
                record.copies.push((f.slot, f.signature));
            }
            if f.changed || switch_all {
                undo.fns.push(FnUndo {
                    path: f.path.clone(),
                    signature: f.signature,
                    code: before,
                    record: existed.then_some((record.signature, record.body)),
                });
                for (copy, signature) in &record.copies {
                    if *signature == f.signature {
                        copy.store(f.imp.0 as *mut (), Ordering::Release);
                    }
                }
                record.signature = f.signature;
                record.body = f.body;
                changed.push(f.path);
            }
        }
        self.current = patch.target;
        self.stack.push(undo);
        if self.stack.len() > HISTORY_KEPT {
            // The oldest patch can no longer be rolled back; what undoing it needed goes.
            self.stack.remove(0);
            self.forgotten_undos += 1;
        }
        self.record(UpdateKind::Patch, patch.path, changed, round);
        Ok(())
    }

    /// Undoes the newest applied patch: inverse state transforms first (all or nothing), then
    /// every slot it wrote goes back to the code it held before.
    fn roll_back(&mut self, round: u64) -> Result<(), Error> {
        let Some(undo) = self.stack.last() else {
            return Err(Error::RollbackRefused { reason: "no patch is applied".into() });
        };
        let inverse: Vec<&'static CellTransform> =
            undo.cells.iter().rev().filter_map(|ct| inverse_of(&undo.inverse, ct)).collect();
        Self::transform_cells(&undo.path, &inverse, round)?;
        let undo = self.stack.pop().expect("checked above");
        let mut changed = Vec::new();
        for f in undo.fns.into_iter().rev() {
            // Every copy of this signature goes back to the code it ran before the patch: the
            // host's, earlier patches', this patch's own and those of patches applied (and
            // rolled back) since.
            if let (Some(code), Some(r)) = (f.code, self.live.get(&f.path)) {
                for (copy, signature) in &r.copies {
                    if *signature == f.signature {
                        copy.store(code.0 as *mut (), Ordering::Release);
                    }
                }
            }
            match f.record {
                Some((signature, body)) => {
                    if let Some(r) = self.live.get_mut(&f.path) {
                        r.signature = signature;
                        r.body = body;
                    }
                }
                // Added by the patch: code of the version rolled back to never calls it.
                None => {
                    self.live.remove(&f.path);
                }
            }
            changed.push(f.path);
        }
        self.current = undo.previous;
        self.record(UpdateKind::Rollback, undo.path, changed, round);
        Ok(())
    }

    /// Adds an applied update to the history; its pause is filled in once every parked thread
    /// has resumed.
    fn record(&mut self, kind: UpdateKind, path: PathBuf, changed: Vec<String>, round: u64) {
        self.updates += 1;
        if self.history.len() >= HISTORY_KEPT {
            // A long-running program applies updates for ever; its memory must not grow with
            // them. The oldest entries go, in batches, so each push stays cheap.
            self.history.drain(..HISTORY_KEPT / 4);
        }
        self.history.push(AppliedPatch {
            kind,
            path,
            revision: self.current.revision.clone(),
            applied_at: SystemTime::now(),
            pause: Duration::ZERO,
            waiting: Duration::ZERO,
            changed,
            round,
        });
    }

    /// Forgets what pending updates promised: after a refused one, later ones (verified
    /// against it) are dropped too, and new ones are checked against the running version.
    fn reset_expectations(&mut self) {
        self.pending.clear();
        self.expected = self.current.clone();
        self.expected_fns =
            self.live.iter().map(|(k, r)| (k.clone(), (r.signature, r.body))).collect();
        self.expected_cells.clear();
        self.expected_fields.clear();
    }
}

/// A new value made by a transform, waiting to be installed.
struct Staged {
    cell: Target,
    ct: &'static CellTransform,
    new: *const (),
}

/// The cell a staged value goes into.
enum Target {
    Named(&'static CellRecord),
    Field(RecordPtr),
}

/// The inverse, among `inverse`, of the transform `ct`: of the same cell (a named cell by its
/// name, field cells by type), from `ct`'s new type back to its old one.
fn inverse_of(inverse: &[&'static CellTransform], ct: &CellTransform) -> Option<&'static CellTransform> {
    inverse.iter().copied().find(|i| {
        i.is_field() == ct.is_field()
            && i.from == ct.to
            && i.to == ct.from
            && (ct.is_field() || i.name == ct.name)
    })
}

/// What a successful [`rollback`] queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackReport {
    /// The patch that will be undone.
    pub path: PathBuf,
    /// The revision the program runs now, and the one it returns to.
    pub from_revision: String,
    pub to_revision: String,
    /// State cells transformed back to their previous type.
    pub cells: Vec<String>,
}

/// Queues a return to the version before the newest applied patch; it happens at the next
/// moment every registered thread is at an update point or idle, like a patch.
///
/// Code always rolls back. State rolls back where the patch changed types only if it carries an
/// inverse transformer for each (`#[dsu::transform(to = dsu_old::T)]`); otherwise the rollback
/// is refused here, naming the cell. Like a patch, a rollback is transactional: if an inverse
/// transformer fails, nothing changes.
pub fn rollback() -> Result<RollbackReport, Error> {
    let report = queue_rollback()?;
    open_round();
    Ok(report)
}

fn queue_rollback() -> Result<RollbackReport, Error> {
    crate::protocol::register_running();
    let mut guard = lock();
    let rt = runtime(&mut guard)?;
    let result = rt.queue_rollback();
    if let Err(e) = &result {
        rt.last_refusal = Some(e.to_string());
    }
    result
}

/// Like [`rollback`], and waits (parked, as at an update point) until it is applied or refused.
pub fn rollback_and_wait() -> Result<RollbackReport, Error> {
    let report = queue_rollback()?;
    let round = open_round();
    wait_for(round)?;
    Ok(report)
}

/// Waits, as at an update point, until round `round` has closed, then until the old values it
/// replaced are freed (`cell/retire.rs`); its outcome.
pub(crate) fn wait_for(round: u64) -> Result<(), Error> {
    let outcome = crate::protocol::wait_for(round);
    // Idle meanwhile: nothing of the program's runs on this thread while it waits.
    crate::idle(|| crate::cell::retire::wait(round));
    outcome
}

pub(crate) fn lock() -> MutexGuard<'static, Option<Runtime>> {
    // A panic while the lock was held cannot leave a half-applied patch: slot stores happen last.
    RUNTIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime, reading the host's function table on first use.
pub(crate) fn runtime<'g>(
    guard: &'g mut MutexGuard<'static, Option<Runtime>>,
) -> Result<&'g mut Runtime, Error> {
    if guard.is_none() {
        **guard = Some(read_host()?);
    }
    Ok(guard.as_mut().expect("initialised above"))
}

/// Host functions found through the running executable's exported table.
pub(crate) struct HostFn<'a> {
    pub info: FnInfoView<'a>,
    pub slot: &'static AtomicPtr<()>,
}

/// Queues an update that runs the cell transforms `cells` (with `inverse` for its rollback) and
/// changes no function, and opens its round; its number. For tests of cell transforms without a
/// patch library: a program without a function table (a test binary) gets an empty one.
pub(crate) fn queue_transforms(
    cells: Vec<&'static CellTransform>,
    inverse: Vec<&'static CellTransform>,
) -> u64 {
    // As `load` does: the calling thread takes part, and the update applies at its next update
    // point or wait, not behind its back.
    crate::protocol::register_running();
    let mut guard = lock();
    let rt = guard.get_or_insert_with(|| {
        read_host().unwrap_or_else(|_| Runtime::new(BuildIdentity::default(), HashMap::new()))
    });
    let target = rt.expected().clone();
    rt.queue(PreparedPatch { path: "<cell transforms>".into(), target, functions: Vec::new(), cells, inverse });
    drop(guard);
    open_round()
}

impl Runtime {
    /// The runtime of the build `host`, whose functions are `live`, before any update.
    fn new(host: BuildIdentity, live: HashMap<String, FnRecord>) -> Runtime {
        Runtime {
            current: host.clone(),
            expected: host.clone(),
            host,
            expected_fns: live.iter().map(|(k, r)| (k.clone(), (r.signature, r.body))).collect(),
            live,
            expected_cells: HashMap::new(),
            expected_fields: Vec::new(),
            pending: Vec::new(),
            stack: Vec::new(),
            history: Vec::new(),
            updates: 0,
            forgotten_undos: 0,
            last_refusal: None,
        }
    }
}

fn read_host() -> Result<Runtime, Error> {
    let functions = crate::load::host_functions()?;
    let Some(first) = functions.first() else {
        return Err(Error::NotUpdateable {
            reason: "it has no #[dsu::updateable] functions in its dynamic symbol table; build it \
                     with `cargo dsu build`"
                .into(),
        });
    };
    let build = first.info.build;
    if build.is_empty() {
        return Err(Error::NotUpdateable {
            reason: "it carries no build identity; build it with `cargo dsu build`".into(),
        });
    }
    let host = BuildIdentity::from_env_string(build).map_err(|e| Error::NotUpdateable {
        reason: format!("its build identity `{build}` is unreadable: {e}"),
    })?;
    let mut live = HashMap::new();
    for f in &functions {
        if f.info.build != build {
            return Err(Error::NotUpdateable {
                reason: format!(
                    "function {} was built as `{}`, others as `{build}`",
                    f.info.path, f.info.build
                ),
            });
        }
        live.insert(
            f.info.path.to_string(),
            FnRecord {
                signature: f.info.signature,
                body: f.info.body,
                copies: vec![(f.slot, f.info.signature)],
            },
        );
    }
    Ok(Runtime::new(host, live))
}

/// The runtime, as the update protocol sees it: what a round applies ([`apply_now`]), and who
/// hears that a round was abandoned or what its pause was.
pub(crate) struct RuntimeApplier;

pub(crate) static APPLIER: RuntimeApplier = RuntimeApplier;

impl crate::protocol::Applier for RuntimeApplier {
    fn apply(&self, round: u64) -> Result<(), Error> {
        apply_now(round)
    }

    fn abandon(&self, why: &Error) {
        abandon_pending(why)
    }

    fn record_pause(&self, round: u64, pause: Duration, waiting: Duration) {
        record_pause(round, pause, waiting)
    }
}

/// Opens a round that applies what the runtime has queued (or joins the open one); its number.
pub(crate) fn open_round() -> u64 {
    crate::protocol::open_round(&APPLIER)
}

/// Applies every pending update, in order; called by the update protocol once the program is
/// quiescent. At the first refused one, it and every later one are dropped, and the refusal is
/// returned (and kept for `status()`).
pub(crate) fn apply_now(round: u64) -> Result<(), Error> {
    let mut guard = lock();
    let Some(rt) = guard.as_mut() else { return Ok(()) };
    let pending = std::mem::take(&mut rt.pending);
    for op in pending {
        let result = match op {
            Op::Patch(patch) => rt.apply(*patch, round),
            Op::Rollback => rt.roll_back(round),
        };
        if let Err(e) = result {
            tracing::warn!(target: "dsu", error = %e, "update refused; the program keeps its version");
            rt.last_refusal = Some(e.to_string());
            rt.reset_expectations();
            return Err(e);
        }
    }
    // Every pending field transform is applied: the live cells hold the types it promised, and
    // the next patches are checked against them (kept, the list would grow with every update
    // and be applied again to types it no longer describes).
    rt.expected_fields.clear();
    Ok(())
}

/// Keeps `why` as the last refusal, for `status()`.
pub(crate) fn note_refusal(why: &Error) {
    if let Some(rt) = lock().as_mut() {
        rt.last_refusal = Some(why.to_string());
    }
}

/// Drops every pending update: the round that would have applied them was abandoned.
pub(crate) fn abandon_pending(why: &Error) {
    let mut guard = lock();
    let Some(rt) = guard.as_mut() else { return };
    tracing::warn!(target: "dsu", error = %why, "update abandoned; the program keeps its version");
    rt.last_refusal = Some(why.to_string());
    rt.reset_expectations();
}

/// Records the pause of round `round` (and the part of it spent waiting for threads to reach a
/// safe point) on the updates it applied, and reports each.
pub(crate) fn record_pause(round: u64, pause: Duration, waiting: Duration) {
    let mut guard = lock();
    let Some(rt) = guard.as_mut() else { return };
    for h in rt.history.iter_mut().rev().take_while(|h| h.round == round) {
        h.pause = pause;
        h.waiting = waiting;
        tracing::info!(
            target: "dsu",
            kind = ?h.kind,
            revision = %h.revision,
            patch = %h.path.display(),
            changed = h.changed.len(),
            pause_us = pause.as_micros() as u64,
            waiting_us = waiting.as_micros() as u64,
            "update applied"
        );
    }
}

/// The running program's version and update history.
pub fn status() -> Result<Status, Error> {
    // Before the runtime's lock: the update protocol takes its own lock first, then this one.
    let threads = crate::protocol::registered_threads();
    let mut guard = lock();
    let rt = runtime(&mut guard)?;
    Ok(Status {
        build: rt.host.clone(),
        revision: rt.current.revision.clone(),
        applied: rt.history.clone(),
        updates: rt.updates,
        pending: rt.pending.len(),
        pending_patches: rt
            .pending
            .iter()
            .filter_map(|op| match op {
                Op::Patch(p) => Some(p.path.clone()),
                Op::Rollback => None,
            })
            .collect(),
        last_refusal: rt.last_refusal.clone(),
        threads,
        trusted_keys: crate::trust::key_ids(&rt.trusted_keys()),
    })
}
