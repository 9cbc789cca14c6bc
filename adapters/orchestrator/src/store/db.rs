//! One SQLite connection on its own thread.
//!
//! The async runtime never waits on a disk flush: each store operation is a
//! closure sent to the thread that owns the connection, and its answer comes
//! back on a oneshot channel once the closure (and its COMMIT) returned. A
//! caller that goes away does not cancel a closure already queued, so a
//! transaction is never abandoned halfway.
//!
//! Writes are group-committed. The writer thread takes every write that is
//! queued (up to [`MAX_BATCH`]), runs each under its own SAVEPOINT inside one
//! `BEGIN IMMEDIATE` transaction, and COMMITs once: one fsync serves the
//! batch. Each operation is still all-or-nothing (a refusal or error rolls
//! back to its savepoint, leaving the others' work), and every answer,
//! refusals included, is sent only after the COMMIT returned, since a
//! refusal may rest on a batch-mate's write. If the COMMIT fails, nothing of
//! the batch is durable and every operation in it answers unavailable.
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
/// Most writes sharing one COMMIT: bounds how long the first of a batch
/// waits for the others and how much one failed COMMIT refuses.
pub(super) const MAX_BATCH: usize = 64;

enum Job {
    /// Runs alone, on the connection (reads).
    Alone(Box<dyn FnOnce(&mut Conn) + Send>),
    /// Runs under a savepoint of a shared write transaction.
    Write(Write),
}

/// A write operation: runs inside the batch's transaction and says whether
/// its work stays, and how to answer once the COMMIT's fate is known.
type Write = Box<dyn FnOnce(&Transaction<'_>) -> Done + Send>;

struct Done {
    /// Its effects stay (released savepoint) or are undone (rolled back to it).
    keep: bool,
    /// It failed on the disk: the transaction and the connection are not
    /// trusted any further.
    fatal: bool,
    answer: Box<dyn FnOnce(std::result::Result<(), String>) + Send>,
}

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
            let mut next = None;
            while let Some(job) = next.take().or_else(|| rx.recv().ok()) {
                match job {
                    Job::Alone(job) => {
                        // A panic drops the job's answer channel (its caller
                        // sees an error) and rolls its transaction back; the
                        // thread and the other callers go on.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut conn))).is_err() {
                            tracing::error!("a store operation panicked; reopening the connection");
                            conn.conn = None;
                        }
                    }
                    Job::Write(first) => {
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(Job::Write(w)) => batch.push(w),
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        conn.commit_batch(batch);
                    }
                }
            }
        })?;
        Ok(Worker { jobs })
    }

    /// Runs `f` as one all-or-nothing write, group-committed with whatever
    /// other writes are queued; answers once the COMMIT returned.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Write = Box::new(move |t| {
            let result = f(t);
            Done {
                keep: result.is_ok(),
                fatal: matches!(&result, Err(StoreError::Disk(e)) if needs_reopen(e)),
                answer: Box::new(move |commit| {
                    let _ = tx.send(commit.map_err(StoreError::Unavailable).and(result));
                }),
            }
        });
        self.send(Job::Write(job), rx).await
    }

    /// Runs `f` on the connection thread.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::Alone(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        }));
        self.send(job, rx).await
    }

    async fn send<T>(&self, job: Job, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.jobs.send(job).map_err(|_| StoreError::Unavailable("store thread stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("store operation did not finish".into()))?
    }
}

impl Conn {
    /// Runs `batch` in one transaction, each write under its own savepoint,
    /// commits once, then answers every write with the COMMIT's outcome.
    fn commit_batch(&mut self, batch: Vec<Write>) {
        let mut done = Vec::with_capacity(batch.len());
        let outcome = self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for write in batch {
                tx.execute_batch("SAVEPOINT op")?;
                let d = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&tx)))
                    .map_err(|_| StoreError::Unavailable("a store operation panicked".into()))?;
                let (keep, fatal) = (d.keep, d.fatal);
                done.push(d);
                if fatal {
                    // Dropping `tx` rolls the whole batch back.
                    return Err(StoreError::Unavailable("a write failed on the disk".into()));
                }
                tx.execute_batch(if keep { "RELEASE op" } else { "ROLLBACK TO op; RELEASE op" })?;
            }
            tx.commit()?;
            Ok(())
        });
        if let Err(e) = &outcome {
            if !matches!(e, StoreError::Disk(_)) {
                // A failed write or a panic leaves the connection untrusted.
                tracing::error!(error = %e, "store batch failed; the connection will be reopened");
                self.conn = None;
            }
        }
        let outcome = outcome.map_err(|e| e.to_string());
        for d in done {
            (d.answer)(outcome.clone());
        }
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
