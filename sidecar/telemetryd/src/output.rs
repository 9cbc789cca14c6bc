//! The telemetry file on disk, replaced whole so a reader never sees half of
//! one: write a temporary file beside it, fsync, rename over it, fsync the
//! directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use paymesh_telemetryd::TelemetrySnapshot;

#[derive(Debug)]
pub struct TelemetryFile {
    path: PathBuf,
    dir: PathBuf,
    /// One fixed name, so a crash between write and rename leaves at most
    /// one stray file, which the next write reuses.
    tmp: PathBuf,
}

impl TelemetryFile {
    pub fn new(path: &Path, dir: &Path) -> anyhow::Result<Self> {
        let name = path.file_name().with_context(|| format!("--out {} does not name a file", path.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        Ok(Self { path: path.to_path_buf(), dir: dir.to_path_buf(), tmp: dir.join(tmp_name) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory again if it has vanished (a cleared tmpfs, a
    /// remounted volume). Returns whether it had to.
    pub fn ensure_dir(&self) -> io::Result<bool> {
        if self.dir.is_dir() {
            return Ok(false);
        }
        fs::create_dir_all(&self.dir)?;
        Ok(true)
    }

    pub fn write(&self, snapshot: &TelemetrySnapshot) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(snapshot)?;
        bytes.push(b'\n');
        self.replace(&bytes).inspect_err(|_| {
            let _ = fs::remove_file(&self.tmp);
        })
    }

    fn replace(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut tmp = File::create(&self.tmp).with_context(|| format!("creating {}", self.tmp.display()))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.sync_all())
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        drop(tmp);
        fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming {} to {}", self.tmp.display(), self.path.display()))?;
        // The rename is only durable once the directory entry is.
        File::open(&self.dir).and_then(|dir| dir.sync_all()).with_context(|| format!("syncing {}", self.dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> TelemetrySnapshot {
        TelemetrySnapshot {
            sampled_at_ms: 1,
            interval_ms: 1000,
            cpus: 1,
            cpu_percent: 1.0,
            load1: 0.0,
            load5: 0.0,
            load15: 0.0,
            mem_used_percent: 1.0,
            disk_free_percent: 1.0,
            cgroup: None,
        }
    }

    #[test]
    fn writes_a_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telemetry.json");
        let file = TelemetryFile::new(&path, dir.path()).unwrap();
        file.write(&snapshot()).unwrap();

        let written = fs::read(&path).unwrap();
        assert_eq!(TelemetrySnapshot::parse(&written).unwrap(), snapshot());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["telemetry.json"]);
    }

    #[test]
    fn recreates_a_vanished_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run/paymesh");
        let file = TelemetryFile::new(&dir.join("telemetry.json"), &dir).unwrap();
        assert!(file.ensure_dir().unwrap());
        assert!(!file.ensure_dir().unwrap());
        file.write(&snapshot()).unwrap();
    }

    #[test]
    fn out_must_name_a_file() {
        assert!(TelemetryFile::new(Path::new("/"), Path::new("/")).is_err());
    }
}
