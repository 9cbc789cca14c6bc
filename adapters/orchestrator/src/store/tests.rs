use super::*;

async fn charge(store: &Store, client: &str, key: &str, amount: u64) -> Charge {
    let auth = store.authorize(client, key, amount, "usd", "tok_visa").await.unwrap();
    store.capture(&auth.id).await.unwrap();
    store.record_charge(client, key, &auth.id, None).await.unwrap()
}

#[tokio::test]
async fn idempotency_begin_replay_mismatch_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let Begin::Started { execution } = store.begin("c", "k", "f1", Operation::Charge).await.unwrap() else {
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
    let c = charge(&store, "c", "k", 1000).await;
    let outcome = store.complete_with("c", "k", &c.id).await.unwrap();
    assert_eq!(store.begin("c", "k", "f1", Operation::Charge).await.unwrap(), Begin::Completed { execution, outcome });
}

#[tokio::test]
async fn steps_are_idempotent_on_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = charge(&store, "c", "k", 1000).await;
    let b = charge(&store, "c", "k", 1000).await;
    assert_eq!(a, b, "a retried sequence finds the first charge");
    let r1 = store.refund("c", "r", &a.id, Some(100)).await.unwrap();
    let r2 = store.refund("c", "r", &a.id, Some(100)).await.unwrap();
    assert_eq!(r1, r2);
    assert_eq!(store.charge(&a.id).unwrap().amount_refunded, 100);
}

#[tokio::test]
async fn refunds_never_exceed_the_charge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = charge(&store, "c", "k", 1000).await;
    assert!(matches!(
        store.refund("c", "r0", "ch_missing", None).await,
        Err(StoreError::Refused(Failure::ChargeNotFound))
    ));
    store.refund("c", "r1", &c.id, Some(400)).await.unwrap();
    assert!(matches!(
        store.refund("c", "r2", &c.id, Some(601)).await,
        Err(StoreError::Refused(Failure::AmountExceedsRefundable))
    ));
    let rest = store.refund("c", "r3", &c.id, None).await.unwrap();
    assert_eq!(rest.amount, 600);
    assert!(matches!(
        store.refund("c", "r4", &c.id, None).await,
        Err(StoreError::Refused(Failure::ChargeAlreadyRefunded))
    ));
}

#[tokio::test]
async fn concurrent_refunds_cannot_overdraw() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
    let c = charge(&store, "c", "k", 1000).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, id) = (store.clone(), c.id.clone());
            tokio::spawn(async move { store.refund("c", &format!("r{i}"), &id, Some(100)).await.is_ok() })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 10);
    assert_eq!(store.charge(&c.id).unwrap().amount_refunded, 1000);
}

#[tokio::test]
async fn state_survives_reopen_and_pending_keys_are_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (c, payout) = {
        let store = Store::open(dir.path()).unwrap();
        let c = charge(&store, "c", "k", 1000).await;
        store.begin("c", "k", "f", Operation::Charge).await.unwrap();
        store.complete_with("c", "k", &c.id).await.unwrap();
        store.refund("c", "r", &c.id, Some(250)).await.unwrap();
        let t = store.transfer("c", "p", 5000, "eur", "acct_1").await.unwrap();
        let payout = store.record_payout("c", "p", &t.id).await.unwrap();
        store.begin("c", "stuck", "f", Operation::Charge).await.unwrap();
        (c, payout)
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.charge(&c.id).unwrap().amount_refunded, 250);
    assert_eq!(store.payout(&payout.id).unwrap(), payout);
    assert!(matches!(store.begin("c", "k", "f", Operation::Charge).await.unwrap(), Begin::Completed { .. }));
    assert!(matches!(store.begin("c", "stuck", "f", Operation::Charge).await.unwrap(), Begin::Started { .. }));
}

#[tokio::test]
async fn declines_and_risk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.assess_risk(1000, "tok_visa"));
    assert!(!store.assess_risk(1000, "tok_risky"));
    let auth = store.authorize("c", "k", 1000, "usd", "tok_declined").await.unwrap();
    assert_eq!(auth.status, AuthStatus::Declined);
    assert!(matches!(store.capture(&auth.id).await, Err(StoreError::Refused(Failure::CardDeclined))));
}

#[test]
fn ids_are_prefixed_and_distinct() {
    let a = new_id("ch");
    assert!(a.starts_with("ch_") && a.len() == 27);
    assert_ne!(a, new_id("ch"));
}
