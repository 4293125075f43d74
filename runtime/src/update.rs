//! The runtime's one piece of global state: what functions the running program has, which copies
//! of each slot exist, the patches waiting for an update point, and the history.
//!
//! A patch is verified and queued by [`crate::load`]; it is applied by the next
//! [`update_point`] that finds the pending flag set. When nothing is pending, an update point is
//! one relaxed load of that flag.

use crate::sync::{AtomicBool, AtomicPtr, Mutex, MutexGuard, Ordering};
use crate::transform::CellTransform;
use crate::Error;
use dsu_abi::{BuildIdentity, Fingerprint, FnInfoView};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Set while at least one verified patch waits for an update point.
static PENDING: AtomicBool = AtomicBool::new(false);

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Applies pending patches, if any. Call it where no updateable function of the program is in
/// the middle of work that the new version could not continue: at a request or event-loop
/// boundary. `#[dsu::update_point]` on a function does the same on entry.
///
/// When nothing is pending this is one relaxed atomic load.
#[inline(always)]
pub fn update_point() {
    if PENDING.load(Ordering::Relaxed) {
        apply_pending();
    }
}

/// Whether a verified patch waits for an update point.
pub fn is_pending() -> bool {
    PENDING.load(Ordering::Relaxed)
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
    /// State cells whose type the patch changes.
    pub cells: Vec<&'static CellTransform>,
}

/// A patch that has been applied.
#[derive(Debug, Clone)]
pub struct AppliedPatch {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The source revision the program runs after it.
    pub revision: String,
    /// When it was applied.
    pub applied_at: SystemTime,
    /// How long the update point that applied it took.
    pub pause: Duration,
    /// Functions whose code it replaced or added.
    pub changed: Vec<String>,
}

/// What the runtime knows about the running program.
#[derive(Debug, Clone)]
pub struct Status {
    /// The build the process started as.
    pub build: BuildIdentity,
    /// The source revision it runs now.
    pub revision: String,
    /// Patches applied, oldest first.
    pub applied: Vec<AppliedPatch>,
    /// Patches verified and waiting for an update point.
    pub pending: usize,
    /// Why the last patch that reached an update point was not applied, if it was not.
    pub last_refusal: Option<String>,
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
    pending: Vec<PreparedPatch>,
    history: Vec<AppliedPatch>,
    last_refusal: Option<String>,
}

impl Runtime {
    pub fn expected(&self) -> &BuildIdentity {
        &self.expected
    }

    /// The signature and body hash a function will have once pending patches are applied.
    pub fn expected_fn(&self, path: &str) -> Option<(Fingerprint, u64)> {
        self.expected_fns.get(path).copied()
    }

    /// The fingerprint a state cell will have once pending patches are applied; `None` when no
    /// code has created the cell yet.
    pub fn expected_cell(&self, name: &str) -> Option<Fingerprint> {
        self.expected_cells
            .get(name)
            .copied()
            .or_else(|| crate::state::cell(name).map(|c| c.current().fingerprint))
    }

    pub fn queue(&mut self, patch: PreparedPatch) {
        for f in &patch.functions {
            self.expected_fns.insert(f.path.clone(), (f.signature, f.body));
        }
        for c in &patch.cells {
            self.expected_cells.insert(c.name.to_string(), c.to);
        }
        self.expected = patch.target.clone();
        self.pending.push(patch);
        PENDING.store(true, Ordering::Release);
    }

    /// Applies one patch: every state transform first, each into a new value; then, only if
    /// all succeeded, the new values and the new code together.
    fn apply(&mut self, patch: PreparedPatch, pause_start: Instant) -> Result<(), Error> {
        let mut staged = Vec::with_capacity(patch.cells.len());
        let mut failure = None;
        for ct in &patch.cells {
            // A cell no code has created yet has nothing to transform: the new code creates it.
            let Some(record) = crate::state::cell(ct.name) else { continue };
            let current = record.current();
            if current.fingerprint != ct.from {
                failure = Some((ct, format!("the cell holds `{}` now", current.type_name)));
                break;
            }
            // SAFETY: the cell's current value has fingerprint `ct.from`, so it is the
            // transform's old type.
            match unsafe { ct.run(current.value) } {
                Ok(new) => staged.push((record, *ct, new)),
                Err(e) => {
                    failure = Some((ct, e.0));
                    break;
                }
            }
        }
        if let Some((ct, reason)) = failure {
            for (_, done, new) in staged {
                // SAFETY: `new` was made by `done.run` and never installed.
                unsafe { done.discard(new) };
            }
            return Err(Error::TransformFailed {
                path: patch.path,
                cell: ct.name.to_string(),
                from_type: ct.from_type().to_string(),
                to_type: ct.to_type().to_string(),
                reason,
            });
        }
        for (record, ct, new) in staged {
            record.replace(crate::state::CellVersion {
                fingerprint: ct.to,
                type_name: ct.to_type(),
                value: new,
            });
        }
        // With a type change, all of the patch's code replaces the running code: even a function
        // whose body is unchanged was compiled against the new types.
        let switch_all = !patch.cells.is_empty();
        let mut changed = Vec::new();
        for f in patch.functions {
            let record = self.live.entry(f.path.clone()).or_insert_with(|| FnRecord {
                signature: f.signature,
                body: f.body,
                copies: Vec::new(),
            });
            // The patch's own slot already holds the patch's code: identical code when the
            // function is unchanged, the new code when it changed.
            record.copies.push((f.slot, f.signature));
            if f.changed || switch_all {
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
        self.history.push(AppliedPatch {
            path: patch.path,
            revision: self.current.revision.clone(),
            applied_at: SystemTime::now(),
            pause: pause_start.elapsed(),
            changed,
        });
        Ok(())
    }

    /// Forgets what pending patches promised: after a refused patch, later ones (verified
    /// against it) are dropped too, and new ones are checked against the running version.
    fn reset_expectations(&mut self) {
        self.expected = self.current.clone();
        self.expected_fns =
            self.live.iter().map(|(k, r)| (k.clone(), (r.signature, r.body))).collect();
        self.expected_cells.clear();
    }
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
    let mut expected_fns = HashMap::new();
    for f in &functions {
        if f.info.build != build {
            return Err(Error::NotUpdateable {
                reason: format!(
                    "function {} was built as `{}`, others as `{build}`",
                    f.info.path, f.info.build
                ),
            });
        }
        expected_fns.insert(f.info.path.to_string(), (f.info.signature, f.info.body));
        live.insert(
            f.info.path.to_string(),
            FnRecord {
                signature: f.info.signature,
                body: f.info.body,
                copies: vec![(f.slot, f.info.signature)],
            },
        );
    }
    Ok(Runtime {
        current: host.clone(),
        expected: host.clone(),
        host,
        live,
        expected_fns,
        expected_cells: HashMap::new(),
        pending: Vec::new(),
        history: Vec::new(),
        last_refusal: None,
    })
}

#[cold]
#[inline(never)]
fn apply_pending() {
    // The outcome is in `status()`: an update point has no caller to return it to.
    let _ = apply_now();
}

/// Applies every pending patch, in order. At the first refused one, it and every later one are
/// dropped, and the refusal is returned (and kept for `status()`).
pub(crate) fn apply_now() -> Result<(), Error> {
    let start = Instant::now();
    let mut guard = lock();
    let Some(rt) = guard.as_mut() else { return Ok(()) };
    let pending = std::mem::take(&mut rt.pending);
    PENDING.store(false, Ordering::Release);
    for patch in pending {
        if let Err(e) = rt.apply(patch, start) {
            rt.last_refusal = Some(e.to_string());
            rt.reset_expectations();
            return Err(e);
        }
    }
    Ok(())
}

/// The running program's version and update history.
pub fn status() -> Result<Status, Error> {
    let mut guard = lock();
    let rt = runtime(&mut guard)?;
    Ok(Status {
        build: rt.host.clone(),
        revision: rt.current.revision.clone(),
        applied: rt.history.clone(),
        pending: rt.pending.len(),
        last_refusal: rt.last_refusal.clone(),
    })
}
