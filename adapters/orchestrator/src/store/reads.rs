//! The store's reads: one resource by id for its owner (or an explicit
//! operator), an execution's view, the executions to resume at start, and
//! the row mappers the operations share. Nothing here writes. The reads a
//! request makes use cached statements (each connection keeps its own), so
//! SQLite parses each query once per connection, not once per read.

use super::ops::{operation_from, outcome_from};
use super::{Reader, Result};
use crate::model::*;
use rusqlite::{OptionalExtension, Row, Transaction, params};

/// A pending workflow execution found at start.
#[derive(Debug)]
pub struct Pending {
    pub client: String,
    pub key: String,
    pub fingerprint: String,
    pub execution: String,
    pub workflow: String,
    pub input: String,
}

/// `AND (client = ?2 OR ?3)`: the owner, or an explicit operator lookup.
fn owner(reader: &Reader) -> (&str, bool) {
    match reader {
        Reader::Client(c) => (c.as_str(), false),
        Reader::Operator => ("", true),
    }
}

pub(super) const CHARGE_COLUMNS: &str =
    "id, client, key, authorization, amount, currency, source, description, amount_refunded, created_ms";
pub(super) const REFUND_COLUMNS: &str = "id, client, key, charge, amount, currency, created_ms";
pub(super) const PAYOUT_COLUMNS: &str = "id, client, key, transfer, amount, currency, destination, created_ms";

pub(super) fn charge(tx: &Transaction<'_>, id: &str, reader: &Reader) -> Result<Option<Charge>> {
    let (client, any) = owner(reader);
    Ok(tx
        .prepare_cached(&format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE id = ?1 AND (client = ?2 OR ?3)"))?
        .query_row(params![id, client, any], charge_row)
        .optional()?)
}

pub(super) fn refund(tx: &Transaction<'_>, id: &str, reader: &Reader) -> Result<Option<Refund>> {
    let (client, any) = owner(reader);
    Ok(tx
        .prepare_cached(&format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = ?1 AND (client = ?2 OR ?3)"))?
        .query_row(params![id, client, any], refund_row)
        .optional()?)
}

pub(super) fn payout(tx: &Transaction<'_>, id: &str, reader: &Reader) -> Result<Option<Payout>> {
    let (client, any) = owner(reader);
    Ok(tx
        .prepare_cached(&format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = ?1 AND (client = ?2 OR ?3)"))?
        .query_row(params![id, client, any], payout_row)
        .optional()?)
}

/// An execution's current view: (operation, outcome).
pub(super) fn execution(tx: &Transaction<'_>, id: &str, reader: &Reader) -> Result<Option<(Operation, Outcome)>> {
    let (client, any) = owner(reader);
    let row = tx
        .prepare_cached("SELECT operation, outcome FROM idempotency WHERE execution = ?1 AND (client = ?2 OR ?3)")?
        .query_row(params![id, client, any], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
        .optional()?;
    row.map(|(op, outcome)| Ok((operation_from(&op)?, outcome_from(outcome)?))).transpose()
}

pub(super) fn pending_executions(tx: &Transaction<'_>) -> Result<Vec<Pending>> {
    let mut stmt = tx.prepare(
        "SELECT i.client, i.key, i.fingerprint, i.execution, e.workflow, e.input
         FROM idempotency i JOIN workflow_executions e ON e.id = i.execution
         WHERE i.outcome IS NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Pending {
            client: r.get(0)?,
            key: r.get(1)?,
            fingerprint: r.get(2)?,
            execution: r.get(3)?,
            workflow: r.get(4)?,
            input: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn authorization_row(r: &Row<'_>) -> rusqlite::Result<Authorization> {
    let status = match r.get_ref("status")?.as_str()? {
        "declined" => AuthStatus::Declined,
        "captured" => AuthStatus::Captured,
        _ => AuthStatus::Authorized,
    };
    Ok(Authorization {
        id: r.get("id")?,
        client: r.get("client")?,
        key: r.get("key")?,
        amount: r.get("amount")?,
        currency: r.get("currency")?,
        source: r.get("source")?,
        status,
        created_ms: r.get("created_ms")?,
    })
}

pub(super) fn charge_row(r: &Row<'_>) -> rusqlite::Result<Charge> {
    Ok(Charge {
        id: r.get(0)?,
        client: r.get(1)?,
        key: r.get(2)?,
        authorization: r.get(3)?,
        amount: r.get(4)?,
        currency: r.get(5)?,
        source: r.get(6)?,
        description: r.get(7)?,
        amount_refunded: r.get(8)?,
        created_ms: r.get(9)?,
    })
}

pub(super) fn refund_row(r: &Row<'_>) -> rusqlite::Result<Refund> {
    Ok(Refund {
        id: r.get(0)?,
        client: r.get(1)?,
        key: r.get(2)?,
        charge: r.get(3)?,
        amount: r.get(4)?,
        currency: r.get(5)?,
        created_ms: r.get(6)?,
    })
}

pub(super) fn transfer_row(r: &Row<'_>) -> rusqlite::Result<Transfer> {
    Ok(Transfer {
        id: r.get(0)?,
        client: r.get(1)?,
        key: r.get(2)?,
        amount: r.get(3)?,
        currency: r.get(4)?,
        destination: r.get(5)?,
        created_ms: r.get(6)?,
    })
}

pub(super) fn payout_row(r: &Row<'_>) -> rusqlite::Result<Payout> {
    Ok(Payout {
        id: r.get(0)?,
        client: r.get(1)?,
        key: r.get(2)?,
        transfer: r.get(3)?,
        amount: r.get(4)?,
        currency: r.get(5)?,
        destination: r.get(6)?,
        created_ms: r.get(7)?,
    })
}
