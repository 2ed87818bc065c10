//! Hosts of a fleet in one process, on a shared log held in memory: the writer's side of
//! fleet mode without a server (`tests/fleet.rs` runs it on a real one).

use super::builder::SharedParts;
use super::*;
use crate::chain::Chain;
use crate::chain::ChainKey;
use crate::clock::Clock;
use crate::codec;
use crate::fleet::FleetOptions;
use crate::log::memory::MemLog;
use crate::log::memory::MemShared;
use crate::model::token;

const CHAIN_KEY: [u8; 32] = [7; 32];

fn host(shared: &MemShared, name: &str) -> KeyStore {
    host_on(shared, name, MemLog::default()).unwrap()
}

/// A host on `log` (which may hold records already: a single-host store).
fn host_on(shared: &MemShared, name: &str, log: MemLog) -> Result<KeyStore, Error> {
    host_with(shared, FleetOptions::new("memory").host_id(name), log, None)
}

/// A host with `options` on `log`; with `reachable`, one that connects to the shared log
/// only while it is set (and starts without it if it is not).
fn host_with(
    shared: &MemShared,
    options: FleetOptions,
    log: MemLog,
    reachable: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<KeyStore, Error> {
    let builder = Builder::default().chain_key(ChainKey::from_bytes(CHAIN_KEY));
    let info = match ledger::read_info(&log)? {
        Some(info) => info,
        None => ledger::initialize(&mut log.clone(), &builder.chain())?,
    };
    let fleet = Fleet::new(options, builder.chain());
    let connector = || -> crate::fleet::offline::Connect {
        let memory = shared.clone();
        let reachable = reachable.clone();
        Box::new(move || {
            if reachable
                .as_ref()
                .is_none_or(|r| r.load(std::sync::atomic::Ordering::Acquire))
            {
                Ok(Box::new(memory.clone()) as Box<dyn crate::log::SharedLog>)
            } else {
                Err(Error::StreamUnavailable {
                    reason: "cannot connect to memory: unreachable".into(),
                })
            }
        })
    };
    let mut connect = connector();
    let parts = SharedParts {
        log: connect().map_err(|e| e.to_string()),
        connect,
        history: connector(),
        // A store in memory has no snapshots to publish or join from.
        shelf: Arc::new(|| {
            Err(crate::log::LogError::Unavailable(
                "no snapshot shelf in memory".into(),
            ))
        }),
        fence: fleet.fence(),
        fleet,
    };
    KeyStore::start(builder, Box::new(log), info, None, Some(parts))
}

/// A bootstrap cut short (the stream stops answering after its first message): a host
/// joining meanwhile takes no write and reports itself unhealthy; the bootstrapping
/// host, started again, publishes the rest, and then everyone takes writes.
#[test]
fn an_interrupted_bootstrap_is_resumed_by_its_host_and_blocks_writes_until_whole() {
    let root = Actor::super_admin("root");
    let single = MemLog::default();
    {
        let options = Builder::default().chain_key(ChainKey::from_bytes(CHAIN_KEY));
        let mut log = single.clone();
        let info = ledger::initialize(&mut log, &options.chain()).unwrap();
        let store = KeyStore::start(options, Box::new(log), info, None, None).unwrap();
        let keys: Vec<ExistingKey> = (0..1500)
            .map(|i| {
                ExistingKey::with_secret(
                    NewKey::new(format!("adopted {i}")).role("bot"),
                    &format!("legacy-secret-{i:010}"),
                )
                .unwrap()
            })
            .collect();
        store.import_keys(&root, keys).unwrap();
    }
    let shared = MemShared::default();
    shared.set_max_bytes(100_000);
    shared.set_capacity(Some(2));
    let cut = host_on(&shared, "origin", single.clone()).unwrap_err();
    assert!(matches!(cut, Error::StreamUnavailable { .. }), "{cut:?}");
    assert_eq!(
        shared.len(),
        2,
        "the genesis and one message of the bootstrap landed"
    );

    let b = host(&shared, "b");
    assert!(b.last_seq() > 0 && b.last_seq() < 1500);
    assert!(matches!(
        b.create_key(&root, NewKey::new("too early").role("bot")),
        Err(Error::StreamUnavailable { .. })
    ));
    assert!(b.fleet_status().unwrap().unhealthy);

    shared.set_capacity(None);
    let origin = host_on(&shared, "origin", single).unwrap();
    assert_eq!(origin.last_seq(), 1500);
    until("b has the whole bootstrap", || b.last_seq() == 1500);
    until("b reports itself healthy", || {
        !b.fleet_status().unwrap().unhealthy
    });
    b.create_key(&root, NewKey::new("now").role("bot")).unwrap();
    until("origin has it", || origin.last_seq() == 1501);
    assert_eq!(origin.audit(), b.audit());
}

fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Two hosts delete the same key at once: both append after the same position, one
/// loses the race, applies the winner's message, prepares again and gets the error
/// the new state gives. Both end with the same log.
#[test]
fn concurrent_deletes_on_two_hosts_have_one_winner_and_the_loser_gets_key_deleted() {
    let shared = MemShared::default();
    let (a, b) = (host(&shared, "a"), host(&shared, "b"));
    let root = Actor::super_admin("root");
    for round in 0..20 {
        let key = a
            .create_key(&root, NewKey::new(format!("k{round}")).role("bot"))
            .unwrap();
        until("b sees the key", || b.key(key.id).is_some());
        let barrier = std::sync::Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let x = s.spawn(|| {
                barrier.wait();
                a.delete_key(&root, key.id)
            });
            let y = s.spawn(|| {
                barrier.wait();
                b.delete_key(&root, key.id)
            });
            (x.join().unwrap(), y.join().unwrap())
        });
        let (won, lost) = match (ra, rb) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: {other:?}"),
        };
        assert!(matches!(lost, Error::KeyDeleted(id) if id == key.id), "{lost:?}");
        until("both applied it", || {
            a.last_seq() >= won.seq && b.last_seq() >= won.seq
        });
        for store in [&a, &b] {
            assert!(
                store
                    .verify(key.key.expose_secret(), "10.0.0.1".parse().unwrap())
                    .is_err()
            );
        }
    }
    assert_eq!(a.last_seq(), 40);
    assert_eq!(a.audit(), b.audit());
    assert_eq!(a.head(), b.head());
}

/// A message whose records the chain key did not make is not the fleet's: nothing of it
/// is applied, it is counted, and the host goes on writing and verifying.
#[test]
fn a_forged_message_is_skipped_and_counted_and_writes_go_on() {
    let shared = MemShared::default();
    let a = host(&shared, "a");
    let root = Actor::super_admin("root");
    let kept = a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    // Record 2 made by someone without the chain key but with the head's hash (no
    // secret: `keyledger head` prints it, and every record links to the one before):
    // a valid link, valid fields, valid rules. Only the message's seal is missing.
    let head = a.head();
    let forged = crate::model::record::Record {
        seq: 2,
        at: a.ledger.head().at + 1,
        actor: Actor::super_admin("root"),
        via: None,
        event: crate::model::record::Event::Created {
            id: KeyId(42),
            hash: token::KeyHash([5; 32]),
            tail: *b"abcd",
            name: "forged".into(),
            roles: vec![crate::model::id::SUPER_ADMIN_ROLE.into()],
            whitelist: Vec::new(),
            expires_at: None,
            source: crate::model::key::KeySource::Generated,
            acts_for: None,
            rate_limits: Vec::new(),
        },
        prev: head.hash,
    };
    let mut block = crate::codec::block::BlockWriter::new(2);
    block.push(&codec::encode_record(&forged).unwrap());
    let entries = vec![block.finish()];
    // With the key, this very record would be accepted: the ledger alone cannot tell.
    let twin = Ledger::from_projection(
        crate::projection::Projection::new(),
        Chain::new(Some(&ChainKey::from_bytes(CHAIN_KEY))),
        Arc::new(Clock::system()),
    );
    let first: Vec<crate::log::Entry> = a.trail.scan(0).map(Result::unwrap).collect();
    twin.accept(&first).unwrap();
    twin.accept(&entries).unwrap();
    let stream_id = a.fleet.as_ref().and_then(|f| f.stream_id()).unwrap();
    let position = shared.len() as u64 + 1;
    let forged =
        crate::fleet::message::encode_entries("forger", stream_id, position, 0, &entries, &Chain::new(None));
    shared.inject(forged.unwrap());
    until("a skips it", || a.fleet_status().unwrap().foreign_messages == 1);
    let status = a.fleet_status().unwrap();
    assert!(
        status
            .last_foreign
            .as_deref()
            .is_some_and(|why| why.contains("not sealed with the fleet's chain key")),
        "{status:?}"
    );
    assert!(status.halted.is_none() && !status.unhealthy, "{status:?}");
    assert_eq!(a.last_seq(), 1);
    assert!(a.keys().iter().all(|k| k.name != "forged"));
    a.create_key(&root, NewKey::new("more").role("bot")).unwrap();
    assert_eq!(a.last_seq(), 2);
    assert!(
        a.verify(kept.key.expose_secret(), "10.0.0.1".parse().unwrap())
            .is_ok()
    );
}

/// A message sealed with the fleet's key for its place, whose records do not follow
/// the head (only a chain-key holder can make one): it is not skipped, it halts this
/// host's writes with nothing of it applied.
#[test]
fn a_sealed_message_whose_records_do_not_fit_halts_writes() {
    let shared = MemShared::default();
    let a = host(&shared, "a");
    let root = Actor::super_admin("root");
    a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    let entries: Vec<crate::log::Entry> = a.trail.scan(0).map(Result::unwrap).collect();
    let stream_id = a.fleet.as_ref().and_then(|f| f.stream_id()).unwrap();
    let position = shared.len() as u64 + 1;
    let chain = Chain::new(Some(&ChainKey::from_bytes(CHAIN_KEY)));
    // Record 1 again, sealed for the next position: the records do not follow the head.
    let again = crate::fleet::message::encode_entries("a", stream_id, position, 0, &entries[..1], &chain);
    shared.inject(again.unwrap());
    until("a halts", || a.fleet_status().unwrap().halted.is_some());
    let status = a.fleet_status().unwrap();
    assert_eq!(status.foreign_messages, 0, "{status:?}");
    assert_eq!(a.last_seq(), 1);
    assert!(matches!(
        a.create_key(&root, NewKey::new("more").role("bot")),
        Err(Error::FleetHalted { .. })
    ));
}

/// The stream deleted and created again with its first messages put back (genuine,
/// sealed for those places): the host notices within a heartbeat, reports the fault,
/// refuses writes with a typed error and keeps verifying; a new host does not start on
/// it.
#[test]
fn a_stream_rolled_back_under_a_host_stops_its_writes_and_a_new_host_refuses_it() {
    let shared = MemShared::default();
    let a = host(&shared, "a");
    let root = Actor::super_admin("root");
    let kept = a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    a.create_key(&root, NewKey::new("later").role("bot")).unwrap();
    shared.recreate(2);
    until("a notices", || a.fleet_status().unwrap().stream_fault.is_some());
    let status = a.fleet_status().unwrap();
    assert!(status.unhealthy, "{status:?}");
    assert!(matches!(
        a.create_key(&root, NewKey::new("more").role("bot")),
        Err(Error::StreamChanged { .. })
    ));
    assert!(
        a.verify(kept.key.expose_secret(), "10.0.0.1".parse().unwrap())
            .is_ok()
    );
    assert!(matches!(
        host_on(&shared, "b", MemLog::default()),
        Err(Error::StreamChanged { .. })
    ));
}

/// An older copy of the stream brought back (the same creation time, as a restored
/// backup keeps): it ends before what the host applied, which it notices and reports;
/// its writes stop until the stream reaches it again.
#[test]
fn a_stream_restored_from_an_older_copy_is_noticed_as_rolled_back() {
    let shared = MemShared::default();
    let a = host(&shared, "a");
    let root = Actor::super_admin("root");
    a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    let older = shared.len();
    a.create_key(&root, NewKey::new("later").role("bot")).unwrap();
    shared.restore_older(older);
    until("a notices", || {
        a.fleet_status()
            .unwrap()
            .stream_fault
            .is_some_and(|f| f.contains("rolled back"))
    });
    assert!(matches!(
        a.create_key(&root, NewKey::new("more").role("bot")),
        Err(Error::StreamChanged { .. })
    ));
}

/// An append the shared log does not answer is an error that changes nothing here; a
/// batch too large for one message is refused with a typed error.
#[test]
fn an_unanswered_append_and_an_oversized_batch_are_typed_errors_that_change_nothing() {
    let shared = MemShared::default();
    let a = host(&shared, "a");
    let root = Actor::super_admin("root");
    shared.set_unreachable(true);
    assert!(matches!(
        a.create_key(&root, NewKey::new("lost").role("bot")),
        Err(Error::StreamUnavailable { .. })
    ));
    shared.set_unreachable(false);
    assert_eq!((a.last_seq(), shared.len()), (0, 1), "the genesis only");
    let keys: Vec<ExistingKey> = (0..20_000)
        .map(|i| {
            let name = format!("adopted {i} with a long name to fill the message quickly");
            ExistingKey::with_secret(NewKey::new(name).role("bot"), &format!("legacy-secret-{i:010}"))
                .unwrap()
        })
        .collect();
    let err = a.import_keys(&root, keys).unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput { field: "batch", .. }),
        "{err:?}"
    );
    assert_eq!((a.last_seq(), shared.len()), (0, 1), "the genesis only");
    a.create_key(&root, NewKey::new("fine").role("bot")).unwrap();
    assert_eq!((a.last_seq(), shared.len()), (1, 2));
    // An append that landed but whose answer was lost is sent again and acknowledged
    // once: the shared log holds it once.
    shared.lose_next_answer();
    a.create_key(&root, NewKey::new("answer lost").role("bot"))
        .unwrap();
    assert_eq!((a.last_seq(), shared.len()), (2, 3));
}

fn quick(name: &str, lease: Duration) -> FleetOptions {
    FleetOptions::new("memory")
        .host_id(name)
        .heartbeat(Duration::from_millis(20))
        .lease(lease)
}

fn verifies(store: &KeyStore, secret: &token::ApiKey) -> bool {
    store
        .verify(secret.expose_secret(), "10.0.0.1".parse().unwrap())
        .is_ok()
}

/// A host restarted while the shared log is out of reach starts from its replica: it
/// verifies what it holds, reports itself stale, refuses writes with a typed error that
/// changes nothing, and once the shared log answers it joins: it catches up with what
/// another host wrote meanwhile and takes writes again. A host with no replica the fleet
/// heard does not start.
#[test]
fn a_host_restarted_without_the_shared_log_serves_its_replica_and_joins_when_it_answers() {
    let shared = MemShared::default();
    let root = Actor::super_admin("root");
    let replica = MemLog::default();
    let a = host_with(
        &shared,
        quick("a", Duration::from_secs(30)),
        replica.clone(),
        None,
    )
    .unwrap();
    let b = host(&shared, "b");
    let kept = a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    until("a keeps when it was last heard", || {
        replica.meta(crate::log::MetaKey::Contact).unwrap().is_some()
    });
    drop(a);

    let reachable = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = host_with(
        &shared,
        quick("a", Duration::from_secs(30)),
        replica.clone(),
        Some(Arc::clone(&reachable)),
    )
    .unwrap();
    assert!(verifies(&a, &kept.key));
    let status = a.fleet_status().unwrap();
    assert!(status.unhealthy && !status.rejecting, "{status:?}");
    assert_eq!(status.causes[0].0, "stale", "{status:?}");
    assert!(status.causes[0].1.contains("not joined"), "{status:?}");
    let refused = a.create_key(&root, NewKey::new("refused").role("bot"));
    assert!(
        matches!(refused, Err(Error::FleetNotJoined { .. })),
        "{refused:?}"
    );
    assert_eq!(a.last_seq(), 1, "nothing written");
    let meanwhile = b.create_key(&root, NewKey::new("meanwhile").role("bot")).unwrap();
    assert!(
        !verifies(&a, &meanwhile.key),
        "not applied yet: the log is out of reach"
    );

    reachable.store(true, std::sync::atomic::Ordering::Release);
    until("a catches up", || a.last_seq() == 2);
    until("a is healthy", || !a.fleet_status().unwrap().unhealthy);
    assert!(verifies(&a, &meanwhile.key));
    a.create_key(&root, NewKey::new("after").role("bot")).unwrap();
    until("b has it", || b.last_seq() == 3);
    assert_eq!(a.audit(), b.audit());

    let empty = host_with(
        &shared,
        quick("c", Duration::from_secs(30)),
        MemLog::default(),
        Some(Arc::new(std::sync::atomic::AtomicBool::new(false))),
    );
    let Err(Error::StreamUnavailable { reason }) = empty else {
        panic!("a host with nothing started without the shared log: {empty:?}")
    };
    assert!(
        reason.contains("unreachable") && reason.contains("no replica"),
        "{reason}"
    );
}

/// A host's fence, restarted without the shared log, still closes at its limit counted
/// from when the fleet last heard it, however often it restarts; started past it, the host
/// rejects every key at once.
#[test]
fn restarts_without_the_shared_log_do_not_reset_the_fence() {
    let shared = MemShared::default();
    let root = Actor::super_admin("root");
    let replica = MemLog::default();
    let lease = Duration::from_secs(1);
    let a = host_with(&shared, quick("a", lease), replica.clone(), None).unwrap();
    let kept = a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    // Heard last before this; the record kept at close is that last acknowledgement.
    let lost = std::time::Instant::now();
    drop(a);
    let unreachable = || Some(Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let mut restarts = 0;
    while lost.elapsed() < lease + Duration::from_millis(300) {
        let a = host_with(&shared, quick("a", lease), replica.clone(), unreachable()).unwrap();
        let at = lost.elapsed();
        let verified = verifies(&a, &kept.key);
        if at < lease - Duration::from_millis(200) {
            assert!(verified, "{at:?} after the last contact, within the lease");
            restarts += 1;
        } else if at > lease + Duration::from_millis(50) {
            assert!(!verified, "{at:?} after the last contact, past the lease");
            let status = a.fleet_status().unwrap();
            assert!(status.rejecting && status.unhealthy, "{status:?}");
            assert!(
                status
                    .causes
                    .iter()
                    .any(|(c, why)| *c == "fenced" && why.contains("past its limit")),
                "{status:?}"
            );
        }
        drop(a);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(restarts >= 3, "{restarts}");
}

/// A host started without the shared log that cannot join once it answers (the stream was
/// replaced meanwhile) halts, saying why, refuses writes as halted, and keeps verifying
/// from its replica under its limits.
#[test]
fn a_host_started_without_the_shared_log_that_cannot_join_halts_and_says_why() {
    let shared = MemShared::default();
    let root = Actor::super_admin("root");
    let replica = MemLog::default();
    let a = host_with(
        &shared,
        quick("a", Duration::from_secs(30)),
        replica.clone(),
        None,
    )
    .unwrap();
    let kept = a.create_key(&root, NewKey::new("kept").role("bot")).unwrap();
    drop(a);
    shared.recreate(2);
    let reachable = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = host_with(
        &shared,
        quick("a", Duration::from_secs(30)),
        replica,
        Some(Arc::clone(&reachable)),
    )
    .unwrap();
    reachable.store(true, std::sync::atomic::Ordering::Release);
    until("a halts", || a.fleet_status().unwrap().halted.is_some());
    let halted = a.fleet_status().unwrap().halted.unwrap();
    assert!(halted.contains("could not join"), "{halted}");
    let refused = a.create_key(&root, NewKey::new("refused").role("bot"));
    assert!(matches!(refused, Err(Error::FleetHalted { .. })), "{refused:?}");
    assert!(verifies(&a, &kept.key));
    assert_eq!(a.last_seq(), 1);
}

/// Started without the shared log, a host keeps to its share of a key's rate limit (the
/// limit over the hosts its replica last knew), as one cut off while running does: the
/// fleet together admits no more than one host would.
#[test]
fn a_host_started_without_the_shared_log_keeps_to_its_share_of_a_rate_limit() {
    let shared = MemShared::default();
    let root = Actor::super_admin("root");
    let replica = MemLog::default();
    let a = host_with(
        &shared,
        quick("a", Duration::from_secs(30)),
        replica.clone(),
        None,
    )
    .unwrap();
    let (b, c) = (host(&shared, "b"), host(&shared, "c"));
    let limit = crate::model::limit::RateLimit::new(9, Duration::from_secs(600)).unwrap();
    let limited = a
        .create_key(&root, NewKey::new("limited").role("bot").rate_limit(limit))
        .unwrap();
    until("a knows when it was last heard, by three hosts", || {
        replica
            .meta(crate::log::MetaKey::Contact)
            .unwrap()
            .and_then(|r| crate::fleet::contact::LastHeard::decode(&r))
            .is_some_and(|r| r.hosts == 3)
    });
    drop((a, b, c));
    let a = host_with(
        &shared,
        quick("a", Duration::from_secs(30)),
        replica,
        Some(Arc::new(std::sync::atomic::AtomicBool::new(false))),
    )
    .unwrap();
    let admitted = (0..9).filter(|_| verifies(&a, &limited.key)).count();
    assert_eq!(admitted, 3, "its share: a burst of 9 / 3");
    assert_eq!(a.fleet_status().unwrap().usage.hosts, 3);
}
