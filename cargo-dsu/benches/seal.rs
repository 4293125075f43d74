//! What the seal and signature checks add to `dsu::load` of a 5 MB patch: the program's check
//! (`dsu::__private::check_seal`, the first step of `load`) of a file sealed, and sealed and
//! signed, by `cargo dsu patch`. Goal (issue 11): at most 5 ms.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn seal_check(c: &mut Criterion) {
    let library = common::pseudo_random_bytes(5 * 1024 * 1024, 0x2545f4914f6cdd1d);
    let dir = std::env::temp_dir().join(format!("dsu-seal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = cargo_dsu::sign::keygen(&dir.join("bench")).unwrap();
    let key = cargo_dsu::sign::read_secret_key(&keys.secret).unwrap();
    let trusted = [cargo_dsu::sign::read_public_key(&keys.public).unwrap().to_bytes()];
    std::fs::remove_dir_all(&dir).unwrap();

    let sealed = cargo_dsu::sign::seal(&library, None);
    let signed = cargo_dsu::sign::seal(&library, Some(&key));
    assert_eq!(dsu::__private::check_seal(&signed, &trusted).unwrap(), library.len());

    let mut g = c.benchmark_group("load_checks_5MB");
    g.sample_size(30);
    g.bench_function("seal", |b| b.iter(|| dsu::__private::check_seal(black_box(&sealed), &[]).unwrap()));
    g.bench_function("seal_and_signature", |b| {
        b.iter(|| dsu::__private::check_seal(black_box(&signed), &trusted).unwrap())
    });
    g.finish();
}

criterion_group!(benches, seal_check);
criterion_main!(benches);
