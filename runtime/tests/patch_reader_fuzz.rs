//! The short fuzz pass CI runs on stable (the long one is `cargo +nightly fuzz run
//! patch_reader`, see `fuzz/`): every input of the kept corpus, then deterministic mutations of
//! each (bit flips, overwritten runs, truncations, duplicated spans), through everything that
//! reads a patch before anything runs. The property: every input is answered, `Ok` or a typed
//! error; none panics.

use std::path::PathBuf;

fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/patch_reader");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

fn read_all(data: &[u8]) {
    let _ = dsu::__private::check_seal(data, &[]);
    let _ = dsu::__private::read_patch_library(data);
    let _ = dsu::__private::read_patch_library(&data[..data.len().saturating_sub(dsu_abi::seal::SEAL_LEN)]);
}

/// xorshift64: the same mutations on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn the_corpus_reads_as_patches() {
    let inputs = corpus();
    assert!(inputs.len() >= 2, "the corpus holds a patch library and its sealed file");
    for (path, bytes) in &inputs {
        let name = path.file_name().unwrap().to_str().unwrap();
        if name.ends_with("-sealed.so") {
            assert!(dsu::__private::check_seal(bytes, &[]).is_ok(), "{name}: its seal holds");
        } else if name.ends_with(".so") {
            dsu::__private::read_patch_library(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn mutated_patches_are_refused_or_read_never_panic() {
    let inputs = corpus();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    // About 400,000 inputs in all, shared out over the corpus: some seconds in a debug build.
    let rounds = 400_000 / inputs.len();
    for (path, original) in &inputs {
        for round in 0..rounds {
            let mut data = original.clone();
            let edits = 1 + rng.below(4);
            for _ in 0..edits {
                match rng.below(4) {
                    0 => {
                        let i = rng.below(data.len());
                        data[i] ^= 1 << rng.below(8);
                    }
                    1 => {
                        let i = rng.below(data.len());
                        let n = rng.below(16).min(data.len() - i);
                        let v = rng.next() as u8;
                        data[i..i + n].fill(v);
                    }
                    2 => {
                        let n = rng.below(data.len());
                        data.truncate(n.max(1));
                    }
                    _ => {
                        let i = rng.below(data.len());
                        let n = rng.below(64).min(data.len() - i);
                        let span = data[i..i + n].to_vec();
                        let at = rng.below(data.len());
                        data.splice(at..at, span);
                    }
                }
            }
            let r = std::panic::catch_unwind(|| read_all(&data));
            assert!(r.is_ok(), "{} mutation {round} panicked", path.display());
        }
    }
}
