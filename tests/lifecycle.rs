//! The key lifecycle: expiry, rolling with a grace period, disable and enable, adopting
//! existing keys, last-used stamps and the security trail of refused commands. Every
//! boundary is hit exactly with a manual clock; nothing sleeps.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use keyledger::{
    Action, Actor, Builder, Denial, Error, EventKind, ExistingKey, KeyStatus, KeyStore, MAX_ADOPTED_LEN,
    MIN_ADOPTED_LEN, ManualClock, NewKey, Rejection,
};
use sha2::Digest;

#[path = "support/files.rs"]
mod files;

const DAY: Duration = Duration::from_secs(86_400);

/// A clock 40 days in the past, so that a test can move it forward by weeks and the
/// store's records are still not in the future when it is reopened on the system clock.
fn past_clock() -> ManualClock {
    ManualClock::new(SystemTime::now() - 40 * DAY)
}

fn builder(clock: &ManualClock) -> Builder {
    KeyStore::builder().clock(clock.clone())
}

fn ip() -> IpAddr {
    "10.1.2.3".parse().unwrap()
}

fn bot(name: &str) -> NewKey {
    NewKey::new(name).role("bot")
}

mod expiry {
    use super::*;

    #[test]
    fn a_key_verifies_until_its_expiry_and_is_expired_from_that_microsecond_on() {
        let clock = past_clock();
        let store = builder(&clock).open_temporary().unwrap();
        let at = clock.now() + Duration::from_secs(90);
        let k = store
            .create_key(&Actor::admin("alice"), bot("short-lived").expires_at(at))
            .unwrap();
        let secret = k.key.expose_secret();
        clock.set(at - Duration::from_micros(1));
        assert!(store.verify(secret, ip()).is_ok());
        assert_eq!(store.key(k.id).unwrap().status, KeyStatus::Active);
        let seq = store.last_seq();
        clock.set(at);
        assert_eq!(store.verify(secret, ip()).unwrap_err(), Rejection::Expired);
        assert_eq!(Rejection::Expired.code(), "expired");
        let view = store.key(k.id).unwrap();
        assert_eq!(view.status, KeyStatus::Expired);
        assert_eq!(view.expires_at, Some(at));
        assert_eq!(store.last_seq(), seq, "expiring writes no event");
        assert!(store.keys().is_empty(), "an expired key is not live");
        assert_eq!(store.all_keys().len(), 1);
    }

    #[test]
    fn an_expiry_not_in_the_future_is_refused_and_writes_nothing() {
        let clock = past_clock();
        let store = builder(&clock).open_temporary().unwrap();
        for at in [clock.now(), clock.now() - Duration::from_secs(1)] {
            let err = store
                .create_key(&Actor::admin("alice"), bot("x").expires_at(at))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidInput {
                        field: "expires_at",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        assert_eq!(store.last_seq(), 0);
    }

    #[test]
    fn expiry_survives_a_reopen_and_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let clock = past_clock();
        let at = clock.now() + DAY;
        {
            let store = builder(&clock).snapshot_every(1).open(dir.path()).unwrap();
            store
                .create_key(&Actor::admin("alice"), bot("k").expires_at(at))
                .unwrap();
            store.create_key(&Actor::admin("alice"), bot("k2")).unwrap();
        }
        let store = builder(&clock).snapshot_every(1).open(dir.path()).unwrap();
        assert!(store.opened_from_snapshot());
        assert_eq!(store.all_keys()[0].expires_at, Some(at));
        assert_eq!(store.all_keys()[1].expires_at, None);
    }
}

mod roll {
    use super::*;

    #[test]
    fn a_roll_without_grace_stops_the_old_secret_at_once_and_keeps_everything_else() {
        let clock = past_clock();
        let store = builder(&clock).open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store
            .create_key(
                &alice,
                bot("rolled")
                    .allow("10.0.0.0/8".parse().unwrap())
                    .expires_at(clock.now() + DAY),
            )
            .unwrap();
        let before = store.key(k.id).unwrap();
        let rolled = store.roll_key(&alice, k.id, Duration::ZERO).unwrap();
        assert_eq!(rolled.id, k.id);
        assert_eq!(
            store.verify(k.key.expose_secret(), ip()).unwrap_err(),
            Rejection::UnknownKey
        );
        assert_eq!(store.verify(rolled.key.expose_secret(), ip()).unwrap().id(), k.id);
        let after = store.key(k.id).unwrap();
        assert_eq!(
            (
                &after.name,
                &after.roles,
                &after.whitelist,
                after.expires_at,
                &after.created_by
            ),
            (
                &before.name,
                &before.roles,
                &before.whitelist,
                before.expires_at,
                &before.created_by
            )
        );
        assert_ne!(after.hint, before.hint, "the hint follows the new secret");
        let entry = store.audit_entry(rolled.seq).unwrap();
        assert_eq!(entry.kind, EventKind::Rolled);
        assert_eq!(entry.previous_valid_until, Some(entry.at));
        assert_eq!(rolled.previous_valid_until, entry.at);
    }

    #[test]
    fn the_previous_secret_verifies_until_the_grace_ends_and_not_from_then_on() {
        let clock = past_clock();
        let store = builder(&clock).open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store.create_key(&alice, bot("graceful")).unwrap();
        let rolled = store.roll_key(&alice, k.id, Duration::from_secs(3600)).unwrap();
        let end = rolled.previous_valid_until;
        assert_eq!(end, clock.now() + Duration::from_secs(3600));
        clock.set(end - Duration::from_micros(1));
        assert_eq!(store.verify(k.key.expose_secret(), ip()).unwrap().id(), k.id);
        assert!(store.verify(rolled.key.expose_secret(), ip()).is_ok());
        clock.set(end);
        assert_eq!(
            store.verify(k.key.expose_secret(), ip()).unwrap_err(),
            Rejection::UnknownKey
        );
        assert!(store.verify(rolled.key.expose_secret(), ip()).is_ok());
        assert_eq!(
            store.audit_entry(rolled.seq).unwrap().previous_valid_until,
            Some(end)
        );
    }

    #[test]
    fn rolling_again_during_a_grace_ends_the_older_grace_at_once() {
        let clock = past_clock();
        let store = builder(&clock).open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store.create_key(&alice, bot("twice")).unwrap();
        let first = store.roll_key(&alice, k.id, Duration::from_secs(3600)).unwrap();
        clock.advance(Duration::from_secs(60));
        let second = store.roll_key(&alice, k.id, Duration::from_secs(3600)).unwrap();
        assert_eq!(
            store.verify(k.key.expose_secret(), ip()).unwrap_err(),
            Rejection::UnknownKey,
            "the original secret's grace ended with the second roll"
        );
        assert!(
            store.verify(first.key.expose_secret(), ip()).is_ok(),
            "in its grace"
        );
        assert!(store.verify(second.key.expose_secret(), ip()).is_ok());
    }

    #[test]
    fn deleting_or_disabling_a_key_in_its_grace_stops_both_secrets() {
        let clock = past_clock();
        let store = builder(&clock).open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store.create_key(&alice, bot("k")).unwrap();
        let rolled = store.roll_key(&alice, k.id, DAY).unwrap();
        store.disable_key(&alice, k.id).unwrap();
        for secret in [k.key.expose_secret(), rolled.key.expose_secret()] {
            assert_eq!(store.verify(secret, ip()).unwrap_err(), Rejection::Disabled);
        }
        store.delete_key(&alice, k.id).unwrap();
        for secret in [k.key.expose_secret(), rolled.key.expose_secret()] {
            assert_eq!(store.verify(secret, ip()).unwrap_err(), Rejection::UnknownKey);
        }
    }

    #[test]
    fn a_grace_survives_a_reopen_from_the_log_and_from_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let clock = past_clock();
        let alice = Actor::admin("alice");
        let (old, new) = {
            let store = builder(&clock).snapshot_every(1).open(dir.path()).unwrap();
            let k = store.create_key(&alice, bot("k")).unwrap();
            let rolled = store.roll_key(&alice, k.id, DAY).unwrap();
            (
                k.key.expose_secret().to_owned(),
                rolled.key.expose_secret().to_owned(),
            )
        };
        for every in [0, 1] {
            let store = builder(&clock).snapshot_every(every).open(dir.path()).unwrap();
            assert_eq!(store.opened_from_snapshot(), every == 1);
            assert!(store.verify(&old, ip()).is_ok());
            assert!(store.verify(&new, ip()).is_ok());
        }
        clock.advance(DAY);
        let store = builder(&clock).open(dir.path()).unwrap();
        assert_eq!(store.verify(&old, ip()).unwrap_err(), Rejection::UnknownKey);
    }

    #[test]
    fn a_grace_longer_than_the_maximum_is_refused() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store.create_key(&alice, bot("k")).unwrap();
        let err = store
            .roll_key(&alice, k.id, keyledger::MAX_GRACE + Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { field: "grace", .. }));
        assert_eq!(store.last_seq(), 1);
    }
}

mod disable {
    use super::*;

    #[test]
    fn a_disabled_key_is_rejected_until_enabled_and_repeats_are_typed_errors() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store.create_key(&alice, bot("k")).unwrap();
        let secret = k.key.expose_secret();
        assert!(matches!(
            store.enable_key(&alice, k.id),
            Err(Error::StateUnchanged { state: "enabled", .. })
        ));
        store.disable_key(&alice, k.id).unwrap();
        assert_eq!(store.verify(secret, ip()).unwrap_err(), Rejection::Disabled);
        assert_eq!(Rejection::Disabled.code(), "disabled");
        assert_eq!(store.key(k.id).unwrap().status, KeyStatus::Disabled);
        assert_eq!(store.keys().len(), 1, "a disabled key is still listed");
        let seq = store.last_seq();
        assert!(matches!(
            store.disable_key(&alice, k.id),
            Err(Error::StateUnchanged {
                state: "disabled",
                ..
            })
        ));
        assert_eq!(store.last_seq(), seq);
        store.enable_key(&alice, k.id).unwrap();
        assert!(store.verify(secret, ip()).is_ok());
        let kinds: Vec<EventKind> = store.audit().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Created, EventKind::Disabled, EventKind::Enabled]
        );
    }

    #[test]
    fn a_deleted_key_cannot_be_disabled_enabled_or_rolled() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store.create_key(&alice, bot("k")).unwrap();
        store.disable_key(&alice, k.id).unwrap();
        store.delete_key(&alice, k.id).unwrap();
        let seq = store.last_seq();
        assert!(matches!(
            store.enable_key(&alice, k.id),
            Err(Error::KeyDeleted(_))
        ));
        assert!(matches!(
            store.disable_key(&alice, k.id),
            Err(Error::KeyDeleted(_))
        ));
        assert!(matches!(
            store.roll_key(&alice, k.id, Duration::ZERO),
            Err(Error::KeyDeleted(_))
        ));
        assert_eq!(store.last_seq(), seq);
        assert_eq!(store.key(k.id).unwrap().status, KeyStatus::Deleted);
    }
}

mod permissions {
    use super::*;

    /// Every actor kind against roll, disable and enable on a key alice created: the rules
    /// of delete. Each refusal is in the security trail and changes nothing.
    #[test]
    fn roll_disable_and_enable_follow_the_rules_of_delete_and_refusals_are_recorded() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let owner = Actor::admin("alice");
        let cases = [
            (Actor::super_admin("root"), true),
            (Actor::admin("alice"), true),
            (Actor::admin("bob"), false),
            (Actor::user("eve"), false),
        ];
        let mut refusals = 0;
        for (actor, allowed) in &cases {
            let k = store.create_key(&owner, bot("target")).unwrap();
            let before = store.last_seq();
            for action in [Action::Roll, Action::Disable, Action::Enable] {
                let result = match action {
                    Action::Roll => store.roll_key(actor, k.id, Duration::ZERO).map(|r| r.seq),
                    Action::Disable => store.disable_key(actor, k.id).map(|r| r.seq),
                    _ => store.enable_key(actor, k.id),
                };
                assert_eq!(result.is_ok(), *allowed, "{actor:?} {action}: {result:?}");
                if !allowed {
                    refusals += 1;
                    assert!(matches!(result, Err(Error::PermissionDenied { .. })));
                    let trail = store.refused().unwrap();
                    let last = trail.last().unwrap();
                    assert_eq!((&last.actor, last.action, last.key), (actor, action, Some(k.id)));
                }
            }
            if !allowed {
                assert_eq!(store.last_seq(), before, "a refusal writes no record");
            }
        }
        let trail = store.refused().unwrap();
        assert_eq!(trail.len(), refusals);
        assert!(matches!(trail[0].denial, Denial::NotOwner { ref owner, .. } if owner == "alice"));
        assert_eq!(trail[3].denial, Denial::NotAnAdmin);
    }

    #[test]
    fn the_security_trail_is_durable_bounded_and_apart_from_the_key_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = KeyStore::builder().keep_refused(5).open(dir.path()).unwrap();
            let k = store.create_key(&Actor::admin("alice"), bot("k")).unwrap();
            for i in 0..8 {
                let bob = Actor::admin(format!("bob{i}"));
                assert!(store.delete_key(&bob, k.id).is_err());
            }
            assert!(
                store
                    .create_key(&Actor::admin("carol"), bot("x").role("super-admin"))
                    .is_err()
            );
            assert_eq!(store.last_seq(), 1);
        }
        let store = KeyStore::builder().keep_refused(5).open(dir.path()).unwrap();
        let trail = store.refused().unwrap();
        let actors: Vec<&str> = trail.iter().map(|a| a.actor.id()).collect();
        assert_eq!(
            actors,
            ["bob4", "bob5", "bob6", "bob7", "carol"],
            "oldest dropped"
        );
        assert_eq!(trail[4].action, Action::Create);
        assert_eq!(trail[4].denial, Denial::GrantsSuperAdmin);
        assert_eq!(store.audit().len(), 1, "the key log holds only the creation");
        drop(store);
        assert!(KeyStore::builder().check(dir.path()).unwrap().is_intact());
    }

    #[test]
    fn bad_input_and_missing_keys_are_not_refusals() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let alice = Actor::admin("alice");
        assert!(
            store
                .delete_key(&alice, "0000000000000001".parse().unwrap())
                .is_err()
        );
        assert!(store.create_key(&alice, NewKey::new("no roles")).is_err());
        assert!(store.refused().unwrap().is_empty());
    }
}

mod adopted {
    use super::*;

    fn sha256_hex(token: &str) -> String {
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Tokens of the shapes platforms issue (GitHub's, Stripe's, a JWT, with `.`, `-`,
    /// `_`, `/`, `+`, `=`), adopted as they are or by their SHA-256 hash, verify; a
    /// SHA-256-adopted secret shorter than the rule for secrets adopted as they are
    /// verifies too; a secret that could never arrive in a header is refused at import.
    #[test]
    fn adopted_secrets_of_every_common_shape_verify_and_impossible_ones_are_refused() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let root = Actor::super_admin("root");
        let jwt = format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.{}",
            "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
        let shapes = [
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "sk_live_51H8mGhK2eZvKYlo2C0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            jwt.as_str(),
            "Zm9vYmFyYmF6cXV4+/0123456789abc==",
            "legacy.token-with~every!printable#char$%&'()*,:;<>?@[]^`{|}",
        ];
        let short_hashed = "abc123";
        let mut keys = Vec::new();
        for (i, s) in shapes.iter().enumerate() {
            keys.push(ExistingKey::with_secret(bot(&format!("as is {i}")), s).unwrap());
            let reversed: String = s.chars().rev().collect();
            keys.push(ExistingKey::with_sha256(bot(&format!("hashed {i}")), &sha256_hex(&reversed)).unwrap());
        }
        keys.push(ExistingKey::with_sha256(bot("short"), &sha256_hex(short_hashed)).unwrap());
        let ids = store.import_keys(&root, keys).unwrap();
        for (i, s) in shapes.iter().enumerate() {
            assert_eq!(store.verify(s, ip()).unwrap().id(), ids[2 * i], "{s}");
            let reversed: String = s.chars().rev().collect();
            assert_eq!(
                store.verify(&reversed, ip()).unwrap().id(),
                ids[2 * i + 1],
                "{reversed}"
            );
        }
        assert_eq!(
            store.verify(short_hashed, ip()).unwrap().id(),
            ids[shapes.len() * 2]
        );
        let long = "t".repeat(MAX_ADOPTED_LEN);
        let ok = ExistingKey::with_secret(bot("longest"), &long).unwrap();
        let longest = store.import_keys(&root, vec![ok]).unwrap()[0];
        assert_eq!(store.verify(&long, ip()).unwrap().id(), longest);
        let before = store.last_seq();
        for bad in [
            "t".repeat(MAX_ADOPTED_LEN + 1),
            "has a space inside it_0123".to_owned(),
            "tab\tinside_the_secret_0123".to_owned(),
            "non_ascii_é_secret_000123".to_owned(),
            "x".repeat(MIN_ADOPTED_LEN - 1),
        ] {
            assert!(
                matches!(
                    ExistingKey::with_secret(bot("bad"), &bad),
                    Err(Error::InvalidInput { field: "key", .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(store.last_seq(), before);
    }

    #[test]
    fn adopted_secrets_verify_like_generated_keys_whatever_their_format() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let root = Actor::super_admin("root");
        let own_format = KeyStore::builder()
            .open_temporary()
            .unwrap()
            .create_key(&root, bot("elsewhere"))
            .unwrap();
        let foreign = "sk_live_0123456789abcdefXYZ";
        let hashed = "legacy-token_ABCDEFGHIJ0123";
        let keys = vec![
            ExistingKey::with_secret(bot("own"), own_format.key.expose_secret()).unwrap(),
            ExistingKey::with_secret(bot("foreign"), foreign).unwrap(),
            ExistingKey::with_sha256(bot("hashed"), &sha256_hex(hashed)).unwrap(),
        ];
        let ids = store.import_keys(&root, keys).unwrap();
        assert_eq!(ids.len(), 3);
        assert_eq!(
            store.verify(own_format.key.expose_secret(), ip()).unwrap().id(),
            ids[0]
        );
        assert_eq!(store.verify(foreign, ip()).unwrap().id(), ids[1]);
        assert_eq!(store.verify(hashed, ip()).unwrap().id(), ids[2]);
        assert_eq!(
            store.verify("sk_live_0123456789abcdefXYz", ip()).unwrap_err(),
            Rejection::UnknownKey
        );
        // Once keys are adopted, any token an adopted secret could be is looked up.
        assert_eq!(store.verify("short", ip()).unwrap_err(), Rejection::UnknownKey);
        assert!(matches!(
            store.verify(&"x".repeat(257), ip()).unwrap_err(),
            Rejection::Malformed(_)
        ));
        for (id, hint) in ids.iter().zip([&own_format.key.hint()[..], "…", "…"]) {
            let view = store.key(*id).unwrap();
            assert!(view.imported);
            assert_eq!(view.hint, hint);
        }
        let audit = store.audit();
        assert!(audit.iter().all(|e| e.kind == EventKind::Imported));
        let shown = format!("{:?} {:?}", audit, store.all_keys());
        for secret in [foreign, hashed, &own_format.key.expose_secret()[4..36]] {
            assert!(!shown.contains(secret), "a secret is never stored or shown");
        }
    }

    #[test]
    fn a_rolled_adopted_secret_keeps_its_grace_after_a_reopen_from_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let root = Actor::super_admin("root");
        let legacy = "legacy_secret_abcdefghij";
        {
            let store = KeyStore::builder().snapshot_every(1).open(dir.path()).unwrap();
            let ids = store
                .import_keys(
                    &root,
                    vec![ExistingKey::with_secret(bot("legacy"), legacy).unwrap()],
                )
                .unwrap();
            store.roll_key(&root, ids[0], DAY).unwrap();
        }
        for every in [1, 0] {
            let store = KeyStore::builder()
                .snapshot_every(every)
                .open(dir.path())
                .unwrap();
            assert_eq!(store.opened_from_snapshot(), every == 1);
            assert!(store.verify(legacy, ip()).is_ok(), "snapshots every {every}");
        }
    }

    #[test]
    fn without_adopted_keys_a_token_outside_the_format_is_malformed() {
        let store = KeyStore::builder().open_temporary().unwrap();
        store.create_key(&Actor::admin("a"), bot("k")).unwrap();
        assert!(matches!(
            store.verify("sk_live_0123456789abcdefXYZ", ip()).unwrap_err(),
            Rejection::Malformed(_)
        ));
    }

    #[test]
    fn an_import_is_all_or_nothing_and_names_the_first_bad_key() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let admin = Actor::admin("alice");
        let live = store.create_key(&admin, bot("live")).unwrap();
        let good = || ExistingKey::with_secret(bot("good"), "aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        let cases: Vec<(Vec<ExistingKey>, &str)> = vec![
            (
                vec![
                    good(),
                    ExistingKey::with_secret(bot("dup"), "aaaaaaaaaaaaaaaaaaaaaaaa").unwrap(),
                ],
                "key 2:",
            ),
            (
                vec![
                    good(),
                    ExistingKey::with_secret(bot("taken"), live.key.expose_secret()).unwrap(),
                ],
                "key 2:",
            ),
            (
                vec![
                    good(),
                    good(),
                    ExistingKey::with_secret(NewKey::new("no role"), "bbbbbbbbbbbbbbbbbbbbbbbb").unwrap(),
                ],
                "key 3:",
            ),
            (
                vec![
                    ExistingKey::with_secret(
                        bot("old").expires_at(SystemTime::now() - DAY),
                        "cccccccccccccccccccccccc",
                    )
                    .unwrap(),
                ],
                "key 1:",
            ),
            (Vec::new(), "no keys"),
        ];
        for (keys, named) in cases {
            let err = store.import_keys(&admin, keys).unwrap_err();
            match named
                .strip_prefix("key ")
                .and_then(|n| n.trim_end_matches(':').parse::<usize>().ok())
            {
                Some(n) => assert!(
                    matches!(&err, Error::ImportEntry { index, source } if *index == n
                        && matches!(**source, Error::InvalidInput { .. } | Error::SecretKnown)),
                    "{err:?}"
                ),
                None => assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}"),
            }
            assert!(err.to_string().contains(named), "{err} should name {named}");
            assert!(!err.to_string().contains("aaaaaaaa"), "{err}");
            assert_eq!(store.last_seq(), 1, "nothing written");
        }
        let escalate = vec![
            good(),
            ExistingKey::with_secret(bot("x").role("super-admin"), "dddddddddddddddddddddddd").unwrap(),
        ];
        let err = store.import_keys(&admin, escalate).unwrap_err();
        assert!(
            matches!(&err, Error::ImportEntry { index: 2, source }
                if matches!(**source, Error::PermissionDenied { denial: Denial::GrantsSuperAdmin, .. })),
            "{err:?}"
        );
        assert_eq!(store.last_seq(), 1);
        assert_eq!(store.refused().unwrap().len(), 1, "the refusal is in the trail");
    }

    #[test]
    fn secrets_and_hashes_that_break_the_rules_are_refused_without_being_quoted() {
        for bad in [
            "too_short_15_ch",
            &"a".repeat(257),
            "has space in it 0123456",
            "ümlaut0123456789012345",
        ] {
            let err = ExistingKey::with_secret(bot("x"), bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { field: "key", .. }));
            assert!(!err.to_string().contains(bad), "{err}");
        }
        let upper = "A".repeat(64);
        for bad in ["abc", &upper, &"g".repeat(64), &"a".repeat(65)] {
            assert!(matches!(
                ExistingKey::with_sha256(bot("x"), bad),
                Err(Error::InvalidInput { field: "sha256", .. })
            ));
        }
        assert!(ExistingKey::with_secret(bot("x"), &"a".repeat(16)).is_ok());
        assert!(ExistingKey::with_secret(bot("x"), &"a-_9.".repeat(51)).is_ok());
    }

    #[test]
    fn adopted_keys_survive_a_reopen_a_snapshot_and_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let root = Actor::super_admin("root");
        let foreign = "sk_live_0123456789abcdefXYZ";
        let hashed = "legacy-token_ABCDEFGHIJ0123";
        {
            let store = KeyStore::builder().snapshot_every(1).open(dir.path()).unwrap();
            store
                .import_keys(
                    &root,
                    vec![
                        ExistingKey::with_secret(bot("f"), foreign).unwrap(),
                        ExistingKey::with_sha256(bot("h"), &sha256_hex(hashed)).unwrap(),
                    ],
                )
                .unwrap();
            store.export(dir.path().join("backup.kl")).unwrap();
        }
        let restored = tempfile::tempdir().unwrap();
        KeyStore::builder()
            .import(restored.path().join("s"), dir.path().join("backup.kl"))
            .unwrap();
        for (path, every) in [
            (dir.path().to_owned(), 0),
            (dir.path().to_owned(), 1),
            (restored.path().join("s"), 0),
        ] {
            let store = KeyStore::builder().snapshot_every(every).open(&path).unwrap();
            assert!(store.verify(foreign, ip()).is_ok(), "{path:?} {every}");
            assert!(store.verify(hashed, ip()).is_ok(), "{path:?} {every}");
        }
    }
}

mod last_used {
    use super::*;

    #[test]
    fn a_verify_stamps_the_minute_and_a_reopen_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = past_clock();
        let (id, secret) = {
            let store = builder(&clock).open(dir.path()).unwrap();
            let k = store.create_key(&Actor::admin("alice"), bot("k")).unwrap();
            assert_eq!(store.key(k.id).unwrap().last_used_at, None);
            clock.advance(Duration::from_secs(125));
            store.verify(k.key.expose_secret(), ip()).unwrap();
            (k.id, k.key.expose_secret().to_owned())
        };
        let store = builder(&clock).open(dir.path()).unwrap();
        let minute = store.key(id).unwrap().last_used_at.unwrap();
        let now = clock.now();
        assert!(minute <= now && now.duration_since(minute).unwrap() < Duration::from_secs(60));
        // A rejected verify is not a use.
        clock.advance(Duration::from_secs(600));
        assert!(store.verify(&secret, "192.0.2.1".parse().unwrap()).is_ok());
        store.disable_key(&Actor::admin("alice"), id).unwrap();
        clock.advance(Duration::from_secs(600));
        assert!(store.verify(&secret, ip()).is_err());
        let later = store.key(id).unwrap().last_used_at.unwrap();
        assert!(later > minute && clock.now().duration_since(later).unwrap() >= Duration::from_secs(600));
        assert_eq!(store.last_seq(), 2, "a verify writes nothing to the log");
    }

    #[test]
    fn stamps_are_saved_periodically_while_the_store_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::builder()
            .save_last_used_every(Duration::ZERO)
            .open(dir.path())
            .unwrap();
        let k = store.create_key(&Actor::admin("alice"), bot("k")).unwrap();
        store.verify(k.key.expose_secret(), ip()).unwrap();
        // A thread of its own saves every 10 ms at the most here: wait for the file, within
        // a bound (the copy below is what a crash would leave).
        let file = dir.path().join("last-used");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let copy = tempfile::tempdir().unwrap();
        files::copy_dir(dir.path(), copy.path());
        drop(store);
        let reopened = KeyStore::open(copy.path()).unwrap();
        assert!(reopened.key(k.id).unwrap().last_used_at.is_some());
    }

    #[test]
    fn a_damaged_last_used_file_costs_only_the_stamps() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = KeyStore::open(dir.path()).unwrap();
            let k = store.create_key(&Actor::admin("alice"), bot("k")).unwrap();
            store.verify(k.key.expose_secret(), ip()).unwrap();
            k.id
        };
        let path = dir.path().join("last-used");
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        assert_eq!(store.key(id).unwrap().last_used_at, None);
        assert_eq!(store.last_seq(), 1);
    }
}

mod time_travel {
    use super::*;

    #[test]
    fn keys_at_follows_every_lifecycle_event() {
        let clock = past_clock();
        let store = builder(&clock).open_temporary().unwrap();
        let alice = Actor::admin("alice");
        let k = store
            .create_key(&alice, bot("k").expires_at(clock.now() + DAY))
            .unwrap();
        let created_hint = store.key(k.id).unwrap().hint;
        let disabled = store.disable_key(&alice, k.id).unwrap().seq;
        let enabled = store.enable_key(&alice, k.id).unwrap();
        let rolled = store.roll_key(&alice, k.id, Duration::ZERO).unwrap();
        clock.advance(2 * DAY);
        let after_expiry = store.create_key(&alice, bot("later")).unwrap().seq;
        let deleted = store.delete_key(&alice, k.id).unwrap().seq;
        let at = |seq: u64| store.keys_at(seq).unwrap().remove(0);
        assert_eq!(at(1).status, KeyStatus::Active);
        assert_eq!(at(1).hint, created_hint);
        assert_eq!(at(disabled).status, KeyStatus::Disabled);
        assert_eq!(at(enabled).status, KeyStatus::Active);
        assert_eq!(at(rolled.seq).hint, rolled.key.hint());
        assert_eq!(at(rolled.seq - 1).hint, created_hint);
        assert_eq!(at(after_expiry).status, KeyStatus::Expired);
        assert_eq!(at(deleted).status, KeyStatus::Deleted);
        assert!(
            store
                .keys_at(deleted)
                .unwrap()
                .iter()
                .all(|v| v.last_used_at.is_none())
        );
    }

    #[test]
    fn a_store_with_every_event_kind_checks_clean_and_reopens_identically() {
        let dir = tempfile::tempdir().unwrap();
        let clock = past_clock();
        let expected = {
            let store = builder(&clock).snapshot_every(3).open(dir.path()).unwrap();
            let alice = Actor::admin("alice");
            let k = store
                .create_key(&alice, bot("k").expires_at(clock.now() + DAY))
                .unwrap();
            store.disable_key(&alice, k.id).unwrap();
            store.enable_key(&alice, k.id).unwrap();
            store.roll_key(&alice, k.id, DAY).unwrap();
            store
                .import_keys(
                    &alice,
                    vec![ExistingKey::with_secret(bot("adopted"), "sk_live_0123456789abcdefXYZ").unwrap()],
                )
                .unwrap();
            store
                .whitelist_ip(&alice, k.id, ["10.0.0.0/8".parse().unwrap()])
                .unwrap();
            store.delete_key(&alice, k.id).unwrap();
            (store.all_keys(), store.audit())
        };
        let report = KeyStore::builder().check(dir.path()).unwrap();
        assert!(report.is_intact(), "{report:?}");
        for every in [0, 3] {
            let store = builder(&clock).snapshot_every(every).open(dir.path()).unwrap();
            assert_eq!(
                (store.all_keys(), store.audit()),
                expected,
                "snapshots every {every}"
            );
        }
    }
}

mod admin_keys {
    use super::*;

    #[test]
    fn an_admin_key_acts_as_its_creator_with_the_lesser_role_and_is_named_in_the_audit() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let root = Actor::super_admin("root");
        let verified = |secret: &str| store.verify(secret, ip()).unwrap();
        let super_key = store
            .create_key(&root, NewKey::new("root's console").role("super-admin"))
            .unwrap();
        let admin_key = store
            .create_key(&root, NewKey::new("ops console").role("admin"))
            .unwrap();
        let plain_key = store.create_key(&root, bot("not an admin key")).unwrap();

        let as_super = store
            .acting_through(&verified(super_key.key.expose_secret()))
            .unwrap();
        assert_eq!(
            (as_super.id(), as_super.role()),
            ("root", keyledger::ActorRole::SuperAdmin)
        );
        assert_eq!(as_super.via(), Some(super_key.id));
        let as_admin = store
            .acting_through(&verified(admin_key.key.expose_secret()))
            .unwrap();
        assert_eq!(
            (as_admin.id(), as_admin.role()),
            ("root", keyledger::ActorRole::Admin)
        );
        assert!(matches!(
            store.acting_through(&verified(plain_key.key.expose_secret())),
            Err(Error::PermissionDenied {
                denial: Denial::NotAnAdmin,
                ..
            })
        ));

        // Acting through the admin key: the rules are those of an admin named root, and
        // the audit names the key.
        let k = store.create_key(&as_admin, bot("made through the key")).unwrap();
        let entry = store.audit_entry(k.seq).unwrap();
        assert_eq!(entry.actor, Actor::admin("root"));
        assert_eq!(entry.via, Some(admin_key.id));
        let alices = store.create_key(&Actor::admin("alice"), bot("alice's")).unwrap();
        assert!(
            store.delete_key(&as_admin, alices.id).is_err(),
            "an admin, not a super admin"
        );
        assert_eq!(store.refused().unwrap()[0].via, Some(admin_key.id));
        assert!(store.delete_key(&as_super, alices.id).is_ok());
    }

    #[test]
    fn records_made_through_an_admin_key_survive_a_reopen_and_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let root = Actor::super_admin("root");
        let expected = {
            let store = KeyStore::builder().snapshot_every(1).open(dir.path()).unwrap();
            let key = store
                .create_key(&root, NewKey::new("console").role("admin"))
                .unwrap();
            let acting = store
                .acting_through(&store.verify(key.key.expose_secret(), ip()).unwrap())
                .unwrap();
            store.create_key(&acting, bot("through")).unwrap();
            store.audit()
        };
        assert_eq!(expected[1].via, expected[0].key_id);
        for every in [0, 1] {
            let store = KeyStore::builder()
                .snapshot_every(every)
                .open(dir.path())
                .unwrap();
            assert_eq!(store.audit(), expected);
        }
        assert!(KeyStore::builder().check(dir.path()).unwrap().is_intact());
    }

    /// An admin key made by a super admin acts as that super admin's id with the admin
    /// role: it must not take over the super admin's own keys by rolling them.
    #[test]
    fn an_admin_may_not_change_a_super_admin_key_even_under_the_super_admins_id() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let root = Actor::super_admin("root");
        let root_key = store
            .create_key(&root, NewKey::new("root console").role("super-admin"))
            .unwrap();
        let ci_key = store
            .create_key(&root, NewKey::new("ci console").role("admin"))
            .unwrap();
        let bot = store.create_key(&root, bot("root's bot")).unwrap();
        let ci = store
            .acting_through(&store.verify(ci_key.key.expose_secret(), ip()).unwrap())
            .unwrap();
        let seq = store.last_seq();
        let outranked = |e: Error| matches!(e, Error::PermissionDenied { denial: Denial::OutranksActor { key }, .. } if key == root_key.id);
        assert!(outranked(
            store.roll_key(&ci, root_key.id, Duration::ZERO).unwrap_err()
        ));
        assert!(outranked(store.disable_key(&ci, root_key.id).unwrap_err()));
        assert!(outranked(store.delete_key(&ci, root_key.id).unwrap_err()));
        assert!(outranked(
            store
                .unwhitelist_ip_allowing_any_address(&ci, root_key.id, ["10.0.0.0/8".parse().unwrap()])
                .unwrap_err()
        ));
        // Also without a key: an admin under the super admin's id.
        assert!(outranked(
            store
                .roll_key(&Actor::admin("root"), root_key.id, Duration::ZERO)
                .unwrap_err()
        ));
        assert_eq!(store.last_seq(), seq);
        assert_eq!(store.refused().unwrap().len(), 5);
        // The keys an admin named root made that hold no more than admin: allowed.
        assert!(store.roll_key(&ci, bot.id, Duration::ZERO).is_ok());
        assert!(
            store.roll_key(&root, root_key.id, Duration::ZERO).is_ok(),
            "a super admin may"
        );
    }

    #[test]
    fn an_admin_key_revoked_while_its_request_is_in_flight_writes_nothing() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let root = Actor::super_admin("root");
        let console = store
            .create_key(&root, NewKey::new("console").role("admin"))
            .unwrap();
        let acting = store
            .acting_through(&store.verify(console.key.expose_secret(), ip()).unwrap())
            .unwrap();
        store.disable_key(&root, console.id).unwrap();
        let revoked = |e: Error| matches!(e, Error::PermissionDenied { denial: Denial::AdminKeyRevoked { key }, .. } if key == console.id);
        let seq = store.last_seq();
        assert!(revoked(store.create_key(&acting, bot("late")).unwrap_err()));
        assert!(revoked(
            store
                .import_keys(
                    &acting,
                    vec![ExistingKey::with_secret(bot("late"), "eeeeeeeeeeeeeeeeeeeeeeee").unwrap()]
                )
                .unwrap_err()
        ));
        store.enable_key(&root, console.id).unwrap();
        assert!(store.create_key(&acting, bot("in time")).is_ok());
        store.delete_key(&root, console.id).unwrap();
        assert!(revoked(store.create_key(&acting, bot("late again")).unwrap_err()));
        assert_eq!(
            store.last_seq(),
            seq + 3,
            "only the enable, the create in time and the delete"
        );
    }

    #[test]
    fn a_plain_key_and_a_revoked_admin_key_act_as_no_one() {
        let store = KeyStore::builder().open_temporary().unwrap();
        let root = Actor::super_admin("root-operator");
        let plain = store.create_key(&root, bot("plain")).unwrap();
        let err = store
            .acting_through(&store.verify(plain.key.expose_secret(), ip()).unwrap())
            .unwrap_err();
        assert!(matches!(
            err,
            Error::PermissionDenied {
                denial: Denial::NotAnAdmin,
                ..
            }
        ));
        let console = store
            .create_key(&root, NewKey::new("console").role("admin"))
            .unwrap();
        let verified = store.verify(console.key.expose_secret(), ip()).unwrap();
        store.disable_key(&root, console.id).unwrap();
        assert!(matches!(
            store.acting_through(&verified),
            Err(Error::PermissionDenied {
                denial: Denial::AdminKeyRevoked { .. },
                ..
            })
        ));
    }
}
