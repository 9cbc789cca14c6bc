//! File names two binaries agree on: the sidecar rotates its switch-events
//! file, `paymeshctl events --file` reads the rotations back.

use std::path::{Path, PathBuf};

/// The `n`-th rotation of `path`: `FILE.n` (`FILE.1` is the newest).
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_append_their_number() {
        assert_eq!(numbered(Path::new("/var/lib/x.jsonl"), 1), PathBuf::from("/var/lib/x.jsonl.1"));
        assert_eq!(numbered(Path::new("events"), 12), PathBuf::from("events.12"));
    }
}
