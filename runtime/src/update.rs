//! The runtime's one piece of global state: what functions the running program has, which copies
//! of each slot exist, the patches waiting for an update point, and the history.
//!
//! A patch is verified and queued by [`crate::load`]; it is applied by the next
//! [`update_point`] that finds the pending flag set. When nothing is pending, an update point is
//! one relaxed load of that flag.

use crate::sync::{AtomicBool, AtomicPtr, Mutex, MutexGuard, Ordering};
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
    signature: Fingerprint,
    body: u64,
    /// Every copy of this function's slot: the host's and each applied patch's.
    copies: Vec<&'static AtomicPtr<()>>,
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
    pending: Vec<PreparedPatch>,
    history: Vec<AppliedPatch>,
}

impl Runtime {
    pub fn expected(&self) -> &BuildIdentity {
        &self.expected
    }

    /// The signature and body hash a function will have once pending patches are applied.
    pub fn expected_fn(&self, path: &str) -> Option<(Fingerprint, u64)> {
        self.expected_fns.get(path).copied()
    }

    pub fn queue(&mut self, patch: PreparedPatch) {
        for f in &patch.functions {
            self.expected_fns.insert(f.path.clone(), (f.signature, f.body));
        }
        self.expected = patch.target.clone();
        self.pending.push(patch);
        PENDING.store(true, Ordering::Release);
    }

    fn apply(&mut self, patch: PreparedPatch, pause_start: Instant) {
        let mut changed = Vec::new();
        for f in patch.functions {
            let record = self.live.entry(f.path.clone()).or_insert_with(|| FnRecord {
                signature: f.signature,
                body: f.body,
                copies: Vec::new(),
            });
            debug_assert_eq!(record.signature, f.signature, "verified at load");
            // The patch's own slot already holds the patch's code: identical code when the
            // function is unchanged, the new code when it changed.
            record.copies.push(f.slot);
            if f.changed {
                for copy in &record.copies {
                    copy.store(f.imp.0 as *mut (), Ordering::Release);
                }
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
            FnRecord { signature: f.info.signature, body: f.info.body, copies: vec![f.slot] },
        );
    }
    Ok(Runtime {
        current: host.clone(),
        expected: host.clone(),
        host,
        live,
        expected_fns,
        pending: Vec::new(),
        history: Vec::new(),
    })
}

#[cold]
#[inline(never)]
fn apply_pending() {
    let start = Instant::now();
    let mut guard = lock();
    let Some(rt) = guard.as_mut() else { return };
    let pending = std::mem::take(&mut rt.pending);
    for patch in pending {
        rt.apply(patch, start);
    }
    PENDING.store(false, Ordering::Release);
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
    })
}
