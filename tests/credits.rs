//! Credits through the public API: what `verify` spends and refuses, refills on the clock,
//! who may set or add credits and how, what the audit trail and time travel show, and what
//! survives a restart (from the log, from a snapshot, and the count saved beside the log).
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use keyledger::{
    Actor, Credits, Denial, Error, EventKind, KeyId, KeyStore, MAX_CREDITS, ManualClock, NewKey, Refill,
    Rejection,
};

fn ip() -> IpAddr {
    "192.0.2.1".parse().unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

fn credits(n: u64) -> Credits {
    Credits::new(n).unwrap()
}

fn refill(s: &str) -> Refill {
    s.parse().unwrap()
}

fn left(store: &KeyStore, secret: &str) -> Result<Option<u64>, Rejection> {
    store.verify(secret, ip()).map(|k| k.credits_remaining())
}

#[test]
fn a_key_spends_one_credit_per_request_and_is_refused_at_zero() {
    let clock = clock();
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let alice = Actor::admin("alice");
    let k = store
        .create_key(&alice, NewKey::new("bot").role("bot").credits(credits(3)))
        .unwrap();
    let secret = k.key.expose_secret();
    assert_eq!(left(&store, secret), Ok(Some(2)));
    assert_eq!(left(&store, secret), Ok(Some(1)));
    assert_eq!(left(&store, secret), Ok(Some(0)));
    assert_eq!(
        left(&store, secret),
        Err(Rejection::UsageExceeded { retry_after: None })
    );
    assert_eq!(
        Rejection::UsageExceeded { retry_after: None }.code(),
        "usage_exceeded"
    );
    let plain = store
        .create_key(&alice, NewKey::new("plain").role("bot"))
        .unwrap();
    assert_eq!(
        store
            .verify_with_cost(plain.key.expose_secret(), ip(), 1000)
            .unwrap()
            .credits_remaining(),
        None,
        "a key without credits ignores the cost"
    );
    assert_eq!(store.key(k.id).unwrap().credits.unwrap().remaining, 0);
}

#[test]
fn a_weighted_request_spends_its_cost_or_nothing() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let k = store
        .create_key(
            &Actor::admin("a"),
            NewKey::new("bot").role("bot").credits(credits(10)),
        )
        .unwrap();
    let secret = k.key.expose_secret();
    assert_eq!(
        store
            .verify_with_cost(secret, ip(), 7)
            .unwrap()
            .credits_remaining(),
        Some(3)
    );
    assert!(matches!(
        store.verify_with_cost(secret, ip(), 4),
        Err(Rejection::UsageExceeded { .. })
    ));
    assert_eq!(
        store
            .verify_with_cost(secret, ip(), 0)
            .unwrap()
            .credits_remaining(),
        Some(3)
    );
    assert_eq!(
        store
            .verify_with_cost(secret, ip(), 3)
            .unwrap()
            .credits_remaining(),
        Some(0)
    );
}

#[test]
fn credits_refill_on_the_clock_and_the_refusal_says_when() {
    let clock = clock();
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let k = store
        .create_key(
            &Actor::admin("alice"),
            NewKey::new("bot")
                .role("bot")
                .credits(credits(2).refill(refill("5/1h"))),
        )
        .unwrap();
    let secret = k.key.expose_secret();
    assert_eq!(left(&store, secret), Ok(Some(1)));
    assert_eq!(left(&store, secret), Ok(Some(0)));
    clock.advance(Duration::from_secs(600));
    match left(&store, secret) {
        Err(
            e @ Rejection::UsageExceeded {
                retry_after: Some(wait),
            },
        ) => {
            assert_eq!(wait, Duration::from_secs(3000));
            assert_eq!(e.retry_after_secs(), Some(3000));
        }
        other => panic!("{other:?}"),
    }
    let view = store.key(k.id).unwrap().credits.unwrap();
    assert_eq!(view.refill, Some(refill("5/1h")));
    assert_eq!(view.next_refill_at, Some(clock.now() + Duration::from_secs(3000)));
    clock.advance(Duration::from_secs(3000));
    assert_eq!(left(&store, secret), Ok(Some(4)), "refilled to 5, one spent");
}

#[test]
fn a_request_refused_for_credits_takes_nothing_from_the_rate_limit() {
    let clock = clock();
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let k = store
        .create_key(
            &Actor::admin("alice"),
            NewKey::new("bot")
                .role("bot")
                .rate_limit("2/1h".parse().unwrap())
                .credits(credits(1)),
        )
        .unwrap();
    let secret = k.key.expose_secret();
    let first = store.verify(secret, ip()).unwrap();
    assert_eq!(first.credits_remaining(), Some(0));
    assert_eq!(first.rate_status().unwrap().remaining, 1);
    for _ in 0..5 {
        assert!(matches!(
            store.verify(secret, ip()),
            Err(Rejection::UsageExceeded { .. })
        ));
    }
    store.add_credits(&Actor::admin("alice"), k.id, 5).unwrap();
    let second = store.verify(secret, ip()).unwrap();
    assert_eq!(
        second.rate_status().unwrap().remaining,
        0,
        "the refusals took nothing"
    );
    assert!(matches!(
        store.verify(secret, ip()),
        Err(Rejection::RateLimited { .. })
    ));
}

#[test]
fn credits_change_by_chained_records_under_the_owner_rules() {
    let clock = clock();
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let (alice, bob, root) = (
        Actor::admin("alice"),
        Actor::admin("bob"),
        Actor::super_admin("root"),
    );
    let k = store
        .create_key(&alice, NewKey::new("bot").role("bot").credits(credits(1)))
        .unwrap();
    let created_seq = k.seq;
    let secret = k.key.expose_secret();
    assert!(matches!(
        store.add_credits(&bob, k.id, 5),
        Err(Error::PermissionDenied {
            denial: Denial::NotOwner { .. },
            ..
        })
    ));
    assert!(matches!(
        store.set_credits(&bob, k.id, None),
        Err(Error::PermissionDenied { .. })
    ));
    let added = store.add_credits(&alice, k.id, 5).unwrap();
    let set = store
        .set_credits(&root, k.id, Some(credits(100).refill(refill("100/1d"))))
        .unwrap();
    assert_eq!(left(&store, secret), Ok(Some(99)));
    let removed = store.set_credits(&alice, k.id, None).unwrap();
    assert_eq!(left(&store, secret), Ok(None), "unlimited again");
    assert!(matches!(
        store.set_credits(&alice, k.id, None),
        Err(Error::StateUnchanged { .. })
    ));

    let audit = store.audit();
    let kinds: Vec<EventKind> = audit.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Created,
            EventKind::CreditsSet,
            EventKind::CreditsAdded,
            EventKind::CreditsSet,
            EventKind::CreditsSet
        ]
    );
    assert_eq!(audit[1].seq, created_seq, "created and credited in one commit");
    assert_eq!(audit[1].credits, Some(credits(1)));
    assert_eq!(audit[2].credits_added, Some(5));
    assert_eq!(audit[3].credits, Some(credits(100).refill(refill("100/1d"))));
    assert_eq!(audit[4].credits, None);
    assert_eq!((audit[2].seq, audit[3].seq, audit[4].seq), (added, set, removed));

    // Time travel shows what the log set and added (not what was spent).
    let at = |seq: u64| {
        store.keys_at(seq).unwrap()[0]
            .credits
            .map(|c| (c.remaining, c.refill))
    };
    assert_eq!(at(created_seq), Some((1, None)));
    assert_eq!(at(added), Some((6, None)));
    assert_eq!(at(set), Some((100, Some(refill("100/1d")))));
    assert_eq!(at(removed), None);
}

#[test]
fn bad_credits_are_refused_naming_the_field_and_change_nothing() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let alice = Actor::admin("alice");
    let plain = store
        .create_key(&alice, NewKey::new("plain").role("bot"))
        .unwrap();
    let credited = store
        .create_key(
            &alice,
            NewKey::new("c").role("bot").credits(credits(MAX_CREDITS - 1)),
        )
        .unwrap();
    let before = store.last_seq();
    let field = |r: Result<u64, Error>| match r {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(store.add_credits(&alice, plain.id, 5)), "credits");
    assert_eq!(field(store.add_credits(&alice, credited.id, 0)), "credits");
    assert_eq!(field(store.add_credits(&alice, credited.id, 2)), "credits");
    assert_eq!(field(store.add_credits(&alice, credited.id, u64::MAX)), "credits");
    assert!(matches!(
        Credits::new(MAX_CREDITS + 1),
        Err(Error::InvalidInput { field: "credits", .. })
    ));
    for bad in ["0/1d", "5/30s", "5/400d", "5"] {
        assert!(
            matches!(
                bad.parse::<Refill>(),
                Err(Error::InvalidInput { field: "refill", .. })
            ),
            "{bad}"
        );
    }
    assert!(Refill::new(5, Duration::from_secs(59)).is_err());
    assert_eq!(store.last_seq(), before);
    assert!(matches!(
        store.add_credits(&alice, "00000000000000aa".parse::<KeyId>().unwrap(), 1),
        Err(Error::KeyNotFound(_))
    ));
    store.delete_key(&alice, credited.id).unwrap();
    assert!(matches!(
        store.add_credits(&alice, credited.id, 1),
        Err(Error::KeyDeleted(_))
    ));
    assert_eq!(store.key(credited.id).unwrap().credits, None);
}

#[test]
fn what_was_spent_survives_a_restart_and_a_later_top_up_adds_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Actor::admin("alice");
    let open = || KeyStore::builder().snapshot_every(2).open(dir.path()).unwrap();
    let (id, secret) = {
        let store = open();
        let k = store
            .create_key(&alice, NewKey::new("bot").role("bot").credits(credits(10)))
            .unwrap();
        for _ in 0..4 {
            store.verify(k.key.expose_secret(), ip()).unwrap();
        }
        (k.id, k.key.expose_secret().to_owned())
    };
    {
        let store = open();
        assert_eq!(store.key(id).unwrap().credits.unwrap().remaining, 6);
        assert_eq!(left(&store, &secret), Ok(Some(5)));
        store.add_credits(&alice, id, 10).unwrap();
        store.add_credits(&alice, id, 1).unwrap();
    }
    let store = open();
    assert!(store.opened_from_snapshot());
    assert_eq!(left(&store, &secret), Ok(Some(15)));
    // A new setting starts the count again, whatever was spent.
    store.set_credits(&alice, id, Some(credits(50))).unwrap();
    drop(store);
    let store = open();
    assert_eq!(left(&store, &secret), Ok(Some(49)));
}

#[test]
fn a_damaged_credits_file_only_costs_what_was_spent() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Actor::admin("alice");
    let (id, secret) = {
        let store = KeyStore::open(dir.path()).unwrap();
        let k = store
            .create_key(&alice, NewKey::new("bot").role("bot").credits(credits(10)))
            .unwrap();
        store.add_credits(&alice, k.id, 5).unwrap();
        for _ in 0..4 {
            store.verify(k.key.expose_secret(), ip()).unwrap();
        }
        (k.id, k.key.expose_secret().to_owned())
    };
    let path = dir.path().join("credits");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    assert_eq!(store.key(id).unwrap().credits.unwrap().remaining, 15);
    assert_eq!(left(&store, &secret), Ok(Some(14)));
}

#[test]
fn a_request_refused_for_a_missing_role_spends_neither_credits_nor_rate() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let k = store
        .create_key(
            &Actor::admin("alice"),
            NewKey::new("bot")
                .role("bot")
                .rate_limit("1/1h".parse().unwrap())
                .credits(credits(1)),
        )
        .unwrap();
    let secret = k.key.expose_secret();
    for _ in 0..3 {
        assert_eq!(
            store.verify_for_roles(secret, ip(), 1, &["admin"]),
            Err(Rejection::RoleMissing)
        );
    }
    let passed = store.verify_for_roles(secret, ip(), 1, &["bot"]).unwrap();
    assert_eq!(passed.credits_remaining(), Some(0));
    assert_eq!(passed.rate_status().unwrap().remaining, 0);
    assert_eq!(Rejection::RoleMissing.code(), "role_missing");
}
