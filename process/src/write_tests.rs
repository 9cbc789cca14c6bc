use super::*;
use std::fs;
use std::process::Command;

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `dir` holds `cache.json` with `contents`, and nothing else: no
/// temporary left behind.
fn assert_only_the_cache(dir: &Path, contents: &[u8]) {
    assert_eq!(fs::read(dir.join("cache.json")).unwrap(), contents);
    assert_eq!(names(dir), ["cache.json"]);
}

#[test]
fn replaces_the_file_whole_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    write_atomic(&path, b"first").unwrap();
    write_atomic(&path, b"second").unwrap();
    assert_only_the_cache(dir.path(), b"second");
}

#[test]
fn a_temporary_left_by_a_crash_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".cache.json.tmp"), b"half a write from before a crash, longer than the new one")
        .unwrap();
    write_atomic(&dir.path().join("cache.json"), b"new").unwrap();
    assert_only_the_cache(dir.path(), b"new");
}

#[test]
fn a_missing_directory_is_an_error_that_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone/cache.json");
    let err = write_atomic(&path, b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let message = err.to_string();
    assert!(message.starts_with("creating ") && message.contains("gone/.cache.json.tmp"), "{message}");
}

#[test]
fn a_failed_rename_keeps_the_old_entry_and_removes_the_temporary() {
    let dir = tempfile::tempdir().unwrap();
    // A non-empty directory where the file should be: the rename fails.
    let path = dir.path().join("cache.json");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("inside"), b"kept").unwrap();
    let err = write_atomic(&path, b"x").unwrap_err();
    assert!(err.to_string().starts_with("renaming over "), "{err}");
    assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");
    assert_eq!(names(dir.path()), ["cache.json"]);
}

#[test]
fn a_path_without_a_file_name_is_refused() {
    let err = write_atomic(Path::new("/"), b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("not a file name"), "{err}");
}

#[test]
fn as_an_io_error_it_keeps_its_kind_and_message() {
    let err = write_atomic(Path::new("/nonexistent-paymesh-dir/x"), b"x").unwrap_err();
    let message = err.to_string();
    let io: io::Error = err.into();
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
    assert_eq!(io.to_string(), message);
}

/// A tmpfs of its own, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "paymesh-test"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the filesystem of `dir` with one file until the kernel says
/// ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = File::create(&filler).unwrap();
    let chunk = vec![0xa5_u8; 64 * 1024];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", filler.display()),
        }
    }
    filler
}

#[test]
fn on_a_full_tmpfs_the_old_content_survives_enospc() {
    let tmpfs = match Tmpfs::mount("256k") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            // Needs root (CAP_SYS_ADMIN); the other tests cover the rest.
            eprintln!("skipping the full-disk test: {why}");
            return;
        }
    };
    let path = tmpfs.dir.path().join("telemetry.json");
    write_atomic(&path, b"old content").unwrap();
    let filler = fill(tmpfs.dir.path());

    let new = vec![b'n'; 16 * 1024];
    let err = write_atomic(&path, &new).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
    assert_eq!(err.io_error().raw_os_error(), Some(28), "ENOSPC: {err}");
    assert!(err.to_string().starts_with("writing ") && err.to_string().contains(".telemetry.json.tmp"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"old content");
    assert_eq!(names(tmpfs.dir.path()), ["filler", "telemetry.json"], "the temporary must be gone");

    // Room again: the next write goes through.
    fs::remove_file(filler).unwrap();
    write_atomic(&path, &new).unwrap();
    assert_eq!(fs::read(&path).unwrap(), new);
}
