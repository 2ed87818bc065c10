//! The ledger: the one state machine that decides what enters the log and what the log
//! means.
//!
//! It owns the projection, its head and the chain, and has exactly two ways in:
//! [`Ledger::prepare`] turns commands, checked against the current state, into chained,
//! encoded records (it changes nothing), and [`Ledger::accept`] decodes records, checks
//! them (sequence, link, time, fields, access rules) and applies them. The writer (after
//! its sync), open (full replay and snapshot tail), `check`, `repair` and `import` all
//! go through them. It never does I/O beyond reading the log it is handed.
//!
//! Children: `meta` (the store's metadata, the stored head and witness checks) and
//! `replay` (reading the log ahead of acceptance).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::PoisonError;

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use ipnet::IpNet;
use rand::RngCore;
use rand::rngs::StdRng;

use crate::access;
use crate::access::KeyState;
use crate::chain::Chain;
use crate::chain::Head;
use crate::clock::Clock;
use crate::codec;
use crate::codec::block::BlockWriter;
use crate::log::Entry;
use crate::model::actor::Actor;
use crate::model::credits::Credits;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::key::KeySource;
use crate::model::key::NewKey;
use crate::model::limit::RateLimit;
use crate::model::limit::canonical_limits;
use crate::model::owner::KeyUpdate;
use crate::model::problem::ProblemKind;
use crate::model::record::Event;
use crate::model::record::Record;
use crate::model::refusal::Action;
use crate::model::token::ExistingKey;
use crate::model::token::KeyHash;
use crate::projection::Projection;

pub(crate) mod meta;
pub(crate) mod replay;

pub(crate) use meta::{
    chain_fits, initialize, reaches_head, reaches_witness, read_info, record_hash, stored_head,
};
pub(crate) use replay::report;

/// How far ahead of this machine's clock a record's time may be. Times never go
/// backwards along the log, so a record from the far future (a clock jump, a crafted
/// backup) would freeze every later timestamp; accepting at most this much bounds the
/// freeze.
pub(crate) const MAX_CLOCK_LEAD_MICROS: i64 = 24 * 3600 * 1_000_000;

pub(crate) fn now_micros() -> i64 {
    crate::clock::micros_of(std::time::SystemTime::now())
}

/// What a command asks for.
pub(crate) enum Op {
    Create {
        new: NewKey,
        hash: KeyHash,
        tail: [u8; 4],
    },
    /// Adopt existing keys, all or none.
    Import {
        keys: Vec<ExistingKey>,
    },
    Roll {
        id: KeyId,
        hash: KeyHash,
        tail: [u8; 4],
        /// How long the previous secret keeps verifying, in microseconds.
        grace: i64,
    },
    Disable {
        id: KeyId,
    },
    Enable {
        id: KeyId,
    },
    Whitelist {
        id: KeyId,
        nets: Vec<IpNet>,
    },
    Unwhitelist {
        id: KeyId,
        nets: Vec<IpNet>,
        /// Whether the whitelist may end up empty, admitting every address.
        allow_any_address: bool,
    },
    Delete {
        id: KeyId,
    },
    /// Set a key's rate limits (in any order, made canonical when prepared; none removes
    /// them).
    SetLimits {
        id: KeyId,
        rate_limits: Vec<RateLimit>,
    },
    /// Set a key's credits (none removes them): its count starts again.
    SetCredits {
        id: KeyId,
        credits: Option<Credits>,
    },
    /// Add to a key's credits.
    AddCredits {
        id: KeyId,
        amount: u64,
    },
    /// Change a key's name, roles, external id or metadata (validated, not yet resolved
    /// against the key).
    Update {
        id: KeyId,
        update: KeyUpdate,
    },
    /// Revoke a person: every admin key acting as them (and, `with_keys`, every key they
    /// created), in one record.
    RevokeActor {
        actor: String,
        with_keys: bool,
    },
}

impl Op {
    /// The existing key the command acts on (`None` for a creation).
    pub(crate) fn key_id(&self) -> Option<KeyId> {
        match self {
            Op::Create { .. } | Op::Import { .. } | Op::RevokeActor { .. } => None,
            Op::Whitelist { id, .. }
            | Op::Unwhitelist { id, .. }
            | Op::Delete { id }
            | Op::Roll { id, .. }
            | Op::Disable { id }
            | Op::Enable { id }
            | Op::SetLimits { id, .. }
            | Op::SetCredits { id, .. }
            | Op::AddCredits { id, .. }
            | Op::Update { id, .. } => Some(*id),
        }
    }

    /// What the command attempts, as the security trail names it.
    pub(crate) fn action(&self) -> Action {
        match self {
            Op::Create { .. } => Action::Create,
            Op::Import { .. } => Action::Import,
            Op::Whitelist { .. } => Action::Whitelist,
            Op::Unwhitelist { .. } => Action::Unwhitelist,
            Op::Delete { .. } => Action::Delete,
            Op::Roll { .. } => Action::Roll,
            Op::Disable { .. } => Action::Disable,
            Op::Enable { .. } => Action::Enable,
            Op::RevokeActor { .. } => Action::RevokeActor,
            Op::SetLimits { .. } => Action::Limit,
            Op::SetCredits { .. } | Op::AddCredits { .. } => Action::Credits,
            Op::Update { .. } => Action::Update,
        }
    }

    /// Whether the command may change keys it does not name (a person's revocation): it
    /// is then prepared in a batch of its own.
    pub(crate) fn acts_on_many(&self) -> bool {
        matches!(self, Op::RevokeActor { .. })
    }
}

/// A command: who asks for what (and through which admin key, if any).
pub(crate) struct Command {
    pub(crate) actor: Actor,
    pub(crate) via: Option<KeyId>,
    pub(crate) op: Op,
}

/// Commands turned into records, not yet durable nor applied.
pub(crate) struct Prepared {
    /// The log entries (blocks) that hold the records, in order.
    pub(crate) entries: Vec<Entry>,
    /// The head once they are applied.
    pub(crate) head: Head,
    /// For each command: the key and the sequence number of its last record, or why it
    /// was refused (a refused command has no records).
    pub(crate) outcomes: Vec<Result<(KeyId, u64), Error>>,
}

/// The state machine; see the module doc.
pub(crate) struct Ledger {
    state: ShardedLock<Projection>,
    chain: Chain,
    clock: Arc<Clock>,
}

impl Ledger {
    /// A ledger at the start of the log, on the system clock.
    pub(crate) fn new(chain: Chain) -> Self {
        Ledger::from_projection(Projection::new(), chain, Arc::new(Clock::system()))
    }

    /// A ledger that continues from `proj` (a snapshot's state).
    pub(crate) fn from_projection(proj: Projection, chain: Chain, clock: Arc<Clock>) -> Self {
        Ledger {
            state: ShardedLock::new(proj),
            chain,
            clock,
        }
    }

    pub(crate) fn chain(&self) -> &Chain {
        &self.chain
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The state, for readers.
    pub(crate) fn read(&self) -> ShardedLockReadGuard<'_, Projection> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_state(&self) -> ShardedLockWriteGuard<'_, Projection> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn head(&self) -> Head {
        self.read().head()
    }

    /// Decodes, checks and applies the records of `entries`, in order; records at or
    /// before the head (the start of a block a snapshot ends inside) are skipped. Stops at
    /// the first record that does not fit, with everything before it applied.
    ///
    /// The write lock is taken an entry (a block of about 4 KiB) at a time, so that a
    /// large batch (an import of 100k keys) never holds `verify` up for long; readers may
    /// see a batch partly applied while it is, never a record partly applied.
    pub(crate) fn accept(&self, entries: &[Entry]) -> Result<(), Error> {
        let now = self.clock.now_micros();
        for (key, bytes) in entries {
            self.accept_entry(&mut self.write_state(), *key, bytes, now)?;
        }
        Ok(())
    }

    /// Accepts the records of one entry.
    fn accept_entry(&self, proj: &mut Projection, key: u64, bytes: &[u8], now: i64) -> Result<(), Error> {
        for (seq, record) in codec::entry_records(key, bytes)? {
            if seq > proj.head().seq {
                self.accept_record(proj, seq, record, now)?;
            }
        }
        Ok(())
    }

    /// Decodes, checks and applies one encoded record found at `seq`.
    pub(crate) fn accept_record(
        &self,
        proj: &mut Projection,
        seq: u64,
        bytes: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        accept_hashed(proj, seq, bytes, self.chain.hash(bytes), now)
    }

    /// Turns commands into chained, encoded records, each checked against the state as
    /// the commands before it leave it. Changes nothing: the records count once they are
    /// durable and [`Ledger::accept`]ed. Two commands here must not act on the same
    /// existing key (the writer defers the second to its next batch).
    pub(crate) fn prepare(&self, commands: &[&Command], ids: &mut StdRng) -> Prepared {
        let proj = self.read();
        let mut head = proj.head();
        // Every record of these commands is stamped with this time (never before the
        // head's: times do not go backwards).
        let at = self.clock.now_micros().max(head.at);
        let mut entries: Vec<Entry> = Vec::new();
        let mut block: Option<BlockWriter> = None;
        let mut new_ids: HashSet<KeyId> = HashSet::new();
        let mut new_hashes: HashSet<KeyHash> = HashSet::new();
        let mut outcomes = Vec::with_capacity(commands.len());
        for cmd in commands {
            let encoded =
                events(&proj, cmd, at, &mut new_ids, &mut new_hashes, ids).and_then(|(id, events)| {
                    let mut next = head;
                    let mut out = Vec::with_capacity(events.len());
                    for event in events {
                        let record = Record {
                            seq: next.seq + 1,
                            at,
                            actor: cmd.actor.clone(),
                            via: cmd.via,
                            event,
                            prev: next.hash,
                        };
                        let bytes = codec::encode_record(&record)?;
                        next = Head {
                            seq: record.seq,
                            hash: self.chain.hash(&bytes),
                            at: record.at,
                        };
                        out.push(bytes);
                    }
                    Ok((id, next, out))
                });
            let (id, next, records) = match encoded {
                Ok(done) => done,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            for (i, bytes) in records.iter().enumerate() {
                let seq = head.seq + 1 + i as u64;
                if block.as_ref().is_some_and(|b| !b.fits(bytes.len())) {
                    entries.extend(block.take().map(BlockWriter::finish));
                }
                block.get_or_insert_with(|| BlockWriter::new(seq)).push(bytes);
            }
            head = next;
            outcomes.push(Ok((id, head.seq)));
        }
        entries.extend(block.filter(|b| !b.is_empty()).map(BlockWriter::finish));
        Prepared {
            entries,
            head,
            outcomes,
        }
    }

    /// The encoded, sealed head.
    pub(crate) fn encode_head(&self, head: Head) -> Result<Vec<u8>, Error> {
        codec::encode_head(head, &self.chain)
    }
}

/// Decodes, checks and applies one encoded record found at `seq`, whose chain hash is
/// `hash`.
fn accept_hashed(
    proj: &mut Projection,
    seq: u64,
    bytes: &[u8],
    hash: [u8; 32],
    now: i64,
) -> Result<(), Error> {
    let expected = proj.head().seq + 1;
    if seq != expected {
        return Err(Error::corrupt(
            expected,
            ProblemKind::Removed,
            format!("record {expected} is missing; found {seq}"),
        ));
    }
    let record = codec::decode_record(bytes, seq)?;
    if record.seq != seq {
        return Err(Error::corrupt(
            seq,
            ProblemKind::Reordered,
            format!("record stored at {seq} says it is {}", record.seq),
        ));
    }
    admit(proj, &record, now)?;
    proj.apply(&record, hash)
}

/// Whether `record` may follow the state's head: its sequence number, chain link, time,
/// fields, and the access rules. A record that passes can be applied.
fn admit(proj: &Projection, record: &Record, now: i64) -> Result<(), Error> {
    let head = proj.head();
    let seq = record.seq;
    if record.prev != head.hash {
        return Err(match seq {
            1 => Error::corrupt(1, ProblemKind::Edited, "record 1 does not start the hash chain"),
            _ => Error::corrupt(
                seq - 1,
                ProblemKind::Edited,
                format!(
                    "record {} was changed: record {seq}'s link to it does not match",
                    seq - 1
                ),
            ),
        });
    }
    if record.at < head.at {
        return Err(Error::corrupt(
            seq,
            ProblemKind::Invalid,
            "its time goes backwards",
        ));
    }
    if record.at > now.saturating_add(MAX_CLOCK_LEAD_MICROS) {
        return Err(Error::corrupt(
            seq,
            ProblemKind::Invalid,
            "its time is more than a day ahead of this machine's clock",
        ));
    }
    if let Event::Created { hash, .. } | Event::Rolled { hash, .. } = &record.event
        && proj.contains_hash(hash)
    {
        return Err(Error::corrupt(
            seq,
            ProblemKind::Invalid,
            "a live key already has this hash",
        ));
    }
    if let Some(via) = record.via {
        access::admin_key_usable(via, proj.key_state(via), record.at)
            .map_err(|why| Error::corrupt(seq, ProblemKind::Invalid, why))?;
    }
    let state = record.event.key_id().and_then(|id| proj.key_state(id));
    access::authorize(&record.actor, &record.event, state)
        .and_then(|()| access::authorize_via(&record.actor, record.via, &record.event, state))
        .map_err(|e| {
            Error::corrupt(
                seq,
                ProblemKind::Invalid,
                format!("it breaks the access rules: {e}"),
            )
        })
}

/// The key a command acts on (a new id for a creation) and the events it would record at
/// time `at`, checked against the rules.
fn events(
    proj: &Projection,
    cmd: &Command,
    at: i64,
    new_ids: &mut HashSet<KeyId>,
    new_hashes: &mut HashSet<KeyHash>,
    ids: &mut StdRng,
) -> Result<(KeyId, Vec<Event>), Error> {
    // A command that came through an admin key needs that key still usable now, when
    // it is written: one revoked while its request was in flight writes nothing.
    if let Some(via) = cmd.via
        && access::admin_key_usable(via, proj.key_state(via), at).is_err()
    {
        return Err(Error::denied(
            cmd.actor.id(),
            crate::model::error::Denial::AdminKeyRevoked { key: via },
        ));
    }
    let mut taken = |hash: &KeyHash| proj.contains_hash(hash) || !new_hashes.insert(*hash);
    let mut new_id = || loop {
        let id = KeyId(ids.next_u64());
        if !proj.contains_id(id) && new_ids.insert(id) {
            break id;
        }
    };
    let creation = |id: KeyId, new: &NewKey, hash: KeyHash, tail: [u8; 4], source: KeySource| {
        Ok::<_, Error>(Event::Created {
            id,
            hash,
            tail,
            name: new.name.clone(),
            roles: new.roles.clone(),
            whitelist: new.whitelist.clone(),
            expires_at: new.expires_at,
            source,
            // An admin key for its own creator names no one: it acts as its creator.
            acts_for: new.acts_for.clone().filter(|p| p != cmd.actor.id()),
            rate_limits: new.rate_limits.clone(),
        })
    };
    let events = match &cmd.op {
        Op::Create { new, hash, tail } => {
            if taken(hash) {
                return Err(Error::invalid(
                    "key",
                    "generated key collides with a live key; retry",
                ));
            }
            let created = creation(new_id(), new, *hash, *tail, KeySource::Generated)?;
            let mut events = vec![created];
            events.extend(first_credits(&events[0], new));
            events.extend(first_owner(&events[0], new));
            events
        }
        Op::Import { keys } => {
            if keys.is_empty() {
                return Err(Error::invalid("import", "no keys given"));
            }
            let mut out = Vec::with_capacity(keys.len());
            for (n, key) in keys.iter().enumerate() {
                let entry = |e: Error| Error::ImportEntry {
                    index: n + 1,
                    source: Box::new(e),
                };
                let event = creation(new_id(), &key.new, key.hash, key.tail, key.source).map_err(entry)?;
                // Permission first: a refused actor learns nothing about which secrets
                // are in use.
                access::authorize(&cmd.actor, &event, None).map_err(entry)?;
                expires_after(&event, at).map_err(entry)?;
                // One answer for a live, retired or repeated secret: which it is must not
                // be learnt here.
                let known = |hash: KeyHash, new_hashes: &mut HashSet<KeyHash>| {
                    proj.ever_held(&hash) || !new_hashes.insert(hash)
                };
                if known(key.hash, new_hashes) || key.sha256_form.is_some_and(|h| known(h, new_hashes)) {
                    return Err(entry(Error::SecretKnown));
                }
                let credits = first_credits(&event, &key.new);
                let owner = first_owner(&event, &key.new);
                out.push(event);
                out.extend(credits);
                out.extend(owner);
            }
            let id = out.first().and_then(Event::key_id).unwrap_or(KeyId(0));
            return Ok((id, out));
        }
        Op::Roll {
            id,
            hash,
            tail,
            grace,
        } => {
            if taken(hash) {
                return Err(Error::invalid(
                    "key",
                    "generated key collides with a live key; retry",
                ));
            }
            vec![Event::Rolled {
                id: *id,
                hash: *hash,
                tail: *tail,
                previous_valid_until: at.saturating_add(*grace),
            }]
        }
        Op::Disable { id } => vec![Event::Disabled { id: *id }],
        Op::Enable { id } => vec![Event::Enabled { id: *id }],
        Op::Whitelist { id, nets } => nets
            .iter()
            .map(|&net| Event::Whitelisted { id: *id, net })
            .collect(),
        Op::Unwhitelist { id, nets, .. } => nets
            .iter()
            .map(|&net| Event::Unwhitelisted { id: *id, net })
            .collect(),
        Op::Delete { id } => vec![Event::Deleted { id: *id }],
        Op::SetLimits { id, rate_limits } => vec![Event::LimitsSet {
            id: *id,
            rate_limits: canonical_limits(rate_limits)?,
        }],
        Op::SetCredits { id, credits } => vec![Event::CreditsSet {
            id: *id,
            credits: *credits,
        }],
        Op::AddCredits { id, amount } => vec![Event::CreditsAdded {
            id: *id,
            amount: *amount,
        }],
        Op::Update { id, update } => vec![resolve_update(proj, &cmd.actor, *id, update)?],
        Op::RevokeActor { actor, with_keys } => {
            let event = Event::ActorRevoked {
                actor: actor.clone(),
                with_keys: *with_keys,
            };
            access::authorize(&cmd.actor, &event, None)?;
            let first = proj
                .revoked_by(actor, *with_keys)
                .next()
                .ok_or_else(|| Error::NothingToRevoke {
                    actor: crate::model::token::format::redact_keys(actor).into_owned(),
                })?;
            return Ok((first, vec![event]));
        }
    };
    // Events of one command all touch one key; check each against that key's state as
    // the earlier ones leave it.
    let mut whitelist: Option<Vec<IpNet>> = None;
    for event in &events {
        if matches!(event, Event::CreditsSet { .. } | Event::Updated { .. })
            && matches!(cmd.op, Op::Create { .. })
        {
            // A creation's first credits and owner: authorized with the creation itself.
            continue;
        }
        let base = event.key_id().and_then(|id| proj.key_state(id));
        let state = base.map(|s| KeyState {
            whitelist: whitelist.as_deref().unwrap_or(s.whitelist),
            ..s
        });
        access::authorize_command(&cmd.actor, event, state)?;
        access::authorize_via(&cmd.actor, cmd.via, event, state)?;
        if let (Some(base), Event::Whitelisted { net, .. } | Event::Unwhitelisted { net, .. }) = (base, event)
        {
            let list = whitelist.get_or_insert_with(|| base.whitelist.to_vec());
            if matches!(event, Event::Whitelisted { .. }) {
                list.push(*net);
            } else {
                list.retain(|n| n != net);
            }
        }
    }
    for event in &events {
        expires_after(event, at)?;
    }
    if let Op::Unwhitelist {
        id,
        allow_any_address: false,
        ..
    } = &cmd.op
        && whitelist.as_ref().is_some_and(Vec::is_empty)
    {
        return Err(Error::LastWhitelistEntry { id: *id });
    }
    let id = events
        .first()
        .and_then(Event::key_id)
        .ok_or_else(|| Error::invalid("network", "no address or range given"))?;
    Ok((id, events))
}

/// The record that gives a key created by `created` its first credits, if it has any.
fn first_credits(created: &Event, new: &NewKey) -> Option<Event> {
    let id = created.key_id()?;
    new.credits.map(|credits| Event::CreditsSet {
        id,
        credits: Some(credits),
    })
}

/// The record that gives a key created by `created` its external id and metadata, if it
/// has either.
fn first_owner(created: &Event, new: &NewKey) -> Option<Event> {
    let id = created.key_id()?;
    (new.external_id.is_some() || new.meta.is_some()).then(|| Event::Updated {
        id,
        name: None,
        roles: None,
        external_id: new.external_id.clone().map(Some),
        meta: new.meta.clone().map(Some),
    })
}

/// The `updated` event an update of key `id` makes: only the fields it changes. One that
/// changes nothing (or would leave the key bad roles) is refused, once the actor is known
/// to be allowed to change the key at all.
fn resolve_update(proj: &Projection, actor: &Actor, id: KeyId, update: &KeyUpdate) -> Result<Event, Error> {
    let mut event = Event::Updated {
        id,
        name: None,
        roles: None,
        external_id: None,
        meta: None,
    };
    let Some(now) = proj.editable(id) else {
        // No such key: the rules say so (or that the actor may not ask at all).
        access::authorize(actor, &event, None)?;
        return Err(Error::KeyNotFound(id));
    };
    // Permission first: what the roles would become is checked only for an actor that
    // may change the key at all (a refusal lands in the security trail).
    access::authorize_command(actor, &event, proj.key_state(id))?;
    let roles = match &update.roles {
        Some(roles) => roles.clone(),
        None => {
            let mut roles: Vec<String> = now
                .roles
                .iter()
                .filter(|r| !update.remove_roles.contains(r))
                .cloned()
                .collect();
            for role in &update.add_roles {
                if !roles.contains(role) {
                    roles.push(role.clone());
                }
            }
            roles
        }
    };
    let same_roles = roles.len() == now.roles.len() && roles.iter().all(|r| now.roles.contains(r));
    if let Event::Updated {
        name,
        roles: new_roles,
        external_id,
        meta,
        ..
    } = &mut event
    {
        *name = update.name.clone().filter(|n| *n != now.name);
        if !same_roles {
            crate::model::rules::validate_roles(&roles)?;
            *new_roles = Some(roles);
        }
        *external_id = update.external_id.clone().filter(|e| *e != now.external_id);
        *meta = update.meta.clone().filter(|m| *m != now.meta);
        if name.is_none() && new_roles.is_none() && external_id.is_none() && meta.is_none() {
            return Err(Error::StateUnchanged {
                id,
                state: "as asked",
            });
        }
    }
    Ok(event)
}

/// Checks that a created key expires after `at`, the time it is recorded.
fn expires_after(event: &Event, at: i64) -> Result<(), Error> {
    match event {
        Event::Created {
            expires_at: Some(e), ..
        } if *e <= at => Err(Error::invalid("expires_at", "is not in the future")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, at: i64, prev: [u8; 32]) -> Vec<u8> {
        let new = NewKey::new(format!("key {seq}")).role("bot");
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&seq.to_le_bytes());
        codec::encode_record(&Record {
            seq,
            at,
            actor: Actor::admin("alice"),
            via: None,
            event: Event::Created {
                id: KeyId(seq),
                hash: KeyHash(hash),
                tail: *b"abcd",
                name: new.name,
                roles: new.roles,
                whitelist: Vec::new(),
                expires_at: None,
                source: KeySource::Generated,
                acts_for: None,
                rate_limits: Vec::new(),
            },
            prev,
        })
        .unwrap()
    }

    /// A record from the far future would freeze every later time (times never go
    /// backwards): one more than a day ahead of the clock is refused; one within the day
    /// is accepted, and later records keep to its time.
    #[test]
    fn a_record_from_the_far_future_is_refused_and_a_near_one_bounds_later_times() {
        let chain = Chain::new(None);
        let now = now_micros();
        let far = Ledger::new(chain.clone());
        let err = far
            .accept_record(
                &mut far.write_state(),
                1,
                &record(1, now + 2 * MAX_CLOCK_LEAD_MICROS, [0; 32]),
                now,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    seq: 1,
                    kind: ProblemKind::Invalid,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(far.head().seq, 0);

        let near = Ledger::new(chain.clone());
        let ahead = now + MAX_CLOCK_LEAD_MICROS / 2;
        let first = record(1, ahead, [0; 32]);
        near.accept_record(&mut near.write_state(), 1, &first, now)
            .unwrap();
        let mut ids = <StdRng as rand::SeedableRng>::seed_from_u64(1);
        let delete = Command {
            actor: Actor::admin("alice"),
            via: None,
            op: Op::Delete { id: KeyId(1) },
        };
        let prepared = near.prepare(&[&delete], &mut ids);
        near.accept(&prepared.entries).unwrap();
        assert_eq!(near.head().seq, 2);
        assert_eq!(near.head().at, ahead, "never before the record it follows");
    }

    #[test]
    fn a_stored_record_with_a_format_character_or_a_key_shaped_text_still_decodes_and_replays() {
        let key = crate::model::token::ApiKey::generate().unwrap();
        for (actor, name) in [
            ("\u{202E}ecila", "alice\u{200B}"),
            ("root", "\u{FEFF}bot"),
            (key.expose_secret(), "a key pasted as a name: klk_x"),
        ] {
            let record = crate::model::tests::created(actor, name, Vec::new());
            let bytes = crate::codec::record::encode_record(&record).unwrap();
            let decoded = crate::codec::record::decode_record(&bytes, 1).unwrap();
            assert_eq!(decoded, record);
            // Replay accepts it, and its author may still act on the key it created.
            let chain = crate::chain::Chain::new(None);
            let ledger = crate::ledger::Ledger::new(chain.clone());
            let now = crate::ledger::now_micros();
            let mut state = ledger.write_state();
            ledger.accept_record(&mut state, 1, &bytes, now).unwrap();
            let delete = Record {
                seq: 2,
                prev: chain.hash(&bytes),
                event: Event::Deleted {
                    id: decoded.event.key_id().unwrap(),
                },
                ..decoded
            };
            let delete = crate::codec::record::encode_record(&delete).unwrap();
            ledger.accept_record(&mut state, 2, &delete, now).unwrap();
            assert_eq!(state.keys(true, now)[0].name, name);
        }
    }
}
