//! Size-based rotation of the sidecar's append-only files (the access log,
//! the switch-events JSONL).
//!
//! `FILE` is always the file being written; when the next line would take it
//! past `max_bytes`, `FILE.keep` is dropped, `FILE.n` becomes `FILE.n+1` and
//! `FILE` becomes `FILE.1`, so `FILE.1` is the newest kept file. Writers
//! rotate only between whole lines, so no line is ever split across files.
//! An external logrotate can do the same renames and tell the sidecar to
//! reopen with SIGUSR1.

use std::io;
use std::path::{Path, PathBuf};

/// How one file rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotate {
    /// Rotate before a line would make the file larger than this.
    pub max_bytes: u64,
    /// Rotated files kept besides the live one (at least 1).
    pub keep: u32,
}

impl Rotate {
    /// Whether a file of `size` bytes must rotate before `add` more bytes.
    /// An empty file never rotates, so a line longer than `max_bytes` still
    /// lands somewhere.
    pub fn due(&self, size: u64, add: u64) -> bool {
        size > 0 && size.saturating_add(add) > self.max_bytes
    }
}

/// `FILE.n`: the naming `paymeshctl events --file` reads back.
pub use paymesh_vocab::files::numbered;

/// Shifts `FILE` to `FILE.1` (and each `FILE.n` up one, dropping the
/// oldest). Missing files are skipped; the caller opens a fresh `FILE`.
/// Only a regular file rotates: a log pointed at `/dev/null`, a pipe or a
/// terminal is left where it is (renaming a device node would replace it
/// with a plain file for every process on the host).
pub fn shift(path: &Path, keep: u32) -> io::Result<()> {
    if !rotatable(path) {
        return Ok(());
    }
    let keep = keep.max(1);
    for n in (1..keep).rev() {
        rename_if_present(&numbered(path, n), &numbered(path, n + 1))?;
    }
    rename_if_present(path, &numbered(path, 1))
}

/// Whether `path` is a regular file (or absent), not a device, pipe or
/// socket. A symbolic link counts as what it points at.
pub fn rotatable(path: &Path) -> bool {
    std::fs::metadata(path).map_or(true, |m| m.is_file())
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The live file and its kept rotations that exist, oldest first
/// (`FILE.keep` … `FILE.1`, `FILE`).
pub fn kept_files(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|n| numbered(path, n)).filter(|p| p.exists()).collect();
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_that_is_not_a_regular_file_never_moves() {
        use std::os::unix::fs::FileTypeExt;

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        shift(&fifo, 3).unwrap();
        assert!(!numbered(&fifo, 1).exists(), "the pipe was renamed");
        assert!(!rotatable(&fifo));
        // A character device like /dev/null (mknod needs root, as the test
        // machines have; elsewhere the pipe above stands for it).
        let null = dir.path().join("null");
        let dev = nix::sys::stat::makedev(1, 3);
        if nix::sys::stat::mknod(&null, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::S_IRWXU, dev).is_ok() {
            shift(&null, 3).unwrap();
            assert!(!numbered(&null, 1).exists(), "the device node was renamed");
            assert!(std::fs::metadata(&null).unwrap().file_type().is_char_device());
        }
        let file = dir.path().join("log");
        std::fs::write(&file, "x").unwrap();
        shift(&file, 3).unwrap();
        assert!(numbered(&file, 1).exists() && !file.exists(), "a regular file rotates");
    }

    #[test]
    fn shifts_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        for i in 0..5 {
            std::fs::write(&path, format!("{i}")).unwrap();
            shift(&path, 3).unwrap();
        }
        assert!(!path.exists());
        let read = |n| std::fs::read_to_string(numbered(&path, n)).unwrap();
        assert_eq!((read(1), read(2), read(3)), ("4".into(), "3".into(), "2".into()));
        assert!(!numbered(&path, 4).exists());
        std::fs::write(&path, "5").unwrap();
        let names: Vec<_> =
            kept_files(&path, 3).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["f.log.3", "f.log.2", "f.log.1", "f.log"]);
    }

    #[test]
    fn due_only_past_the_limit_and_never_when_empty() {
        let r = Rotate { max_bytes: 100, keep: 1 };
        assert!(!r.due(0, 500));
        assert!(!r.due(60, 40));
        assert!(r.due(61, 40));
    }
}
