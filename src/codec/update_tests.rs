//! Tests of the `updated` record (format version 4): its fixtures, and the refusal of
//! malformed ones.

use bincode::Options;

use super::primitives;
use super::record::{self, EventV4, RecordWire};
use super::{decode_record, encode_record};
use crate::model::actor::{Actor, ActorRole};
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::record::{Event, Record};

fn v4_update_fixture_records() -> [Record; 2] {
    let id = KeyId(0x0bbb_cccc_dddd_eeee);
    [
        Record {
            seq: 15,
            at: 1_790_000_000_000_008,
            actor: Actor::admin("alice"),
            via: None,
            event: Event::Updated {
                id,
                name: Some("billing bot".into()),
                roles: Some(vec!["bot".into(), "billing".into()]),
                external_id: None,
                meta: None,
            },
            prev: [11; 32],
        },
        Record {
            seq: 16,
            at: 1_790_000_000_000_009,
            actor: Actor::admin("alice"),
            via: Some(KeyId(0x1111_2222_3333_4444)),
            event: Event::Updated {
                id,
                name: None,
                roles: None,
                external_id: Some(None),
                meta: Some(Some(
                    crate::model::owner::Meta::parse(r#"{"plan":"pro","seats":[1,2]}"#).unwrap(),
                )),
            },
            prev: [12; 32],
        },
    ]
}

/// Updates (format version 4: one with a name and roles, one removing an external id and
/// setting metadata) decode to the same values and encode back to the same bytes.
#[test]
fn version_4_update_fixtures_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let paths = ["record-v4-updated-name-roles.bin", "record-v4-updated-owner.bin"];
    for (path, expected) in paths.into_iter().zip(v4_update_fixture_records()) {
        let path = dir.join(path);
        if std::env::var_os("KEYLEDGER_WRITE_FIXTURES").is_some() && !path.exists() {
            std::fs::write(&path, encode_record(&expected).unwrap()).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..2], &[4, 0]);
        let record = decode_record(&bytes, expected.seq).unwrap();
        assert_eq!(record, expected);
        assert_eq!(encode_record(&record).unwrap(), bytes);
    }
}

/// An update naming nothing, with metadata that is not a canonical object within its
/// size, or with a name or roles past the rules, is refused, never a panic.
#[test]
fn a_malformed_update_record_is_refused() {
    let [record, _] = v4_update_fixture_records();
    let update = |name: Option<&str>, roles: Option<Vec<&str>>, meta: Option<Option<String>>| {
        let event = EventV4::Updated {
            id: 7,
            name: name.map(str::to_owned),
            roles: roles.map(|r| r.into_iter().map(str::to_owned).collect()),
            external_id: None,
            meta,
        };
        let wire = RecordWire {
            version: 4u16,
            seq: record.seq,
            at: record.at,
            actor_id: "alice".to_owned(),
            actor_role: ActorRole::Admin.code(),
            via: None::<u64>,
            event,
            prev: record.prev,
        };
        primitives::options(record::MAX_RECORD_BYTES)
            .serialize(&wire)
            .unwrap()
    };
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(5000));
    for bytes in [
        update(None, None, None),
        update(Some(" padded "), None, None),
        update(None, Some(vec![]), None),
        update(None, Some(vec!["Bad Role"]), None),
        update(None, None, Some(Some("[1]".into()))),
        update(None, None, Some(Some(r#"{"b":1, "a":2}"#.into()))),
        update(None, None, Some(Some("{".into()))),
        update(None, None, Some(Some(big))),
    ] {
        let err = decode_record(&bytes, record.seq).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    }
    assert!(decode_record(&update(Some("ok"), None, None), record.seq).is_ok());
}
