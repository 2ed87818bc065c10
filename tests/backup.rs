//! Backups: export writes the whole log to one checksummed file; import into an empty
//! store rebuilds the same state and chain; a damaged or truncated file imports nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use keyledger::{Actor, ChainKey, Error, KeyStore, NewKey, parse_net};

fn populated(dir: &Path, builder: keyledger::Builder) -> String {
    let store = builder.open(dir).unwrap();
    let alice = Actor::admin("alice");
    let kept = store
        .create_key(
            &alice,
            NewKey::new("kept")
                .role("bot")
                .allow(parse_net("10.0.0.0/8").unwrap()),
        )
        .unwrap();
    let gone = store.create_key(&alice, NewKey::new("gone").role("bot")).unwrap();
    store
        .whitelist_ip(&alice, kept.id, [parse_net("2001:db8::/32").unwrap()])
        .unwrap();
    store.delete_key(&Actor::super_admin("root"), gone.id).unwrap();
    kept.key.expose_secret().to_owned()
}

fn export_of_populated(tmp: &Path, file: &Path) {
    populated(&tmp.join("a"), KeyStore::builder());
    KeyStore::open(tmp.join("a")).unwrap().export(file).unwrap();
}

#[test]
fn export_then_import_rebuilds_the_same_state_and_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, file) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("backup.kl"),
    );
    let secret = populated(&a, KeyStore::builder());
    let (keys, audit) = {
        let store = KeyStore::open(&a).unwrap();
        assert_eq!(store.export(&file).unwrap(), 4);
        (store.all_keys(), store.audit())
    };
    assert_eq!(KeyStore::builder().import(&b, &file).unwrap(), 4);
    assert!(KeyStore::builder().check(&b).unwrap().is_intact());
    let restored = KeyStore::open(&b).unwrap();
    assert_eq!(restored.all_keys(), keys);
    assert_eq!(restored.audit(), audit);
    assert!(restored.verify(&secret, "10.1.1.1".parse().unwrap()).is_ok());
    // Same chain: the two logs hold the same bytes, so a fresh export is identical.
    let again = tmp.path().join("again.kl");
    restored.export(&again).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn a_damaged_or_truncated_backup_imports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("backup.kl");
    export_of_populated(tmp.path(), &file);
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    let cases: [(&str, Vec<u8>); 4] = [
        ("flipped", flipped),
        ("truncated", good[..good.len() - 10].to_vec()),
        ("empty", Vec::new()),
        (
            "foreign",
            b"PK\x03\x04 not a backup at all, just some bytes of another format".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let damaged = tmp.path().join(what);
        std::fs::write(&damaged, &bytes).unwrap();
        let target = tmp.path().join(format!("store-{what}"));
        let result = KeyStore::builder().import(&target, &damaged);
        assert!(
            matches!(result, Err(Error::InvalidInput { field: "backup", .. })),
            "{what}: {result:?}"
        );
        assert_eq!(KeyStore::open(&target).unwrap().last_seq(), 0, "{what}");
    }
}

#[test]
fn import_refuses_a_store_that_has_records() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("backup.kl");
    export_of_populated(tmp.path(), &file);
    let busy = tmp.path().join("busy");
    populated(&busy, KeyStore::builder());
    assert!(matches!(
        KeyStore::builder().import(&busy, &file),
        Err(Error::InvalidInput { field: "store", .. })
    ));
    assert_eq!(KeyStore::open(&busy).unwrap().last_seq(), 4);
}

#[test]
fn a_keyed_backup_needs_its_chain_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = || ChainKey::from_hex(&"5a".repeat(32)).unwrap();
    let file = tmp.path().join("backup.kl");
    populated(&tmp.path().join("a"), KeyStore::builder().chain_key(key()));
    KeyStore::builder()
        .chain_key(key())
        .open(tmp.path().join("a"))
        .unwrap()
        .export(&file)
        .unwrap();
    assert!(KeyStore::builder().import(tmp.path().join("b"), &file).is_err());
    assert_eq!(
        KeyStore::builder()
            .chain_key(key())
            .import(tmp.path().join("c"), &file)
            .unwrap(),
        4
    );
    assert!(
        KeyStore::builder()
            .chain_key(key())
            .check(tmp.path().join("c"))
            .unwrap()
            .is_intact()
    );
}

#[test]
fn the_cli_exports_and_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = populated(&tmp.path().join("a"), KeyStore::builder());
    let file = tmp.path().join("backup.kl");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keyledger"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains(&secret[4..34]), "a secret was printed");
        (out.status.code(), text)
    };
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let (code, text) = run(&["--db", a.to_str().unwrap(), "export", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("4 records"));
    let (code, text) = run(&["--db", b.to_str().unwrap(), "import", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["--db", b.to_str().unwrap(), "check"]);
    assert_eq!(code, Some(0), "{text}");
    // Importing again into the now non-empty store is bad input, and changes nothing.
    let (code, text) = run(&["--db", b.to_str().unwrap(), "import", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.starts_with("error:"));
}

/// A backup written by format version 1 keeps importing to the same history.
#[test]
fn a_version_1_backup_still_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export-v1.kl");
    assert_eq!(KeyStore::builder().import(tmp.path(), &fixture).unwrap(), 3);
    let store = KeyStore::open(tmp.path()).unwrap();
    let key = store.all_keys().pop().unwrap();
    assert_eq!(key.id.to_string(), "ce0f601aa535d135");
    assert_eq!(key.name, "fixture bot");
    assert_eq!(key.roles, ["bot", "reader"]);
    assert_eq!(
        key.whitelist,
        [
            parse_net("10.0.0.0/8").unwrap(),
            parse_net("2001:db8::/32").unwrap()
        ]
    );
    assert_eq!(key.created_by, Actor::admin("alice"));
    assert!(matches!(key.deleted, Some((ref by, _)) if *by == Actor::super_admin("root")));
    let kinds: Vec<_> = store.audit().iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "whitelisted", "deleted"]);
}

/// A keyed backup written by format version 2 (chain key `42` × 32) keeps importing, only
/// with its key; its sealed trailer cannot be downgraded to version 1's checksum, and a
/// record cut off its end with the checksum recomputed is refused.
#[test]
fn a_version_2_keyed_backup_imports_only_with_its_key_and_resists_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export-v2.kl");
    let key = || ChainKey::from_hex(&"42".repeat(32)).unwrap();
    assert!(matches!(
        KeyStore::builder().import(tmp.path().join("nokey"), &fixture),
        Err(Error::ChainKeyMismatch(keyledger::ChainKeyProblem::Missing))
    ));
    assert!(
        !tmp.path().join("nokey").exists(),
        "a failed import leaves nothing"
    );
    let target = tmp.path().join("ok");
    assert_eq!(
        KeyStore::builder()
            .chain_key(key())
            .import(&target, &fixture)
            .unwrap(),
        3
    );
    let store = KeyStore::builder().chain_key(key()).open(&target).unwrap();
    let k = store.all_keys().pop().unwrap();
    assert_eq!(k.id.to_string(), "22da4d9ba98511a7");
    assert_eq!(k.name, "fixture bot");
    assert!(matches!(k.deleted, Some((ref by, _)) if *by == Actor::super_admin("root")));
    drop(store);

    // The attacker drops the last record (the delete), fixes the count and recomputes a
    // plain blake3 trailer, as version 1 had; as version 2, and downgraded to version 1.
    let bytes = std::fs::read(&fixture).unwrap();
    let body = &bytes[..bytes.len() - 32];
    let mut cut = body.to_vec();
    let mut at = 55;
    for _ in 0..2 {
        let len = u32::from_le_bytes(cut[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + len;
    }
    cut.truncate(at);
    cut[47..55].copy_from_slice(&2u64.to_le_bytes());
    for version in [2u16, 1] {
        let mut forged = cut.clone();
        forged[8..10].copy_from_slice(&version.to_le_bytes());
        forged[10..14].copy_from_slice(&u32::from(version).to_le_bytes());
        let sum = blake3::hash(&forged);
        forged.extend_from_slice(sum.as_bytes());
        let path = tmp.path().join(format!("forged-v{version}.kl"));
        std::fs::write(&path, forged).unwrap();
        let target = tmp.path().join(format!("forged-{version}"));
        let result = KeyStore::builder().chain_key(key()).import(&target, &path);
        assert!(
            matches!(result, Err(Error::InvalidInput { field: "backup", .. })),
            "version {version}: {result:?}"
        );
        assert!(!target.exists());
    }
}

#[test]
fn an_oversized_or_endless_backup_is_refused_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("backup.kl");
    export_of_populated(tmp.path(), &file);
    let good = std::fs::read(&file).unwrap();
    // Padded to 3 GiB (sparse): more than its four records can hold.
    let huge = tmp.path().join("huge.kl");
    std::fs::write(&huge, &good).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let result = KeyStore::builder().import(tmp.path().join("huge"), &huge);
    assert!(
        matches!(result, Err(Error::InvalidInput { field: "backup", .. })),
        "{result:?}"
    );
    // A header that claims 2^40 records, on a short file: refused when it ends.
    let mut endless = good.clone();
    endless[47..55].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let path = tmp.path().join("endless.kl");
    std::fs::write(&path, endless).unwrap();
    let result = KeyStore::builder().import(tmp.path().join("endless"), &path);
    assert!(
        matches!(result, Err(Error::InvalidInput { field: "backup", .. })),
        "{result:?}"
    );
    assert!(!tmp.path().join("huge").exists() && !tmp.path().join("endless").exists());
}
