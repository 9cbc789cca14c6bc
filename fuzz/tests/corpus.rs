//! Every fuzz target over its committed corpus (`fuzz/corpus/<target>/`),
//! and a few hundred deterministic mutants of each entry: the properties
//! run in every `cargo test`, so a target cannot rot and every input a
//! fuzzer once crashed on (kept in the corpus) stays fixed.

use std::path::Path;

/// xorshift64*: deterministic mutants, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[b"\0", b"\xff", b"\n", b"/", b"%2F", b"..", b"-1", b"1e309", b"\"", b"{", b"}", b" "];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(4) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                out.truncate(rng.below(out.len()));
            }
            2 => {
                let i = rng.below(out.len() + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(i..i, piece.iter().copied());
            }
            _ if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            _ => {}
        }
    }
    out
}

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
