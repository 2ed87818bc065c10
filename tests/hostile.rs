//! Hostile and bad input: every case gets its typed error or rejection, nothing panics,
//! and the log is exactly as long afterwards.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use keyledger::{
    Actor, Denial, Error, HeaderProblem, IpNet, KeyId, KeyStore, MAX_WHITELIST, Malformed, NewKey, Rejection,
    parse_net,
};

struct Fixture {
    _dir: tempfile::TempDir,
    store: KeyStore,
    alices_key: KeyId,
    secret: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    let created = store
        .create_key(&Actor::admin("alice"), NewKey::new("alice's").role("bot"))
        .unwrap();
    Fixture {
        secret: created.key.expose_secret().to_owned(),
        alices_key: created.id,
        store,
        _dir: dir,
    }
}

fn ip() -> IpAddr {
    "198.51.100.7".parse().unwrap()
}

fn hosts(n: usize) -> Vec<IpNet> {
    (0..n)
        .map(|i| parse_net(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)).unwrap())
        .collect()
}

#[test]
fn malformed_keys_are_rejected_by_reason() {
    let f = fixture();
    let s = &f.secret;
    let bad_checksum = {
        let mut b = s.clone().into_bytes();
        b[39] = if b[39] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases = [
        (format!("{s}x"), Malformed::Length),
        (String::new(), Malformed::Length),
        (s[..39].to_owned(), Malformed::Length),
        (s.replacen('k', "*", 1), Malformed::Character),
        (format!("{}é", &s[..38]), Malformed::Character),
        (s.replacen("klk_", "klx_", 1), Malformed::Prefix),
        (bad_checksum, Malformed::Checksum),
    ];
    for (token, reason) in cases {
        assert_eq!(
            f.store.verify(&token, ip()).unwrap_err(),
            Rejection::Malformed(reason),
            "{token:?}"
        );
    }
    assert_eq!(f.store.last_seq(), 1);
}

#[test]
fn bad_header_values_are_rejected_by_reason() {
    let f = fixture();
    let s = f.secret.as_bytes();
    let padded = [b" ", s].concat();
    type Headers<'a> = Vec<(&'a str, &'a [u8])>;
    let cases: [(Headers, HeaderProblem); 5] = [
        (vec![], HeaderProblem::Missing),
        (vec![("X-API-KEY", s), ("x-api-key", s)], HeaderProblem::Repeated),
        (vec![("x-api-key", b"\xff\xfe")], HeaderProblem::NotAscii),
        (vec![("x-api-key", &padded)], HeaderProblem::Padded),
        (vec![("x-api-key", b"klk_\x00")], HeaderProblem::NotAscii),
    ];
    for (headers, problem) in cases {
        assert_eq!(
            f.store.verify_headers(headers, ip()).unwrap_err(),
            Rejection::Header(problem)
        );
    }
    assert!(f.store.verify_headers([("x-api-key", s)], ip()).is_ok());
}

#[test]
fn bad_names_are_refused_and_append_nothing() {
    let f = fixture();
    let root = Actor::super_admin("root");
    for name in [
        String::new(),
        "  \t ".into(),
        "x".repeat(10_000),
        "bell\u{7}".into(),
        "new\nline".into(),
    ] {
        let r = f.store.create_key(&root, NewKey::new(name).role("bot"));
        assert!(
            matches!(r, Err(Error::InvalidInput { field: "name", .. })),
            "{r:?}"
        );
    }
    assert_eq!(f.store.last_seq(), 1);
}

#[test]
fn ten_thousand_whitelist_entries_are_refused_past_the_documented_limit() {
    let f = fixture();
    let root = Actor::super_admin("root");
    let mut new = NewKey::new("wide").role("bot");
    for net in hosts(10_000) {
        new = new.allow(net);
    }
    let r = f.store.create_key(&root, new);
    assert!(
        matches!(r, Err(Error::InvalidInput { field: "network", ref reason }) if reason.contains("1024")),
        "{r:?}"
    );
    assert!(matches!(
        f.store.whitelist_ip(&root, f.alices_key, hosts(10_000)),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(f.store.last_seq(), 1);

    // Exactly at the limit is fine; one more is not.
    f.store
        .whitelist_ip(&root, f.alices_key, hosts(MAX_WHITELIST))
        .unwrap();
    let one_more = parse_net("192.0.2.1").unwrap();
    assert!(matches!(
        f.store.whitelist_ip(&root, f.alices_key, [one_more]),
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(f.store.last_seq(), 1 + MAX_WHITELIST as u64);
}

#[test]
fn malformed_networks_are_refused() {
    for bad in [
        "10.0.0.0/33",
        "10.0.0.1/8",
        "10.0.0",
        "::g",
        "1.2.3.4/",
        "/8",
        "2001:db8::/129",
        "",
        " 10.0.0.1",
    ] {
        assert!(
            matches!(parse_net(bad), Err(Error::InvalidInput { field: "network", .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn unknown_ids_non_admins_foreign_keys_escalation_and_double_deletes_are_refused() {
    let f = fixture();
    let (root, bob, eve) = (
        Actor::super_admin("root"),
        Actor::admin("bob"),
        Actor::user("eve"),
    );
    let net = parse_net("10.0.0.0/8").unwrap();
    let unknown: KeyId = "0123456789abcdef".parse().unwrap();
    assert!(matches!(
        f.store.delete_key(&root, unknown),
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        f.store.whitelist_ip(&root, unknown, [net]),
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        f.store.create_key(&eve, NewKey::new("x").role("bot")),
        Err(Error::PermissionDenied {
            denial: Denial::NotAnAdmin,
            ..
        })
    ));
    assert!(matches!(
        f.store.delete_key(&eve, f.alices_key),
        Err(Error::PermissionDenied {
            denial: Denial::NotAnAdmin,
            ..
        })
    ));
    assert!(matches!(
        f.store.delete_key(&bob, f.alices_key),
        Err(Error::PermissionDenied {
            denial: Denial::NotOwner { .. },
            ..
        })
    ));
    assert!(matches!(
        f.store.whitelist_ip(&bob, f.alices_key, [net]),
        Err(Error::PermissionDenied {
            denial: Denial::NotOwner { .. },
            ..
        })
    ));
    let escalate = NewKey::new("x").role("super-admin");
    assert!(matches!(
        f.store.create_key(&bob, escalate),
        Err(Error::PermissionDenied {
            denial: Denial::GrantsSuperAdmin,
            ..
        })
    ));
    assert_eq!(f.store.last_seq(), 1);
    f.store.delete_key(&root, f.alices_key).unwrap();
    assert!(matches!(
        f.store.delete_key(&root, f.alices_key),
        Err(Error::KeyDeleted(_))
    ));
    assert!(matches!(
        f.store.delete_key(&Actor::admin("alice"), f.alices_key),
        Err(Error::KeyDeleted(_))
    ));
    assert_eq!(f.store.last_seq(), 2);
}

#[test]
fn bad_key_ids_and_actor_roles_are_refused_when_parsed() {
    for bad in [
        "",
        "xyz",
        "0123456789ABCDEF",
        "0123456789abcdef0",
        "-123456789abcdef",
    ] {
        assert!(
            matches!(
                bad.parse::<KeyId>(),
                Err(Error::InvalidInput { field: "key id", .. })
            ),
            "{bad:?}"
        );
    }
    assert!("root".parse::<keyledger::ActorRole>().is_err());
    let f = fixture();
    for actor in [
        Actor::admin(""),
        Actor::admin(" padded"),
        Actor::admin("a".repeat(129)),
        Actor::admin("tab\t"),
    ] {
        assert!(matches!(
            f.store.create_key(&actor, NewKey::new("x").role("bot")),
            Err(Error::InvalidInput { field: "actor", .. })
        ));
    }
    assert_eq!(f.store.last_seq(), 1);
}

/// Text that displays as something it is not: zero-width, bidi and BOM characters.
const LYING: [&str; 6] = [
    "alice\u{200B}",
    "\u{202E}ecila",
    "\u{FEFF}alice",
    "ali\u{200D}ce",
    "\u{2067}alice\u{2069}",
    "al\u{00AD}ice",
];

#[test]
fn names_with_invisible_format_characters_are_refused_and_append_nothing() {
    let f = fixture();
    let root = Actor::super_admin("root");
    for name in LYING {
        let r = f.store.create_key(&root, NewKey::new(name).role("bot"));
        assert!(
            matches!(r, Err(Error::InvalidInput { field: "name", .. })),
            "{name:?}: {r:?}"
        );
    }
    assert_eq!(f.store.last_seq(), 1);
    assert_eq!(f.store.audit().len(), 1);
}

#[test]
fn actor_ids_with_invisible_format_characters_are_refused_for_every_change() {
    let f = fixture();
    let net = parse_net("10.0.0.0/8").unwrap();
    for id in LYING {
        for actor in [Actor::super_admin(id), Actor::admin(id)] {
            let results = [
                f.store
                    .create_key(&actor, NewKey::new("x").role("bot"))
                    .map(|c| c.seq),
                f.store.whitelist_ip(&actor, f.alices_key, [net]),
                f.store.delete_key(&actor, f.alices_key).map(|r| r.seq),
            ];
            for r in results {
                assert!(
                    matches!(r, Err(Error::InvalidInput { field: "actor", .. })),
                    "{id:?}: {r:?}"
                );
            }
        }
    }
    assert_eq!(f.store.last_seq(), 1);
    assert!(f.store.key(f.alices_key).unwrap().deleted.is_none());
}

#[test]
fn names_and_actor_ids_from_other_scripts_and_emoji_are_accepted() {
    let f = fixture();
    for (name, actor) in [
        ("café bot", "josé"),
        ("日本のボット", "山田"),
        ("🔑 rotation", "ops 👍"),
    ] {
        let created = f
            .store
            .create_key(&Actor::admin(actor), NewKey::new(name).role("bot"))
            .unwrap();
        let view = f.store.key(created.id).unwrap();
        assert_eq!((view.name.as_str(), view.created_by.id()), (name, actor));
    }
}

#[test]
fn key_shaped_names_are_refused_and_the_error_never_quotes_the_key() {
    let f = fixture();
    let root = Actor::super_admin("root");
    let s = &f.secret;
    for name in [
        s.clone(),
        format!("backup {s}"),
        format!("{s} old"),
        format!("klk_{}", &s[4..20]),
    ] {
        let e = f
            .store
            .create_key(&root, NewKey::new(name.as_str()).role("bot"))
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput { field: "name", .. }), "{e:?}");
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(!shown.contains(&s[4..20]), "{shown}");
        }
    }
    assert_eq!(f.store.last_seq(), 1);
}

#[test]
fn key_shaped_actor_ids_are_refused_and_the_error_never_quotes_the_key() {
    let f = fixture();
    let s = &f.secret;
    for id in [s.clone(), format!("svc {s}")] {
        let actor = Actor::super_admin(id.as_str());
        let errors = [
            f.store
                .create_key(&actor, NewKey::new("x").role("bot"))
                .unwrap_err(),
            f.store.delete_key(&actor, f.alices_key).unwrap_err(),
        ];
        for e in errors {
            assert!(matches!(e, Error::InvalidInput { field: "actor", .. }), "{e:?}");
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.contains(&s[4..20]), "{shown}");
            }
        }
    }
    assert_eq!(f.store.last_seq(), 1);
    assert!(f.store.verify(s, ip()).is_ok(), "the key was not deleted");
}

#[test]
fn permission_denied_names_the_owner_and_key_by_type() {
    let f = fixture();
    let e = f
        .store
        .delete_key(&Actor::admin("bob"), f.alices_key)
        .unwrap_err();
    match &e {
        Error::PermissionDenied {
            actor,
            denial: Denial::NotOwner { key, owner },
        } => {
            assert_eq!(actor, "bob");
            assert_eq!(owner, "alice");
            assert_eq!(*key, f.alices_key);
        }
        other => panic!("expected a NotOwner denial, got {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("\"bob\"") && text.contains("\"alice\""), "{text}");
    assert_eq!(f.store.last_seq(), 1);
}
