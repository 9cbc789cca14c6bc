use super::*;
use std::sync::Arc;

fn owner(c: &str) -> Reader {
    Reader::Client(c.to_owned())
}

async fn started(store: &Store, client: &str, key: &str, fp: &str, op: Operation) -> Claim {
    match store.begin(client, key, fp, op).await.unwrap() {
        Begin::Started { attempt, .. } => {
            Claim { client: client.into(), key: key.into(), fingerprint: fp.into(), attempt }
        }
        other => panic!("begin of {key}: {other:?}"),
    }
}

async fn charge(store: &Store, client: &str, key: &str, amount: u64) -> Charge {
    let claim = started(store, client, key, &format!("charge-{amount}"), Operation::Charge).await;
    charge_under(store, &claim, amount).await
}

async fn charge_under(store: &Store, claim: &Claim, amount: u64) -> Charge {
    let auth = store.authorize(claim, amount, "usd", "tok_visa").await.unwrap();
    store.capture(claim, &auth.id).await.unwrap();
    let c = store.record_charge(claim, &auth.id, None).await.unwrap();
    store.complete_with(claim, &c.id).await.unwrap();
    c
}

fn quick(lease_ms: u64, retention_ms: u64) -> Config {
    Config { cache_mib: 2, lease: Duration::from_millis(lease_ms), retention: Duration::from_millis(retention_ms) }
}

#[tokio::test]
async fn idempotency_begin_replay_mismatch_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let Begin::Started { execution, attempt: 1 } = store.begin("c", "k", "f1", Operation::Charge).await.unwrap() else {
        panic!("first begin starts")
    };
    assert_eq!(
        store.begin("c", "k", "f1", Operation::Charge).await.unwrap(),
        Begin::InProgress { execution: execution.clone() }
    );
    assert_eq!(store.begin("c", "k", "f2", Operation::Charge).await.unwrap(), Begin::Mismatch);
    assert_eq!(store.begin("c", "k", "f1", Operation::Refund).await.unwrap(), Begin::Mismatch);
    // Another client's identical key is another payment.
    assert!(matches!(store.begin("other", "k", "f1", Operation::Charge).await.unwrap(), Begin::Started { .. }));
    let claim = Claim { client: "c".into(), key: "k".into(), fingerprint: "f1".into(), attempt: 1 };
    let c = charge_under(&store, &claim, 1000).await;
    let Begin::Completed { execution: again, outcome } = store.begin("c", "k", "f1", Operation::Charge).await.unwrap()
    else {
        panic!("completed")
    };
    assert_eq!((again, outcome), (execution, Outcome::Charge(c)));
}

#[tokio::test]
async fn steps_are_idempotent_on_the_claim_and_refuse_another_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let claim = started(&store, "c", "k", "f", Operation::Charge).await;
    let a1 = store.authorize(&claim, 1000, "usd", "tok_visa").await.unwrap();
    let a2 = store.authorize(&claim, 1000, "usd", "tok_visa").await.unwrap();
    assert_eq!(a1, a2, "a retried step finds the first authorization");
    assert!(matches!(store.authorize(&claim, 2500, "usd", "tok_visa").await, Err(StoreError::Mismatch)));
    let wrong = Claim { fingerprint: "other".into(), ..claim.clone() };
    assert!(matches!(store.authorize(&wrong, 1000, "usd", "tok_visa").await, Err(StoreError::Mismatch)));
    store.capture(&claim, &a1.id).await.unwrap();
    store.capture(&claim, &a1.id).await.unwrap();
    let c1 = store.record_charge(&claim, &a1.id, None).await.unwrap();
    let c2 = store.record_charge(&claim, &a1.id, None).await.unwrap();
    assert_eq!(c1, c2);
    assert!(matches!(store.record_charge(&claim, "auth_other", None).await, Err(StoreError::Mismatch)));
    store.complete_with(&claim, &c1.id).await.unwrap();

    let r = started(&store, "c", "r", "fr", Operation::Refund).await;
    let r1 = store.refund(&r, &c1.id, Some(100)).await.unwrap();
    assert_eq!(store.refund(&r, &c1.id, Some(100)).await.unwrap(), r1);
    assert!(matches!(store.refund(&r, &c1.id, Some(200)).await, Err(StoreError::Mismatch)));
    assert_eq!(store.charge(&c1.id, &owner("c")).await.unwrap().unwrap().amount_refunded, 100);

    let p = started(&store, "c", "p", "fp", Operation::Disbursement).await;
    let t = store.transfer(&p, 5000, "eur", "acct_1").await.unwrap();
    assert_eq!(store.transfer(&p, 5000, "eur", "acct_1").await.unwrap(), t);
    assert!(matches!(store.transfer(&p, 5001, "eur", "acct_1").await, Err(StoreError::Mismatch)));
    let po = store.record_payout(&p, &t.id).await.unwrap();
    assert_eq!(store.record_payout(&p, &t.id).await.unwrap(), po);
    assert!(matches!(store.record_payout(&p, "tr_other").await, Err(StoreError::Mismatch)));
}

#[tokio::test]
async fn a_step_without_a_live_claim_moves_no_money() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let never = Claim { client: "c".into(), key: "k".into(), fingerprint: "f".into(), attempt: 1 };
    assert!(matches!(store.authorize(&never, 1000, "usd", "tok_visa").await, Err(StoreError::Superseded)));
    let c = charge(&store, "c", "k", 1000).await;
    // The key is completed: a late step of its attempt is refused.
    let done = Claim { fingerprint: "charge-1000".into(), ..never };
    assert!(matches!(store.authorize(&done, 1000, "usd", "tok_visa").await, Err(StoreError::Superseded)));
    assert!(matches!(store.complete_with(&done, &c.id).await, Err(StoreError::Superseded)));
}

#[tokio::test]
async fn refunds_never_exceed_the_charge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = charge(&store, "c", "k", 1000).await;
    let refund = async |key: &str, charge: &str, amount| {
        let claim = started(&store, "c", key, key, Operation::Refund).await;
        store.refund(&claim, charge, amount).await
    };
    assert!(matches!(refund("r0", "ch_missing", None).await, Err(StoreError::Refused(Failure::ChargeNotFound))));
    refund("r1", &c.id, Some(400)).await.unwrap();
    assert!(matches!(refund("r2", &c.id, Some(601)).await, Err(StoreError::Refused(Failure::AmountExceedsRefundable))));
    assert_eq!(refund("r3", &c.id, None).await.unwrap().amount, 600);
    assert!(matches!(refund("r4", &c.id, None).await, Err(StoreError::Refused(Failure::ChargeAlreadyRefunded))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_refunds_never_exceed_the_charge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let c = charge(&store, "c", "k", 1000).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, id) = (store.clone(), c.id.clone());
            tokio::spawn(async move {
                let claim = started(&store, "c", &format!("r{i}"), "f", Operation::Refund).await;
                store.refund(&claim, &id, Some(100)).await.is_ok()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 10);
    assert_eq!(store.charge(&c.id, &owner("c")).await.unwrap().unwrap().amount_refunded, 1000);
}

#[tokio::test]
async fn resources_belong_to_their_client() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = charge(&store, "alice", "k", 1000).await;
    assert!(store.charge(&c.id, &owner("alice")).await.unwrap().is_some());
    assert!(store.charge(&c.id, &owner("mallory")).await.unwrap().is_none(), "another client: like unknown");
    assert!(store.charge(&c.id, &Reader::Operator).await.unwrap().is_some(), "an explicit operator lookup");
    let steal = started(&store, "mallory", "r", "f", Operation::Refund).await;
    assert!(matches!(store.refund(&steal, &c.id, Some(1)).await, Err(StoreError::Refused(Failure::ChargeNotFound))));
    assert_eq!(store.charge(&c.id, &Reader::Operator).await.unwrap().unwrap().amount_refunded, 0);
    let r = started(&store, "alice", "r", "f", Operation::Refund).await;
    let refund = store.refund(&r, &c.id, Some(1)).await.unwrap();
    assert!(store.refund_by_id(&refund.id, &owner("mallory")).await.unwrap().is_none());
    assert!(store.refund_by_id(&refund.id, &owner("alice")).await.unwrap().is_some());
    let Begin::Completed { execution, .. } = store.begin("alice", "k", "charge-1000", Operation::Charge).await.unwrap()
    else {
        panic!("completed")
    };
    assert!(store.execution(&execution, &owner("mallory")).await.unwrap().is_none());
    assert!(store.execution(&execution, &owner("alice")).await.unwrap().is_some());
}

#[tokio::test]
async fn a_pending_claim_survives_reopen_and_a_different_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (c, payout) = {
        let store = Store::open_with(dir.path(), quick(50, 3_600_000)).unwrap();
        let c = charge(&store, "c", "k", 1000).await;
        let r = started(&store, "c", "r", "f", Operation::Refund).await;
        store.refund(&r, &c.id, Some(250)).await.unwrap();
        let p = started(&store, "c", "p", "f", Operation::Disbursement).await;
        let t = store.transfer(&p, 5000, "eur", "acct_1").await.unwrap();
        let payout = store.record_payout(&p, &t.id).await.unwrap();
        // Killed after the authorization was durable (issue 12, defect 2).
        let stuck = started(&store, "c", "stuck", "amount-1000", Operation::Charge).await;
        store.authorize(&stuck, 1000, "usd", "tok_visa").await.unwrap();
        (c, payout)
    };
    let store = Store::open_with(dir.path(), quick(50, 3_600_000)).unwrap();
    assert_eq!(store.charge(&c.id, &owner("c")).await.unwrap().unwrap().amount_refunded, 250);
    assert_eq!(store.payout(&payout.id, &owner("c")).await.unwrap().unwrap(), payout);
    assert!(matches!(store.begin("c", "k", "charge-1000", Operation::Charge).await.unwrap(), Begin::Completed { .. }));
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(store.begin("c", "stuck", "amount-2500", Operation::Charge).await.unwrap(), Begin::Mismatch);
    // The same body takes over and finishes the first payment, at its amount.
    let Begin::Started { attempt: 2, .. } = store.begin("c", "stuck", "amount-1000", Operation::Charge).await.unwrap()
    else {
        panic!("takeover")
    };
    let claim = Claim { client: "c".into(), key: "stuck".into(), fingerprint: "amount-1000".into(), attempt: 2 };
    assert!(matches!(store.authorize(&claim, 2500, "usd", "tok_visa").await, Err(StoreError::Mismatch)));
    assert_eq!(charge_under(&store, &claim, 1000).await.amount, 1000);
}

#[tokio::test]
async fn a_takeover_fences_the_old_attempt_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), quick(100, 3_600_000)).unwrap();
    let old = started(&store, "c", "k", "f", Operation::Charge).await;
    let auth = store.authorize(&old, 1000, "usd", "tok_visa").await.unwrap();
    // Steps renew the lease: a live attempt keeps its key past one lease.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        store.capture(&old, &auth.id).await.unwrap();
        assert!(matches!(store.begin("c", "k", "f", Operation::Charge).await.unwrap(), Begin::InProgress { .. }));
    }
    // The old attempt stalls; its lease runs out and a retry takes over.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = started(&store, "c", "k", "f", Operation::Charge).await;
    assert_eq!(new.attempt, old.attempt + 1);
    // The old attempt wakes up: every step it tries is refused.
    assert!(matches!(store.record_charge(&old, &auth.id, None).await, Err(StoreError::Superseded)));
    assert!(matches!(store.complete(&old, Outcome::Failure(Failure::CardDeclined)).await, Err(StoreError::Superseded)));
    store.release(&old).await.unwrap();
    // The new one reuses what the old one did: one authorization, one charge.
    let again = store.authorize(&new, 1000, "usd", "tok_visa").await.unwrap();
    assert_eq!(again.id, auth.id);
    let c = store.record_charge(&new, &auth.id, None).await.unwrap();
    store.complete_with(&new, &c.id).await.unwrap();
    let Begin::Completed { outcome: Outcome::Charge(replayed), .. } =
        store.begin("c", "k", "f", Operation::Charge).await.unwrap()
    else {
        panic!("completed")
    };
    assert_eq!(replayed, c);
}

#[tokio::test]
async fn release_forgets_a_claim_without_effects_and_keeps_one_with_effects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let empty = started(&store, "c", "a", "f1", Operation::Charge).await;
    store.release(&empty).await.unwrap();
    assert!(matches!(store.begin("c", "a", "f2", Operation::Charge).await.unwrap(), Begin::Started { attempt: 1, .. }));

    let moved = started(&store, "c", "b", "f1", Operation::Charge).await;
    store.authorize(&moved, 1000, "usd", "tok_visa").await.unwrap();
    store.release(&moved).await.unwrap();
    assert_eq!(store.begin("c", "b", "f2", Operation::Charge).await.unwrap(), Begin::Mismatch);
    assert!(matches!(store.begin("c", "b", "f1", Operation::Charge).await.unwrap(), Begin::Started { attempt: 2, .. }));
}

#[tokio::test]
async fn expiry_forgets_keys_never_payments_and_a_reused_key_is_a_new_payment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), quick(5_000, 100)).unwrap();
    let first = charge(&store, "c", "k", 1000).await;
    let r = started(&store, "c", "r", "f", Operation::Refund).await;
    let refund = store.refund(&r, &first.id, Some(10)).await.unwrap();
    store.complete_with(&r, &refund.id).await.unwrap();
    // A pending claim whose lease is live is not swept even past retention.
    let live = started(&store, "c", "live", "f", Operation::Charge).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(store.expire().await.unwrap(), 2);
    assert!(matches!(store.begin("c", "live", "f", Operation::Charge).await.unwrap(), Begin::InProgress { .. }));
    store.authorize(&live, 1, "usd", "tok_visa").await.unwrap();
    assert_eq!(store.charge(&first.id, &owner("c")).await.unwrap().unwrap().amount_refunded, 10);
    assert!(store.refund_by_id(&refund.id, &owner("c")).await.unwrap().is_some());
    // The key, reused after retention, starts a new payment with its body.
    let again = charge(&store, "c", "k", 2500).await;
    assert_ne!(again.id, first.id);
    assert_eq!(again.amount, 2500);
    assert!(store.charge(&first.id, &owner("c")).await.unwrap().is_some());
}

#[tokio::test]
async fn workflow_executions_keep_their_input_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let began = store.begin_execution("c", "k", "f", Operation::Charge, "CHARGE", r#"{"a":1}"#).await.unwrap();
    let Begin::Started { execution, attempt: 1 } = began else { panic!("{began:?}") };
    let pending = store.pending_executions().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].execution.as_str(), pending[0].input.as_str()), (execution.as_str(), r#"{"a":1}"#));
    assert_eq!(store.take_over("c", "k").await.unwrap(), Some(2));
    let claim = Claim { client: "c".into(), key: "k".into(), fingerprint: "f".into(), attempt: 2 };
    store.complete(&claim, Outcome::Failure(Failure::RiskDeclined)).await.unwrap();
    assert!(store.pending_executions().await.unwrap().is_empty());
    assert_eq!(store.take_over("c", "k").await.unwrap(), None);
}

#[tokio::test]
async fn declines_and_risk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.assess_risk(1000, "tok_visa"));
    assert!(!store.assess_risk(1000, "tok_risky"));
    let claim = started(&store, "c", "k", "f", Operation::Charge).await;
    let auth = store.authorize(&claim, 1000, "usd", "tok_declined").await.unwrap();
    assert_eq!(auth.status, AuthStatus::Declined);
    assert!(matches!(store.capture(&claim, &auth.id).await, Err(StoreError::Refused(Failure::CardDeclined))));
}

#[test]
fn ids_are_prefixed_and_distinct() {
    let a = new_id("ch");
    assert!(a.starts_with("ch_") && a.len() == 27);
    assert_ne!(a, new_id("ch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_committed_writes_keep_their_own_outcome_and_survive_reopen() {
    // Charges and refunds refused for an unknown charge, all at once: they
    // share COMMITs, a refusal undoes only its own savepoint, and every
    // acknowledged charge is durable.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..100u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    Some(charge(&store, "c", &format!("k{i}"), 100 + i).await)
                } else {
                    let claim = started(&store, "c", &format!("r{i}"), "f", Operation::Refund).await;
                    let refused = store.refund(&claim, "ch_000000000000000000000000", Some(1)).await;
                    assert!(matches!(refused, Err(StoreError::Refused(Failure::ChargeNotFound))), "{refused:?}");
                    None
                }
            })
        })
        .collect();
    let mut charges = Vec::new();
    for t in tasks {
        charges.extend(t.await.unwrap());
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(charges.len(), 50);
    for c in &charges {
        let read = store.charge(&c.id, &owner("c")).await.unwrap().expect("acknowledged charge after reopen");
        assert_eq!((read.amount, read.amount_refunded), (c.amount, 0));
    }
}

#[tokio::test]
async fn a_read_does_not_wait_behind_a_stuck_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = charge(&store, "c", "k", 1000).await;
    // One reader held inside its read transaction until the test lets go.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let stuck = tokio::spawn({
        let store = store.clone();
        async move { store.read(move |_| Ok(held.recv().is_ok())).await }
    });
    // Another read is answered meanwhile, by another reader; with one
    // reader it would queue behind the stuck one for ever.
    let read = tokio::time::timeout(Duration::from_secs(30), store.charge(&c.id, &owner("c"))).await;
    assert_eq!(read.expect("a free reader answers").unwrap(), Some(c));
    release.send(()).unwrap();
    assert!(stuck.await.unwrap().unwrap());
}
