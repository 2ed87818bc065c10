//! Rate limits through the public API: what `verify` admits, who may change a key's
//! limits and how, what the audit trail and time travel show, and that limits survive a
//! restart, from the log and from a snapshot.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use keyledger::{
    Actor, Denial, Error, EventKind, KeyStore, ManualClock, NewKey, RateLimit, Rejection, parse_net,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limit(s: &str) -> RateLimit {
    s.parse().unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

fn store_on(clock: &ManualClock) -> KeyStore {
    KeyStore::builder().clock(clock.clone()).open_temporary().unwrap()
}

#[test]
fn a_limited_key_passes_its_burst_then_is_refused_with_when_to_retry() {
    let clock = clock();
    let store = store_on(&clock);
    let alice = Actor::admin("alice");
    let limited = store
        .create_key(
            &alice,
            NewKey::new("metered").role("bot").rate_limit(limit("3/9s")),
        )
        .unwrap();
    let plain = store
        .create_key(&alice, NewKey::new("plain").role("bot"))
        .unwrap();
    let secret = limited.key.expose_secret();
    let remaining: Vec<u32> = (0..3)
        .map(|_| {
            store
                .verify(secret, ip("192.0.2.1"))
                .unwrap()
                .rate_status()
                .unwrap()
                .remaining
        })
        .collect();
    assert_eq!(remaining, [2, 1, 0]);
    match store.verify(secret, ip("192.0.2.1")) {
        Err(Rejection::RateLimited {
            limit: l,
            retry_after,
        }) => {
            assert_eq!(l, limit("3/9s"));
            assert_eq!(retry_after, Duration::from_secs(3));
        }
        other => panic!("the fourth of a burst of three: {other:?}"),
    }
    assert_eq!(
        Rejection::RateLimited {
            limit: limit("3/9s"),
            retry_after: Duration::from_secs(3)
        }
        .code(),
        "rate_limited"
    );
    // Other keys are not touched, and a key without limits reports none.
    for _ in 0..10 {
        assert_eq!(
            store
                .verify(plain.key.expose_secret(), ip("192.0.2.1"))
                .unwrap()
                .rate_status(),
            None
        );
    }
    clock.advance(Duration::from_secs(3));
    assert!(store.verify(secret, ip("192.0.2.1")).is_ok());
    assert!(store.verify(secret, ip("192.0.2.1")).is_err());
}

#[test]
fn a_refused_address_spends_nothing_of_the_limit() {
    let clock = clock();
    let store = store_on(&clock);
    let new = NewKey::new("bot")
        .role("bot")
        .allow(parse_net("10.0.0.0/8").unwrap())
        .rate_limit(limit("2/1h"));
    let key = store.create_key(&Actor::admin("alice"), new).unwrap();
    let secret = key.key.expose_secret();
    for _ in 0..5 {
        assert_eq!(
            store.verify(secret, ip("192.0.2.1")),
            Err(Rejection::IpNotWhitelisted)
        );
    }
    assert!(store.verify(secret, ip("10.1.1.1")).is_ok());
    assert!(store.verify(secret, ip("10.1.1.1")).is_ok());
    assert!(matches!(
        store.verify(secret, ip("10.1.1.1")),
        Err(Rejection::RateLimited { .. })
    ));
}

#[test]
fn limits_change_by_a_chained_record_under_the_owner_rules() {
    let clock = clock();
    let store = store_on(&clock);
    let (alice, bob, root) = (
        Actor::admin("alice"),
        Actor::admin("bob"),
        Actor::super_admin("root"),
    );
    let key = store.create_key(&alice, NewKey::new("bot").role("bot")).unwrap();
    let secret = key.key.expose_secret();
    let before = store.last_seq();
    assert!(matches!(
        store.set_rate_limits(&bob, key.id, [limit("1/1s")]),
        Err(Error::PermissionDenied {
            denial: Denial::NotOwner { .. },
            ..
        })
    ));
    assert!(matches!(
        store.set_rate_limits(&Actor::user("eve"), key.id, [limit("1/1s")]),
        Err(Error::PermissionDenied { .. })
    ));
    assert_eq!(store.last_seq(), before, "a refusal writes nothing");
    let seq = store
        .set_rate_limits(&alice, key.id, [limit("100/1m"), limit("2/1s")])
        .unwrap();
    assert_eq!(seq, before + 1);
    assert_eq!(
        store.key(key.id).unwrap().rate_limits,
        [limit("2/1s"), limit("100/1m")]
    );
    assert!(store.verify(secret, ip("192.0.2.1")).is_ok());
    assert!(store.verify(secret, ip("192.0.2.1")).is_ok());
    assert!(store.verify(secret, ip("192.0.2.1")).is_err());
    assert!(matches!(
        store.set_rate_limits(&alice, key.id, [limit("2/1s"), limit("100/1m")]),
        Err(Error::StateUnchanged { .. })
    ));
    // A super admin may change anyone's; none removes them.
    store.set_rate_limits(&root, key.id, []).unwrap();
    for _ in 0..20 {
        assert!(store.verify(secret, ip("192.0.2.1")).is_ok());
    }
    let audit = store.audit();
    let changes: Vec<_> = audit
        .iter()
        .filter(|e| e.kind == EventKind::LimitsChanged)
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].rate_limits, [limit("2/1s"), limit("100/1m")]);
    assert_eq!(changes[0].key_id, Some(key.id));
    assert!(changes[1].rate_limits.is_empty());
    // Time travel shows the limits the key had then.
    assert_eq!(
        store.keys_at(seq).unwrap()[0].rate_limits,
        [limit("2/1s"), limit("100/1m")]
    );
    assert!(store.keys_at(seq - 1).unwrap()[0].rate_limits.is_empty());
    assert!(store.key(key.id).unwrap().rate_limits.is_empty());
    // Refusals are in the security trail, named as what they attempted.
    assert!(
        store
            .refused()
            .unwrap()
            .iter()
            .any(|r| r.action.as_str() == "limit")
    );
}

#[test]
fn bad_limits_are_refused_naming_the_field_and_change_nothing() {
    let clock = clock();
    let store = store_on(&clock);
    let alice = Actor::admin("alice");
    let key = store.create_key(&alice, NewKey::new("bot").role("bot")).unwrap();
    let before = store.last_seq();
    let five: Vec<RateLimit> = (1..=5)
        .map(|s| RateLimit::new(1, Duration::from_secs(s)).unwrap())
        .collect();
    let field_of = |e: Error| match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field_of(store.set_rate_limits(&alice, key.id, five.clone()).unwrap_err()),
        "rate limit"
    );
    assert_eq!(
        field_of(
            store
                .set_rate_limits(&alice, key.id, [limit("1/1m"), limit("2/60s")])
                .unwrap_err()
        ),
        "rate limit"
    );
    let mut new = NewKey::new("too many").role("bot");
    for l in five {
        new = new.rate_limit(l);
    }
    assert_eq!(field_of(store.create_key(&alice, new).unwrap_err()), "rate limit");
    for bad in ["0/1m", "1/0s", "1/31d", "1/500ms", "5/1w", "1000001/1s"] {
        assert!(
            matches!(
                bad.parse::<RateLimit>(),
                Err(Error::InvalidInput {
                    field: "rate limit",
                    ..
                })
            ),
            "{bad}"
        );
    }
    assert!(RateLimit::new(0, Duration::from_secs(60)).is_err());
    assert!(RateLimit::new(1, Duration::from_millis(500)).is_err());
    assert_eq!(store.last_seq(), before);
}

#[test]
fn limits_survive_a_restart_and_a_deleted_key_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Actor::admin("alice");
    let (id, secret, gone) = {
        let store = KeyStore::open(dir.path()).unwrap();
        let k = store
            .create_key(&alice, NewKey::new("bot").role("bot").rate_limit(limit("2/1h")))
            .unwrap();
        let gone = store
            .create_key(&alice, NewKey::new("gone").role("bot").rate_limit(limit("5/1m")))
            .unwrap();
        store.delete_key(&alice, gone.id).unwrap();
        (k.id, k.key.expose_secret().to_owned(), gone.id)
    };
    let store = KeyStore::open(dir.path()).unwrap();
    assert_eq!(store.key(id).unwrap().rate_limits, [limit("2/1h")]);
    assert_eq!(store.key(gone).unwrap().rate_limits, [limit("5/1m")]);
    assert!(store.verify(&secret, ip("192.0.2.1")).is_ok());
    assert!(store.verify(&secret, ip("192.0.2.1")).is_ok());
    assert!(matches!(
        store.verify(&secret, ip("192.0.2.1")),
        Err(Rejection::RateLimited { .. })
    ));
    let created = store.audit().into_iter().find(|e| e.key_id == Some(id)).unwrap();
    assert_eq!(created.rate_limits, [limit("2/1h")]);
}
