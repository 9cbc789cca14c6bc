//! The store's operations as SQL, each run inside one transaction that the
//! caller opened (see `db.rs`). Nothing here commits or talks to the runtime.
//!
//! A money-moving step first checks its [`Claim`] against the idempotency
//! record (same fingerprint, current attempt, still pending) and renews the
//! lease, in the same transaction as its effect: a superseded attempt can
//! never move money, and a live one keeps its key.

use super::reads::{CHARGE_COLUMNS, PAYOUT_COLUMNS, REFUND_COLUMNS, charge, payout, refund};
use super::reads::{authorization_row, charge_row, payout_row, refund_row, transfer_row};
use super::{Begin, Claim, Reader, Result, StoreError, new_id};
use crate::model::*;
use rusqlite::{OptionalExtension, Transaction, params};

pub(super) struct Clock {
    pub now: u64,
    pub lease_ms: u64,
    pub retention_ms: u64,
}

/// A workflow execution's request, kept so it can be resumed.
pub(super) struct Input<'a> {
    pub workflow: &'a str,
    pub input: &'a str,
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Charge => "charge",
        Operation::Refund => "refund",
        Operation::Disbursement => "disbursement",
    }
}

pub(super) fn operation_from(name: &str) -> Result<Operation> {
    Ok(match name {
        "charge" => Operation::Charge,
        "refund" => Operation::Refund,
        "disbursement" => Operation::Disbursement,
        other => return Err(StoreError::Unavailable(format!("unknown operation {other:?} in the store"))),
    })
}

pub(super) fn outcome_from(json: Option<String>) -> Result<Outcome> {
    match json {
        None => Ok(Outcome::Pending),
        Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::Unavailable(format!("stored outcome: {e}"))),
    }
}

pub(super) fn begin(
    tx: &Transaction<'_>,
    clock: &Clock,
    client: &str,
    key: &str,
    fingerprint: &str,
    operation: Operation,
    input: Option<Input<'_>>,
) -> Result<Begin> {
    let found = tx
        .query_row(
            "SELECT fingerprint, operation, execution, outcome, created_ms, attempt, lease_until_ms
             FROM idempotency WHERE client = ?1 AND key = ?2",
            params![client, key],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, u64>(4)?,
                    r.get::<_, u64>(5)?,
                    r.get::<_, u64>(6)?,
                ))
            },
        )
        .optional()?;
    if let Some((fp, op, execution, outcome, created_ms, attempt, lease_until)) = found {
        // Past retention a key is free again, unless an attempt still holds
        // it (the same rule as the periodic sweep).
        let expired = clock.now.saturating_sub(created_ms) >= clock.retention_ms
            && (outcome.is_some() || lease_until <= clock.now);
        if !expired {
            if fp != fingerprint || operation_from(&op)? != operation {
                return Ok(Begin::Mismatch);
            }
            if outcome.is_some() {
                return Ok(Begin::Completed { execution, outcome: outcome_from(outcome)? });
            }
            if lease_until > clock.now {
                return Ok(Begin::InProgress { execution });
            }
            // The attempt holding the key stopped renewing its lease: take
            // over under a new attempt number, which fences the old one out.
            let attempt = attempt + 1;
            tx.execute(
                "UPDATE idempotency SET attempt = ?3, lease_until_ms = ?4 WHERE client = ?1 AND key = ?2",
                params![client, key, attempt, clock.now + clock.lease_ms],
            )?;
            return Ok(Begin::Started { execution, attempt });
        }
        // Past retention: the key is free again and starts a new payment
        // (its resources keep the old execution id, so no step finds them).
        tx.execute("DELETE FROM workflow_executions WHERE id = ?1", params![execution])?;
        tx.execute("DELETE FROM idempotency WHERE client = ?1 AND key = ?2", params![client, key])?;
    }
    let execution = new_id("wfx");
    tx.execute(
        "INSERT INTO idempotency (client, key, fingerprint, operation, execution, outcome, created_ms, attempt, lease_until_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, 1, ?7)",
        params![client, key, fingerprint, operation_name(operation), execution, clock.now, clock.now + clock.lease_ms],
    )?;
    if let Some(i) = input {
        tx.execute(
            "INSERT INTO workflow_executions (id, client, key, workflow, input, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![execution, client, key, i.workflow, i.input, clock.now],
        )?;
    }
    Ok(Begin::Started { execution, attempt: 1 })
}

/// Checks that `claim` is the live attempt of its key and renews its lease;
/// returns the execution the step's effects belong to.
pub(super) fn guard(tx: &Transaction<'_>, clock: &Clock, claim: &Claim) -> Result<String> {
    let (fingerprint, execution, attempt, pending): (String, String, u64, bool) = tx
        .query_row(
            "SELECT fingerprint, execution, attempt, outcome IS NULL FROM idempotency WHERE client = ?1 AND key = ?2",
            params![claim.client, claim.key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?
        .ok_or(StoreError::Superseded)?;
    if fingerprint != claim.fingerprint {
        return Err(StoreError::Mismatch);
    }
    if attempt != claim.attempt || !pending {
        return Err(StoreError::Superseded);
    }
    tx.execute(
        "UPDATE idempotency SET lease_until_ms = ?3 WHERE client = ?1 AND key = ?2",
        params![claim.client, claim.key, clock.now + clock.lease_ms],
    )?;
    Ok(execution)
}

pub(super) fn complete(tx: &Transaction<'_>, clock: &Clock, claim: &Claim, outcome: &Outcome) -> Result<()> {
    guard(tx, clock, claim)?;
    let json = serde_json::to_string(outcome).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    tx.execute(
        "UPDATE idempotency SET outcome = ?3, lease_until_ms = 0 WHERE client = ?1 AND key = ?2",
        params![claim.client, claim.key, json],
    )?;
    Ok(())
}

pub(super) fn complete_with(tx: &Transaction<'_>, clock: &Clock, claim: &Claim, id: &str) -> Result<Outcome> {
    let owner = Reader::Client(claim.client.clone());
    let outcome = if let Some(c) = charge(tx, id, &owner)? {
        Outcome::Charge(c)
    } else if let Some(r) = refund(tx, id, &owner)? {
        Outcome::Refund(r)
    } else if let Some(p) = payout(tx, id, &owner)? {
        Outcome::Payout(p)
    } else {
        return Err(StoreError::NotFound);
    };
    complete(tx, clock, claim, &outcome)?;
    Ok(outcome)
}

/// Frees the key of an attempt that failed. A claim under which nothing
/// happened yet is forgotten; one with effects keeps its fingerprint (a
/// different body stays a conflict) and only gives up its lease, so a
/// retry takes it over at once and finishes the same payment.
pub(super) fn release(tx: &Transaction<'_>, clock: &Clock, claim: &Claim) -> Result<()> {
    let execution = match guard(tx, clock, claim) {
        Ok(e) => e,
        // Nothing to release: another attempt owns the key, or it is done.
        Err(StoreError::Superseded) => return Ok(()),
        Err(e) => return Err(e),
    };
    let effects: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM authorizations WHERE execution = ?1)
             OR EXISTS (SELECT 1 FROM refunds WHERE execution = ?1)
             OR EXISTS (SELECT 1 FROM transfers WHERE execution = ?1)",
        params![execution],
        |r| r.get(0),
    )?;
    if effects {
        tx.execute(
            "UPDATE idempotency SET lease_until_ms = 0 WHERE client = ?1 AND key = ?2",
            params![claim.client, claim.key],
        )?;
    } else {
        tx.execute("DELETE FROM workflow_executions WHERE id = ?1", params![execution])?;
        tx.execute("DELETE FROM idempotency WHERE client = ?1 AND key = ?2", params![claim.client, claim.key])?;
    }
    Ok(())
}

pub(super) fn authorize(
    tx: &Transaction<'_>,
    clock: &Clock,
    claim: &Claim,
    amount: u64,
    currency: &str,
    source: &str,
) -> Result<Authorization> {
    let execution = guard(tx, clock, claim)?;
    if let Some(a) = tx
        .query_row("SELECT * FROM authorizations WHERE execution = ?1", params![execution], authorization_row)
        .optional()?
    {
        if (a.amount, a.currency.as_str(), a.source.as_str()) != (amount, currency, source) {
            return Err(StoreError::Mismatch);
        }
        return Ok(a);
    }
    let status = if source.starts_with("tok_decline") { AuthStatus::Declined } else { AuthStatus::Authorized };
    let a = Authorization {
        id: new_id("auth"),
        client: claim.client.clone(),
        key: claim.key.clone(),
        amount,
        currency: currency.to_owned(),
        source: source.to_owned(),
        status,
        created_ms: clock.now,
    };
    tx.execute(
        "INSERT INTO authorizations (id, client, key, execution, amount, currency, source, status, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![a.id, a.client, a.key, execution, a.amount, a.currency, a.source, status_name(status), a.created_ms],
    )?;
    Ok(a)
}

pub(super) fn capture(tx: &Transaction<'_>, clock: &Clock, claim: &Claim, authorization: &str) -> Result<()> {
    let execution = guard(tx, clock, claim)?;
    let a = of_execution(tx, "SELECT * FROM authorizations", authorization, &execution, authorization_row)?;
    match a.status {
        AuthStatus::Captured => Ok(()),
        AuthStatus::Declined => Err(Failure::CardDeclined.into()),
        AuthStatus::Authorized => {
            tx.execute(
                "UPDATE authorizations SET status = 'captured', captured_ms = ?2 WHERE id = ?1",
                params![a.id, clock.now],
            )?;
            Ok(())
        }
    }
}

pub(super) fn record_charge(
    tx: &Transaction<'_>,
    clock: &Clock,
    claim: &Claim,
    authorization: &str,
    description: Option<&str>,
) -> Result<Charge> {
    let execution = guard(tx, clock, claim)?;
    if let Some((c, auth)) = tx
        .query_row(
            &format!("SELECT {CHARGE_COLUMNS}, authorization FROM charges WHERE execution = ?1"),
            [&execution],
            |r| Ok((charge_row(r)?, r.get::<_, String>(10)?)),
        )
        .optional()?
    {
        if auth != authorization {
            return Err(StoreError::Mismatch);
        }
        return Ok(c);
    }
    let a = of_execution(tx, "SELECT * FROM authorizations", authorization, &execution, authorization_row)?;
    if a.status != AuthStatus::Captured {
        return Err(Failure::CardDeclined.into());
    }
    let c = Charge {
        id: new_id("ch"),
        client: claim.client.clone(),
        key: claim.key.clone(),
        authorization: a.id.clone(),
        amount: a.amount,
        currency: a.currency,
        source: a.source,
        description: description.map(str::to_owned),
        amount_refunded: 0,
        created_ms: clock.now,
    };
    tx.execute(
        "INSERT INTO charges (id, client, key, execution, authorization, amount, currency, source, description, amount_refunded, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10)",
        params![c.id, c.client, c.key, execution, c.authorization, c.amount, c.currency, c.source, c.description, c.created_ms],
    )?;
    ledger(tx, &c.client, "charge", &c.id, c.amount as i64, &c.currency, clock.now)?;
    Ok(c)
}

/// The check and the change are one transaction under SQLite's write
/// lock: concurrent refunds can never exceed the charge.
pub(super) fn refund_charge(
    tx: &Transaction<'_>,
    clock: &Clock,
    claim: &Claim,
    charge_id: &str,
    amount: Option<u64>,
) -> Result<Refund> {
    let execution = guard(tx, clock, claim)?;
    if let Some(r) = tx
        .query_row(&format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE execution = ?1"), [&execution], refund_row)
        .optional()?
    {
        if r.charge != charge_id || amount.is_some_and(|a| a != r.amount) {
            return Err(StoreError::Mismatch);
        }
        return Ok(r);
    }
    // Another client's charge is as unknown as a missing one.
    let c = charge(tx, charge_id, &Reader::Client(claim.client.clone()))?.ok_or(Failure::ChargeNotFound)?;
    let left = c.amount - c.amount_refunded;
    if left == 0 {
        return Err(Failure::ChargeAlreadyRefunded.into());
    }
    let amount = amount.unwrap_or(left);
    if amount > left {
        return Err(Failure::AmountExceedsRefundable.into());
    }
    if amount == 0 {
        return Err(Failure::AmountExceedsRefundable.into());
    }
    tx.execute("UPDATE charges SET amount_refunded = amount_refunded + ?2 WHERE id = ?1", params![c.id, amount])?;
    let r = Refund {
        id: new_id("re"),
        client: claim.client.clone(),
        key: claim.key.clone(),
        charge: c.id,
        amount,
        currency: c.currency,
        created_ms: clock.now,
    };
    tx.execute(
        "INSERT INTO refunds (id, client, key, execution, charge, amount, currency, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![r.id, r.client, r.key, execution, r.charge, r.amount, r.currency, r.created_ms],
    )?;
    ledger(tx, &r.client, "refund", &r.id, -(r.amount as i64), &r.currency, clock.now)?;
    Ok(r)
}

pub(super) fn transfer(
    tx: &Transaction<'_>,
    clock: &Clock,
    claim: &Claim,
    amount: u64,
    currency: &str,
    destination: &str,
) -> Result<Transfer> {
    let execution = guard(tx, clock, claim)?;
    if let Some(t) = tx
        .query_row(
            "SELECT id, client, key, amount, currency, destination, created_ms FROM transfers WHERE execution = ?1",
            [&execution],
            transfer_row,
        )
        .optional()?
    {
        if (t.amount, t.currency.as_str(), t.destination.as_str()) != (amount, currency, destination) {
            return Err(StoreError::Mismatch);
        }
        return Ok(t);
    }
    let t = Transfer {
        id: new_id("tr"),
        client: claim.client.clone(),
        key: claim.key.clone(),
        amount,
        currency: currency.to_owned(),
        destination: destination.to_owned(),
        created_ms: clock.now,
    };
    tx.execute(
        "INSERT INTO transfers (id, client, key, execution, amount, currency, destination, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![t.id, t.client, t.key, execution, t.amount, t.currency, t.destination, t.created_ms],
    )?;
    Ok(t)
}

pub(super) fn record_payout(tx: &Transaction<'_>, clock: &Clock, claim: &Claim, transfer: &str) -> Result<Payout> {
    let execution = guard(tx, clock, claim)?;
    if let Some(p) = tx
        .query_row(&format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE execution = ?1"), [&execution], payout_row)
        .optional()?
    {
        if p.transfer != transfer {
            return Err(StoreError::Mismatch);
        }
        return Ok(p);
    }
    let t = of_execution(
        tx,
        "SELECT id, client, key, amount, currency, destination, created_ms FROM transfers",
        transfer,
        &execution,
        transfer_row,
    )?;
    let p = Payout {
        id: new_id("po"),
        client: claim.client.clone(),
        key: claim.key.clone(),
        transfer: t.id,
        amount: t.amount,
        currency: t.currency,
        destination: t.destination,
        created_ms: clock.now,
    };
    tx.execute(
        "INSERT INTO payouts (id, client, key, execution, transfer, amount, currency, destination, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![p.id, p.client, p.key, execution, p.transfer, p.amount, p.currency, p.destination, p.created_ms],
    )?;
    ledger(tx, &p.client, "payout", &p.id, -(p.amount as i64), &p.currency, clock.now)?;
    Ok(p)
}

/// Row `id` of `select`'s table, if it belongs to `execution`; else not found.
fn of_execution<T>(
    tx: &Transaction<'_>,
    select: &str,
    id: &str,
    execution: &str,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    tx.query_row(&format!("{select} WHERE id = ?1 AND execution = ?2"), params![id, execution], row)
        .optional()?
        .ok_or(StoreError::NotFound)
}

fn ledger(
    tx: &Transaction<'_>,
    client: &str,
    kind: &str,
    resource: &str,
    amount: i64,
    currency: &str,
    now: u64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO ledger_entries (client, kind, resource, amount, currency, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![client, kind, resource, amount, currency, now],
    )?;
    Ok(())
}

/// Takes a pending key over unconditionally (its runner is known dead: the
/// process that ran it stopped). `None` when it is no longer pending.
pub(super) fn take_over(tx: &Transaction<'_>, clock: &Clock, client: &str, key: &str) -> Result<Option<u64>> {
    Ok(tx
        .query_row(
            "UPDATE idempotency SET attempt = attempt + 1, lease_until_ms = ?3
             WHERE client = ?1 AND key = ?2 AND outcome IS NULL RETURNING attempt",
            params![client, key, clock.now + clock.lease_ms],
            |r| r.get(0),
        )
        .optional()?)
}

/// Deletes up to `limit` idempotency records past retention (never a
/// pending one whose lease is live, never a payment); returns how many.
pub(super) fn expire(tx: &Transaction<'_>, clock: &Clock, limit: u32) -> Result<usize> {
    let cutoff = clock.now.saturating_sub(clock.retention_ms);
    let victims = "SELECT rowid FROM idempotency
                   WHERE created_ms < ?1 AND (outcome IS NOT NULL OR lease_until_ms < ?2) LIMIT ?3";
    tx.execute(
        &format!(
            "DELETE FROM workflow_executions WHERE id IN (SELECT execution FROM idempotency WHERE rowid IN ({victims}))"
        ),
        params![cutoff, clock.now, limit],
    )?;
    Ok(tx.execute(&format!("DELETE FROM idempotency WHERE rowid IN ({victims})"), params![cutoff, clock.now, limit])?)
}

fn status_name(s: AuthStatus) -> &'static str {
    match s {
        AuthStatus::Authorized => "authorized",
        AuthStatus::Declined => "declined",
        AuthStatus::Captured => "captured",
    }
}
