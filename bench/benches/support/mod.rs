//! What the sidecar benchmarks share: the config their stack's state is
//! built from.

use paymesh_sidecar::config;
use sha2::{Digest, Sha256};

/// The hex SHA-256 of an API key, as a config's `api_key_sha256` holds it.
pub fn digest(key: &str) -> String {
    Sha256::digest(key).iter().map(|b| format!("{b:02x}")).collect()
}

/// A sidecar config on addresses nothing binds (the benchmarks drive the
/// stack without sockets), one worker, then `sections` (clients, migration,
/// overload, access log) as given.
pub fn config(sections: &str) -> config::Config {
    let yaml = format!("listen: \"127.0.0.1:0\"\napp: \"127.0.0.1:9\"\nadmin: \"127.0.0.1:0\"\nworkers: 1\n{sections}");
    config::from_yaml(yaml.as_bytes()).unwrap_or_else(|e| panic!("bench config: {e}"))
}
