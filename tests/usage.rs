//! Usage a person can see, through the public API on a manual clock: requests per hour
//! and per UTC day, accepted and refused by reason, the 30 days kept, and the counts
//! surviving a restart (or only the counts lost, when their file is damaged).
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use keyledger::{
    Actor, Error, Granularity, KeyId, KeyStore, ManualClock, NewKey, RateLimit, RejectedCounts, Rejection,
    UsageBucket,
};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// 2027-01-15T08:00:00Z, on the hour.
fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn alice() -> Actor {
    Actor::admin("alice")
}

/// `(accepted, refused in all)` of each bucket.
fn totals(buckets: &[UsageBucket]) -> Vec<(u64, u64)> {
    buckets.iter().map(|b| (b.accepted, b.rejected.total())).collect()
}

fn hours(store: &KeyStore, id: KeyId, since: SystemTime, until: SystemTime) -> Vec<UsageBucket> {
    store.usage(id, since, until, Granularity::Hour).unwrap()
}

#[test]
fn accepted_requests_are_counted_in_the_hour_they_came_including_the_current_one() {
    let clock = ManualClock::new(start() + Duration::from_secs(600));
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let key = store
        .create_key(&alice(), NewKey::new("bot").role("bot"))
        .unwrap();
    let quiet = store
        .create_key(&alice(), NewKey::new("quiet").role("bot"))
        .unwrap();
    let secret = key.key.expose_secret();
    for _ in 0..3 {
        store.verify(secret, ip("10.0.0.1")).unwrap();
    }
    clock.advance(HOUR);
    for _ in 0..2 {
        store.verify(secret, ip("10.0.0.1")).unwrap();
    }
    clock.advance(2 * HOUR);
    store.verify(secret, ip("10.0.0.1")).unwrap();

    let buckets = hours(&store, key.id, start(), clock.now());
    let starts: Vec<SystemTime> = buckets.iter().map(|b| b.start).collect();
    assert_eq!(
        starts,
        [start(), start() + HOUR, start() + 2 * HOUR, start() + 3 * HOUR]
    );
    assert_eq!(totals(&buckets), [(3, 0), (2, 0), (0, 0), (1, 0)]);
    // A range inside one hour is that hour's bucket; `until` past now stops at now.
    assert_eq!(
        totals(&hours(&store, key.id, start() + HOUR, start() + HOUR)),
        [(2, 0)]
    );
    assert_eq!(
        totals(&hours(&store, key.id, clock.now(), clock.now() + 5 * HOUR)),
        [(1, 0)]
    );
    // Another key's counts are its own.
    assert_eq!(
        totals(&hours(&store, quiet.id, start(), clock.now())),
        [(0, 0); 4]
    );
}

#[test]
fn a_day_bucket_is_a_utc_day_and_sums_its_hours() {
    // 22:30 UTC: two hours later it is the next day.
    let evening = start() + 14 * HOUR + Duration::from_secs(1800);
    let clock = ManualClock::new(evening);
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let key = store
        .create_key(&alice(), NewKey::new("bot").role("bot"))
        .unwrap();
    let secret = key.key.expose_secret();
    store.verify(secret, ip("10.0.0.1")).unwrap();
    clock.advance(HOUR);
    store.verify(secret, ip("10.0.0.1")).unwrap();
    store.verify(secret, ip("10.0.0.1")).unwrap();
    clock.advance(HOUR);
    for _ in 0..4 {
        store.verify(secret, ip("10.0.0.1")).unwrap();
    }
    let days = store
        .usage(key.id, evening, clock.now(), Granularity::Day)
        .unwrap();
    let midnight = start() - 8 * HOUR;
    assert_eq!(
        days.iter().map(|b| b.start).collect::<Vec<_>>(),
        [midnight, midnight + DAY]
    );
    assert_eq!(totals(&days), [(3, 0), (4, 0)]);
}

#[test]
fn refusals_are_counted_by_reason_and_unknown_keys_and_other_keys_are_not() {
    let clock = ManualClock::new(start());
    let store = KeyStore::builder()
        .clock(clock.clone())
        .require_whitelist(true)
        .open_temporary()
        .unwrap();
    let fenced = store
        .create_key(
            &alice(),
            NewKey::new("fenced")
                .role("bot")
                .allow("10.0.0.0/8".parse().unwrap())
                .rate_limit("2/1h".parse::<RateLimit>().unwrap()),
        )
        .unwrap();
    let open = store
        .create_key(&alice(), NewKey::new("open").role("bot"))
        .unwrap();
    let secret = fenced.key.expose_secret();
    store.verify(secret, ip("10.0.0.1")).unwrap();
    store.verify(secret, ip("10.0.0.1")).unwrap();
    assert!(matches!(
        store.verify(secret, ip("10.0.0.1")),
        Err(Rejection::RateLimited { .. })
    ));
    assert_eq!(
        store.verify(secret, ip("192.0.2.1")).unwrap_err(),
        Rejection::IpNotWhitelisted
    );
    assert_eq!(
        store.verify(secret, ip("192.0.2.1")).unwrap_err(),
        Rejection::IpNotWhitelisted
    );
    assert_eq!(
        store
            .verify(open.key.expose_secret(), ip("10.0.0.1"))
            .unwrap_err(),
        Rejection::NoWhitelist
    );
    store.disable_key(&alice(), fenced.id).unwrap();
    assert_eq!(
        store.verify(secret, ip("10.0.0.1")).unwrap_err(),
        Rejection::Disabled
    );
    let unknown = "klk_".to_owned() + &"A".repeat(keyledger::KEY_LEN - 4);
    assert!(store.verify(&unknown, ip("10.0.0.1")).is_err());

    let buckets = hours(&store, fenced.id, start(), start());
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0].accepted, 2);
    let mut expected = RejectedCounts::default();
    expected.rate_limited = 1;
    expected.ip_not_whitelisted = 2;
    expected.disabled = 1;
    assert_eq!(buckets[0].rejected, expected);
    let open_counts = hours(&store, open.id, start(), start())[0].rejected;
    assert_eq!(
        open_counts.iter().filter(|&(_, n)| n > 0).collect::<Vec<_>>(),
        [("no_whitelist", 1)]
    );
}

#[test]
fn an_expired_key_counts_its_refusals() {
    let clock = ManualClock::new(start());
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let key = store
        .create_key(
            &alice(),
            NewKey::new("brief").role("bot").expires_at(start() + HOUR),
        )
        .unwrap();
    store.verify(key.key.expose_secret(), ip("10.0.0.1")).unwrap();
    clock.advance(HOUR);
    assert_eq!(
        store.verify(key.key.expose_secret(), ip("10.0.0.1")).unwrap_err(),
        Rejection::Expired
    );
    let buckets = hours(&store, key.id, start(), clock.now());
    assert_eq!(totals(&buckets), [(1, 0), (0, 1)]);
    assert_eq!(buckets[1].rejected.expired, 1);
}

#[test]
fn thirty_days_are_kept_and_a_range_reaching_further_back_is_refused() {
    let clock = ManualClock::new(start());
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let key = store
        .create_key(&alice(), NewKey::new("bot").role("bot"))
        .unwrap();
    store.verify(key.key.expose_secret(), ip("10.0.0.1")).unwrap();
    clock.advance(30 * DAY);
    store.verify(key.key.expose_secret(), ip("10.0.0.1")).unwrap();
    // 720 hours back is the oldest hour kept: whole.
    let month = hours(&store, key.id, start(), clock.now());
    assert_eq!(month.len(), 721);
    assert_eq!((month[0].accepted, month[720].accepted), (1, 1));
    assert_eq!(month.iter().map(|b| b.accepted).sum::<u64>(), 2);
    // The last 30 UTC days, today included, always fit.
    let today = start() - 8 * HOUR + 30 * DAY;
    let days = store
        .usage(key.id, today - 29 * DAY, clock.now(), Granularity::Day)
        .unwrap();
    assert_eq!(days.len(), 30);

    clock.advance(HOUR);
    let refused = store.usage(key.id, start(), clock.now(), Granularity::Hour);
    assert!(
        matches!(refused, Err(Error::InvalidInput { field: "since", .. })),
        "{refused:?}"
    );
    // A day that began before the oldest hour kept is not whole: refused too.
    let refused = store.usage(key.id, clock.now() - 30 * DAY, clock.now(), Granularity::Day);
    assert!(
        matches!(refused, Err(Error::InvalidInput { field: "since", .. })),
        "{refused:?}"
    );
    let month = hours(&store, key.id, start() + HOUR, clock.now());
    assert_eq!(month.iter().map(|b| b.accepted).sum::<u64>(), 1);
}

#[test]
fn bad_input_is_a_typed_error_and_a_deleted_keys_counts_stay_readable() {
    let clock = ManualClock::new(start());
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let key = store
        .create_key(&alice(), NewKey::new("bot").role("bot"))
        .unwrap();
    store.verify(key.key.expose_secret(), ip("10.0.0.1")).unwrap();
    let backwards = store.usage(key.id, start() + HOUR, start(), Granularity::Hour);
    assert!(
        matches!(backwards, Err(Error::InvalidInput { field: "since", .. })),
        "{backwards:?}"
    );
    let never: KeyId = "00000000000000aa".parse().unwrap();
    let unknown = store.usage(never, start(), start(), Granularity::Hour);
    assert!(
        matches!(unknown, Err(Error::KeyNotFound(id)) if id == never),
        "{unknown:?}"
    );
    assert!(matches!(
        "week".parse::<Granularity>(),
        Err(Error::InvalidInput {
            field: "granularity",
            ..
        })
    ));
    assert_eq!(
        totals(&hours(&store, key.id, start(), start())),
        [(1, 0)],
        "nothing changed"
    );
    store.delete_key(&alice(), key.id).unwrap();
    assert_eq!(totals(&hours(&store, key.id, start(), start())), [(1, 0)]);
}

#[test]
fn counts_survive_close_and_reopen_and_go_on_adding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let clock = ManualClock::new(start());
    let open = || KeyStore::builder().clock(clock.clone()).open(&path).unwrap();
    let store = open();
    let key = store
        .create_key(&alice(), NewKey::new("bot").role("bot"))
        .unwrap();
    let secret = key.key.expose_secret().to_owned();
    store.verify(&secret, ip("10.0.0.1")).unwrap();
    store.disable_key(&alice(), key.id).unwrap();
    store.verify(&secret, ip("10.0.0.1")).unwrap_err();
    store.enable_key(&alice(), key.id).unwrap();
    clock.advance(HOUR);
    store.verify(&secret, ip("10.0.0.1")).unwrap();
    store.verify(&secret, ip("10.0.0.1")).unwrap();
    drop(store);

    let store = open();
    assert_eq!(
        totals(&hours(&store, key.id, start(), clock.now())),
        [(1, 1), (2, 0)]
    );
    // The current hour goes on from what was saved.
    store.verify(&secret, ip("10.0.0.1")).unwrap();
    drop(store);
    let store = open();
    let buckets = hours(&store, key.id, start(), clock.now());
    assert_eq!(totals(&buckets), [(1, 1), (3, 0)]);
    assert_eq!(buckets[0].rejected.disabled, 1);
    assert!(store.key(key.id).unwrap().last_used_at.is_some());
}

#[test]
fn a_damaged_usage_file_costs_only_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let clock = ManualClock::new(start());
    let open = || KeyStore::builder().clock(clock.clone()).open(&path).unwrap();
    let store = open();
    let key = store
        .create_key(&alice(), NewKey::new("bot").role("bot"))
        .unwrap();
    let secret = key.key.expose_secret().to_owned();
    store.verify(&secret, ip("10.0.0.1")).unwrap();
    drop(store);
    let file = path.join("last-used");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let store = open();
    assert_eq!(totals(&hours(&store, key.id, start(), start())), [(0, 0)]);
    assert_eq!(store.key(key.id).unwrap().last_used_at, None);
    store.verify(&secret, ip("10.0.0.1")).unwrap();
    assert_eq!(totals(&hours(&store, key.id, start(), start())), [(1, 0)]);
}

#[test]
fn concurrent_verifies_across_hour_boundaries_lose_no_count() {
    let clock = ManualClock::new(start());
    let store = KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
    let key = store
        .create_key(&alice(), NewKey::new("bot").role("bot"))
        .unwrap();
    let secret = key.key.expose_secret().to_owned();
    let (threads, each) = (4, 20_000u64);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..each {
                    store.verify(&secret, ip("10.0.0.1")).unwrap();
                }
            });
        }
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(2));
            clock.advance(HOUR);
        }
    });
    let buckets = hours(&store, key.id, start(), clock.now());
    assert_eq!(
        buckets.iter().map(|b| b.accepted).sum::<u64>(),
        threads * each,
        "{buckets:?}"
    );
}
