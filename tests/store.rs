//! The store's promises, through its public API: permissions, restart, IP rules, secrets,
//! and revocation under concurrent verification.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyledger::{Actor, Denial, Error, EventKind, KeyId, KeyStore, NewKey, Rejection, parse_net};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn temp_store() -> (tempfile::TempDir, KeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn bot(name: &str) -> NewKey {
    NewKey::new(name).role("bot")
}

mod permissions {
    use super::*;

    #[test]
    fn admins_and_super_admins_create_keys_users_do_not() {
        let (_d, store) = temp_store();
        assert!(store.create_key(&Actor::super_admin("root"), bot("a")).is_ok());
        assert!(store.create_key(&Actor::admin("alice"), bot("b")).is_ok());
        let before = store.last_seq();
        assert!(matches!(
            store.create_key(&Actor::user("eve"), bot("c")),
            Err(Error::PermissionDenied { .. })
        ));
        assert_eq!(store.last_seq(), before);
    }

    #[test]
    fn only_a_super_admin_may_grant_super_admin() {
        let (_d, store) = temp_store();
        let escalate = || NewKey::new("x").role("bot").role("super-admin");
        assert!(matches!(
            store.create_key(&Actor::admin("alice"), escalate()),
            Err(Error::PermissionDenied {
                denial: Denial::GrantsSuperAdmin,
                ..
            })
        ));
        assert_eq!(store.last_seq(), 0);
        let k = store.create_key(&Actor::super_admin("root"), escalate()).unwrap();
        assert!(
            store
                .key(k.id)
                .unwrap()
                .roles
                .contains(&"super-admin".to_string())
        );
        // An admin may grant the admin role.
        assert!(
            store
                .create_key(&Actor::admin("alice"), NewKey::new("y").role("admin"))
                .is_ok()
        );
    }

    /// Every actor kind against every modifying action on a key alice created.
    #[test]
    fn permission_matrix_for_whitelist_unwhitelist_and_delete() {
        let owner = Actor::admin("alice");
        let cases: [(Actor, bool); 4] = [
            (Actor::super_admin("root"), true),
            (Actor::admin("alice"), true),
            (Actor::admin("bob"), false),
            (Actor::user("eve"), false),
        ];
        for (actor, allowed) in cases {
            let (_d, store) = temp_store();
            let id = store
                .create_key(&owner, bot("k").allow(parse_net("10.0.0.1").unwrap()))
                .unwrap()
                .id;
            let net = parse_net("10.0.0.0/8").unwrap();
            let existing = parse_net("10.0.0.1").unwrap();
            let seq = store.last_seq();
            let results = [
                store.whitelist_ip(&actor, id, [net]),
                store.unwhitelist_ip(&actor, id, [existing]),
                store.delete_key(&actor, id),
            ];
            for r in results {
                if allowed {
                    assert!(r.is_ok(), "{actor:?}: {r:?}");
                } else {
                    assert!(
                        matches!(r, Err(Error::PermissionDenied { .. })),
                        "{actor:?}: {r:?}"
                    );
                }
            }
            assert_eq!(store.last_seq(), if allowed { seq + 3 } else { seq });
        }
    }

    #[test]
    fn admin_cannot_delete_another_admins_key_but_super_admin_can() {
        let (_d, store) = temp_store();
        let k = store.create_key(&Actor::admin("alice"), bot("a")).unwrap();
        assert!(matches!(
            store.delete_key(&Actor::admin("bob"), k.id),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(store.verify(k.key.expose_secret(), ip("1.2.3.4")).is_ok());
        store.delete_key(&Actor::super_admin("root"), k.id).unwrap();
        assert_eq!(
            store.verify(k.key.expose_secret(), ip("1.2.3.4")).unwrap_err(),
            Rejection::UnknownKey
        );
        let trail = store.audit();
        assert_eq!(trail.last().unwrap().kind, EventKind::Deleted);
        assert_eq!(trail.last().unwrap().actor, Actor::super_admin("root"));
    }

    #[test]
    fn acting_on_unknown_or_deleted_keys_is_an_error_that_appends_nothing() {
        let (_d, store) = temp_store();
        let root = Actor::super_admin("root");
        let unknown: KeyId = "00000000000000aa".parse().unwrap();
        assert!(matches!(
            store.delete_key(&root, unknown),
            Err(Error::KeyNotFound(_))
        ));
        let k = store.create_key(&root, bot("a")).unwrap();
        store.delete_key(&root, k.id).unwrap();
        let seq = store.last_seq();
        let net = parse_net("10.0.0.0/8").unwrap();
        assert!(matches!(store.delete_key(&root, k.id), Err(Error::KeyDeleted(_))));
        assert!(matches!(
            store.whitelist_ip(&root, k.id, [net]),
            Err(Error::KeyDeleted(_))
        ));
        assert!(matches!(
            store.unwhitelist_ip(&root, k.id, [net]),
            Err(Error::KeyDeleted(_))
        ));
        assert_eq!(store.last_seq(), seq);
    }

    #[test]
    fn bad_input_is_refused_with_a_typed_error_and_changes_nothing() {
        let (_d, store) = temp_store();
        let root = Actor::super_admin("root");
        let bad = [
            NewKey::new("   ").role("bot"),
            NewKey::new("x".repeat(101)).role("bot"),
            NewKey::new("a\nb").role("bot"),
            NewKey::new("ok"),
            NewKey::new("ok").role("Bot"),
            NewKey::new("ok").role("bot").role("bot"),
            NewKey::new("ok").role("r".repeat(65)),
        ];
        for new in bad {
            assert!(
                matches!(
                    store.create_key(&root, new.clone()),
                    Err(Error::InvalidInput { .. })
                ),
                "{new:?}"
            );
        }
        assert!(matches!(
            store.create_key(&Actor::super_admin(""), bot("a")),
            Err(Error::InvalidInput { field: "actor", .. })
        ));
        let k = store.create_key(&root, bot("a")).unwrap();
        let seq = store.last_seq();
        let net = parse_net("10.0.0.0/8").unwrap();
        assert!(matches!(
            store.whitelist_ip(&root, k.id, []),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            store.whitelist_ip(&root, k.id, [net, net]),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            store.unwhitelist_ip(&root, k.id, [net]),
            Err(Error::WhitelistUnchanged { .. })
        ));
        store.whitelist_ip(&root, k.id, [net]).unwrap();
        assert!(matches!(
            store.whitelist_ip(&root, k.id, [net]),
            Err(Error::WhitelistUnchanged { .. })
        ));
        assert_eq!(store.last_seq(), seq + 1);
    }
}

mod restart {
    use super::*;

    fn state(store: &KeyStore) -> (Vec<keyledger::KeyView>, Vec<keyledger::AuditEntry>) {
        (store.all_keys(), store.audit())
    }

    #[test]
    fn reopening_gives_the_same_keys_whitelists_and_audit_trail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let root = Actor::super_admin("root");
        let alice = Actor::admin("alice");
        let (before, secret, deleted_secret) = {
            let store = KeyStore::open(&path).unwrap();
            let a = store
                .create_key(
                    &alice,
                    NewKey::new("a")
                        .role("bot")
                        .role("reader")
                        .allow(parse_net("10.0.0.0/8").unwrap()),
                )
                .unwrap();
            let b = store.create_key(&root, bot("b")).unwrap();
            store
                .whitelist_ip(&alice, a.id, [parse_net("2001:db8::/32").unwrap()])
                .unwrap();
            store
                .unwhitelist_ip(&alice, a.id, [parse_net("10.0.0.0/8").unwrap()])
                .unwrap();
            store.delete_key(&root, b.id).unwrap();
            (
                state(&store),
                a.key.expose_secret().to_owned(),
                b.key.expose_secret().to_owned(),
            )
        };
        let store = KeyStore::open(&path).unwrap();
        assert_eq!(state(&store), before);
        assert_eq!(store.last_seq(), 5);
        assert!(store.verify(&secret, ip("2001:db8::7")).is_ok());
        assert_eq!(
            store.verify(&secret, ip("10.1.1.1")).unwrap_err(),
            Rejection::IpNotWhitelisted
        );
        assert_eq!(
            store.verify(&deleted_secret, ip("10.1.1.1")).unwrap_err(),
            Rejection::UnknownKey
        );
        // And it keeps appending where it left off.
        store.create_key(&root, bot("c")).unwrap();
        assert_eq!(store.audit().last().unwrap().seq, 6);
    }

    #[test]
    fn a_store_open_elsewhere_is_refused_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = KeyStore::open(dir.path()).unwrap();
        assert!(matches!(KeyStore::open(dir.path()), Err(Error::Locked { .. })));
    }

    #[test]
    fn time_travel_shows_keys_as_they_stood() {
        let (_d, store) = temp_store();
        let root = Actor::super_admin("root");
        let k = store.create_key(&root, bot("a")).unwrap();
        store
            .whitelist_ip(&root, k.id, [parse_net("10.0.0.0/8").unwrap()])
            .unwrap();
        store.delete_key(&root, k.id).unwrap();
        let at1 = store.keys_at(1).unwrap();
        assert!(at1[0].whitelist.is_empty() && at1[0].deleted.is_none());
        let at2 = store.keys_at(2).unwrap();
        assert_eq!(at2[0].whitelist, vec![parse_net("10.0.0.0/8").unwrap()]);
        assert!(store.keys_at(3).unwrap()[0].deleted.is_some());
        assert!(store.keys_at(0).unwrap().is_empty());
        assert!(matches!(store.keys_at(4), Err(Error::InvalidInput { .. })));
    }
}

mod ip_rules {
    use super::*;

    #[test]
    fn whitelist_admits_listed_hosts_and_ranges_of_both_families() {
        let (_d, store) = temp_store();
        let mut new = bot("a");
        for n in ["192.0.2.7", "10.0.0.0/8", "2001:db8::/48", "::1"] {
            new = new.allow(parse_net(n).unwrap());
        }
        let k = store.create_key(&Actor::admin("alice"), new).unwrap();
        let s = k.key.expose_secret();
        for ok in [
            "192.0.2.7",
            "10.255.0.1",
            "2001:db8:0:1::1",
            "::1",
            "::ffff:192.0.2.7",
            "::ffff:10.9.9.9",
        ] {
            assert!(store.verify(s, ip(ok)).is_ok(), "{ok}");
        }
        for no in [
            "192.0.2.8",
            "11.0.0.1",
            "2001:db8:1::1",
            "::2",
            "::ffff:192.0.2.8",
        ] {
            assert_eq!(
                store.verify(s, ip(no)).unwrap_err(),
                Rejection::IpNotWhitelisted,
                "{no}"
            );
        }
    }

    #[test]
    fn empty_whitelist_admits_any_address_unless_the_store_requires_one() {
        let dir = tempfile::tempdir().unwrap();
        let secret = {
            let store = KeyStore::open(dir.path()).unwrap();
            let k = store.create_key(&Actor::admin("a"), bot("open")).unwrap();
            assert!(store.verify(k.key.expose_secret(), ip("203.0.113.1")).is_ok());
            k.key.expose_secret().to_owned()
        };
        let strict = KeyStore::builder()
            .require_whitelist(true)
            .open(dir.path())
            .unwrap();
        assert_eq!(
            strict.verify(&secret, ip("203.0.113.1")).unwrap_err(),
            Rejection::NoWhitelist
        );
    }

    #[test]
    fn malformed_keys_are_rejected_before_lookup() {
        let (_d, store) = temp_store();
        let k = store.create_key(&Actor::admin("a"), bot("a")).unwrap();
        let s = k.key.expose_secret();
        let mut typo: Vec<u8> = s.as_bytes().to_vec();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert!(matches!(
            store.verify(&typo, ip("1.1.1.1")),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            store.verify(&s[..39], ip("1.1.1.1")),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            store.verify("", ip("1.1.1.1")),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn header_helper_feeds_verify() {
        let (_d, store) = temp_store();
        let k = store.create_key(&Actor::admin("a"), bot("a")).unwrap();
        let s = k.key.expose_secret().as_bytes();
        let ok = store
            .verify_headers([("host", &b"x"[..]), ("X-Api-Key", s)], ip("1.1.1.1"))
            .unwrap();
        assert_eq!(ok.id(), k.id);
        assert_eq!(ok.name(), "a");
        assert_eq!(ok.roles().collect::<Vec<_>>(), ["bot"]);
        assert_eq!(
            store
                .verify_headers([("x-api-key", s), ("x-api-key", s)], ip("1.1.1.1"))
                .unwrap_err(),
            Rejection::Header(keyledger::HeaderProblem::Repeated)
        );
    }
}

mod secrets {
    use super::*;

    fn files_contain(dir: &Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().any(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_contain(&path, needle)
            } else {
                let bytes = std::fs::read(&path).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle)
            }
        })
    }

    #[test]
    fn the_secret_is_in_no_file_of_the_store_and_in_no_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let secrets: Vec<String> = {
            let store = KeyStore::open(dir.path()).unwrap();
            let secrets = (0..20)
                .map(|i| {
                    let k = store
                        .create_key(&Actor::admin("a"), bot(&format!("k{i}")))
                        .unwrap();
                    let s = k.key.expose_secret().to_owned();
                    let shown = format!("{k:?} {:?} {:?}", store.keys(), store.audit());
                    assert!(!shown.contains(&s[4..34]), "debug output leaked a secret");
                    s
                })
                .collect();
            drop(store);
            secrets
        };
        for s in &secrets {
            // The random body alone must not appear: not in raw form, not as the whole key.
            assert!(!files_contain(dir.path(), &s.as_bytes()[4..34]));
        }
        // The scan itself works: the hint's tail is stored.
        assert!(files_contain(dir.path(), &secrets[0].as_bytes()[36..]));
    }
}

mod concurrency {
    use super::*;

    #[test]
    fn once_delete_returns_the_key_never_verifies_again() {
        let (_d, store) = temp_store();
        let store = Arc::new(store);
        let root = Actor::super_admin("root");
        for round in 0..20 {
            let k = store.create_key(&root, bot(&format!("k{round}"))).unwrap();
            let secret = Arc::new(k.key.expose_secret().to_owned());
            let deleted = Arc::new(AtomicBool::new(false));
            std::thread::scope(|s| {
                for _ in 0..3 {
                    let (store, secret, deleted) =
                        (Arc::clone(&store), Arc::clone(&secret), Arc::clone(&deleted));
                    s.spawn(move || {
                        for _ in 0..20_000 {
                            let was_deleted = deleted.load(Ordering::SeqCst);
                            let ok = store.verify(&secret, ip("10.0.0.1")).is_ok();
                            assert!(!(was_deleted && ok), "key verified after delete returned");
                            if was_deleted {
                                break;
                            }
                        }
                    });
                }
                std::thread::yield_now();
                store.delete_key(&root, k.id).unwrap();
                deleted.store(true, Ordering::SeqCst);
            });
        }
    }

    #[test]
    fn concurrent_writers_get_contiguous_sequence_numbers() {
        let (_d, store) = temp_store();
        let store = Arc::new(store);
        std::thread::scope(|s| {
            for t in 0..8 {
                let store = Arc::clone(&store);
                s.spawn(move || {
                    let me = Actor::admin(format!("admin{t}"));
                    for i in 0..25 {
                        let k = store.create_key(&me, bot(&format!("{t}-{i}"))).unwrap();
                        if i % 2 == 0 {
                            store.delete_key(&me, k.id).unwrap();
                        }
                    }
                });
            }
        });
        let trail = store.audit();
        assert_eq!(trail.len(), 8 * (25 + 13));
        assert!(trail.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
        assert_eq!(store.live_keys(), 8 * 12);
    }
}

mod names {
    use super::*;

    #[test]
    fn short_long_and_unicode_names_survive_verify_restart_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "a",
            "exactly twenty-two ch",
            "twenty-three characters",
            &"é".repeat(100),
            "  trimmed  ",
        ];
        let secrets: Vec<String> = {
            let store = KeyStore::builder().snapshot_every(2).open(dir.path()).unwrap();
            names
                .iter()
                .map(|n| {
                    store
                        .create_key(&Actor::admin("a"), bot(n))
                        .unwrap()
                        .key
                        .expose_secret()
                        .to_owned()
                })
                .collect()
        };
        for snapshots in [0, 2] {
            let store = KeyStore::builder()
                .snapshot_every(snapshots)
                .open(dir.path())
                .unwrap();
            assert_eq!(store.opened_from_snapshot(), snapshots > 0);
            for (name, secret) in names.iter().zip(&secrets) {
                let v = store.verify(secret, ip("10.0.0.1")).unwrap();
                assert_eq!(v.name(), name.trim());
                assert_eq!(store.key(v.id()).unwrap().name, name.trim());
            }
        }
    }
}
