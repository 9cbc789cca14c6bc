//! Mutation tests of the parsers that read untrusted input: the sidecar's
//! config file, etcd's migration values, the telemetry file, and the app's
//! request bodies. Each starts from a valid input, applies thousands of
//! seeded random byte mutations, and checks that the parser answers with a
//! value or an error and never panics — the property a fuzzer checks, run
//! on the stable toolchain (cargo-fuzz needs nightly).

use paymesh_app::validate;
use paymesh_sidecar::migration::parse_percent;
use paymesh_telemetryd::TelemetrySnapshot;

use paymesh_fuzz::mutants::{Rng, mutate};

const ROUNDS: usize = 3000;

#[test]
fn config_files_never_panic_the_loader() {
    // The fuzz target's seed for the same parser: the design's full example.
    let good = include_bytes!("../../fuzz/corpus/config/full.yaml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.yaml");
    std::fs::write(&path, good).unwrap();
    paymesh_sidecar::config::load(&path).expect("the seed is valid");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut refused = 0;
    for _ in 0..ROUNDS {
        std::fs::write(&path, mutate(&mut rng, good)).unwrap();
        if let Err(errors) = paymesh_sidecar::config::load(&path) {
            assert!(!errors.0.is_empty(), "a refusal names at least one problem");
            refused += 1;
        }
    }
    assert!(refused > ROUNDS / 4, "only {refused} of {ROUNDS} mutants were refused: the mutator is not biting");
}

#[test]
fn etcd_values_never_panic_and_accepted_ones_are_in_range() {
    let mut rng = Rng(42);
    for seed in ["12.5", "0", "100", "99.99", " 7 "] {
        for _ in 0..ROUNDS {
            let mutant = mutate(&mut rng, seed.as_bytes());
            let Ok(text) = std::str::from_utf8(&mutant) else { continue };
            if let Ok(bp) = parse_percent(text) {
                assert!(bp <= 10_000, "{text:?} gave {bp} basis points");
            }
        }
    }
}

#[test]
fn telemetry_files_never_panic_and_accepted_ones_are_valid() {
    let good = br#"{"sampled_at_ms": 1764000000000, "interval_ms": 1000, "cpus": 2,
 "cpu_percent": 42.5, "load1": 0.8, "load5": 0.7, "load15": 0.5,
 "mem_used_percent": 35.1, "disk_free_percent": 71.0,
 "cgroup": {"cpu_percent_of_limit": 55.0, "mem_percent_of_limit": 40.2}}"#;
    TelemetrySnapshot::parse(good).expect("the seed is valid");
    let mut rng = Rng(7);
    for _ in 0..ROUNDS {
        if let Ok(s) = TelemetrySnapshot::parse(&mutate(&mut rng, good)) {
            assert!(s.validate().is_ok(), "parse accepted an invalid snapshot: {s:?}");
            assert!((0.0..=100.0).contains(&s.cpu_percent) && (0.0..=100.0).contains(&s.mem_used_percent));
        }
    }
}

#[test]
fn request_bodies_never_panic_the_app_and_errors_keep_the_public_shape() {
    let seeds: [(&str, &[u8], &[&str]); 3] = [
        (
            "charge",
            br#"{"amount":1050,"currency":"usd","source":"tok_visa","description":"x"}"#,
            validate::CHARGE_FIELDS,
        ),
        ("refund", br#"{"charge":"ch_0123456789abcdefghijKLMN","amount":500}"#, validate::REFUND_FIELDS),
        ("disbursement", br#"{"amount":5000,"currency":"jpy","destination":"acct_1"}"#, validate::DISBURSEMENT_FIELDS),
    ];
    let mut rng = Rng(2026);
    for (operation, seed, fields) in seeds {
        for _ in 0..ROUNDS {
            let body = mutate(&mut rng, seed);
            let result = validate::parse(operation, &body, fields).and_then(|b| match operation {
                "charge" => validate::charge(&b).map(drop),
                "refund" => validate::refund(&b).map(drop),
                _ => validate::disbursement(&b).map(drop),
            });
            if let Err(e) = result {
                assert_eq!(e.status, 400, "{e}");
                let shape: serde_json::Value = serde_json::from_slice(&e.to_body()).unwrap();
                assert_eq!(shape["error"]["type"], "invalid_request_error");
            }
        }
    }
}
