//! Transforming a state cell of 1,000,000 entries when `Entry` gains a field: the work an update
//! point does for a type change (the same `CellTransform::run` path, through `Transform`).
//! Figures in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsu::{Transform, TransformError};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

mod dsu_old {
    #[dsu::updateable]
    pub struct Entry {
        pub name: String,
        pub hits: u64,
    }
}

#[dsu::updateable]
pub struct Entry {
    pub name: String,
    pub hits: u64,
    pub seen: bool,
}

impl Transform<dsu_old::Entry> for Entry {
    fn transform(old: &dsu_old::Entry) -> Result<Self, TransformError> {
        Ok(Entry { name: old.name.clone(), hits: old.hits, seen: false })
    }
}

const N: usize = 1_000_000;

fn transform_million(c: &mut Criterion) {
    let old: Mutex<HashMap<String, dsu_old::Entry>> = Mutex::new(
        (0..N)
            .map(|i| {
                let name = format!("user-{i:07}");
                (name.clone(), dsu_old::Entry { name, hits: i as u64 })
            })
            .collect(),
    );
    let mut g = c.benchmark_group("transform");
    g.sample_size(10).measurement_time(Duration::from_secs(40)).throughput(Throughput::Elements(N as u64));
    g.bench_function("hashmap_1m_entry_gains_a_field", |b| {
        // An update keeps both values (the old one is never freed, the new one is installed), so
        // dropping the result is no part of the pause.
        b.iter_with_large_drop(|| black_box(<Mutex<HashMap<String, Entry>>>::transform(&old).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, transform_million);
criterion_main!(benches);
