//! The security trail: management commands the access rules refused.
//!
//! Kept apart from the key log (the key history stays the history of keys, and a refusal
//! changes no sequence number), bounded (the oldest attempts are dropped past a limit, so a
//! flood cannot fill the disk), and made durable with the writer's next sync.

pub(crate) mod format;

use crate::clock::system_time;
use crate::model::actor::Actor;
use crate::model::error::Denial;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::refusal::Action;
use crate::model::refusal::RefusedAttempt;
use crate::persist::trail::format::RefusedRecord;

/// Attempts kept by default; older ones are dropped first.
pub(crate) const DEFAULT_KEEP: u64 = 10_000;

/// The trail's record of a refusal, or `None` when `error` is not a refusal by the
/// access rules (bad input, a missing key: nothing anyone was denied).
pub(crate) fn record_of(
    at: i64,
    actor: &Actor,
    via: Option<KeyId>,
    action: Action,
    key: Option<KeyId>,
    error: &Error,
) -> Option<RefusedRecord> {
    let (shown, denial) = match error {
        Error::PermissionDenied { actor, denial } => (actor, denial),
        Error::ImportEntry { source, .. } => return record_of(at, actor, via, action, key, source),
        _ => return None,
    };
    let (denial, owner) = match denial {
        Denial::NotAnAdmin => (0, None),
        Denial::GrantsSuperAdmin => (1, None),
        Denial::NotOwner { owner, .. } => (2, Some(owner.clone())),
        Denial::OutranksActor { .. } => (3, None),
        Denial::AdminKeyRevoked { .. } => (4, None),
        Denial::GrantsForAnother { person } => (5, Some(person.clone())),
        Denial::RevokesPerson { person } => (6, Some(person.clone())),
        Denial::RaisesOwnRoles { .. } => (7, None),
    };
    Some(RefusedRecord {
        at,
        actor: Actor::new(shown.clone(), actor.role()),
        via,
        action: action.code(),
        key,
        denial,
        owner,
    })
}

/// A record of the trail, for callers; `None` for codes this build does not know.
pub(crate) fn attempt_of(r: RefusedRecord) -> Option<RefusedAttempt> {
    let denial = match (r.denial, r.owner, r.key) {
        (0, None, _) => Denial::NotAnAdmin,
        (1, None, _) => Denial::GrantsSuperAdmin,
        (2, Some(owner), Some(key)) => Denial::NotOwner { key, owner },
        (3, None, Some(key)) => Denial::OutranksActor { key },
        (4, None, _) => Denial::AdminKeyRevoked { key: r.via? },
        (5, Some(person), _) => Denial::GrantsForAnother { person },
        (6, Some(person), _) => Denial::RevokesPerson { person },
        (7, None, Some(key)) => Denial::RaisesOwnRoles { key },
        _ => return None,
    };
    Some(RefusedAttempt {
        at: system_time(r.at),
        actor: r.actor,
        via: r.via,
        action: *Action::ALL.get(usize::from(r.action))?,
        key: r.key,
        denial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_round_trips_through_the_trail_and_other_errors_are_not_recorded() {
        let actor = Actor::admin("bob");
        let key = KeyId(7);
        let denied = Error::denied(
            "bob",
            Denial::NotOwner {
                key,
                owner: "alice".into(),
            },
        );
        let record = record_of(5, &actor, None, Action::Delete, Some(key), &denied).unwrap();
        let bytes = crate::persist::trail::format::encode_refused(&record).unwrap();
        let back = attempt_of(crate::persist::trail::format::decode_refused(&bytes).unwrap()).unwrap();
        assert_eq!(back.actor, actor);
        assert_eq!(back.action, Action::Delete);
        assert_eq!(back.key, Some(key));
        assert!(matches!(back.denial, Denial::NotOwner { ref owner, .. } if owner == "alice"));
        assert!(
            record_of(
                5,
                &actor,
                None,
                Action::Delete,
                Some(key),
                &Error::KeyNotFound(key)
            )
            .is_none()
        );
    }

    #[test]
    fn refusals_naming_a_person_round_trip_with_the_key_they_came_through() {
        let carol = Actor::admin("carol");
        let via = Some(KeyId(9));
        for (action, denial) in [
            (
                Action::Create,
                Denial::GrantsForAnother {
                    person: "dave".into(),
                },
            ),
            (
                Action::RevokeActor,
                Denial::RevokesPerson {
                    person: "root".into(),
                },
            ),
        ] {
            let denied = Error::denied("carol", denial.clone());
            let record = record_of(5, &carol, via, action, None, &denied).unwrap();
            let bytes = crate::persist::trail::format::encode_refused(&record).unwrap();
            let back = attempt_of(crate::persist::trail::format::decode_refused(&bytes).unwrap()).unwrap();
            assert_eq!(
                (back.actor, back.via, back.action, back.key, back.denial),
                (carol.clone(), via, action, None, denial)
            );
        }
    }
}
