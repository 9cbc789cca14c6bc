//! Replacing a file whole, so that a reader (or a restart after a crash)
//! finds the old content or the new one, never half of one.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why `write_atomic` failed: the step and the path it failed on, and the
/// operating system's reason.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}: {error}", path.display())]
pub struct WriteError {
    step: &'static str,
    path: PathBuf,
    error: io::Error,
}

impl WriteError {
    fn at(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        move |error| Self { step, path: path.to_path_buf(), error }
    }

    /// The kind of the underlying error (`StorageFull` for ENOSPC, ...).
    pub fn kind(&self) -> io::ErrorKind {
        self.error.kind()
    }

    /// The operating system's error, for a caller that must tell them apart.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }
}

/// For callers that speak `io::Result`: the kind survives, the message
/// keeps the step and the path.
impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// Replaces `path` with `bytes`: writes `.NAME.tmp` beside it, fsyncs it,
/// renames it over `path`, then fsyncs the directory (the rename is only
/// durable once the directory entry is). On any failure the temporary file
/// is removed and `path` keeps its old content; only if the last step,
/// the directory's fsync, fails is the new content already in place (but
/// perhaps not yet safe from a power cut).
///
/// The directory must exist. The temporary name is fixed, so a crash leaves
/// at most one stray file, which the next write reuses; it also means one
/// writer per path at a time.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let name = path.file_name().ok_or_else(|| {
        WriteError::at("naming", path)(io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    replace(path, dir, &tmp, bytes).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn replace(path: &Path, dir: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut file = File::create(tmp).map_err(WriteError::at("creating", tmp))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(WriteError::at("writing", tmp))?;
    drop(file);
    std::fs::rename(tmp, path).map_err(WriteError::at("renaming over", path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(WriteError::at("syncing", dir))
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
