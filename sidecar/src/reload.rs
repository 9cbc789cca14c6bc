//! Hot configuration reload: SIGHUP, a changed file, or `POST /admin/reload`.
//!
//! The file is polled once a second by identity (device, inode, mtime,
//! size) of what its path resolves to, which also catches a Kubernetes
//! ConfigMap's `..data` symlink swap that inotify on the file would miss.
//! The TLS files and the admin token file the config names are watched the
//! same way, so a rotated certificate or token is picked up. A valid new file becomes the new `Snapshot` in
//! one atomic swap; an invalid one is logged, counted, and changes nothing.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::config::{self, Config, ConfigErrors};
use crate::state::{Shared, Snapshot};

pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

type Identity = (u64, u64, i64, i64, u64);

/// What the path points at right now; `None` if it cannot be read.
fn file_identity(path: &Path) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
}

/// The config file and the TLS and admin token files it names: a change to
/// any of them (a rotated certificate or token as much as an edited config)
/// is a reason to reload.
fn watched(path: &Path, shared: &Shared) -> Vec<Option<Identity>> {
    let snap = shared.live.load();
    let mut files = vec![file_identity(path)];
    if let Some(tls) = &snap.config.tls {
        files.extend([&tls.cert, &tls.key].map(|p| file_identity(p)));
        files.extend(tls.client_ca.as_deref().map(file_identity));
    }
    files.extend(snap.config.admin_token.as_ref().map(|t| file_identity(&t.file)));
    files
}

pub async fn watch(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let Some(path) = shared.config_path.clone() else {
        return;
    };
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload on file change only");
            None
        }
    };
    let mut last = watched(&path, &shared);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        let cause = tokio::select! {
            _ = crate::server::stopped(&mut shutdown) => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
            _ = shared.reload.notified() => "admin request",
            _ = tick.tick() => {
                let now = watched(&path, &shared);
                // A missing config file is a swap in progress, not a change.
                if now == last || now[0].is_none() {
                    continue;
                }
                "file change"
            }
        };
        let (s, p) = (shared.clone(), path.clone());
        let _ = tokio::task::spawn_blocking(move || reload(&s, &p, cause)).await;
        // Whatever the cause, the files as they are now are the ones seen.
        last = watched(&path, &shared);
    }
}

/// Loads `path` (and the TLS files it names) and swaps it in if valid.
/// Blocking (file reads): call off the async workers.
pub fn reload(shared: &Shared, path: &Path, cause: &str) -> Result<u64, ConfigErrors> {
    let result = config::load_with_digest(path).and_then(|loaded| {
        let current = shared.live.load_full();
        warn_restart_only(&current.config, &loaded.config);
        let defaults = loaded.config.migration.defaults_bp;
        let next = Snapshot::build(loaded, current.version + 1, &shared.metrics, Some(&current))?;
        let version = next.version;
        shared.live.store(Arc::new(next));
        shared.migration.apply_defaults(defaults);
        Ok(version)
    });
    match &result {
        Ok(version) => {
            shared.metrics.config_reloads.inc();
            tracing::info!(cause, version, path = %path.display(), "configuration reloaded");
        }
        Err(e) => {
            shared.metrics.config_reload_errors.inc();
            tracing::error!(
                cause,
                path = %path.display(),
                errors = %e.to_string().replace('\n', "; "),
                "configuration reload refused; the previous configuration stays in force"
            );
        }
    }
    result
}

/// Some keys are bound to sockets or threads made at start.
fn warn_restart_only(old: &Config, new: &Config) {
    let changed = [
        ("listen", old.listen != new.listen),
        ("admin", old.admin != new.admin),
        ("workers", old.workers != new.workers),
        ("access_log", old.access_log != new.access_log),
    ];
    for (key, _) in changed.iter().filter(|(_, c)| *c) {
        tracing::warn!(key, "this key changed but takes effect only after a restart");
    }
}
