//! Loading a patch: verify from the file, then map, then queue.
//!
//! Order of checks, each refusing with its own [`Error`]:
//! 1. the file is an ELF shared library, whole;
//! 2. it exports the header symbol; the fixed header (magic, format major) is checked before the
//!    manifest is decoded;
//! 3. the manifest's build identity equals the running version's, field by field;
//! 4. every function in its table has the signature fingerprint of the live slot of that path,
//!    unless the manifest routes it (a new function under the old path);
//! 5. every state cell its code reaches (one `__dsu_state_*` record per cell, format 1.2) will
//!    hold the type that code was compiled for: the type the cell holds, or the one the patch's
//!    transform of the cell makes of it (`CellType` otherwise); and every live field cell
//!    (`dsu::Cell`) holds a type the patch transforms or names in one of its `dsu::Cell<T>`
//!    records (`__dsu_fieldcell_*`, format 1.3; `FieldCellType` otherwise);
//! 6. it changes something;
//! 7. only then is the library mapped; the mapped table and cell transforms must equal the
//!    verified file bytes;
//! 8. every state-cell transform it carries starts from the type the cell holds.
//!
//! Steps 1 to 6 read bytes from the file and run nothing in it.

use crate::elf::{ElfError, LibraryFile};
use crate::update::{self, CodePtr, HostFn, PatchFn, PreparedPatch};
use crate::transform::CellTransform;
use crate::Error;
use dsu_abi::{
    CellInfoView, DecodeError, FieldCellInfoView, Fingerprint, FnInfoView, FnLink, FN_INFO_FIXED,
    FN_INFO_PREFIX, HEADER_SYMBOL,
};
use std::collections::HashMap;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicPtr;

/// What a successful [`load`] queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The patch file.
    pub path: PathBuf,
    /// The source revision the program will run once the patch is applied.
    pub revision: String,
    /// Functions whose code the patch replaces.
    pub changed: Vec<String>,
    /// Functions the patch adds.
    pub added: Vec<String>,
    /// State cells whose type the patch changes (transformed when it is applied).
    pub cells: Vec<String>,
    /// The value types of field cells (`dsu::Cell`) the patch transforms, as it names the new
    /// types: every live cell holding the old one is transformed when it is applied.
    pub field_cells: Vec<String>,
    /// Functions whose signature changes, with a changed type or their own: callers compiled
    /// for the old signature keep the old version.
    pub routed: Vec<String>,
    /// Functions whose code did not change that the patch switches anyway: they call a function
    /// whose signature changed (also in `changed`).
    pub carried: Vec<String>,
    /// The update round the patch joined: what [`LoadReport::outcome`] and [`LoadReport::wait`]
    /// ask about.
    pub round: u64,
}

impl LoadReport {
    /// Whether the queued patch has been applied: `None` while it waits for an update point,
    /// then `Ok(())`, or the reason it was abandoned (a failed transformer, a timeout, an
    /// earlier patch of its round refused), after which the program kept its version.
    /// [`load`] returns before the patch applies; this is how its caller learns the end.
    pub fn outcome(&self) -> Option<Result<(), Error>> {
        crate::protocol::outcome(self.round)
    }

    /// Waits until the queued patch is applied or abandoned, as at an update point (this call
    /// is one: call it only where [`update_point`](fn@crate::update_point) could be called), and
    /// returns the outcome. `load(p)?.wait()` is [`load_and_apply`]`(p)`.
    pub fn wait(&self) -> Result<(), Error> {
        update::wait_for(self.round)
    }
}

/// Verifies the patch at `path` and queues it. It is applied at the first moment every thread
/// registered with the runtime (this one included) is at an update point or idle; until then,
/// threads that reach an update point wait there.
///
/// On any error nothing changes: the program keeps running the version it had, and later
/// patches are checked against that version.
pub fn load(path: impl AsRef<Path>) -> Result<LoadReport, Error> {
    let result = verify_and_queue(path.as_ref().to_path_buf());
    if let Err(e) = &result {
        update::note_refusal(e);
    }
    result
}

/// What `load` reads from a patch's library bytes before anything runs: the manifest and every
/// record, each parsed and checked on its own (against the running program only later).
pub(crate) struct PatchFile<'a> {
    manifest: dsu_abi::Manifest,
    inverse_symbols: Vec<&'a str>,
    cell_transforms: Vec<(&'a str, Fingerprint, Fingerprint)>,
    cell_records: HashMap<&'a str, CellRecordOfPatch<'a>>,
    field_records: Vec<FieldCellInfoView<'a>>,
    field_inverse_symbols: Vec<&'a str>,
    field_transforms: Vec<(&'a str, Fingerprint, Fingerprint)>,
    table: Vec<(&'a str, &'a [u8], FnInfoView<'a>)>,
}

/// Steps 1 to 2 and the reading half of 4 and 5: parses the library bytes `data` (whose seal
/// was checked) into a [`PatchFile`]. Reads bytes only; the fuzz target `patch_reader` drives it.
pub(crate) fn read_patch<'a>(path: &Path, data: &'a [u8]) -> Result<PatchFile<'a>, Error> {
    let elf_err = |e: ElfError| match e {
        ElfError::NotALibrary(reason) => Error::NotALibrary { path: path.to_path_buf(), reason },
        ElfError::Malformed(reason) => Error::Malformed { path: path.to_path_buf(), reason },
    };
    let file = LibraryFile::parse(data).map_err(elf_err)?;

    let header = file
        .symbol(HEADER_SYMBOL)
        .map_err(elf_err)?
        .ok_or(Error::MissingHeader { path: path.to_path_buf(), symbol: HEADER_SYMBOL })?;
    let (header, manifest) = dsu_abi::decode_patch_blob(header.bytes).map_err(|e| match e {
        DecodeError::BadMagic { expected, found } => {
            Error::BadMagic { path: path.to_path_buf(), expected, found }
        }
        DecodeError::UnsupportedMajor { expected, found } => {
            Error::UnsupportedFormat { path: path.to_path_buf(), expected, found }
        }
        other => Error::Malformed { path: path.to_path_buf(), reason: format!("header: {other}") },
    })?;
    if header.minor < dsu_abi::CELL_RECORDS_MINOR {
        return Err(Error::NoCellRecords {
            path: path.to_path_buf(),
            minor: header.minor,
            needed: dsu_abi::CELL_RECORDS_MINOR,
        });
    }

    let names_with_prefix = |prefix| -> Result<Vec<&str>, Error> {
        Ok(file.symbols_with_prefix(prefix).map_err(elf_err)?.iter().map(|s| s.name).collect())
    };
    let inverse_symbols = names_with_prefix(dsu_abi::CELL_INVERSE_PREFIX)?;
    // The cell transforms' fingerprints, read from the file: what step 5 verifies, and what the
    // mapped transforms must hold.
    let transforms_with_prefix = |prefix, what| -> Result<Vec<(&str, Fingerprint, Fingerprint)>, Error> {
        let mut found = Vec::new();
        for sym in file.symbols_with_prefix(prefix).map_err(elf_err)? {
            let (from, to) = dsu_abi::cell_transform_fingerprints(sym.bytes).map_err(|e| {
                Error::Malformed { path: path.to_path_buf(), reason: format!("{what} {}: {e}", sym.name) }
            })?;
            found.push((sym.name, from, to));
        }
        Ok(found)
    };
    let cell_transforms = transforms_with_prefix(dsu_abi::CELL_TRANSFORM_PREFIX, "cell transform")?;
    let cell_records = cell_records(&file, path).map_err(|e| match e {
        RecordError::Elf(e) => elf_err(e),
        RecordError::Other(e) => *e,
    })?;
    // Field cells: the types the patch's `dsu::Cell`s hold, and its transforms by old type.
    let mut field_records: Vec<FieldCellInfoView<'_>> = Vec::new();
    for sym in file.symbols_with_prefix(dsu_abi::FIELD_CELL_PREFIX).map_err(elf_err)? {
        field_records.push(FieldCellInfoView::parse(sym.bytes).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            reason: format!("field cell record {}: {e}", sym.name),
        })?);
    }
    let field_inverse_symbols = names_with_prefix(dsu_abi::FIELD_INVERSE_PREFIX)?;
    let field_transforms = transforms_with_prefix(dsu_abi::FIELD_TRANSFORM_PREFIX, "field cell transform")?;
    // Field cells are transformed by the old type: two transforms from one type must agree.
    for (i, (name, from, to)) in field_transforms.iter().enumerate() {
        if let Some((other, _, _)) = field_transforms[..i].iter().find(|(_, f, t)| f == from && t != to) {
            return Err(Error::Inconsistent {
                path: path.to_path_buf(),
                reason: format!(
                    "{other} and {name} both transform field cells holding fingerprint {from}, to \
                     different types"
                ),
            });
        }
    }

    let mut table = Vec::new();
    for sym in file.symbols_with_prefix(FN_INFO_PREFIX).map_err(elf_err)? {
        let info = FnInfoView::parse(sym.bytes).map_err(|e| Error::Malformed {
            path: path.to_path_buf(),
            reason: format!("function table entry {}: {e}", sym.name),
        })?;
        table.push((sym.name, sym.bytes, info));
    }

    Ok(PatchFile {
        manifest,
        inverse_symbols,
        cell_transforms,
        cell_records,
        field_records,
        field_inverse_symbols,
        field_transforms,
        table,
    })
}

fn verify_and_queue(path: PathBuf) -> Result<LoadReport, Error> {
    // Read once, through one checked descriptor; the seal (and signature) is checked before any
    // other byte is interpreted, and what is mapped later is exactly `data` (`trust.rs`).
    let file_bytes = crate::trust::read_patch_file(&path)?;
    let trusted = {
        let mut guard = update::lock();
        update::runtime(&mut guard)?.trusted_keys()
    };
    let checked = crate::trust::check_seal(&path, &file_bytes, &trusted)?;
    let data = checked.library;
    let PatchFile {
        manifest,
        inverse_symbols,
        cell_transforms,
        cell_records,
        field_records,
        field_inverse_symbols,
        field_transforms,
        table,
    } = read_patch(&path, data)?;

    // The loading thread takes part in the update protocol: a patch never applies behind the back
    // of the code that loaded it, only at its next update point or idle section.
    crate::protocol::register_running();
    let mut guard = update::lock();
    let rt = update::runtime(&mut guard)?;
    if let Some((field, running, patch)) = rt.expected().first_difference(&manifest.applies_to) {
        let target = manifest.applies_to.at_source(&manifest.source_revision, &manifest.source_tree);
        if let Some(state) = rt.already(&manifest.applies_to, &target) {
            return Err(Error::AlreadyApplied { path, revision: target.revision, state });
        }
        return Err(Error::WrongBuild {
            path,
            field,
            running: running.to_string(),
            patch: patch.to_string(),
        });
    }
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for (_, _, info) in &table {
        let routed = manifest.routed.iter().any(|r| r == info.path);
        let carried = manifest.carried.iter().any(|c| c == info.path);
        match rt.expected_fn(info.path) {
            // A routed function changes signature (its own, or with a changed type): to the
            // runtime it is a new function under the old path. Old callers keep the old version,
            // which the runtime leaves in the slot copies of the old signature.
            Some((signature, _)) if signature != info.signature && routed => {
                changed.push(info.path.to_string())
            }
            Some((signature, _)) if signature != info.signature => {
                return Err(Error::SignatureMismatch {
                    path,
                    function: info.path.to_string(),
                    running: signature,
                    patch: info.signature,
                });
            }
            // A carried function calls one whose signature changed: same code, other calls.
            Some((_, body)) if body != info.body || carried => changed.push(info.path.to_string()),
            Some(_) => {}
            None => added.push(info.path.to_string()),
        }
    }
    for rec in cell_records.values() {
        check_cell(rt, &path, rec, &cell_transforms)?;
    }
    check_field_cells(rt, &path, &field_records, &field_transforms)?;
    if changed.is_empty() && added.is_empty() && cell_transforms.is_empty() && field_transforms.is_empty() {
        return Err(Error::NothingToApply { path });
    }

    // Verified: map exactly the verified bytes. RTLD_LOCAL keeps the patch's symbols out of the
    // global scope, so a later patch never binds to this one's definitions.
    //
    // SAFETY: loading a library runs its initialisers. The bytes were verified above to be a dsu
    // patch built for exactly this program, rustc and dependency library (and signed by a trusted
    // key when the program requires it), so its initialisers are those of the program's own
    // crate and dependencies, which the host already runs.
    // Never unloaded, not even when refused from here on (see `map_verified`).
    let lib: &'static Library = unsafe { crate::trust::map_verified(&path, &checked, RTLD_NOW | RTLD_LOCAL) }?;

    let mut functions = Vec::with_capacity(table.len());
    for (name, file_bytes, info) in &table {
        // SAFETY: `name` is a function-info symbol of this library, verified above to hold
        // `file_bytes.len()` bytes; `lib` stays mapped forever (leaked above).
        let mapped = unsafe { mapped_info(lib, name, file_bytes.len()) }
            .map_err(|reason| Error::Inconsistent { path: path.clone(), reason })?;
        if mapped != *file_bytes {
            return Err(Error::Inconsistent {
                path,
                reason: format!("the mapped {name} differs from the verified file"),
            });
        }
        // SAFETY: as above; the link symbol belongs to the verified info symbol.
        let link = unsafe { link_of(lib, name) }
            .map_err(|reason| Error::Inconsistent { path: path.clone(), reason })?;
        functions.push(PatchFn {
            path: info.path.to_string(),
            signature: info.signature,
            body: info.body,
            changed: changed.iter().chain(&added).any(|p| p == info.path),
            slot: link.slot,
            imp: CodePtr(link.imp),
        });
    }

    let mut cells = Vec::with_capacity(cell_transforms.len());
    for &(name, from, to) in &cell_transforms {
        // SAFETY: `name` is a cell-transform symbol of this verified patch; `lib` is leaked.
        let ct: &'static CellTransform = unsafe { cell_transform(lib, name) }
            .map_err(|reason| Error::Inconsistent { path: path.clone(), reason })?;
        // What step 5 verified is what the mapped transform holds, under its own cell's name.
        if ct.from != from || ct.to != to {
            return Err(Error::Inconsistent {
                path,
                reason: format!("the mapped {name} differs from the verified file"),
            });
        }
        if name != format!("{}{}", dsu_abi::CELL_TRANSFORM_PREFIX, dsu_abi::symbol_safe(ct.name)) {
            return Err(Error::Inconsistent {
                path,
                reason: format!("{name} transforms state cell `{}`, which it is not named after", ct.name),
            });
        }
        if let Some(running) = rt.expected_cell(ct.name) {
            if running != ct.from {
                return Err(Error::StateMismatch {
                    path,
                    cell: ct.name.to_string(),
                    running,
                    patch: ct.from,
                });
            }
        }
        cells.push(ct);
    }

    for &(name, from, to) in &field_transforms {
        // SAFETY: `name` is a field-transform symbol of this verified patch; `lib` is leaked.
        let ct: &'static CellTransform = unsafe { cell_transform(lib, name) }
            .map_err(|reason| Error::Inconsistent { path: path.clone(), reason })?;
        if ct.from != from || ct.to != to || !ct.is_field() {
            return Err(Error::Inconsistent {
                path,
                reason: format!("the mapped {name} differs from the verified file"),
            });
        }
        cells.push(ct);
    }

    let mut inverse = Vec::with_capacity(inverse_symbols.len() + field_inverse_symbols.len());
    for (name, field) in inverse_symbols.iter().map(|n| (n, false)).chain(field_inverse_symbols.iter().map(|n| (n, true))) {
        // SAFETY: `name` is an inverse cell-transform symbol of this verified patch; `lib` is
        // leaked.
        let ct: &'static CellTransform = unsafe { cell_transform(lib, name) }
            .map_err(|reason| Error::Inconsistent { path: path.clone(), reason })?;
        if ct.is_field() != field {
            return Err(Error::Inconsistent {
                path,
                reason: format!("{name} is not the kind of cell transform its name says"),
            });
        }
        inverse.push(ct);
    }

    let target = manifest.applies_to.at_source(&manifest.source_revision, &manifest.source_tree);
    let mut report = LoadReport {
        path: path.clone(),
        revision: target.revision.clone(),
        changed,
        added,
        cells: cells.iter().filter(|c| !c.is_field()).map(|c| c.name.to_string()).collect(),
        field_cells: cells.iter().filter(|c| c.is_field()).map(|c| c.name.to_string()).collect(),
        routed: manifest.routed.clone(),
        carried: manifest.carried.clone(),
        round: 0,
    };
    rt.queue(PreparedPatch { path, target, functions, cells, inverse });
    drop(guard);
    report.round = crate::update::open_round();
    Ok(report)
}

/// A state-cell record of a patch, read from the file.
struct CellRecordOfPatch<'a> {
    info: CellInfoView<'a>,
    symbol: &'a str,
}

enum RecordError {
    Elf(ElfError),
    /// Boxed: an `Error` is large, and this is the rare path.
    Other(Box<Error>),
}

/// The patch's state-cell records, by cell name. Two records of one cell with different types
/// are refused: the patch's own code disagrees about the cell.
fn cell_records<'a>(
    file: &LibraryFile<'a>,
    path: &Path,
) -> Result<HashMap<&'a str, CellRecordOfPatch<'a>>, RecordError> {
    let mut out: HashMap<&str, CellRecordOfPatch<'_>> = HashMap::new();
    for sym in file.symbols_with_prefix(dsu_abi::STATE_CELL_PREFIX).map_err(RecordError::Elf)? {
        let info = CellInfoView::parse(sym.bytes).map_err(|e| {
            RecordError::Other(Box::new(Error::Malformed {
                path: path.to_path_buf(),
                reason: format!("state cell record {}: {e}", sym.name),
            }))
        })?;
        let expected_symbol = format!("{}{}", dsu_abi::STATE_CELL_PREFIX, dsu_abi::symbol_safe(info.name));
        if sym.name != expected_symbol {
            return Err(RecordError::Other(Box::new(Error::Inconsistent {
                path: path.to_path_buf(),
                reason: format!("{} describes state cell `{}`, which it is not named after", sym.name, info.name),
            })));
        }
        match out.get(info.name) {
            Some(other) if other.info.fingerprint != info.fingerprint => {
                return Err(RecordError::Other(Box::new(Error::Inconsistent {
                    path: path.to_path_buf(),
                    reason: format!(
                        "its code expects state cell `{}` to hold `{}` (fingerprint {}) in one \
                         place and `{}` (fingerprint {}) in another ({} and {})",
                        info.name,
                        other.info.type_text,
                        other.info.fingerprint,
                        info.type_text,
                        info.fingerprint,
                        other.symbol,
                        sym.name
                    ),
                })))
            }
            Some(_) => {}
            None => {
                out.insert(info.name, CellRecordOfPatch { info, symbol: sym.name });
            }
        }
    }
    Ok(out)
}

/// Refuses the patch if the code behind `rec` would meet its cell holding another type than the
/// one it was compiled for, once the patch is applied: the cell holds (or, after the pending
/// patches, will hold) some type; the patch's transform of the cell, if any, makes another of
/// it. A cell no code has created yet is not checked: the patch's code creates it with its type.
fn check_cell(
    rt: &update::Runtime,
    path: &Path,
    rec: &CellRecordOfPatch<'_>,
    transforms: &[(&str, Fingerprint, Fingerprint)],
) -> Result<(), Error> {
    let name = rec.info.name;
    let Some(running) = rt.expected_cell(name) else { return Ok(()) };
    let symbol = format!("{}{}", dsu_abi::CELL_TRANSFORM_PREFIX, dsu_abi::symbol_safe(name));
    let transform = transforms.iter().find(|(s, _, _)| *s == symbol);
    let after = match transform {
        // A transform from another type is refused once mapped (`StateMismatch`), with the
        // transform's own name for the cell; here it makes nothing of the running value.
        Some(&(_, from, to)) if from == running => to,
        _ => running,
    };
    if after == rec.info.fingerprint {
        return Ok(());
    }
    // SAFETY: under the runtime's lock (`rt` is borrowed from it), which the applier holds
    // while it replaces and frees versions.
    let running_type = match crate::cell::named::cell(name).map(|c| unsafe { c.current() }) {
        Some(v) if v.fingerprint == running => format!("`{}` (fingerprint {running})", v.type_name),
        _ => format!("fingerprint {running}"),
    };
    Err(Error::CellType {
        path: path.to_path_buf(),
        cell: name.to_string(),
        running: running_type,
        patch: format!("`{}` (fingerprint {})", rec.info.type_text, rec.info.fingerprint),
        transform: match transform {
            Some((s, from, to)) => format!("its transform {s} goes from fingerprint {from} to {to}"),
            None => String::new(),
        },
    })
}

/// Refuses the patch if a live field cell holds (or, once the pending updates apply, will hold) a
/// type the patch neither transforms nor names in a `dsu::Cell<T>` of its code: built for other
/// types, its code could reach such a cell expecting another. A field cell has no name to find
/// it by; the check is by type, over every live cell.
fn check_field_cells(
    rt: &update::Runtime,
    path: &Path,
    records: &[FieldCellInfoView<'_>],
    transforms: &[(&str, Fingerprint, Fingerprint)],
) -> Result<(), Error> {
    for (running, type_name, cells) in rt.expected_field_types() {
        let known = records.iter().any(|r| r.fingerprint == running)
            || transforms.iter().any(|(_, from, _)| *from == running);
        if known {
            continue;
        }
        let mut names: Vec<String> =
            records.iter().map(|r| format!("`{}` (fingerprint {})", r.type_text, r.fingerprint)).collect();
        names.sort();
        names.dedup();
        return Err(Error::FieldCellType {
            path: path.to_path_buf(),
            running: format!("`{type_name}` (fingerprint {running})"),
            cells,
            known: names.join(", "),
        });
    }
    Ok(())
}

/// Verifies the patch at `path`, queues it, and waits here, as at an update point, until it is
/// applied or refused: this call is an update point.
///
/// Call it only where [`update_point`](fn@crate::update_point) could be called. Unlike [`load`], it
/// returns the outcome of applying: a failed state transformer, or a timeout waiting for the
/// other threads ([`Error::UpdateTimeout`]), after either of which nothing has changed. Patches
/// queued earlier are applied first.
pub fn load_and_apply(path: impl AsRef<Path>) -> Result<LoadReport, Error> {
    let report = load(path)?;
    update::wait_for(report.round)?;
    Ok(report)
}

/// The running executable's function table, read through its exported symbols.
pub(crate) fn host_functions() -> Result<Vec<HostFn<'static>>, Error> {
    // `/proc/self/exe` opens the file the process runs, even after a rebuild replaced the file
    // at its path (as `cargo dsu build` does, by rename); `current_exe()` would name the new one.
    let exe = std::path::Path::new("/proc/self/exe");
    let data = std::fs::read(exe).map_err(|e| Error::NotUpdateable {
        reason: format!("cannot read the running executable ({}): {e}", exe.display()),
    })?;
    let names: Vec<String> = match LibraryFile::parse(&data) {
        Ok(file) => file
            .symbols_with_prefix(FN_INFO_PREFIX)
            .map(|syms| syms.iter().map(|s| s.name.to_string()).collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let this = Library::this();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        // SAFETY: the executable exports `name` as an FnInfo made by the dsu macros; the
        // executable is mapped for the life of the process.
        let bytes = unsafe { mapped_info(&this, &name, usize::MAX) }
            .map_err(|reason| Error::NotUpdateable { reason })?;
        let info = FnInfoView::parse(bytes).map_err(|e| Error::NotUpdateable {
            reason: format!("function table entry {name}: {e}"),
        })?;
        // SAFETY: as above, for the matching link symbol.
        let link = unsafe { link_of(&this, &name) }.map_err(|reason| Error::NotUpdateable { reason })?;
        out.push(HostFn { info, slot: link.slot });
    }
    Ok(out)
}

/// The `CellTransform` the patch exports as `name`.
///
/// # Safety
/// `name` must be a cell-transform symbol (either prefix) of a patch verified for this program,
/// and `lib` must stay mapped for the rest of the process.
unsafe fn cell_transform(lib: &'static Library, name: &str) -> Result<&'static CellTransform, String> {
    // SAFETY: the symbol is data; reading it as a pointer gives its address.
    let addr = unsafe { lib.get::<*const CellTransform>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("symbol {name}: {e}"))?;
    // SAFETY: `cargo dsu patch` exports a `CellTransform` under every such name; the library is
    // never unloaded. Its layout is this runtime's: the patch links this very runtime (the
    // identity's dependency-library hash was checked before this is called).
    Ok(unsafe { &*addr })
}

struct Link {
    slot: &'static AtomicPtr<()>,
    imp: *const (),
}

/// The bytes of the mapped FnInfo `name`: `len` bytes, or the length its header says when `len`
/// is `usize::MAX`.
///
/// # Safety
/// `name`, if defined in `lib`, must be an FnInfo made by the dsu macros, and `lib` must stay
/// mapped for the rest of the process.
unsafe fn mapped_info(lib: &Library, name: &str, len: usize) -> Result<&'static [u8], String> {
    // SAFETY: the symbol is data; reading it as a pointer gives its address.
    let addr: *const u8 = unsafe { lib.get::<*const u8>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("symbol {name}: {e}"))?;
    let len = if len == usize::MAX {
        // SAFETY: every FnInfo starts with FN_INFO_FIXED initialised bytes (caller's contract).
        let fixed = unsafe { std::slice::from_raw_parts(addr, FN_INFO_FIXED) };
        FnInfoView::total_len(fixed).map_err(|e| format!("symbol {name}: {e}"))?
    } else {
        len
    };
    // SAFETY: the FnInfo has `len` initialised bytes (its header, or the verified file, says so)
    // and lives as long as the library, which is never unloaded.
    Ok(unsafe { std::slice::from_raw_parts(addr, len) })
}

/// The FnLink that belongs to the FnInfo symbol `info_name`.
///
/// # Safety
/// As for [`mapped_info`].
unsafe fn link_of(lib: &Library, info_name: &str) -> Result<Link, String> {
    let link_name = dsu_abi::link_symbol_for(info_name)
        .ok_or_else(|| format!("{info_name} is not a function-info symbol"))?;
    // SAFETY: the symbol is data; reading it as a pointer gives its address.
    let addr: *const FnLink = unsafe { lib.get::<*const FnLink>(link_name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("symbol {link_name}: {e}"))?;
    // SAFETY: the macros emit an FnLink under this name beside every FnInfo; it is immutable
    // and lives as long as the library.
    let link = unsafe { &*addr };
    if link.slot.is_null() || link.imp.is_null() {
        return Err(format!("{link_name} holds a null pointer"));
    }
    // SAFETY: `slot` is the address of the library's Slot static, a `repr(transparent)`
    // AtomicPtr that lives as long as the library.
    let slot = unsafe { &*link.slot };
    Ok(Link { slot, imp: link.imp })
}
