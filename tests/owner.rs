//! A key's external id and metadata, and updates of its name, roles, external id and
//! metadata: through the library, across a reopen (replay and snapshot), in the audit trail
//! and in time travel.

#![allow(clippy::unwrap_used)]

use keyledger::{
    Actor, AuditJson, Denial, Error, EventKind, KeyJson, KeyStore, KeyUpdate, MAX_META_DEPTH, Meta, NewKey,
};

fn meta(text: &str) -> Meta {
    Meta::parse(text).unwrap()
}

#[test]
fn a_key_created_with_an_external_id_and_meta_shows_them_and_the_audit_trail_records_them() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let alice = Actor::admin("alice");
    let new = NewKey::new("bot")
        .role("bot")
        .external_id("tenant-42")
        .meta(meta(r#"{"plan": "pro", "seats": 3}"#));
    let created = store.create_key(&alice, new).unwrap();
    let key = store.key(created.id).unwrap();
    assert_eq!(key.external_id.as_deref(), Some("tenant-42"));
    assert_eq!(key.meta.unwrap().as_str(), r#"{"plan":"pro","seats":3}"#);
    let owner = store.key_owner(created.id).unwrap();
    assert_eq!(owner.external_id.as_deref(), Some("tenant-42"));
    let audit = store.audit();
    let last = audit.last().unwrap();
    assert_eq!(last.kind, EventKind::Updated);
    let changes = last.changes.clone().unwrap();
    assert_eq!(changes.external_id, Some(Some("tenant-42".into())));
    assert_eq!(changes.name, None);
}

#[test]
fn bad_external_ids_and_meta_are_refused_naming_the_field_and_write_nothing() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let alice = Actor::admin("alice");
    let key_shaped = store
        .create_key(&alice, NewKey::new("source of a secret").role("bot"))
        .unwrap()
        .key
        .expose_secret()
        .to_owned();
    let head = store.head().seq;
    for bad in [
        String::new(),
        "x".repeat(256),
        format!("owner {key_shaped}"),
        "a\nb".into(),
    ] {
        let err = store
            .create_key(&alice, NewKey::new("bot").role("bot").external_id(bad))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidInput {
                    field: "external_id",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains(&key_shaped[4..]));
    }
    let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(5000));
    for bad in [
        "[1]".to_owned(),
        "\"text\"".into(),
        "{".into(),
        big,
        format!(r#"{{"k": "{key_shaped}"}}"#),
        format!(r#"{{"{key_shaped}": 1}}"#),
        format!(r#"{{"deep": [{{"x": ["{key_shaped}"]}}]}}"#),
    ] {
        let err = Meta::parse(&bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { field: "meta", .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains(&key_shaped[4..]));
    }
    assert_eq!(store.head().seq, head);
}

#[test]
fn an_update_changes_only_what_it_names_in_one_record_shown_by_the_audit_trail_and_time_travel() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let alice = Actor::admin("alice");
    let created = store
        .create_key(&alice, NewKey::new("bot").role("bot").external_id("t-1"))
        .unwrap();
    let before = store.head().seq;
    let seq = store
        .update_key(
            &alice,
            created.id,
            KeyUpdate::new()
                .name("billing bot")
                .add_role("billing")
                .no_external_id()
                .meta(meta(r#"{"tier": 2}"#)),
        )
        .unwrap();
    assert_eq!(seq, before + 1);
    let key = store.key(created.id).unwrap();
    assert_eq!(key.name, "billing bot");
    assert_eq!(key.roles, ["bot", "billing"]);
    assert_eq!(key.external_id, None);
    assert_eq!(key.meta.as_ref().map(Meta::as_str), Some(r#"{"tier":2}"#));
    let entry = store.audit_entry(seq).unwrap();
    assert_eq!(entry.kind, EventKind::Updated);
    assert_eq!(entry.kind.as_str(), "updated");
    let changes = entry.changes.unwrap();
    assert_eq!(changes.name.as_deref(), Some("billing bot"));
    assert_eq!(changes.roles, Some(vec!["bot".to_owned(), "billing".to_owned()]));
    assert_eq!(changes.external_id, Some(None));
    // Time travel: as it stood before the update, and after.
    let then = store.keys_at(before).unwrap();
    assert_eq!(then[0].name, "bot");
    assert_eq!(then[0].roles, ["bot"]);
    assert_eq!(then[0].external_id.as_deref(), Some("t-1"));
    assert_eq!(then[0].meta, None);
    let now = store.keys_at(seq).unwrap();
    assert_eq!(now[0].name, "billing bot");
    assert_eq!(now[0].external_id, None);
    // The verify path hands out the new name and roles.
    let verified = store
        .verify(created.key.expose_secret(), "192.0.2.1".parse().unwrap())
        .unwrap();
    assert_eq!(verified.name(), "billing bot");
    assert!(verified.has_role("billing"));
}

#[test]
fn an_update_that_changes_nothing_is_state_unchanged_and_an_empty_one_invalid() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let alice = Actor::admin("alice");
    let created = store
        .create_key(&alice, NewKey::new("bot").role("bot").external_id("t-1"))
        .unwrap();
    let head = store.head().seq;
    let same = KeyUpdate::new().name("bot").roles(["bot"]).external_id("t-1");
    let err = store.update_key(&alice, created.id, same).unwrap_err();
    assert!(matches!(err, Error::StateUnchanged { .. }), "{err:?}");
    let err = store
        .update_key(&alice, created.id, KeyUpdate::new())
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { field: "update", .. }),
        "{err:?}"
    );
    let err = store
        .update_key(&alice, created.id, KeyUpdate::new().remove_role("bot"))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { field: "role", .. }),
        "{err:?}"
    );
    assert_eq!(store.head().seq, head);
}

#[test]
fn updates_follow_the_access_rules_of_other_changes() {
    let store = KeyStore::builder().open_temporary().unwrap();
    let (alice, bob, root) = (
        Actor::admin("alice"),
        Actor::admin("bob"),
        Actor::super_admin("root"),
    );
    let created = store.create_key(&alice, NewKey::new("bot").role("bot")).unwrap();
    let err = store
        .update_key(&bob, created.id, KeyUpdate::new().name("mine"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                denial: Denial::NotOwner { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .update_key(&alice, created.id, KeyUpdate::new().add_role("super-admin"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                denial: Denial::GrantsSuperAdmin,
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .update_key(&Actor::user("u"), created.id, KeyUpdate::new().name("x"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                denial: Denial::NotAnAdmin,
                ..
            }
        ),
        "{err:?}"
    );
    // No update makes or unmakes an admin key, not even a super admin's.
    let err = store
        .update_key(&root, created.id, KeyUpdate::new().add_role("admin"))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { field: "role", .. }),
        "{err:?}"
    );
    store
        .update_key(&root, created.id, KeyUpdate::new().name("renamed by root"))
        .unwrap();
    store.delete_key(&alice, created.id).unwrap();
    let err = store
        .update_key(&alice, created.id, KeyUpdate::new().name("again"))
        .unwrap_err();
    assert!(matches!(err, Error::KeyDeleted(_)), "{err:?}");
    assert_eq!(store.refused().unwrap().len(), 3);
}

#[test]
fn an_admin_key_cannot_raise_its_own_roles() {
    let store = KeyStore::builder().open_temporary().unwrap();
    // Carol's own admin key acts as her, on the keys she made: itself included.
    let carol_key = store
        .create_key(
            &Actor::admin("carol"),
            NewKey::new("carol's console").role("admin"),
        )
        .unwrap();
    let verified = store
        .verify(carol_key.key.expose_secret(), "192.0.2.1".parse().unwrap())
        .unwrap();
    let carol = store.acting_through(&verified).unwrap();
    let err = store
        .update_key(&carol, carol_key.id, KeyUpdate::new().add_role("billing"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                denial: Denial::RaisesOwnRoles { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // Renaming itself, or dropping nothing it needs, is fine.
    store
        .update_key(&carol, carol_key.id, KeyUpdate::new().name("carol's old console"))
        .unwrap();
}

#[test]
fn owners_and_updates_survive_a_reopen_by_replay_and_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let alice = Actor::admin("alice");
    let (id, expected, audit) = {
        let store = KeyStore::open(&path).unwrap();
        let created = store
            .create_key(
                &alice,
                NewKey::new("bot").role("bot").meta(meta(r#"{"a": [1, 2]}"#)),
            )
            .unwrap();
        store
            .update_key(
                &alice,
                created.id,
                KeyUpdate::new().external_id("t-9").name("bot 2"),
            )
            .unwrap();
        (created.id, store.key(created.id).unwrap(), store.audit())
    };
    for _ in 0..2 {
        // The first reopen replays (and may write a snapshot at close); the second may
        // start from it.
        let store = KeyStore::builder().snapshot_every(1).open(&path).unwrap();
        let key = store.key(id).unwrap();
        assert_eq!(
            (key.name.as_str(), key.external_id.as_deref()),
            ("bot 2", Some("t-9"))
        );
        assert_eq!(key.meta, expected.meta);
        assert_eq!(store.audit(), audit);
        assert_eq!(store.keys_at(2).unwrap()[0].external_id, None);
        assert_eq!(store.keys_at(2).unwrap()[0].name, "bot");
    }
}

/// Metadata `depth` objects deep (the metadata object itself counted).
fn nested(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

#[test]
fn metadata_nested_deeper_than_a_json_client_can_read_back_in_a_page_is_refused() {
    // serde_json (the command line's client, any Rust client) stops at 128 levels: metadata
    // almost that deep was taken, and then no listing page or audit entry holding it could
    // be read back by one, for any admin.
    let store = KeyStore::builder().open_temporary().unwrap();
    let alice = Actor::admin("alice");
    let head = store.head().seq;
    for depth in [MAX_META_DEPTH + 1, 100, 126, 127] {
        let err = Meta::parse(&nested(depth)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { field: "meta", .. }),
            "depth {depth}: {err:?}"
        );
    }
    assert_eq!(store.head().seq, head);
    let deepest = store
        .create_key(
            &alice,
            NewKey::new("deep")
                .role("bot")
                .meta(meta(&nested(MAX_META_DEPTH))),
        )
        .unwrap();
    let view = KeyJson::from(&store.key(deepest.id).unwrap());
    // A page of keys, and an audit entry's changes inside a page, parse back.
    let page = serde_json::json!({"keys": [view], "next": null}).to_string();
    serde_json::from_str::<serde_json::Value>(&page).unwrap();
    let entry = AuditJson::from(store.audit().last().unwrap());
    let page = serde_json::json!({"entries": [entry], "next": null}).to_string();
    serde_json::from_str::<serde_json::Value>(&page).unwrap();
}

#[test]
fn a_non_owners_update_that_would_leave_no_role_is_denied_as_not_owner_and_recorded() {
    // Permission first, as for every other change: an update of someone else's key is
    // refused for that (and lands in the security trail), whatever else is wrong with it.
    let store = KeyStore::builder().open_temporary().unwrap();
    let (alice, bob) = (Actor::admin("alice"), Actor::admin("bob"));
    let created = store.create_key(&alice, NewKey::new("bot").role("bot")).unwrap();
    let many: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    let mut too_many = KeyUpdate::new();
    for role in &many {
        too_many = too_many.add_role(role.clone());
    }
    for update in [KeyUpdate::new().remove_role("bot"), too_many] {
        let err = store.update_key(&bob, created.id, update).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PermissionDenied {
                    denial: Denial::NotOwner { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let err = store
        .update_key(&Actor::user("u"), created.id, KeyUpdate::new().remove_role("bot"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                denial: Denial::NotAnAdmin,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.refused().unwrap().len(), 3);
    // The owner still learns what is wrong with it.
    let err = store
        .update_key(&alice, created.id, KeyUpdate::new().remove_role("bot"))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { field: "role", .. }),
        "{err:?}"
    );
}
