//! The store's promises, through its public API: permissions, restart, IP rules, secrets,
//! and revocation under concurrent verification.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;

use keyledger::{Actor, Error, KeyStore, NewKey, Rejection, parse_net};

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

#[path = "store_cases/mod.rs"]
mod cases;

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
