//! The database schema, created on first open.
//!
//! Every resource names the client that owns it (reads and refunds check
//! it) and the idempotency execution that created it: a step is idempotent
//! on its execution, not on (client, key) alone, so a key reused after its
//! retention starts a new payment instead of finding an old one. Payments
//! are never deleted; only idempotency records (and the workflow inputs
//! kept for them) expire.
//!
//! Captures are a state of their authorization (`status = 'captured'`,
//! `captured_ms`) rather than a table: this service captures an
//! authorization whole and exactly once, so a capture table would be a
//! one-to-one copy of its authorization's key.

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS idempotency (
    client         TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    fingerprint    TEXT    NOT NULL,
    operation      TEXT    NOT NULL CHECK (operation IN ('charge', 'refund', 'disbursement')),
    execution      TEXT    NOT NULL UNIQUE,
    -- JSON of the first answer; NULL while the claim is pending.
    outcome        TEXT,
    created_ms     INTEGER NOT NULL,
    -- Fencing: bumped by every takeover; a step of another attempt is refused.
    attempt        INTEGER NOT NULL,
    -- Renewed by every step of the current attempt.
    lease_until_ms INTEGER NOT NULL,
    PRIMARY KEY (client, key)
);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_ms);
CREATE INDEX IF NOT EXISTS idempotency_pending ON idempotency (created_ms) WHERE outcome IS NULL;

-- What a workflow execution was asked to do, so that one running when the
-- service stopped is resumed at start.
CREATE TABLE IF NOT EXISTS workflow_executions (
    id         TEXT    PRIMARY KEY,
    client     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    workflow   TEXT    NOT NULL,
    input      TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS authorizations (
    id          TEXT    PRIMARY KEY,
    client      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    execution   TEXT    NOT NULL UNIQUE,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    currency    TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('authorized', 'declined', 'captured')),
    created_ms  INTEGER NOT NULL,
    captured_ms INTEGER
);
CREATE INDEX IF NOT EXISTS authorizations_client ON authorizations (client, created_ms);

CREATE TABLE IF NOT EXISTS charges (
    id              TEXT    PRIMARY KEY,
    client          TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    execution       TEXT    NOT NULL UNIQUE,
    authorization   TEXT    NOT NULL UNIQUE REFERENCES authorizations (id),
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    currency        TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    description     TEXT,
    amount_refunded INTEGER NOT NULL CHECK (amount_refunded BETWEEN 0 AND amount),
    created_ms      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_client ON charges (client, created_ms);

CREATE TABLE IF NOT EXISTS refunds (
    id         TEXT    PRIMARY KEY,
    client     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    execution  TEXT    NOT NULL UNIQUE,
    charge     TEXT    NOT NULL REFERENCES charges (id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    currency   TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_charge ON refunds (charge);
CREATE INDEX IF NOT EXISTS refunds_client ON refunds (client, created_ms);

CREATE TABLE IF NOT EXISTS transfers (
    id          TEXT    PRIMARY KEY,
    client      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    execution   TEXT    NOT NULL UNIQUE,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    currency    TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_client ON transfers (client, created_ms);

CREATE TABLE IF NOT EXISTS payouts (
    id          TEXT    PRIMARY KEY,
    client      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    execution   TEXT    NOT NULL UNIQUE,
    transfer    TEXT    NOT NULL UNIQUE REFERENCES transfers (id),
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    currency    TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS payouts_client ON payouts (client, created_ms);

-- Double-entry style money movements: + for a charge, - for a refund or a
-- payout, each tied to the resource that moved it.
CREATE TABLE IF NOT EXISTS ledger_entries (
    id         INTEGER PRIMARY KEY,
    client     TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('charge', 'refund', 'payout')),
    resource   TEXT    NOT NULL,
    amount     INTEGER NOT NULL,
    currency   TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_entries_resource ON ledger_entries (resource);
CREATE INDEX IF NOT EXISTS ledger_entries_client ON ledger_entries (client, created_ms);
"#;
