//! Every fuzz target over its committed corpus (`fuzz/corpus/<target>/`),
//! and a few hundred deterministic mutants of each entry: the properties
//! run in every `cargo test`, so a target cannot rot and every input a
//! fuzzer once crashed on (kept in the corpus) stays fixed.

use std::path::Path;

use paymesh_fuzz::mutants::{Rng, mutate};

#[test]
fn every_target_holds_on_its_corpus_and_mutants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in paymesh_fuzz::TARGETS {
        let dir = root.join(name);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "target {name} has no corpus");
        let mut rng = Rng(0x5eed ^ name.len() as u64);
        for path in &entries {
            let seed = std::fs::read(path).expect("corpus file");
            target(&seed);
            for _ in 0..200 {
                target(&mutate(&mut rng, &seed));
            }
        }
        eprintln!("{name}: {} corpus entries, {} mutants", entries.len(), entries.len() * 200);
    }
}

#[test]
fn every_target_has_a_binary() {
    let bins = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    for (name, _) in paymesh_fuzz::TARGETS {
        assert!(bins.join(format!("{name}.rs")).exists(), "no src/bin/{name}.rs");
    }
}
