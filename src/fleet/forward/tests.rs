use std::sync::Mutex;

use super::wire::{AnswerBodyV1, CommandV1, OpV1, RequestV1};
use super::*;
use crate::fleet::FleetOptions;
use crate::ledger::Op;
use crate::model::actor::Actor;
use crate::model::key::NewKey;
use crate::model::token::KeyHash;

const STREAM: [u8; 16] = [9; 16];

fn chain(byte: u8) -> Chain {
    Chain::new(Some(&crate::chain::ChainKey::from_bytes([byte; 32])))
}

fn fleet(host: &str) -> Arc<Fleet> {
    Fleet::new(FleetOptions::new("nats://127.0.0.1:4222").host_id(host), chain(7))
}

fn create(name: &str) -> Command {
    Command {
        actor: Actor::admin("alice"),
        via: None,
        op: Op::Create {
            new: NewKey::new(name).role("bot").validated().unwrap(),
            hash: KeyHash([3; 32]),
            tail: *b"abcd",
        },
    }
}

fn request(serving: &Serving, to: &str, at: i64, commands: Vec<CommandV1>) -> RequestV1 {
    RequestV1 {
        stream_id: STREAM,
        from: "b".to_owned(),
        to: to.to_owned(),
        to_run: serving.fleet.run(),
        id: rand::random(),
        at,
        wait_ms: 5000,
        commands,
    }
}

/// A writer that answers every command at once, recording what it was handed.
fn serving(host: &str) -> (Serving, Arc<Mutex<Vec<Command>>>) {
    let taken = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&taken);
    let submit: Submit = Box::new(move |command, _deadline| {
        let (reply, answer) = crossbeam_channel::bounded(1);
        record.lock().unwrap().push(command);
        reply.send(Ok((KeyId(42), 7))).unwrap();
        Some(answer)
    });
    (
        Serving::start(fleet(host), chain(7), STREAM, submit, Box::new(|_| {})).unwrap(),
        taken,
    )
}

/// Hands `bytes` to the serving; returns its answer, if it gave one within a second (to
/// the host that sent the request, "b").
fn ask(serving: &Serving, bytes: &[u8]) -> Option<Vec<u8>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    serving.request(
        bytes,
        Box::new(move |to, answer| {
            assert_eq!(to, "b", "answered on the sender's subject");
            let _ = tx.send(answer);
        }),
    );
    rx.recv_timeout(Duration::from_secs(1)).ok()
}

/// The serving's answer to `bytes`: declined, and why.
fn declined(serving: &Serving, bytes: &[u8]) -> String {
    let answer = wire::open_answer(&ask(serving, bytes).expect("an answer"), &chain(7)).unwrap();
    match answer.answer {
        AnswerBodyV1::Declined(why) => why,
        AnswerBodyV1::Taken { .. } => panic!("taken"),
    }
}

#[test]
fn a_sealed_request_is_taken_once_and_answered_with_each_outcome() {
    let (serving, taken) = serving("a");
    let commands = vec![
        wire::command_v1(&create("first")).unwrap(),
        wire::command_v1(&create("second")).unwrap(),
    ];
    let req = request(&serving, "a", crate::ledger::now_micros(), commands);
    let bytes = wire::seal_request(&req, &chain(7)).unwrap();
    let answer = wire::open_answer(&ask(&serving, &bytes).unwrap(), &chain(7)).unwrap();
    assert_eq!(answer.id, req.id);
    assert_eq!(answer.from, "a");
    let AnswerBodyV1::Taken { outcomes, .. } = answer.answer else {
        panic!("declined");
    };
    assert_eq!(outcomes, vec![OutcomeV1::Done { id: 42, seq: 7 }; 2]);
    let names: Vec<String> = taken
        .lock()
        .unwrap()
        .iter()
        .map(|c| match &c.op {
            Op::Create { new, .. } => new.name.clone(),
            _ => String::new(),
        })
        .collect();
    assert_eq!(names, ["first", "second"]);

    // The same bytes again: a replay, refused without an answer, and nothing is handed on.
    assert!(ask(&serving, &bytes).is_none());
    assert_eq!(taken.lock().unwrap().len(), 2);
    let status = serving.fleet.routes.status(String::new());
    assert_eq!((status.served, status.refused_requests), (2, 1));
    assert!(
        status.last_refused.unwrap().contains("replay"),
        "names the replay"
    );
}

#[test]
fn requests_not_sealed_for_this_fleet_stream_and_host_or_not_recent_are_refused() {
    let (serving, taken) = serving("a");
    let now = crate::ledger::now_micros();
    let one = || vec![wire::command_v1(&create("x")).unwrap()];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            wire::seal_request(&request(&serving, "a", now, one()), &chain(8)).unwrap(),
            "seal",
        ),
        (
            wire::seal_request(&request(&serving, "c", now, one()), &chain(7)).unwrap(),
            "not this one",
        ),
        (
            {
                let mut r = request(&serving, "a", now, one());
                r.stream_id = [1; 16];
                wire::seal_request(&r, &chain(7)).unwrap()
            },
            "another stream",
        ),
        (
            wire::seal_request(&request(&serving, "a", now - 2 * WINDOW_MICROS, one()), &chain(7)).unwrap(),
            "outside",
        ),
        (
            wire::seal_request(&request(&serving, "a", now + 2 * WINDOW_MICROS, one()), &chain(7)).unwrap(),
            "outside",
        ),
        (
            {
                let mut r = request(&serving, "a", now, one());
                r.from = "b.>".to_owned();
                wire::seal_request(&r, &chain(7)).unwrap()
            },
            "no host has",
        ),
        (b"KLFWDRQ\x00\x01\x00junk".to_vec(), "seal"),
        (b"\x00".to_vec(), "not a forwarded write"),
        (
            {
                let mut bytes = wire::seal_request(&request(&serving, "a", now, one()), &chain(7)).unwrap();
                bytes[20] ^= 1;
                bytes
            },
            "seal",
        ),
    ];
    for (i, (bytes, why)) in cases.iter().enumerate() {
        assert!(ask(&serving, bytes).is_none(), "case {i} was answered");
        let status = serving.fleet.routes.status(String::new());
        assert_eq!(status.refused_requests, i as u64 + 1, "case {i}");
        let last = status.last_refused.unwrap();
        assert!(last.contains(why), "case {i}: {last}");
    }
    assert!(taken.lock().unwrap().is_empty());
    // Sealed for an earlier run of this host: the fleet's, so declined at once.
    let mut r = request(&serving, "a", now, one());
    r.to_run ^= 1;
    let why = declined(&serving, &wire::seal_request(&r, &chain(7)).unwrap());
    assert!(why.contains("earlier run"), "{why}");
    assert!(taken.lock().unwrap().is_empty());
}

#[test]
fn a_sealed_command_that_breaks_the_rules_is_refused_whole() {
    let (serving, taken) = serving("a");
    let mut bad = wire::command_v1(&create("ok")).unwrap();
    if let OpV1::Create { name, .. } = &mut bad.op {
        *name = "klk_".to_owned() + &"A".repeat(40);
    }
    let good = wire::command_v1(&create("fine")).unwrap();
    let req = request(&serving, "a", crate::ledger::now_micros(), vec![good, bad]);
    let why = declined(&serving, &wire::seal_request(&req, &chain(7)).unwrap());
    assert!(why.contains("breaks the rules"), "{why}");
    assert!(taken.lock().unwrap().is_empty(), "none of its commands is taken");
    let mut role = wire::command_v1(&create("ok")).unwrap();
    role.role = 9;
    let req = request(&serving, "a", crate::ledger::now_micros(), vec![role]);
    let why = declined(&serving, &wire::seal_request(&req, &chain(7)).unwrap());
    assert!(why.contains("role 9"), "{why}");
    assert_eq!(serving.fleet.routes.status(String::new()).refused_requests, 2);
}

#[test]
fn a_halted_writer_declines_and_does_nothing() {
    let (serving, taken) = serving("a");
    serving.fleet.halt("a test".to_owned());
    let req = request(
        &serving,
        "a",
        crate::ledger::now_micros(),
        vec![wire::command_v1(&create("x")).unwrap()],
    );
    let answer = ask(&serving, &wire::seal_request(&req, &chain(7)).unwrap()).unwrap();
    let answer = wire::open_answer(&answer, &chain(7)).unwrap();
    assert!(matches!(answer.answer, AnswerBodyV1::Declined(why) if why.contains("a test")));
    assert!(taken.lock().unwrap().is_empty());
}

#[test]
fn commands_round_trip_and_others_are_not_forwarded() {
    let command = create("round");
    let back = wire::command_of(wire::command_v1(&command).unwrap()).unwrap();
    assert_eq!(back.actor, command.actor);
    match (&back.op, &command.op) {
        (
            Op::Create {
                new: a,
                hash: ha,
                tail: ta,
            },
            Op::Create {
                new: b,
                hash: hb,
                tail: tb,
            },
        ) => {
            assert_eq!((a, ha.0, ta), (b, hb.0, tb));
        }
        _ => panic!("not a creation"),
    }
    let delete = Command {
        actor: Actor::super_admin("root"),
        via: Some(KeyId(5)),
        op: Op::Delete { id: KeyId(9) },
    };
    let back = wire::command_of(wire::command_v1(&delete).unwrap()).unwrap();
    assert!(matches!(back.op, Op::Delete { id } if id == KeyId(9)));
    assert_eq!(back.via, Some(KeyId(5)));
    let import = Command {
        actor: Actor::admin("alice"),
        via: None,
        op: Op::Import { keys: Vec::new() },
    };
    assert!(wire::command_v1(&import).is_none());
    assert!(!wire::forwardable(&import.op));
}

#[test]
fn answers_are_checked_like_requests() {
    let answer = AnswerV1 {
        stream_id: STREAM,
        from: "a".to_owned(),
        id: [5; 16],
        answer: AnswerBodyV1::Declined("x".to_owned()),
    };
    let bytes = wire::seal_answer(&answer, &chain(7)).unwrap();
    assert!(wire::open_answer(&bytes, &chain(7)).is_ok());
    assert!(wire::open_answer(&bytes, &chain(8)).is_err());
    // A request's seal does not pass for an answer's.
    let (serving, _) = serving("a");
    let req = request(&serving, "a", 0, Vec::new());
    let sealed = wire::seal_request(&req, &chain(7)).unwrap();
    assert!(wire::open_answer(&sealed, &chain(7)).is_err());
    for cut in 0..bytes.len() {
        assert!(wire::open_answer(&bytes[..cut], &chain(7)).is_err());
    }
}
