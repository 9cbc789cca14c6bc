//! One SQLite connection on its own thread.
//!
//! The async runtime never waits on a disk flush: each store operation is a
//! closure sent to the thread that owns the connection, and its answer comes
//! back on a oneshot channel once the closure (and its COMMIT) returned. A
//! caller that goes away does not cancel a closure already queued, so a
//! transaction is never abandoned halfway.
//!
//! A write that fails on the disk (full, I/O error, remounted read-only)
//! closes the connection; the next operation opens it again, so the store
//! serves again once the disk recovers, without a restart. It must never
//! keep using a connection whose last write failed on the file system.

use super::{Result, StoreError};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior, ffi};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a statement waits for the other connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The WAL file is truncated back to this after a checkpoint, so a burst
/// does not leave a large file behind.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// Handle to a connection thread.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
}

/// A connection that is reopened after a failed write.
pub(super) struct Conn {
    path: PathBuf,
    cache_kib: i64,
    conn: Option<Connection>,
}

impl Worker {
    /// Opens `path` (creating it and the schema when `schema` is given) and
    /// starts the thread that owns the connection.
    pub(super) fn start(name: &str, path: &Path, cache_kib: i64, schema: Option<&str>) -> anyhow::Result<Worker> {
        let conn = open(path, cache_kib)?;
        if let Some(schema) = schema {
            conn.execute_batch(schema)?;
        }
        let mut conn = Conn { path: path.to_owned(), cache_kib, conn: Some(conn) };
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            while let Ok(job) = rx.recv() {
                // A panic drops the job's answer channel (its caller sees
                // an error) and rolls its transaction back; the thread and
                // the other callers go on.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn))).is_err() {
                    tracing::error!("a store operation panicked; reopening the connection");
                    conn.conn = None;
                }
            }
        })?;
        Ok(Worker { jobs })
    }

    /// Runs `f` on the connection thread.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| StoreError::Unavailable("store thread stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("store operation did not finish".into()))?
    }
}

impl Conn {
    /// `f` in one `BEGIN IMMEDIATE` transaction, committed when it returns
    /// `Ok`; rolled back otherwise (business refusals included).
    pub(super) fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })
    }

    /// `f` in one read transaction: a consistent snapshot.
    pub(super) fn read<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Deferred)?;
            f(&tx)
        })
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        if self.conn.is_none() {
            let conn = open(&self.path, self.cache_kib).map_err(|e| StoreError::Unavailable(format!("reopen: {e}")))?;
            tracing::info!(path = %self.path.display(), "store connection reopened");
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("opened above");
        let result = f(conn);
        if let Err(StoreError::Disk(e)) = &result {
            if needs_reopen(e) {
                tracing::error!(error = %e, "store write failed on the disk; the connection will be reopened");
                self.conn = None;
            }
        }
        result
    }
}

fn open(path: &Path, cache_kib: i64) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer; FULL: every COMMIT is fsync'd
    // before it returns, so an acknowledged payment survives power loss.
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_CANTOPEN),
            Some(format!("journal_mode is {mode}, not wal")),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Negative: KiB. Bounded, so memory stays flat however large the data.
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Errors of the file system under the database, after which the
/// connection is not trusted again.
fn needs_reopen(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | ReadOnly | CannotOpen | DatabaseCorrupt | NotADatabase)
    )
}
