//! The durable store: in-memory state, every change logged and fsync'd
//! before it is acknowledged.
//!
//! Operations take the state lock, check and change the state, and queue
//! their log record while still holding it, so the log's order is the order
//! the changes were made in; they release the lock and then wait for the
//! fsync. Nothing is answered before its record is durable.
//!
//! Every money-moving operation is idempotent on (client, key): asked twice,
//! it returns the first result. That is what lets a caller that crashed
//! half-way through a payment retry the whole sequence safely.

use crate::model::*;
use crate::wal::Wal;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long an idempotency key is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long a pending attempt holds its key before a retry may take over.
pub const PENDING_LEASE: Duration = Duration::from_secs(60);

type Key = (String, String);

#[derive(Debug, Default)]
struct State {
    authorizations: HashMap<String, Authorization>,
    charges: HashMap<String, Charge>,
    refunds: HashMap<String, Refund>,
    transfers: HashMap<String, Transfer>,
    payouts: HashMap<String, Payout>,
    idempotency: HashMap<Key, Idempotency>,
    executions: HashMap<String, Key>,
    /// (client, key) → id, per kind: what makes each step idempotent.
    by_key: HashMap<(Kind, Key), String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Authorization,
    Charge,
    Refund,
    Transfer,
    Payout,
}

#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    wal: Wal,
}

/// What `begin` found for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// This caller owns the key now; `execution` names the attempt.
    Started {
        execution: String,
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
    #[error("write-ahead log: {0}")]
    Log(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        StoreError::Refused(f)
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, replays its log and compacts it.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("wal.log");
        let (wal, lines) = Wal::open(&path)?;
        let mut state = State::default();
        for (n, line) in lines.iter().enumerate() {
            let records: Vec<Record> = serde_json::from_slice(line)
                .map_err(|e| anyhow::anyhow!("{}: record {n} is not valid: {e}", path.display()))?;
            for r in records {
                state.apply(r);
            }
        }
        // A pending attempt did not survive the restart; its steps are
        // idempotent, so dropping the claim lets a retry finish it.
        let now = now_ms();
        state.idempotency.retain(|_, i| {
            i.outcome != Outcome::Pending && now.saturating_sub(i.created_ms) < RETENTION.as_millis() as u64
        });
        state.executions.retain(|_, k| state.idempotency.contains_key(k));
        drop(wal);
        Wal::rewrite(&path, state.snapshot()?)?;
        let (wal, _) = Wal::open(&path)?;
        tracing::info!(
            charges = state.charges.len(),
            refunds = state.refunds.len(),
            payouts = state.payouts.len(),
            keys = state.idempotency.len(),
            "store opened"
        );
        Ok(Store { state: Mutex::new(state), wal })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change:
        // changes are applied only after every check passed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `records`, queues them for the log and releases the lock;
    /// the returned future resolves once they are durable.
    ///
    /// Callers keep the guard in a block that ends before they await, so
    /// no lock is ever held across a disk flush.
    fn commit(&self, state: &mut State, records: Vec<Record>) -> impl Future<Output = Result<()>> + Send + 'static {
        let queued = serde_json::to_vec(&records).map(|line| {
            for r in records {
                state.apply(r);
            }
            self.wal.enqueue(line)
        });
        async move {
            let durable = queued.map_err(|e| StoreError::Log(e.to_string()))?;
            durable.await.map_err(|_| StoreError::Log("writer stopped".into()))?.map_err(StoreError::Log)
        }
    }

    pub async fn begin(&self, client: &str, key: &str, fingerprint: &str, operation: Operation) -> Result<Begin> {
        let now = now_ms();
        let (durable, execution) = {
            let mut state = self.lock();
            let k = (client.to_owned(), key.to_owned());
            let mut entry = match state.idempotency.get(&k) {
                Some(i) if now.saturating_sub(i.created_ms) < RETENTION.as_millis() as u64 => {
                    if i.fingerprint != fingerprint || i.operation != operation {
                        return Ok(Begin::Mismatch);
                    }
                    match &i.outcome {
                        Outcome::Pending if now.saturating_sub(i.attempt_ms) < PENDING_LEASE.as_millis() as u64 => {
                            return Ok(Begin::InProgress { execution: i.execution.clone() });
                        }
                        Outcome::Pending => i.clone(),
                        outcome => {
                            return Ok(Begin::Completed { execution: i.execution.clone(), outcome: outcome.clone() });
                        }
                    }
                }
                _ => Idempotency {
                    client: client.to_owned(),
                    key: key.to_owned(),
                    fingerprint: fingerprint.to_owned(),
                    operation,
                    execution: new_id("wfx"),
                    created_ms: now,
                    attempt_ms: now,
                    outcome: Outcome::Pending,
                },
            };
            entry.attempt_ms = now;
            let execution = entry.execution.clone();
            (self.commit(&mut state, vec![Record::Idempotency(entry)]), execution)
        };
        durable.await?;
        Ok(Begin::Started { execution })
    }

    /// Records the outcome of a started key.
    pub async fn complete(&self, client: &str, key: &str, outcome: Outcome) -> Result<()> {
        let durable = {
            let mut state = self.lock();
            let Some(mut entry) = state.idempotency.get(&(client.to_owned(), key.to_owned())).cloned() else {
                return Err(StoreError::NotFound);
            };
            entry.outcome = outcome;
            self.commit(&mut state, vec![Record::Idempotency(entry)])
        };
        durable.await
    }

    /// Completes a key with the current state of the resource `id`.
    pub async fn complete_with(&self, client: &str, key: &str, id: &str) -> Result<Outcome> {
        let outcome = {
            let state = self.lock();
            if let Some(c) = state.charges.get(id) {
                Outcome::Charge(c.clone())
            } else if let Some(r) = state.refunds.get(id) {
                Outcome::Refund(r.clone())
            } else if let Some(p) = state.payouts.get(id) {
                Outcome::Payout(p.clone())
            } else {
                return Err(StoreError::NotFound);
            }
        };
        self.complete(client, key, outcome.clone()).await?;
        Ok(outcome)
    }

    /// Frees a pending key so that a retry can run (a failed attempt).
    pub async fn release(&self, client: &str, key: &str) -> Result<()> {
        let durable = {
            let mut state = self.lock();
            match state.idempotency.get(&(client.to_owned(), key.to_owned())) {
                Some(i) if i.outcome == Outcome::Pending => {}
                _ => return Ok(()),
            }
            let record = Record::IdempotencyRemoved { client: client.to_owned(), key: key.to_owned() };
            self.commit(&mut state, vec![record])
        };
        durable.await
    }

    pub fn execution(&self, id: &str) -> Option<Idempotency> {
        let state = self.lock();
        state.executions.get(id).and_then(|k| state.idempotency.get(k)).cloned()
    }

    /// The risk component: a pure rule, so it needs no record.
    pub fn assess_risk(&self, amount: u64, source: &str) -> bool {
        !(source.starts_with("tok_risky") || amount > 50_000_000)
    }

    pub async fn authorize(
        &self,
        client: &str,
        key: &str,
        amount: u64,
        currency: &str,
        source: &str,
    ) -> Result<Authorization> {
        let (durable, auth) = {
            let mut state = self.lock();
            if let Some(a) = state.find(Kind::Authorization, client, key).and_then(|id| state.authorizations.get(id)) {
                return Ok(a.clone());
            }
            let status = if source.starts_with("tok_decline") { AuthStatus::Declined } else { AuthStatus::Authorized };
            let auth = Authorization {
                id: new_id("auth"),
                client: client.to_owned(),
                key: key.to_owned(),
                amount,
                currency: currency.to_owned(),
                source: source.to_owned(),
                status,
                created_ms: now_ms(),
            };
            (self.commit(&mut state, vec![Record::Authorization(auth.clone())]), auth)
        };
        durable.await?;
        Ok(auth)
    }

    pub async fn capture(&self, authorization: &str) -> Result<()> {
        let durable = {
            let mut state = self.lock();
            let mut auth = state.authorizations.get(authorization).cloned().ok_or(StoreError::NotFound)?;
            match auth.status {
                AuthStatus::Captured => return Ok(()),
                AuthStatus::Declined => return Err(Failure::CardDeclined.into()),
                AuthStatus::Authorized => auth.status = AuthStatus::Captured,
            }
            self.commit(&mut state, vec![Record::Authorization(auth)])
        };
        durable.await
    }

    /// The ledger entry for a captured authorization.
    pub async fn record_charge(
        &self,
        client: &str,
        key: &str,
        authorization: &str,
        description: Option<String>,
    ) -> Result<Charge> {
        let (durable, charge) = {
            let mut state = self.lock();
            if let Some(c) = state.find(Kind::Charge, client, key).and_then(|id| state.charges.get(id)) {
                return Ok(c.clone());
            }
            let auth = state.authorizations.get(authorization).ok_or(StoreError::NotFound)?;
            if auth.status != AuthStatus::Captured {
                return Err(Failure::CardDeclined.into());
            }
            let charge = Charge {
                id: new_id("ch"),
                client: client.to_owned(),
                key: key.to_owned(),
                authorization: auth.id.clone(),
                amount: auth.amount,
                currency: auth.currency.clone(),
                source: auth.source.clone(),
                description,
                amount_refunded: 0,
                created_ms: now_ms(),
            };
            (self.commit(&mut state, vec![Record::Charge(charge.clone())]), charge)
        };
        durable.await?;
        Ok(charge)
    }

    /// Refunds `amount` (or the rest) of a charge: the check and the change
    /// happen under one lock, so concurrent refunds can never exceed it.
    pub async fn refund(&self, client: &str, key: &str, charge: &str, amount: Option<u64>) -> Result<Refund> {
        let (durable, refund) = {
            let mut state = self.lock();
            if let Some(r) = state.find(Kind::Refund, client, key).and_then(|id| state.refunds.get(id)) {
                return Ok(r.clone());
            }
            let mut c = state.charges.get(charge).cloned().ok_or(Failure::ChargeNotFound)?;
            let left = c.amount - c.amount_refunded;
            if left == 0 {
                return Err(Failure::ChargeAlreadyRefunded.into());
            }
            let amount = amount.unwrap_or(left);
            if amount > left {
                return Err(Failure::AmountExceedsRefundable.into());
            }
            c.amount_refunded += amount;
            let refund = Refund {
                id: new_id("re"),
                client: client.to_owned(),
                key: key.to_owned(),
                charge: c.id.clone(),
                amount,
                currency: c.currency.clone(),
                created_ms: now_ms(),
            };
            (self.commit(&mut state, vec![Record::Charge(c), Record::Refund(refund.clone())]), refund)
        };
        durable.await?;
        Ok(refund)
    }

    pub async fn transfer(
        &self,
        client: &str,
        key: &str,
        amount: u64,
        currency: &str,
        destination: &str,
    ) -> Result<Transfer> {
        let (durable, transfer) = {
            let mut state = self.lock();
            if let Some(t) = state.find(Kind::Transfer, client, key).and_then(|id| state.transfers.get(id)) {
                return Ok(t.clone());
            }
            let transfer = Transfer {
                id: new_id("tr"),
                client: client.to_owned(),
                key: key.to_owned(),
                amount,
                currency: currency.to_owned(),
                destination: destination.to_owned(),
                created_ms: now_ms(),
            };
            (self.commit(&mut state, vec![Record::Transfer(transfer.clone())]), transfer)
        };
        durable.await?;
        Ok(transfer)
    }

    /// The ledger entry for a sent transfer.
    pub async fn record_payout(&self, client: &str, key: &str, transfer: &str) -> Result<Payout> {
        let (durable, payout) = {
            let mut state = self.lock();
            if let Some(p) = state.find(Kind::Payout, client, key).and_then(|id| state.payouts.get(id)) {
                return Ok(p.clone());
            }
            let t = state.transfers.get(transfer).ok_or(StoreError::NotFound)?;
            let payout = Payout {
                id: new_id("po"),
                client: client.to_owned(),
                key: key.to_owned(),
                transfer: t.id.clone(),
                amount: t.amount,
                currency: t.currency.clone(),
                destination: t.destination.clone(),
                created_ms: now_ms(),
            };
            (self.commit(&mut state, vec![Record::Payout(payout.clone())]), payout)
        };
        durable.await?;
        Ok(payout)
    }

    pub fn charge(&self, id: &str) -> Option<Charge> {
        self.lock().charges.get(id).cloned()
    }

    pub fn refund_by_id(&self, id: &str) -> Option<Refund> {
        self.lock().refunds.get(id).cloned()
    }

    pub fn payout(&self, id: &str) -> Option<Payout> {
        self.lock().payouts.get(id).cloned()
    }

    /// Forgets idempotency keys past retention; run periodically.
    pub fn expire(&self) -> usize {
        let now = now_ms();
        let mut state = self.lock();
        let before = state.idempotency.len();
        state.idempotency.retain(|_, i| now.saturating_sub(i.created_ms) < RETENTION.as_millis() as u64);
        let State { executions, idempotency, .. } = &mut *state;
        executions.retain(|_, k| idempotency.contains_key(k));
        before - state.idempotency.len()
    }
}

impl State {
    fn find(&self, kind: Kind, client: &str, key: &str) -> Option<&String> {
        self.by_key.get(&(kind, (client.to_owned(), key.to_owned())))
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Authorization(a) => {
                self.by_key.insert((Kind::Authorization, (a.client.clone(), a.key.clone())), a.id.clone());
                self.authorizations.insert(a.id.clone(), a);
            }
            Record::Charge(c) => {
                self.by_key.insert((Kind::Charge, (c.client.clone(), c.key.clone())), c.id.clone());
                self.charges.insert(c.id.clone(), c);
            }
            Record::Refund(r) => {
                self.by_key.insert((Kind::Refund, (r.client.clone(), r.key.clone())), r.id.clone());
                self.refunds.insert(r.id.clone(), r);
            }
            Record::Transfer(t) => {
                self.by_key.insert((Kind::Transfer, (t.client.clone(), t.key.clone())), t.id.clone());
                self.transfers.insert(t.id.clone(), t);
            }
            Record::Payout(p) => {
                self.by_key.insert((Kind::Payout, (p.client.clone(), p.key.clone())), p.id.clone());
                self.payouts.insert(p.id.clone(), p);
            }
            Record::Idempotency(i) => {
                let k = (i.client.clone(), i.key.clone());
                self.executions.insert(i.execution.clone(), k.clone());
                self.idempotency.insert(k, i);
            }
            Record::IdempotencyRemoved { client, key } => {
                if let Some(i) = self.idempotency.remove(&(client, key)) {
                    self.executions.remove(&i.execution);
                }
            }
        }
    }

    /// The whole state as log lines, for compaction.
    fn snapshot(&self) -> serde_json::Result<Vec<Vec<u8>>> {
        let records = self
            .authorizations
            .values()
            .cloned()
            .map(Record::Authorization)
            .chain(self.charges.values().cloned().map(Record::Charge))
            .chain(self.refunds.values().cloned().map(Record::Refund))
            .chain(self.transfers.values().cloned().map(Record::Transfer))
            .chain(self.payouts.values().cloned().map(Record::Payout))
            .chain(self.idempotency.values().cloned().map(Record::Idempotency));
        let records: Vec<Record> = records.collect();
        records.chunks(256).map(serde_json::to_vec).collect()
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
