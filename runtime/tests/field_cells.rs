//! Field cells (`dsu::Cell`) through the update protocol: live cells inside `Arc`s, used by tokio
//! tasks, are transformed in place by their value's type, all or nothing with the other
//! transforms of the update; old values are freed once the update commits; a rollback moves them
//! back; an exiting thread that still holds a cell holds updates off.
//!
//! No patch library is needed: updates that only run cell transforms are queued through a
//! `__private` hook, and the transforms are `CellTransform`s built here, as a patch's generated
//! code builds them. The code that reads a cell "as the new version" views it through the new
//! value type, as a patch's code does (`dsu::Cell` is `repr(transparent)` over its record
//! pointer, whatever its type). The update protocol is process-wide, so the scenarios run in
//! order in one test.

mod common;

use common::wait_until;
use dsu::{CellTransform, Transform, TransformError};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Drops of version-1 and version-2 stores, and of version-2 items.
static V1_STORE_DROPS: AtomicUsize = AtomicUsize::new(0);
static V2_STORE_DROPS: AtomicUsize = AtomicUsize::new(0);
static NEW_ITEM_DROPS: AtomicUsize = AtomicUsize::new(0);
static OLD_ITEM_DROPS: AtomicUsize = AtomicUsize::new(0);

mod v1 {
    use std::collections::{BTreeSet, HashMap};

    #[dsu::updateable]
    pub struct Entry {
        pub value: String,
        pub expires: u64,
    }

    #[dsu::updateable]
    pub struct Store {
        pub entries: HashMap<String, Entry>,
        /// Expiration index: (expires, key).
        pub index: BTreeSet<(u64, String)>,
    }

    impl Drop for Store {
        fn drop(&mut self) {
            super::V1_STORE_DROPS.fetch_add(1, super::SeqCst);
        }
    }
}

mod v2 {
    use std::collections::{BTreeSet, HashMap};

    #[dsu::updateable]
    pub struct Entry {
        pub value: String,
        pub expires: u64,
        pub hits: u64,
    }

    #[dsu::updateable]
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    pub struct Expiry {
        pub at: u64,
        pub key: String,
    }

    #[dsu::updateable]
    pub struct Store {
        pub entries: HashMap<String, Entry>,
        pub index: BTreeSet<Expiry>,
    }

    impl Drop for Store {
        fn drop(&mut self) {
            super::V2_STORE_DROPS.fetch_add(1, super::SeqCst);
        }
    }
}

// SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
// both sides are dropped whole (`FRESH`).
unsafe impl Transform<v1::Store> for v2::Store {
    const FRESH: bool = true;
    unsafe fn transform(old: &v1::Store) -> Result<Self, TransformError> {
        Ok(v2::Store {
            entries: old
                .entries
                .iter()
                .map(|(k, e)| (k.clone(), v2::Entry { value: e.value.clone(), expires: e.expires, hits: 0 }))
                .collect(),
            index: old.index.iter().map(|(at, key)| v2::Expiry { at: *at, key: key.clone() }).collect(),
        })
    }
}

// SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
// both sides are dropped whole (`FRESH`).
unsafe impl Transform<v2::Store> for v1::Store {
    const FRESH: bool = true;
    unsafe fn transform(new: &v2::Store) -> Result<Self, TransformError> {
        Ok(v1::Store {
            entries: new
                .entries
                .iter()
                .map(|(k, e)| (k.clone(), v1::Entry { value: e.value.clone(), expires: e.expires }))
                .collect(),
            index: new.index.iter().map(|e| (e.at, e.key.clone())).collect(),
        })
    }
}

static STORE_UP: CellTransform = CellTransform::field::<Mutex<v1::Store>, Mutex<v2::Store>>("Mutex<v2::Store>");
static STORE_DOWN: CellTransform = CellTransform::field::<Mutex<v2::Store>, Mutex<v1::Store>>("Mutex<v1::Store>");

/// What every connection task shares.
struct Shared {
    store: dsu::Cell<Mutex<v1::Store>>,
}

/// The same cell as the code of version 2 sees it.
fn as_v2(cell: &dsu::Cell<Mutex<v1::Store>>) -> &dsu::Cell<Mutex<v2::Store>> {
    // SAFETY: `dsu::Cell` is `repr(transparent)` over its record pointer, whatever its value type;
    // which type it holds is checked at every access.
    unsafe { &*(cell as *const dsu::Cell<Mutex<v1::Store>> as *const dsu::Cell<Mutex<v2::Store>>) }
}

/// One request: code of whichever version the cell holds now (inside one scope, no update
/// applies, so the version cannot change under it; between two scopes one may, so the request
/// tries each version again, a bounded number of times). `None` if neither can read it.
fn request(shared: &Shared, task: usize, i: u64) -> Option<()> {
    (0..4).find_map(|_| request_once(shared, task, i))
}

fn request_once(shared: &Shared, task: usize, i: u64) -> Option<()> {
    let key = format!("t{task}-{}", i % 50);
    let done = shared.store.try_with(|s| {
        let mut s = s.lock().unwrap();
        let expires = 1_000_000 + i;
        if let Some(old) = s.entries.insert(key.clone(), v1::Entry { value: format!("v{expires}"), expires }) {
            s.index.remove(&(old.expires, key.clone()));
        }
        s.index.insert((expires, key.clone()));
    });
    if done.is_ok() {
        return Some(());
    }
    as_v2(&shared.store)
        .try_with(|s| {
            let mut s = s.lock().unwrap();
            let expires = 1_000_000 + i;
            let entry = v2::Entry { value: format!("v{expires}"), expires, hits: 1 };
            if let Some(old) = s.entries.insert(key.clone(), entry) {
                s.index.remove(&v2::Expiry { at: old.expires, key: key.clone() });
            }
            s.index.insert(v2::Expiry { at: expires, key });
        })
        .ok()
}

/// A store of `n` entries `k0..k{n-1}`, entry `i` expiring at `i * 7`.
fn filled(n: u64) -> v1::Store {
    let mut s = v1::Store { entries: HashMap::new(), index: BTreeSet::new() };
    for i in 0..n {
        let key = format!("k{i}");
        s.entries.insert(key.clone(), v1::Entry { value: format!("value {i}"), expires: i * 7 });
        s.index.insert((i * 7, key));
    }
    s
}

/// Entries and index agree, and every preloaded key is there with its value and expiry.
fn check_v2(store: &v2::Store, preloaded: u64) {
    assert_eq!(store.entries.len(), store.index.len());
    for (k, e) in &store.entries {
        assert!(store.index.contains(&v2::Expiry { at: e.expires, key: k.clone() }), "{k} not indexed");
    }
    for i in 0..preloaded {
        let e = &store.entries[&format!("k{i}")];
        assert_eq!((e.value.as_str(), e.expires), (format!("value {i}").as_str(), i * 7));
    }
}

fn check_v1(store: &v1::Store, preloaded: u64) {
    assert_eq!(store.entries.len(), store.index.len());
    for (k, e) in &store.entries {
        assert!(store.index.contains(&(e.expires, k.clone())), "{k} not indexed");
    }
    for i in 0..preloaded {
        let e = &store.entries[&format!("k{i}")];
        assert_eq!((e.value.as_str(), e.expires), (format!("value {i}").as_str(), i * 7));
    }
}

// ---- all or nothing: a failing field transform leaves every value as it was ----

mod item_v1 {
    #[dsu::updateable]
    pub struct Item {
        pub name: String,
    }
    impl Drop for Item {
        fn drop(&mut self) {
            super::OLD_ITEM_DROPS.fetch_add(1, super::SeqCst);
        }
    }
}

mod item_v2 {
    #[dsu::updateable]
    pub struct Item {
        pub name: String,
        pub len: usize,
    }
    impl Drop for Item {
        fn drop(&mut self) {
            super::NEW_ITEM_DROPS.fetch_add(1, super::SeqCst);
        }
    }
}

// SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
// both sides are dropped whole (`FRESH`).
unsafe impl Transform<item_v1::Item> for item_v2::Item {
    const FRESH: bool = true;
    unsafe fn transform(old: &item_v1::Item) -> Result<Self, TransformError> {
        if old.name == "poison" {
            return Err("cannot upgrade poison".into());
        }
        Ok(item_v2::Item { name: old.name.clone(), len: old.name.len() })
    }
}

static ITEM_UP: CellTransform = CellTransform::field::<item_v1::Item, item_v2::Item>("item_v2::Item");

/// A named cell whose type the same update changes (its transform succeeds).
static COUNTER: dsu::State<AtomicU64> = dsu::State::new("field-cells-counter", || AtomicU64::new(5));

#[dsu::updateable]
#[allow(dead_code)] // Made by the transform; the test reads the cell's type, not the value.
struct Wide(u128);

// SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
// both sides are dropped whole (`FRESH`).
unsafe impl Transform<AtomicU64> for Wide {
    const FRESH: bool = true;
    unsafe fn transform(old: &AtomicU64) -> Result<Self, TransformError> {
        Ok(Wide(u128::from(old.load(SeqCst))))
    }
}

static COUNTER_UP: CellTransform = CellTransform::new::<AtomicU64, Wide>("field-cells-counter");

fn wait(round: u64) -> Result<(), String> {
    dsu::__private::wait_for_round(round).map_err(|e| e.to_string())
}

#[test]
fn field_cells_are_transformed_in_place_all_or_nothing_and_their_old_values_freed() {
    dsu::set_update_timeout(Duration::from_secs(30));
    const CELLS: usize = 8;
    const PRELOADED: u64 = 1000;

    // Live cells inside `Arc`s, each cloned into tokio tasks that use it continuously. The
    // workers never reach an update point: their threads count as idle between accesses, and as
    // running inside each one.
    let shared: Vec<Arc<Shared>> = (0..CELLS)
        .map(|_| Arc::new(Shared { store: dsu::Cell::new(Mutex::new(filled(PRELOADED))) }))
        .collect();
    assert_eq!(dsu::__private::live_field_cells::<Mutex<v1::Store>>(), CELLS);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..CELLS * 2)
        .map(|task| {
            let (shared, stop, ok, failed) = (shared[task % CELLS].clone(), stop.clone(), ok.clone(), failed.clone());
            rt.spawn(async move {
                let mut i = 0;
                while !stop.load(SeqCst) {
                    match request(&shared, task, i) {
                        Some(()) => ok.fetch_add(1, SeqCst),
                        None => failed.fetch_add(1, SeqCst),
                    };
                    i += 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    wait_until("the tasks are serving", || ok.load(SeqCst) > 1000);

    // The update: every live cell holding the old type is transformed, under load.
    let round = dsu::__private::queue_cell_transforms(vec![&STORE_UP], vec![&STORE_DOWN]);
    assert_eq!(wait(round), Ok(()));
    assert_eq!(dsu::__private::live_field_cells::<Mutex<v1::Store>>(), 0);
    assert_eq!(dsu::__private::live_field_cells::<Mutex<v2::Store>>(), CELLS);
    assert_eq!(V1_STORE_DROPS.load(SeqCst), CELLS, "every old value freed once the update committed");
    assert_eq!(V2_STORE_DROPS.load(SeqCst), 0);
    let after = ok.load(SeqCst);
    wait_until("the tasks serve on the new type", || ok.load(SeqCst) > after + 1000);
    for s in &shared {
        assert!(s.store.try_with(|_| ()).is_err(), "code of the old version no longer reaches it");
        as_v2(&s.store).with(|st| check_v2(&st.lock().unwrap(), PRELOADED));
    }

    // A rollback moves them back, through the inverse transform, freeing the new values.
    let report = dsu::rollback_and_wait().expect("rolled back");
    assert!(report.cells.is_empty(), "no named cell: {:?}", report.cells);
    assert_eq!(V2_STORE_DROPS.load(SeqCst), CELLS);
    assert_eq!(dsu::__private::live_field_cells::<Mutex<v1::Store>>(), CELLS);
    let after = ok.load(SeqCst);
    wait_until("the tasks serve on the old type again", || ok.load(SeqCst) > after + 1000);
    for s in &shared {
        s.store.with(|st| check_v1(&st.lock().unwrap(), PRELOADED));
    }
    stop.store(true, SeqCst);
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    assert_eq!(failed.load(SeqCst), 0, "a request met a cell neither version could read");

    // Without an inverse for its field transform, an update cannot be rolled back.
    let round = dsu::__private::queue_cell_transforms(vec![&STORE_UP], vec![]);
    assert_eq!(wait(round), Ok(()));
    match dsu::rollback() {
        Err(dsu::Error::RollbackRefused { reason }) => {
            assert!(reason.contains("field cells") && reason.contains("no inverse"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(shared);
    assert_eq!(V2_STORE_DROPS.load(SeqCst), 2 * CELLS, "dropped cells drop their current value");
    assert_eq!(V1_STORE_DROPS.load(SeqCst), 2 * CELLS);
    assert_eq!(dsu::__private::live_field_cells::<Mutex<v2::Store>>(), 0);

    // All or nothing: a named cell's transform succeeds, one of five field cells' fails: no value
    // changes, the new values are dropped, no old one is.
    COUNTER.with(|c| c.fetch_add(1, SeqCst));
    let items: Vec<Arc<dsu::Cell<item_v1::Item>>> = ["a", "bb", "poison", "dddd", "e"]
        .into_iter()
        .map(|n| Arc::new(dsu::Cell::new(item_v1::Item { name: n.to_string() })))
        .collect();
    let round = dsu::__private::queue_cell_transforms(vec![&COUNTER_UP, &ITEM_UP], vec![]);
    match dsu::__private::wait_for_round(round) {
        Err(e @ dsu::Error::FieldTransformFailed { .. }) => {
            let text = e.to_string();
            assert!(text.contains("cannot upgrade poison") && text.contains("5 live"), "{text}");
            assert!(text.contains("Nothing changed"), "{text}");
        }
        other => panic!("expected the field transform to fail, got {other:?}"),
    }
    assert_eq!(COUNTER.with(|c| c.load(SeqCst)), 6, "the named cell keeps its value and type");
    let names: Vec<String> = items.iter().map(|c| c.with(|i| i.name.clone())).collect();
    assert_eq!(names, ["a", "bb", "poison", "dddd", "e"], "every field cell keeps its value");
    assert_eq!(OLD_ITEM_DROPS.load(SeqCst), 0, "no old value was freed");
    let made = NEW_ITEM_DROPS.load(SeqCst);
    assert!((1..=4).contains(&made), "the new values made before the failure were dropped: {made}");
    assert_eq!(dsu::__private::live_field_cells::<item_v1::Item>(), 5);
    assert!(dsu::status().unwrap().last_refusal.unwrap().contains("poison"));
    drop(items);
    assert_eq!(OLD_ITEM_DROPS.load(SeqCst), 5);
    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
}
