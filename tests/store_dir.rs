//! The store directory cannot be turned against its owner: the attacks of someone who can
//! plant files in it (links, FIFOs, links to devices), run against the real binary. Nothing
//! keyledger writes goes through a planted link, nothing it reads makes it wait, what it
//! creates is its owner's alone whatever the umask, and its secret files are its owner's
//! alone too.

#![allow(clippy::unwrap_used)]

#[path = "support/served.rs"]
mod served;

use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyledger::{Actor, ExistingKey, KeyStore, NewKey};
use served::{Served, keyledger};
use tempfile::TempDir;

/// What a bounded run of the binary did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with `stdin`, killing it if it is not done within `limit`: a command that
/// waits on a planted file fails the test instead of hanging it.
fn bounded(cmd: &mut Command, stdin: &str, limit: Duration) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let drain = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            from.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ran {
                code: status.code().unwrap_or(-1),
                stdout: stdout.join().unwrap(),
                stderr: stderr.join().unwrap(),
            };
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{cmd:?} did not finish within {limit:?}: it waits on a planted file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Generous: the machine is shared; a command that does not wait on anything takes well
/// under a second.
const PROMPTLY: Duration = Duration::from_secs(20);

/// A store with one key, made with the command line; its directory and the key's secret.
fn store_with_a_key(tmp: &TempDir) -> (PathBuf, String) {
    let db = tmp.path().join("keys");
    let out = keyledger(&db)
        .args([
            "create",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            "--name",
            "bot",
            "--role",
            "r",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (db, made["key"].as_str().unwrap().to_owned())
}

fn verify(db: &Path, secret: &str) -> Ran {
    bounded(
        keyledger(db).args(["verify", "--ip", "10.0.0.1"]),
        &format!("{secret}\n"),
        PROMPTLY,
    )
}

fn list(db: &Path) -> Ran {
    bounded(keyledger(db).arg("list"), "", PROMPTLY)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

/// A file outside the store that an attacker wants overwritten.
fn victim(tmp: &TempDir) -> PathBuf {
    let path = tmp.path().join("victim");
    std::fs::write(&path, "the owner's data\n").unwrap();
    path
}

#[test]
fn a_link_planted_as_last_used_partial_is_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, secret) = store_with_a_key(&tmp);
    let victim = victim(&tmp);
    symlink(&victim, db.join("last-used.partial")).unwrap();

    // A verify stamps the key's last use, which is saved when the command ends.
    let ran = verify(&db, &secret);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the owner's data\n");
    let saved = std::fs::symlink_metadata(db.join("last-used")).unwrap();
    assert!(saved.is_file(), "the stamps were saved, to a file of their own");
    assert_eq!(mode(&db.join("last-used")), 0o600);
}

#[test]
fn a_link_planted_as_snapshot_partial_while_serve_runs_is_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("keys");
    // Enough records that `serve` saves a snapshot when it stops (a tenth of the default
    // interval), and none saved before.
    {
        let store = KeyStore::builder().snapshot_every(0).open(&db).unwrap();
        let keys = (0..10_000)
            .map(|i| {
                ExistingKey::with_secret(NewKey::new(format!("k{i}")).role("r"), &format!("legacy_{i:020}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        store.import_keys(&Actor::super_admin("root"), keys).unwrap();
    }
    assert!(!db.join("snapshot").exists());
    let victim = victim(&tmp);

    let mut served = Served::start(&db, &[]);
    symlink(&victim, db.join("snapshot.partial")).unwrap();
    let status = served.terminate().expect("serve stops on SIGTERM");
    assert!(status.success(), "{status:?}: {}", served.errors());

    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the owner's data\n");
    let snapshot = std::fs::symlink_metadata(db.join("snapshot")).unwrap();
    assert!(
        snapshot.is_file() && snapshot.len() > 0,
        "serve saved its snapshot at stop"
    );
    assert_eq!(mode(&db.join("snapshot")), 0o600);
    // The next open removes the planted link (never what it points to) and uses the
    // snapshot.
    assert_eq!(list(&db).code, 0);
    assert!(std::fs::symlink_metadata(db.join("snapshot.partial")).is_err());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the owner's data\n");
}

#[test]
fn a_fifo_or_a_link_to_dev_zero_in_the_store_is_refused_promptly_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, secret) = store_with_a_key(&tmp);
    // Let the store save its last-used stamps, so each planted file replaces a real one.
    assert_eq!(verify(&db, &secret).code, 0);
    for name in ["last-used", "snapshot", "keyledger.lock"] {
        let path = db.join(name);
        for (planted, found) in [("fifo", "is a FIFO"), ("link to /dev/zero", "is a symbolic link")] {
            let _ = std::fs::remove_file(&path);
            if planted == "fifo" {
                mkfifo(&path);
            } else {
                symlink("/dev/zero", &path).unwrap();
            }
            for (command, ran) in [("verify", verify(&db, &secret)), ("list", list(&db))] {
                assert_eq!(ran.code, 5, "{name} as a {planted}, {command}: {ran:?}");
                assert_eq!(
                    ran.stderr,
                    format!(
                        "error: cannot open the store at {}: {} {found}{}\n",
                        db.display(),
                        path.display(),
                        if planted == "fifo" {
                            " where keyledger expects a regular file: remove it"
                        } else {
                            ", and keyledger follows none in a store's directory: remove it"
                        }
                    ),
                    "{name} as a {planted}, {command}"
                );
            }
            // Nothing was written through it, or over it.
            let still = std::fs::symlink_metadata(&path).unwrap().file_type();
            assert!(
                !still.is_file(),
                "{name} as a {planted} was left for its owner to see"
            );
        }
        std::fs::remove_file(&path).unwrap();
        let ran = verify(&db, &secret);
        assert_eq!(ran.code, 0, "without the planted {name}: {ran:?}");
    }
}

#[test]
fn a_link_or_a_fifo_in_the_log_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = store_with_a_key(&tmp);
    let log = db.join("log");

    // log/ itself a link to a directory elsewhere (the real log, moved away).
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&log, &elsewhere).unwrap();
    symlink(&elsewhere, &log).unwrap();
    let ran = list(&db);
    assert_eq!(ran.code, 5, "{ran:?}");
    assert!(
        ran.stderr
            .contains(&format!("{} is a symbolic link", log.display())),
        "{ran:?}"
    );
    std::fs::remove_file(&log).unwrap();
    std::fs::rename(&elsewhere, &log).unwrap();

    // A FIFO, and a link to /dev/zero, among the engine's files.
    for planted in ["snap.fffffffffffff", "conf"] {
        let path = log.join(planted);
        let saved = std::fs::read(&path).ok();
        let _ = std::fs::remove_file(&path);
        mkfifo(&path);
        for ran in [list(&db), bounded(keyledger(&db).arg("check"), "", PROMPTLY)] {
            assert_eq!(ran.code, 5, "{ran:?}");
            assert!(
                ran.stderr.contains(&format!("{} is a FIFO", path.display())),
                "{ran:?}"
            );
        }
        std::fs::remove_file(&path).unwrap();
        symlink("/dev/zero", &path).unwrap();
        let ran = list(&db);
        assert_eq!(ran.code, 5, "{ran:?}");
        assert!(ran.stderr.contains("is a symbolic link"), "{ran:?}");
        std::fs::remove_file(&path).unwrap();
        if let Some(bytes) = saved {
            std::fs::write(&path, bytes).unwrap();
        }
    }
    assert_eq!(list(&db).code, 0);

    // The store's directory itself may be a link: its path is the operator's to choose.
    let via = tmp.path().join("via-a-link");
    symlink(&db, &via).unwrap();
    let ran = list(&via);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("bot"), "{ran:?}");
}

#[test]
fn check_names_a_planted_snapshot_and_checks_the_log_all_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = store_with_a_key(&tmp);
    mkfifo(&db.join("snapshot"));
    let ran = bounded(keyledger(&db).arg("check"), "", PROMPTLY);
    assert_eq!(ran.code, 1, "{ran:?}");
    let snapshot = db.join("snapshot");
    assert!(
        ran.stdout.contains(&format!(
            "snapshot  {} is a FIFO where keyledger expects a regular file",
            snapshot.display()
        )),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("1 problem"), "{ran:?}");
}

/// The binary on `db` under umask 000: whatever keyledger creates, it makes private itself.
fn under_umask_000(db: &Path, args: &[&str]) -> Ran {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_keyledger"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("KEYLEDGER_DB")
        .env_remove("KEYLEDGER_SERVER")
        .env_remove("KEYLEDGER_API_KEY")
        .env_remove("KEYLEDGER_CHAIN_KEY_FILE");
    bounded(&mut cmd, "", PROMPTLY)
}

#[test]
fn the_store_its_files_and_an_export_are_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("deep").join("keys");
    let made = under_umask_000(
        &db,
        &[
            "create",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            "--name",
            "bot",
            "--role",
            "r",
            "--json",
        ],
    );
    assert_eq!(made.code, 0, "{made:?}");
    let secret = serde_json::from_str::<serde_json::Value>(&made.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut verify = Command::new("sh");
    verify
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_keyledger"))
        .arg("--db")
        .arg(&db)
        .args(["verify", "--ip", "10.0.0.1"]);
    assert_eq!(bounded(&mut verify, &format!("{secret}\n"), PROMPTLY).code, 0);

    assert_eq!(mode(&db), 0o700, "the store's directory");
    assert_eq!(mode(&db.join("log")), 0o700, "the log's directory");
    assert_eq!(mode(&db.join("keyledger.lock")), 0o600);
    assert_eq!(mode(&db.join("last-used")), 0o600);

    let backup = tmp.path().join("keys.backup");
    let exported = under_umask_000(&db, &["export", backup.to_str().unwrap()]);
    assert_eq!(exported.code, 0, "{exported:?}");
    assert_eq!(mode(&backup), 0o600, "the export");

    // An export over a link replaces the link: what it pointed to is left alone.
    let victim = victim(&tmp);
    std::fs::remove_file(&backup).unwrap();
    symlink(&victim, &backup).unwrap();
    let exported = under_umask_000(&db, &["export", backup.to_str().unwrap()]);
    assert_eq!(exported.code, 0, "{exported:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the owner's data\n");
    assert!(std::fs::symlink_metadata(&backup).unwrap().is_file());
    assert_eq!(mode(&backup), 0o600);
}

#[test]
fn a_chain_key_file_other_users_may_read_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("keys");
    let key = tmp.path().join("chain.key");
    let made = keyledger(&db)
        .args(["chain-key", "new", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    assert_eq!(mode(&key), 0o600);
    let keyed = |args: &[&str]| {
        bounded(
            keyledger(&db)
                .args(["--chain-key-file", key.to_str().unwrap()])
                .args(args),
            "",
            PROMPTLY,
        )
    };
    let create = keyed(&[
        "create",
        "--actor",
        "root",
        "--actor-role",
        "super-admin",
        "--name",
        "bot",
        "--role",
        "r",
    ]);
    assert_eq!(create.code, 0, "{create:?}");

    for loose in [0o644, 0o640, 0o604, 0o660] {
        set_mode(&key, loose);
        let ran = keyed(&["list"]);
        assert_eq!(ran.code, 2, "mode {loose:o}: {ran:?}");
        assert_eq!(
            ran.stderr,
            format!(
                "error: the chain key file {} holds a secret but other users may read it (mode {loose:04o}): \
                 `chmod 600` it, then retry\n",
                key.display()
            )
        );
    }
    for tight in [0o600, 0o400] {
        set_mode(&key, tight);
        let ran = keyed(&["list"]);
        assert_eq!(ran.code, 0, "mode {tight:o}: {ran:?}");
        assert!(ran.stdout.contains("bot"), "{ran:?}");
    }
}

#[test]
fn chain_key_new_never_writes_over_or_through_what_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = victim(&tmp);
    let new_key = |path: &Path| {
        bounded(
            keyledger(&tmp.path().join("keys"))
                .args(["chain-key", "new"])
                .arg(path),
            "",
            PROMPTLY,
        )
    };

    // An existing file.
    let ran = new_key(&victim);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("never overwritten"), "{ran:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the owner's data\n");

    // A link to an existing file, and a dangling link: neither is followed.
    let link = tmp.path().join("link.key");
    symlink(&victim, &link).unwrap();
    assert_eq!(new_key(&link).code, 2);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the owner's data\n");
    let dangling = tmp.path().join("dangling.key");
    let target = tmp.path().join("made-through-the-link");
    symlink(&target, &dangling).unwrap();
    assert_eq!(new_key(&dangling).code, 2);
    assert!(!target.exists(), "nothing was created through the link");

    // A new name: written whole, private, and nothing else left beside it.
    let fresh = tmp.path().join("fresh.key");
    let ran = new_key(&fresh);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(std::fs::read_to_string(&fresh).unwrap().trim().len(), 64);
    assert_eq!(mode(&fresh), 0o600);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_huge_sparse_file_planted_as_last_used_or_snapshot_is_refused_not_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, secret) = store_with_a_key(&tmp);
    for name in ["last-used", "snapshot"] {
        let path = db.join(name);
        let _ = std::fs::remove_file(&path);
        // 15 TiB of holes: reading it whole would abort the process.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(15 << 40).unwrap();
        set_mode(&path, 0o600);
        let ran = list(&db);
        assert_eq!(ran.code, 5, "{name}: {ran:?}");
        assert!(
            ran.stderr.contains(&format!(
                "{} holds 16492674416640 bytes, more than any file of its kind",
                path.display()
            )),
            "{name}: {ran:?}"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            verify(&db, &secret).code,
            0,
            "once {name} is gone the store opens"
        );
    }
}

#[test]
fn a_fifo_planted_among_sleds_blob_files_while_serve_runs_fails_a_write_instead_of_hanging_it() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("keys");
    let root = {
        let store = KeyStore::open(&db).unwrap();
        let made = store
            .create_key(
                &Actor::super_admin("root"),
                NewKey::new("root").role("super-admin"),
            )
            .unwrap();
        made.key.expose_secret().to_owned()
    };
    let blobs = db.join("log").join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut served = Served::start(&db, &[]);
    mkfifo(&blobs.join("9999"));
    let started = Instant::now();
    let body = r#"{"name":"after the fifo","roles":["r"]}"#;
    let request = format!(
        "POST /v1/keys HTTP/1.1\r\nHost: t\r\nx-api-key: {root}\r\ncontent-type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(served.addr).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("the write hung on the planted FIFO");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("neither a regular file nor a directory"),
        "{answer}"
    );
    assert!(started.elapsed() < PROMPTLY);
    let status = served
        .terminate()
        .expect("serve stops on SIGTERM, not held by the FIFO");
    assert!(status.code().is_some(), "{status:?}");
}

#[test]
fn a_store_directory_every_user_may_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = store_with_a_key(&tmp);
    set_mode(&db, 0o777);
    let ran = list(&db);
    assert_eq!(ran.code, 5, "{ran:?}");
    assert!(
        ran.stderr
            .contains("is a store directory every user may write (mode 0777)"),
        "{ran:?}"
    );
    set_mode(&db, 0o750);
    assert_eq!(list(&db).code, 0);
}

#[test]
fn a_chain_key_file_owned_by_another_user_is_refused() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("keys");
    let key = tmp.path().join("chain.key");
    let made = keyledger(&db)
        .args(["chain-key", "new", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let chown = Command::new("chown")
        .args(["65534", key.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    let ran = bounded(
        keyledger(&db).args(["--chain-key-file", key.to_str().unwrap(), "list"]),
        "",
        PROMPTLY,
    );
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains("belongs to another user (uid 65534)"),
        "{ran:?}"
    );
}
