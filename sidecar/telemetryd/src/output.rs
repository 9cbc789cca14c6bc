//! The telemetry file on disk, replaced whole so a reader never sees half of
//! one (`paymesh_process::write_atomic`: a temporary file beside it, fsync,
//! rename over it, fsync the directory).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use paymesh_telemetryd::TelemetrySnapshot;

#[derive(Debug)]
pub struct TelemetryFile {
    path: PathBuf,
    dir: PathBuf,
}

impl TelemetryFile {
    pub fn new(path: &Path, dir: &Path) -> anyhow::Result<Self> {
        path.file_name().with_context(|| format!("--out {} does not name a file", path.display()))?;
        Ok(Self { path: path.to_path_buf(), dir: dir.to_path_buf() })
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

    /// Replaces the file whole; on failure (a full disk) the last sample
    /// stays, and the temporary file is gone.
    pub fn write(&self, snapshot: &TelemetrySnapshot) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(snapshot)?;
        bytes.push(b'\n');
        Ok(paymesh_process::write_atomic(&self.path, &bytes)?)
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
