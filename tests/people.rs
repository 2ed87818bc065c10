//! Admin keys that are people, through the library: an old store's admin keys keep their
//! meaning, a snapshot carries who admin keys act as and the retired secrets, and a
//! person revoked while commands through their keys are in flight leaves a log that
//! replays.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyledger::{Actor, ActorRole, Denial, Error, EventKind, ExistingKey, KeyStore, NewKey};

fn ip() -> IpAddr {
    "10.0.0.1".parse().unwrap()
}

/// The actor a request with admin key `secret` acts as over HTTP.
fn through(store: &KeyStore, secret: &str) -> Actor {
    store
        .acting_through(&store.verify(secret, ip()).unwrap())
        .unwrap()
}

/// A backup written before admin keys named people: root's super-admin key, an admin key
/// root made without a person (`0e017282471215e5`), and a key made through it.
#[test]
fn an_old_stores_admin_key_acts_as_its_creator_and_goes_when_they_are_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export-v2-admin.kl");
    assert_eq!(
        KeyStore::builder()
            .import(dir.path().join("db"), &fixture)
            .unwrap(),
        3
    );
    let store = KeyStore::open(dir.path().join("db")).unwrap();
    let shared = "0e017282471215e5".parse().unwrap();
    let secret = "klk_Bk6LZMJgG6EkYKRnWuPSg5fxaZWXIp4Mt44u";
    let actor = through(&store, secret);
    assert_eq!(
        (actor.id(), actor.role(), actor.via()),
        ("root", ActorRole::Admin, Some(shared))
    );
    assert_eq!(store.key(shared).unwrap().acts_for.as_deref(), Some("root"));
    let made = &store.audit()[2];
    assert_eq!((made.actor.id(), made.via), ("root", Some(shared)));
    let made_id = made.key_id.unwrap();

    let revoked = store
        .revoke_actor(&Actor::super_admin("root"), "root", false)
        .unwrap();
    assert_eq!(revoked.keys.len(), 2, "root's super-admin key and the shared one");
    assert!(revoked.keys.contains(&shared));
    assert!(store.verify(secret, ip()).is_err());
    assert!(store.key(made_id).unwrap().deleted.is_none(), "service keys stay");
}

/// Reopened from its snapshot, the store still knows whom each admin key acts as and every
/// secret it ever held, and answers exactly as after a full replay.
#[test]
fn a_snapshot_carries_the_people_and_the_retired_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let root = Actor::super_admin("root");
    let (carol, rolled_out) = {
        let store = KeyStore::builder().snapshot_every(2).open(&db).unwrap();
        let carol = store
            .create_key(&root, NewKey::new("carol").role("admin").acting_for("carol"))
            .unwrap();
        let bot = store.create_key(&root, NewKey::new("bot").role("bot")).unwrap();
        store.roll_key(&root, bot.id, std::time::Duration::ZERO).unwrap();
        for i in 0..5 {
            store
                .create_key(&root, NewKey::new(format!("filler {i}")).role("bot"))
                .unwrap();
        }
        (carol, bot.key.expose_secret().to_owned())
    };
    for snapshots in [2, 0] {
        let store = KeyStore::builder().snapshot_every(snapshots).open(&db).unwrap();
        assert_eq!(store.opened_from_snapshot(), snapshots != 0);
        assert_eq!(store.key(carol.id).unwrap().acts_for.as_deref(), Some("carol"));
        let actor = through(&store, carol.key.expose_secret());
        assert_eq!(actor.id(), "carol");
        let again = ExistingKey::with_secret(NewKey::new("again").role("bot"), &rolled_out).unwrap();
        let refused = store.import_keys(&root, vec![again]).unwrap_err();
        assert!(
            matches!(&refused, Error::ImportEntry { source, .. } if matches!(**source, Error::SecretKnown)),
            "{refused:?}"
        );
    }
    let store = KeyStore::builder().snapshot_every(2).open(&db).unwrap();
    let revoked = store.revoke_actor(&root, "carol", false).unwrap();
    assert_eq!(revoked.keys, vec![carol.id]);
    // A backup carries them too: the import replays every record with every rule.
    let backup = dir.path().join("backup.kl");
    store.export(&backup).unwrap();
    let copy = dir.path().join("copy");
    KeyStore::builder().import(&copy, &backup).unwrap();
    let copy = KeyStore::open(&copy).unwrap();
    assert_eq!(copy.key(carol.id).unwrap().acts_for.as_deref(), Some("carol"));
    assert!(copy.key(carol.id).unwrap().deleted.is_some());
    assert_eq!(copy.audit(), store.audit());
    let last = store.audit().pop().unwrap();
    assert_eq!(
        (last.kind, last.person.as_deref(), last.key_id),
        (EventKind::ActorRevoked, Some("carol"), None)
    );
}

/// Commands through carol's admin key race her revocation (or the key's deletion): each is
/// written before it (and stands) or refused as coming through a revoked key; none breaks
/// the log, which replays.
#[test]
fn commands_through_a_key_racing_its_persons_revocation_never_break_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let root = Actor::super_admin("root");
    for round in 0..30 {
        let store = Arc::new(KeyStore::builder().max_batch(64).open(&db).unwrap());
        let carol = store
            .create_key(
                &root,
                NewKey::new(format!("carol {round}"))
                    .role("admin")
                    .acting_for("carol"),
            )
            .unwrap();
        let actor = through(&store, carol.key.expose_secret());
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (store, actor, stop) = (Arc::clone(&store), actor.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        match store.create_key(&actor, NewKey::new(format!("bot {w} {n}")).role("bot")) {
                            Ok(_) => n += 1,
                            Err(Error::PermissionDenied {
                                denial: Denial::AdminKeyRevoked { .. },
                                ..
                            }) => break,
                            Err(e) => panic!("round {round}: {e:?}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(5));
        if round % 2 == 0 {
            let revoked = store.revoke_actor(&root, "carol", false).unwrap();
            assert_eq!(revoked.keys, vec![carol.id]);
        } else {
            store.delete_key(&root, carol.id).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        // The writer is still writing.
        store
            .create_key(&root, NewKey::new(format!("after {round}")).role("bot"))
            .unwrap();
    }
    let reopened = KeyStore::builder().snapshot_every(0).open(&db).unwrap();
    assert!(reopened.keys().len() >= 30);
}

/// Keys a person's revocation deletes are retired like any deleted key: their secrets are
/// never adopted again, whether the store runs on, replays, or reopens from a snapshot.
#[test]
fn secrets_of_keys_a_persons_revocation_deleted_are_never_adopted_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let root = Actor::super_admin("root");
    let (generated, legacy) = {
        let store = KeyStore::builder().snapshot_every(2).open(&db).unwrap();
        let carol_key = store
            .create_key(&root, NewKey::new("carol").role("admin").acting_for("carol"))
            .unwrap();
        let carol = through(&store, carol_key.key.expose_secret());
        let generated = store
            .create_key(&carol, NewKey::new("carol's bot").role("bot"))
            .unwrap();
        let legacy = "legacy_secret_of_carol_01";
        store
            .import_keys(
                &carol,
                vec![ExistingKey::with_secret(NewKey::new("carol's old bot").role("bot"), legacy).unwrap()],
            )
            .unwrap();
        let revoked = store.revoke_actor(&root, "carol", true).unwrap();
        assert_eq!(revoked.keys.len(), 3);
        (generated.key.expose_secret().to_owned(), legacy)
    };
    for snapshots in [0, 2] {
        let store = KeyStore::builder().snapshot_every(snapshots).open(&db).unwrap();
        for secret in [generated.as_str(), legacy] {
            let again = ExistingKey::with_secret(NewKey::new("again").role("bot"), secret).unwrap();
            let refused = store.import_keys(&root, vec![again]).unwrap_err();
            assert!(
                matches!(&refused, Error::ImportEntry { source, .. } if matches!(**source, Error::SecretKnown)),
                "snapshots every {snapshots}: {refused:?}"
            );
        }
        assert!(store.verify(legacy, ip()).is_err());
    }
}
