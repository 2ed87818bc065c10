use super::*;

fn options(name: &str) -> FleetOptions {
    FleetOptions::new("memory")
        .host_id(name)
        .heartbeat(Duration::from_millis(20))
        .lease(Duration::from_millis(200))
        .margin(Duration::from_millis(50))
        .confirm_timeout(Duration::from_secs(5))
        .stale_serve(Duration::from_millis(100))
        .stale_reject(Duration::from_millis(300))
}

fn chain() -> Chain {
    Chain::new(Some(&crate::chain::ChainKey::from_bytes([7; 32])))
}

fn fleet(o: FleetOptions) -> Arc<Fleet> {
    let f = Fleet::new(o, chain());
    f.set_stream_id([1; 16]);
    f.watch_started();
    f
}

/// Another host's sealed head at record `seq`.
fn peer(name: &str, run: u64, counter: u64, seq: u64, fences: bool) -> Vec<u8> {
    let head = HostHead {
        run,
        counter,
        seq,
        hash: [0; 32],
        position: seq,
        at: 0,
        stale_for: 0,
        halted: false,
        leaving: false,
        fences,
        lease: 200_000,
        limit: if fences { 200_000 } else { 300_000 },
    };
    head::encode(&head, name, &[1; 16], &chain())
}

/// This host announces its head, which the watch hands back at `revision`.
fn announce(f: &Fleet, revision: u64) {
    let head = f.next_head().unwrap();
    f.sending(head.counter);
    let sent = fence::now();
    f.delivered(f.host(), Some(&f.seal(&head).unwrap()), revision, true);
    if f.announced(head.counter, Outcome::Acknowledged, sent) {
        f.catch_up_to(f.position());
    }
}

fn applied(f: &Fleet, seq: u64) {
    let head = Head {
        seq,
        hash: [0; 32],
        at: 0,
    };
    f.applied(head, seq);
    f.written(head, seq);
}

/// A revocation waits for a live host until it applies the record, and is answered once
/// this host's own head came back; a host silent past its lease and the margin (measured
/// to this host's own later head) drops out.
#[test]
fn confirm_waits_for_a_live_host_and_drops_a_silent_one_only_past_its_lease_and_margin() {
    let f = fleet(options("a"));
    f.delivered("b", Some(&peer("b", 1, 1, 4, true)), 1, true);
    applied(&f, 5);
    announce(&f, 2);
    let started = Instant::now();
    let waiting = std::thread::scope(|s| {
        let w = s.spawn(|| f.confirm(5));
        std::thread::sleep(Duration::from_millis(30));
        f.delivered("b", Some(&peer("b", 1, 2, 5, true)), 3, true);
        w.join().unwrap()
    });
    assert!(waiting.is_empty(), "{waiting:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // c falls silent at record 5; the revocation of record 6 waits for it until its lease
    // and the margin passed, seen against this host's own announcements.
    f.delivered("c", Some(&peer("c", 1, 1, 5, true)), 4, true);
    let silent_since = Instant::now();
    applied(&f, 6);
    let mut revision = 5;
    let waited = std::thread::scope(|s| {
        let w = s.spawn(|| f.confirm(6));
        f.delivered("b", Some(&peer("b", 1, 3, 6, true)), revision, true);
        while !w.is_finished() {
            revision += 1;
            announce(&f, revision);
            std::thread::sleep(Duration::from_millis(10));
        }
        w.join().unwrap()
    });
    assert!(waited.is_empty(), "{waited:?}");
    let took = silent_since.elapsed();
    assert!(
        took >= hold_for(Duration::from_millis(200), Duration::from_millis(50)),
        "c was dropped after {took:?}"
    );
}

/// Without its own head coming back, this host cannot vouch for hosts it does not know;
/// and without it, no silent host is ever counted out.
#[test]
fn without_its_own_echo_an_answer_names_the_unseen_hosts() {
    let f = fleet(options("a").confirm_timeout(Duration::from_millis(400)));
    f.delivered("b", Some(&peer("b", 1, 1, 1, true)), 1, true);
    applied(&f, 2);
    assert_eq!(f.confirm(2), ["*", "b"], "b silent, but no echo to measure it by");
}

/// Entries that do not verify count for nothing, make no revocation wait, and are counted.
#[test]
fn a_forged_unsealed_or_moved_head_counts_for_nothing_and_is_counted() {
    let f = fleet(options("a"));
    let genuine_b = peer("b", 1, 1, 1, true);
    f.delivered("ghost", Some(b"junk"), 1, true);
    f.delivered("c", Some(&genuine_b), 2, true);
    f.delivered("d", None, 3, true);
    let mut forged = genuine_b.clone();
    forged[26] ^= 1;
    f.delivered("b", Some(&forged), 4, true);
    applied(&f, 2);
    announce(&f, 5);
    let started = Instant::now();
    assert!(f.confirm(2).is_empty());
    assert!(started.elapsed() < Duration::from_millis(500));
    let status = f.status(|_| None);
    assert_eq!(status.ignored_heads, 4);
    assert_eq!(status.hosts.len(), 1, "{status:?}");
    assert!(status.last_ignored.unwrap().reason.contains("seal"));
}

/// A host that serves past its lease is listed while it is silent, until its own limit and
/// the margin passed.
#[test]
fn a_silent_host_that_serves_past_its_lease_is_listed_as_unconfirmed() {
    let f = fleet(options("a").confirm_timeout(Duration::from_secs(2)));
    f.delivered("p", Some(&peer("p", 1, 1, 1, false)), 1, true);
    applied(&f, 2);
    std::thread::sleep(Duration::from_millis(250));
    announce(&f, 2);
    assert_eq!(f.confirm(2), ["p"], "silent past its lease, inside its limit");
    std::thread::sleep(Duration::from_millis(150));
    applied(&f, 3);
    announce(&f, 3);
    assert!(f.confirm(3).is_empty(), "past its limit and the margin");
}

/// A gap in the watch's revisions means entries were missed: every host counts as heard
/// from then.
#[test]
fn a_gap_in_the_watch_restarts_every_hosts_silence() {
    let f = fleet(options("a").confirm_timeout(Duration::from_millis(600)));
    f.delivered("b", Some(&peer("b", 1, 1, 1, true)), 1, true);
    std::thread::sleep(Duration::from_millis(300));
    applied(&f, 2);
    announce(&f, 5);
    assert_eq!(
        f.confirm(2),
        ["b"],
        "the gap from 1 to 5 may have hidden b's heads"
    );
}

/// The fence: shut until the first acknowledged announcement, shut again once no
/// announcement was acknowledged for the lease, and open once heard again and caught up.
/// A halted host (which applies nothing more) reopens as soon as it is heard again.
#[test]
fn a_fenced_host_reopens_once_heard_and_caught_up_also_while_halted() {
    let f = fleet(options("a"));
    let fence = f.fence();
    assert!(fence.rejects());
    announce(&f, 1);
    assert!(!fence.rejects());
    std::thread::sleep(Duration::from_millis(250));
    assert!(fence.rejects(), "unheard past the lease");
    assert!(f.status(|_| None).causes.iter().any(|(c, _)| *c == "fenced"));
    let head = f.next_head().unwrap();
    f.sending(head.counter);
    assert!(f.announced(head.counter, Outcome::Acknowledged, fence::now()));
    f.catch_up_to(7);
    assert!(
        fence.rejects(),
        "heard, but the stream is at 7 and this host at 0"
    );
    f.halt("a sealed message broke the rules".into());
    assert!(!fence.rejects(), "halted: it has all it can apply");
    std::thread::sleep(Duration::from_millis(250));
    assert!(fence.rejects());
    announce(&f, 2);
    assert!(!fence.rejects(), "stale while halted, then heard again: open");
    f.close();
    assert!(fence.rejects(), "a host that leaves verifies nothing more");
}

/// A host that leaves says so in a sealed head and is waited for no more; a deletion of
/// its entry proves nothing, and a replayed older head of its run changes nothing.
#[test]
fn only_a_sealed_leaving_head_ends_the_wait_for_a_host() {
    let f = fleet(options("a").confirm_timeout(Duration::from_millis(300)));
    f.delivered("b", Some(&peer("b", 1, 2, 1, true)), 1, true);
    f.delivered("b", None, 2, true);
    applied(&f, 2);
    announce(&f, 3);
    assert_eq!(f.confirm(2), ["b"], "a deletion is not a departure");
    f.delivered("b", Some(&peer("b", 1, 1, 9, true)), 4, true);
    assert_eq!(
        f.confirm(2),
        ["b"],
        "a replay of an older head of the run says nothing"
    );
    let mut leaving = HostHead {
        run: 1,
        counter: 3,
        seq: 1,
        hash: [0; 32],
        position: 1,
        at: 0,
        stale_for: 0,
        halted: false,
        leaving: true,
        fences: true,
        lease: 200_000,
        limit: 200_000,
    };
    let other_run = HostHead { run: 2, ..leaving };
    f.delivered(
        "b",
        Some(&head::encode(&other_run, "b", &[1; 16], &chain())),
        5,
        true,
    );
    assert_eq!(f.confirm(2), ["b"], "the leaving head of a run never seen");
    leaving.counter = 4;
    f.delivered(
        "b",
        Some(&head::encode(&leaving, "b", &[1; 16], &chain())),
        6,
        true,
    );
    assert!(f.confirm(2).is_empty());
}

/// A machine suspended (its monotonic clock stood still) fences when it resumes, until it
/// is heard again and has caught up.
#[test]
fn a_host_resumed_from_a_suspend_fences_until_heard_and_caught_up() {
    let f = fleet(options("a"));
    announce(&f, 1);
    assert!(!f.fence().rejects());
    let now = f.suspended.load(Ordering::Acquire);
    f.note_suspended(now + 500);
    assert!(!f.fence().rejects(), "clock reading noise");
    f.note_suspended(now + 5_000_000);
    assert!(f.fence().rejects(), "suspended for 5 s");
    announce(&f, 2);
    assert!(!f.fence().rejects());
}

/// Host b's sealed head at record 1 for run `run`, announcement `counter`, sent at `at` by
/// b's clock.
fn run_head(run: u64, counter: u64, at: i64, leaving: bool) -> Vec<u8> {
    let head = HostHead {
        run,
        counter,
        seq: 1,
        hash: [0; 32],
        position: 1,
        at,
        stale_for: 0,
        halted: false,
        leaving,
        fences: true,
        lease: 200_000,
        limit: 200_000,
    };
    head::encode(&head, "b", &[1; 16], &chain())
}

/// Genuine heads of an earlier run of a host, put back in the bucket by anyone who can
/// write it, neither bring back that run's head nor end the wait with its leaving head: a
/// run is taken only if its sealed clock says it came later.
#[test]
fn an_earlier_runs_heads_put_back_neither_replace_the_head_nor_end_the_wait() {
    let f = fleet(options("a").confirm_timeout(Duration::from_millis(300)));
    let at = |run, counter, at, leaving| run_head(run, counter, at, leaving);
    // b restarted: run 2 is the one heard.
    f.delivered("b", Some(&at(1, 5, 1_000, false)), 1, true);
    f.delivered("b", Some(&at(2, 1, 2_000, false)), 2, true);
    applied(&f, 2);
    announce(&f, 3);
    // Run 1's last head and its leaving head, put back.
    f.delivered("b", Some(&at(1, 5, 1_000, false)), 4, true);
    f.delivered("b", Some(&at(1, 6, 1_100, true)), 5, true);
    assert_eq!(f.confirm(2), ["b"], "b of run 2 has not applied record 2");
    assert_eq!(f.status(|_| None).ignored_heads, 2);
    // Run 2 goes on; its own leaving head ends the wait.
    f.delivered("b", Some(&at(2, 2, 2_100, true)), 6, true);
    assert!(f.confirm(2).is_empty());
}

/// A host whose clock was stepped back across a restart sends heads of a new run that look
/// older than its last run's: they are not taken, but they still count as hearing it, so
/// it is never counted out while it announces (the revocation names it unconfirmed).
#[test]
fn a_new_run_with_an_earlier_clock_is_never_counted_out_while_it_announces() {
    let f = fleet(options("a").confirm_timeout(Duration::from_millis(600)));
    let head = |run, counter, at| run_head(run, counter, at, false);
    f.delivered("b", Some(&head(1, 9, 5_000)), 1, true);
    applied(&f, 2);
    let mut revision = 2;
    let answer = std::thread::scope(|s| {
        let w = s.spawn(|| f.confirm(2));
        let mut counter = 0;
        while !w.is_finished() {
            revision += 1;
            counter += 1;
            f.delivered("b", Some(&head(2, counter, 1_000)), revision, true);
            revision += 1;
            announce(&f, revision);
            std::thread::sleep(Duration::from_millis(10));
        }
        w.join().unwrap()
    });
    assert_eq!(answer, ["b"], "b announced throughout and never applied record 2");
}

/// A head is announced only once the local log synced what it covers: the sync runs before
/// a newer head is sealed, not for one already synced; a sync that fails halts the host,
/// which goes on announcing the last head synced.
#[test]
fn a_head_is_announced_only_once_the_local_log_synced_it() {
    let f = fleet(options("a"));
    let syncs = Arc::new(AtomicU64::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let (counted, fails) = (Arc::clone(&syncs), Arc::clone(&failing));
    let genesis = Head {
        seq: 1,
        hash: [1; 32],
        at: 0,
    };
    f.set_sync(
        Box::new(move || {
            counted.fetch_add(1, Ordering::AcqRel);
            if fails.load(Ordering::Acquire) {
                Err(crate::log::LogError::Engine("the disk is gone".into()))
            } else {
                Ok(())
            }
        }),
        genesis,
        1,
    );
    f.applied(genesis, 1);
    assert_eq!(f.next_head().unwrap().seq, 1);
    assert_eq!(syncs.load(Ordering::Acquire), 0, "held durably already");
    let head = Head {
        seq: 2,
        hash: [2; 32],
        at: 0,
    };
    f.applied(head, 2);
    assert_eq!(f.next_head().unwrap().seq, 1, "applied, not written yet");
    f.written(head, 2);
    let announced = f.next_head().unwrap();
    assert_eq!(
        (announced.seq, announced.hash, announced.position),
        (2, [2; 32], 2)
    );
    assert_eq!(syncs.load(Ordering::Acquire), 1);
    assert_eq!(f.next_head().unwrap().seq, 2);
    assert_eq!(syncs.load(Ordering::Acquire), 1, "no sync for what was synced");
    failing.store(true, Ordering::Release);
    let three = Head {
        seq: 3,
        hash: [3; 32],
        at: 0,
    };
    f.applied(three, 3);
    f.written(three, 3);
    let announced = f.next_head().unwrap();
    assert_eq!(announced.seq, 2, "the last head synced");
    assert!(announced.halted);
    assert!(f.halted().unwrap().contains("could not be synced"));
}
