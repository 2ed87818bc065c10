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
        crate::persist::snapshot::format::encode_snapshot(data, &public).unwrap(),
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
