//! The durable store: SQLite in WAL mode with `synchronous=FULL`; each API
//! operation is all-or-nothing and answered only after the COMMIT that made
//! it durable returned (concurrent operations share one COMMIT: `db.rs`).
//!
//! Writes run on one connection thread (SQLite has one writer at a time
//! anyway), reads on [`READERS`] others (WAL lets them read side by side),
//! so reads never queue behind an fsync, a read waits behind another only
//! when every reader is busy, and the async runtime never blocks on the
//! disk (`db.rs`). The schema is in
//! `schema.rs`, the SQL of each write in `ops.rs`, of each read in `reads.rs`.
//!
//! Every money-moving operation is idempotent on its idempotency claim:
//! asked twice, it returns the first result; asked by an attempt that was
//! taken over (a lower attempt number), it is refused. That is what lets a
//! caller that crashed half-way through a payment retry the whole sequence
//! safely, and what keeps a slow old attempt and its retry from both moving
//! money.

mod db;
mod ops;
mod reads;
mod schema;

use crate::model::*;
use db::Worker;
use ops::{Clock, Input};
pub use reads::Pending;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long an idempotency key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Read connections, each on its own thread. A read goes to the one with
/// the fewest reads queued, so one slow read (or a burst of shadow reads
/// from the sidecars) does not hold up every other.
pub const READERS: usize = 2;
/// Idempotency records deleted per expiry transaction: short transactions,
/// so payments never wait long behind the sweep.
const EXPIRE_BATCH: u32 = 1000;

/// Tunables of [`Store::open_with`].
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// SQLite page cache: half for the writer, half shared by the readers.
    pub cache_mib: u32,
    /// How long a pending claim holds its key without a step renewing it.
    pub lease: Duration,
    /// How long an idempotency key is remembered.
    pub retention: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config { cache_mib: 16, lease: Duration::from_secs(5), retention: RETENTION }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    writer: Worker,
    readers: Arc<[Reading]>,
    config: Config,
}

/// A read connection and how many reads are queued on it or running.
#[derive(Debug)]
struct Reading {
    worker: Worker,
    queued: AtomicUsize,
}

/// Who reads: the owning client, or an operator looking any resource up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    Client(String),
    Operator,
}

/// The attempt a step runs under: checked against the idempotency record
/// in the step's own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub client: String,
    pub key: String,
    pub fingerprint: String,
    pub attempt: u64,
}

/// What `begin` found for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// This caller owns the key now, as `attempt` of `execution`.
    Started {
        execution: String,
        attempt: u64,
    },
    InProgress {
        execution: String,
    },
    Completed {
        execution: String,
        outcome: Outcome,
    },
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0:?}")]
    Refused(Failure),
    #[error("not found")]
    NotFound,
    /// The request does not match what the key was first used for.
    #[error("fingerprint mismatch")]
    Mismatch,
    /// The step's attempt is not the key's current one (taken over, done).
    #[error("attempt superseded")]
    Superseded,
    #[error("database: {0}")]
    Disk(#[from] rusqlite::Error),
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Counts a read down when it ends.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        StoreError::Refused(f)
    }
}

impl Store {
    #[cfg(test)]
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        Self::open_with(dir, Config::default())
    }

    /// Opens (or creates) the database in `dir`. Nothing is replayed: start
    /// time does not grow with history.
    pub fn open_with(dir: &Path, config: Config) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)?;
        if dir.join("wal.log").exists() {
            tracing::warn!(dir = %dir.display(), "ignoring wal.log of the old store: the reference store starts empty");
        }
        let path = dir.join("paymesh.db");
        let half_kib = i64::from(config.cache_mib.max(2)) * 1024 / 2;
        let writer = Worker::start("store-writer", &path, half_kib, Some(schema::SCHEMA))?;
        let reader_kib = (half_kib / READERS as i64).max(512);
        let readers = (0..READERS)
            .map(|i| {
                let worker = Worker::start(&format!("store-reader-{i}"), &path, reader_kib, None)?;
                Ok(Reading { worker, queued: AtomicUsize::new(0) })
            })
            .collect::<anyhow::Result<Arc<[Reading]>>>()?;
        Ok(Store { writer, readers, config })
    }

    fn clock(&self) -> Clock {
        Clock {
            now: now_ms(),
            lease_ms: self.config.lease.as_millis() as u64,
            retention_ms: self.config.retention.as_millis() as u64,
        }
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &Clock) -> Result<T> + Send + 'static,
    {
        let clock = self.clock();
        self.writer.write(move |tx| f(tx, &clock)).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let reading = self.readers.iter().min_by_key(|r| r.queued.load(Relaxed)).expect("READERS > 0");
        reading.queued.fetch_add(1, Relaxed);
        // Counted down however the read ends, its caller gone included.
        let _queued = Queued(&reading.queued);
        reading.worker.run(move |c| c.read(f)).await
    }

    /// Claims (client, key) for a component caller.
    pub async fn begin(&self, client: &str, key: &str, fingerprint: &str, operation: Operation) -> Result<Begin> {
        let (client, key, fingerprint) = (client.to_owned(), key.to_owned(), fingerprint.to_owned());
        self.write(move |tx, clock| ops::begin(tx, clock, &client, &key, &fingerprint, operation, None)).await
    }

    /// Claims (client, key) for a workflow execution, keeping its input in
    /// the same transaction so the execution can be resumed after a crash.
    pub async fn begin_execution(
        &self,
        client: &str,
        key: &str,
        fingerprint: &str,
        operation: Operation,
        workflow: &str,
        input: &str,
    ) -> Result<Begin> {
        let owned = [client, key, fingerprint, workflow, input].map(str::to_owned);
        self.write(move |tx, clock| {
            let [client, key, fingerprint, workflow, input] = &owned;
            ops::begin(tx, clock, client, key, fingerprint, operation, Some(Input { workflow, input }))
        })
        .await
    }

    /// Records the outcome of the claim's attempt.
    pub async fn complete(&self, claim: &Claim, outcome: Outcome) -> Result<()> {
        let claim = claim.clone();
        self.write(move |tx, clock| ops::complete(tx, clock, &claim, &outcome)).await
    }

    /// Completes the claim with the current state of the resource `id`.
    pub async fn complete_with(&self, claim: &Claim, id: &str) -> Result<Outcome> {
        let (claim, id) = (claim.clone(), id.to_owned());
        self.write(move |tx, clock| ops::complete_with(tx, clock, &claim, &id)).await
    }

    /// Frees the key of a failed attempt so that a retry can run.
    pub async fn release(&self, claim: &Claim) -> Result<()> {
        let claim = claim.clone();
        self.write(move |tx, clock| ops::release(tx, clock, &claim)).await
    }

    /// The risk component: a pure rule, so it needs no record.
    pub fn assess_risk(&self, amount: u64, source: &str) -> bool {
        !(source.starts_with("tok_risky") || amount > 50_000_000)
    }

    pub async fn authorize(&self, claim: &Claim, amount: u64, currency: &str, source: &str) -> Result<Authorization> {
        let (claim, currency, source) = (claim.clone(), currency.to_owned(), source.to_owned());
        self.write(move |tx, clock| ops::authorize(tx, clock, &claim, amount, &currency, &source)).await
    }

    pub async fn capture(&self, claim: &Claim, authorization: &str) -> Result<()> {
        let (claim, authorization) = (claim.clone(), authorization.to_owned());
        self.write(move |tx, clock| ops::capture(tx, clock, &claim, &authorization)).await
    }

    /// The ledger entry for a captured authorization.
    pub async fn record_charge(
        &self,
        claim: &Claim,
        authorization: &str,
        description: Option<String>,
    ) -> Result<Charge> {
        let (claim, authorization) = (claim.clone(), authorization.to_owned());
        self.write(move |tx, clock| ops::record_charge(tx, clock, &claim, &authorization, description.as_deref())).await
    }

    /// Refunds `amount` (or the rest) of one of the claim's client's charges.
    pub async fn refund(&self, claim: &Claim, charge: &str, amount: Option<u64>) -> Result<Refund> {
        let (claim, charge) = (claim.clone(), charge.to_owned());
        self.write(move |tx, clock| ops::refund_charge(tx, clock, &claim, &charge, amount)).await
    }

    pub async fn transfer(&self, claim: &Claim, amount: u64, currency: &str, destination: &str) -> Result<Transfer> {
        let (claim, currency, destination) = (claim.clone(), currency.to_owned(), destination.to_owned());
        self.write(move |tx, clock| ops::transfer(tx, clock, &claim, amount, &currency, &destination)).await
    }

    /// The ledger entry for a sent transfer.
    pub async fn record_payout(&self, claim: &Claim, transfer: &str) -> Result<Payout> {
        let (claim, transfer) = (claim.clone(), transfer.to_owned());
        self.write(move |tx, clock| ops::record_payout(tx, clock, &claim, &transfer)).await
    }

    pub async fn charge(&self, id: &str, reader: &Reader) -> Result<Option<Charge>> {
        let (id, reader) = (id.to_owned(), reader.clone());
        self.read(move |tx| reads::charge(tx, &id, &reader)).await
    }

    pub async fn refund_by_id(&self, id: &str, reader: &Reader) -> Result<Option<Refund>> {
        let (id, reader) = (id.to_owned(), reader.clone());
        self.read(move |tx| reads::refund(tx, &id, &reader)).await
    }

    pub async fn payout(&self, id: &str, reader: &Reader) -> Result<Option<Payout>> {
        let (id, reader) = (id.to_owned(), reader.clone());
        self.read(move |tx| reads::payout(tx, &id, &reader)).await
    }

    /// An execution's operation and current outcome.
    pub async fn execution(&self, id: &str, reader: &Reader) -> Result<Option<(Operation, Outcome)>> {
        let (id, reader) = (id.to_owned(), reader.clone());
        self.read(move |tx| reads::execution(tx, &id, &reader)).await
    }

    /// Workflow executions still pending (at start: those that were
    /// running when the service stopped).
    pub async fn pending_executions(&self) -> Result<Vec<Pending>> {
        self.read(reads::pending_executions).await
    }

    /// Takes a pending key over for a new runner; its attempt, or `None`
    /// when the key is no longer pending.
    pub async fn take_over(&self, client: &str, key: &str) -> Result<Option<u64>> {
        let (client, key) = (client.to_owned(), key.to_owned());
        self.write(move |tx, clock| ops::take_over(tx, clock, &client, &key)).await
    }

    /// Forgets idempotency keys past retention, in short transactions;
    /// payments stay. Run periodically.
    pub async fn expire(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.write(|tx, clock| ops::expire(tx, clock, EXPIRE_BATCH)).await?;
            total += n;
            if n < EXPIRE_BATCH as usize {
                return Ok(total);
            }
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `prefix_` followed by 24 random base62 characters (~142 bits).
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 24];
    // The OS generator failing is not something a payment can route around.
    getrandom::fill(&mut bytes).expect("operating system random source");
    let mut id = String::with_capacity(prefix.len() + 25);
    id.push_str(prefix);
    id.push('_');
    id.extend(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char));
    id
}

#[cfg(test)]
mod tests;
