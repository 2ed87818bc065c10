//! The store's promises that hold whatever log it runs on: permissions, whitelist rules
//! and revocation under concurrent verification. Included by `tests/store.rs` (sled) and
//! `tests/store_in_memory.rs` (the in-memory log), each with its own `temp_store`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyledger::{Actor, Denial, Error, EventKind, KeyId, NewKey, Rejection, parse_net};

use super::{bot, ip, temp_store};

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
                store.unwhitelist_ip(&actor, id, [existing]).map(|r| r.seq),
                store.delete_key(&actor, id).map(|r| r.seq),
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

mod whitelist_rules {
    use super::*;

    /// An empty whitelist admits every address: removing the last entry must be asked
    /// for, or a restriction silently becomes none.
    #[test]
    fn removing_the_last_whitelist_entry_is_refused_unless_asked_for() {
        let (_d, store) = temp_store();
        let alice = Actor::admin("alice");
        let only = parse_net("10.0.0.0/8").unwrap();
        let other = parse_net("192.0.2.0/24").unwrap();
        let k = store
            .create_key(&alice, bot("k").allow(only).allow(other))
            .unwrap();
        let seq = store.last_seq();
        assert!(matches!(
            store.unwhitelist_ip(&alice, k.id, [only, other]),
            Err(Error::LastWhitelistEntry { id }) if id == k.id
        ));
        assert_eq!(store.last_seq(), seq, "nothing was written");
        assert_eq!(store.key(k.id).unwrap().whitelist, [only, other]);
        assert!(store.verify(k.key.expose_secret(), ip("8.8.8.8")).is_err());

        store.unwhitelist_ip(&alice, k.id, [other]).unwrap();
        assert!(matches!(
            store.unwhitelist_ip(&alice, k.id, [only]),
            Err(Error::LastWhitelistEntry { .. })
        ));
        // Asked for explicitly, and by someone allowed to: the key admits any address.
        assert!(matches!(
            store.unwhitelist_ip_allowing_any_address(&Actor::admin("bob"), k.id, [only]),
            Err(Error::PermissionDenied { .. })
        ));
        store
            .unwhitelist_ip_allowing_any_address(&alice, k.id, [only])
            .unwrap();
        assert!(store.key(k.id).unwrap().whitelist.is_empty());
        assert!(store.verify(k.key.expose_secret(), ip("8.8.8.8")).is_ok());
        let trail = store.audit();
        assert_eq!(trail.last().unwrap().kind, EventKind::Unwhitelisted);
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
        assert_eq!(store.live_key_count(), 8 * 12);
    }
}
