use super::*;
use crate::chain::Chain;
use crate::model::problem::ProblemKind;
use crate::persist::snapshot;

/// On a public-chain store anyone can re-seal a snapshot. One that brings a deleted key
/// back is served at open, then found by the background check (which stops writes),
/// and named by `check` as a snapshot problem.
#[test]
fn a_resealed_snapshot_reviving_a_deleted_key_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = Actor::super_admin("root");
    let options = || Builder::default().snapshot_every(2);
    let victim = {
        let store = options().open(dir.path()).unwrap();
        let victim = store
            .create_key(&root, NewKey::new("victim").role("bot"))
            .unwrap();
        store.create_key(&root, NewKey::new("other").role("bot")).unwrap();
        store.delete_key(&root, victim.id).unwrap();
        victim
    };
    let path = dir.path().join(snapshot::SNAPSHOT_FILE);
    let public = Chain::new(None);
    let mut data =
        crate::persist::snapshot::format::decode_snapshot(&std::fs::read(&path).unwrap(), &public).unwrap();
    assert_eq!(data.head.seq, 3, "the snapshot was saved at close");
    let slot = data.slots.iter_mut().find(|s| s.deleted.is_some()).unwrap();
    slot.deleted = None;
    std::fs::write(
        &path,
        crate::persist::snapshot::format::encode_snapshot(&data, &public).unwrap(),
    )
    .unwrap();

    let store = options().open(dir.path()).unwrap();
    assert!(store.opened_from_snapshot());
    assert!(
        matches!(store.wait_for_integrity(), Integrity::Damaged(ref p) if p.kind == ProblemKind::Snapshot)
    );
    assert!(matches!(
        store.create_key(&root, NewKey::new("more").role("bot")),
        Err(Error::Corrupt { .. })
    ));
    drop(store);
    let report = options().check(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].kind, ProblemKind::Snapshot);
    // Without the snapshot, the log's own answer: the key stays deleted.
    std::fs::remove_file(&path).unwrap();
    let store = options().open(dir.path()).unwrap();
    assert!(
        store
            .verify(victim.key.expose_secret(), "10.0.0.1".parse().unwrap())
            .is_err()
    );
}

/// A store whose snapshot has something in every table: keys with roles, whitelists,
/// expiry, limits, credits, owners and metadata, an admin key acting for another person,
/// rolled, disabled, deleted, updated and imported keys, revoked people.
fn rich_store(dir: &std::path::Path) -> std::path::PathBuf {
    use crate::model::credits::{Credits, Refill};
    use crate::model::limit::RateLimit;
    use crate::model::owner::{KeyUpdate, Meta};
    use std::time::{Duration, SystemTime};
    let root = Actor::super_admin("root");
    let store = Builder::default().snapshot_every(2).open(dir).unwrap();
    let a = store
        .create_key(
            &root,
            NewKey::new("alpha")
                .role("bot")
                .role("notifier")
                .allow("10.0.0.0/8".parse().unwrap())
                .allow("2001:db8::/32".parse().unwrap())
                .expires_at(SystemTime::now() + Duration::from_secs(86_400 * 365))
                .rate_limit(RateLimit::new(100, Duration::from_secs(60)).unwrap())
                .credits(
                    Credits::new(500)
                        .unwrap()
                        .refill(Refill::new(50, Duration::from_secs(3600)).unwrap()),
                )
                .external_id("cust-42")
                .meta(Meta::parse(r#"{"plan":"gold","n":[1,2]}"#).unwrap()),
        )
        .unwrap();
    let admin = store
        .create_key(&root, NewKey::new("bob's admin").role("admin").acting_for("bob"))
        .unwrap();
    let b = store.create_key(&root, NewKey::new("beta").role("bot")).unwrap();
    let c = store.create_key(&root, NewKey::new("gamma").role("bot")).unwrap();
    store.roll_key(&root, b.id, Duration::from_secs(3600)).unwrap();
    store.disable_key(&root, c.id).unwrap();
    store.delete_key(&root, a.id).unwrap();
    store
        .update_key(
            &root,
            b.id,
            KeyUpdate::new().name("beta renamed").roles(["bot", "reader"]),
        )
        .unwrap();
    store.add_credits(&root, b.id, 7).ok();
    store
        .set_credits(&root, b.id, Some(Credits::new(9).unwrap()))
        .unwrap();
    store.add_credits(&root, b.id, 7).unwrap();
    store
        .set_rate_limits(&root, c.id, [RateLimit::new(5, Duration::from_secs(1)).unwrap()])
        .unwrap();
    store
        .whitelist_ip(&root, c.id, vec!["192.168.1.0/24".parse().unwrap()])
        .unwrap();
    let _ = admin;
    store.revoke_actor(&root, "bob", true).unwrap();
    drop(store);
    dir.join(snapshot::SNAPSHOT_FILE)
}

/// A version 4 snapshot as keyledger 0.5.0 wrote it (whole, into memory, then to the
/// file) reads back and is written again, streamed, to the same bytes; so is the snapshot
/// this build writes of a store with something in every table.
#[test]
fn a_snapshot_streamed_to_its_file_is_the_same_bytes_as_version_4_in_memory() {
    let public = Chain::new(None);
    let fixture = include_bytes!("../../tests/fixtures/snapshot-v4.bin");
    let data = crate::persist::snapshot::format::decode_snapshot(fixture, &public).unwrap();
    // Entry 0 of the limit lists, the credit log and the owners is always there.
    for (table, len, least) in [
        ("slots", data.slots.len(), 1),
        ("rows", data.rows.len(), 1),
        ("nets", data.nets.len(), 1),
        ("whitelist sets", data.whitelist_sets.len(), 2),
        ("rolls", data.rolls.len(), 1),
        ("graces", data.graces.len(), 1),
        ("rolled out", data.rolled_out.len(), 1),
        ("limit lists", data.limit_lists.len(), 2),
        ("credit log", data.credit_log.len(), 2),
        ("owners", data.owners.len(), 2),
        ("changes", data.changes.len(), 1),
        ("actors", data.actors.len(), 1),
        ("role sets", data.role_sets.len(), 1),
    ] {
        assert!(len >= least, "the fixture's {table} has {len} entries");
    }
    let again = crate::persist::snapshot::format::encode_snapshot(&data, &public).unwrap();
    assert_eq!(again, fixture);

    let dir = tempfile::tempdir().unwrap();
    let written = std::fs::read(rich_store(dir.path())).unwrap();
    let data = crate::persist::snapshot::format::decode_snapshot(&written, &public).unwrap();
    assert_eq!(data.slots.len(), 4);
    let again = crate::persist::snapshot::format::encode_snapshot(&data, &public).unwrap();
    assert_eq!(again, written);
}
