//! The bytes of a forwarded write (version 1): a request carrying commands from a host to
//! the fleet's writer, and the writer's answer. Both are sealed with the chain key (each in
//! a domain of its own), bound to the stream, and name their sender and receiver; see
//! `docs/design.md`, "Forwarded writes". This module only encodes, seals and checks bytes.

use bincode::Options as _;
use serde::{Deserialize, Serialize};

use crate::chain::Chain;
use crate::chain::SealDomain;
use crate::codec::primitives::{NetV1, le4, le16, le32, magic_version, options};
use crate::codec::record::{CreditsV1, LimitV1};
use crate::ledger::{Command, Op};
use crate::model::actor::{Actor, ActorRole};
use crate::model::id::KeyId;
use crate::model::key::NewKey;
use crate::model::owner::Meta;
use crate::model::token::KeyHash;

const REQUEST_MAGIC: [u8; 8] = *b"KLFWDRQ\x00";
const ANSWER_MAGIC: [u8; 8] = *b"KLFWDAN\x00";
const VERSION: u16 = 1;
/// No request or answer may be larger; decoding stops at this many bytes.
pub(crate) const MAX_BYTES: u64 = 4 << 20;
const SEAL_LEN: usize = 32;

/// A request: who sends it to whom, when, for how long it waits, and its commands.
#[derive(Serialize, Deserialize)]
pub(crate) struct RequestV1 {
    #[serde(with = "le16")]
    pub(crate) stream_id: [u8; 16],
    pub(crate) from: String,
    pub(crate) to: String,
    /// The writer's run (random per process start, from its announced head): a request
    /// seen before the writer restarted is never taken by the new process.
    pub(crate) to_run: u64,
    /// Random: a request is taken once.
    #[serde(with = "le16")]
    pub(crate) id: [u8; 16],
    /// When it was sent, by the sender's clock (microseconds since the Unix epoch).
    pub(crate) at: i64,
    /// How long the sender waits for the answer, in milliseconds: the writer takes no
    /// command of it later.
    pub(crate) wait_ms: u32,
    pub(crate) commands: Vec<CommandV1>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct CommandV1 {
    pub(crate) actor: String,
    /// `ActorRole::code`.
    pub(crate) role: u8,
    pub(crate) via: Option<u64>,
    pub(crate) op: OpV1,
}

/// The commands a host forwards; the others it appends itself.
#[derive(Serialize, Deserialize)]
pub(crate) enum OpV1 {
    Create {
        name: String,
        roles: Vec<String>,
        whitelist: Vec<NetV1>,
        expires_at: Option<i64>,
        acts_for: Option<String>,
        rate_limits: Vec<LimitV1>,
        credits: Option<CreditsV1>,
        external_id: Option<String>,
        meta: Option<String>,
        #[serde(with = "le32")]
        hash: [u8; 32],
        #[serde(with = "le4")]
        tail: [u8; 4],
    },
    Delete {
        id: u64,
    },
    Disable {
        id: u64,
    },
    Enable {
        id: u64,
    },
    Roll {
        id: u64,
        #[serde(with = "le32")]
        hash: [u8; 32],
        #[serde(with = "le4")]
        tail: [u8; 4],
        grace: i64,
    },
}

/// The writer's answer to one request.
#[derive(Serialize, Deserialize)]
pub(crate) struct AnswerV1 {
    #[serde(with = "le16")]
    pub(crate) stream_id: [u8; 16],
    /// The writer that answers, and the request it answers.
    pub(crate) from: String,
    #[serde(with = "le16")]
    pub(crate) id: [u8; 16],
    pub(crate) answer: AnswerBodyV1,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum AnswerBodyV1 {
    /// The writer took the request: one outcome per command, in order, and the stream
    /// position it had applied once all were decided.
    Taken { position: u64, outcomes: Vec<OutcomeV1> },
    /// The writer takes no request now (it is not writing, or leaving): nothing was done.
    Declined(String),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutcomeV1 {
    /// In the shared log: the key and the sequence number of its last record.
    Done { id: u64, seq: u64 },
    /// Not written: the writer refused it, or it came too late. The sender decides it
    /// again itself against the same state.
    NotWritten,
    /// The append was not answered: it is wholly in the stream or wholly absent.
    Uncertain(String),
}

/// Whether a command of this kind is forwarded.
pub(crate) fn forwardable(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. } | Op::Delete { .. } | Op::Disable { .. } | Op::Enable { .. } | Op::Roll { .. }
    )
}

/// The wire form of a command; `None` for one that is not forwarded.
pub(crate) fn command_v1(command: &Command) -> Option<CommandV1> {
    let op = match &command.op {
        Op::Create { new, hash, tail } => OpV1::Create {
            name: new.name.clone(),
            roles: new.roles.clone(),
            whitelist: new.whitelist.iter().map(NetV1::from).collect(),
            expires_at: new.expires_at,
            acts_for: new.acts_for.clone(),
            rate_limits: new.rate_limits.iter().map(LimitV1::from).collect(),
            credits: new.credits.as_ref().map(CreditsV1::from),
            external_id: new.external_id.clone(),
            meta: new.meta.as_ref().map(|m| m.as_str().to_owned()),
            hash: hash.0,
            tail: *tail,
        },
        Op::Delete { id } => OpV1::Delete { id: id.0 },
        Op::Disable { id } => OpV1::Disable { id: id.0 },
        Op::Enable { id } => OpV1::Enable { id: id.0 },
        Op::Roll {
            id,
            hash,
            tail,
            grace,
        } => OpV1::Roll {
            id: id.0,
            hash: hash.0,
            tail: *tail,
            grace: *grace,
        },
        _ => return None,
    };
    Some(CommandV1 {
        actor: command.actor.id().to_owned(),
        role: command.actor.role().code(),
        via: command.via.map(|k| k.0),
        op,
    })
}

/// The command a wire command stands for, checked by the same rules as one made on this
/// host (the writer then prepares it like any other).
pub(crate) fn command_of(wire: CommandV1) -> Result<Command, String> {
    let role = match wire.role {
        0 => ActorRole::SuperAdmin,
        1 => ActorRole::Admin,
        2 => ActorRole::User,
        other => return Err(format!("actor role {other} is not one keyledger knows")),
    };
    let actor = Actor::new(wire.actor, role);
    actor.validate().map_err(|e| e.to_string())?;
    let op = match wire.op {
        OpV1::Create {
            name,
            roles,
            whitelist,
            expires_at,
            acts_for,
            rate_limits,
            credits,
            external_id,
            meta,
            hash,
            tail,
        } => {
            let mut new = NewKey::new(name);
            new.roles = roles;
            new.whitelist = whitelist
                .into_iter()
                .map(ipnet::IpNet::try_from)
                .collect::<Result<_, _>>()?;
            new.expires_at = expires_at;
            new.acts_for = acts_for;
            new.rate_limits = rate_limits.into_iter().map(Into::into).collect();
            new.credits = credits.map(|c| c.decode().map_err(str::to_owned)).transpose()?;
            new.external_id = external_id;
            new.meta = meta
                .map(|m| Meta::parse(&m).map_err(|e| e.to_string()))
                .transpose()?;
            Op::Create {
                new: new.validated().map_err(|e| e.to_string())?,
                hash: KeyHash(hash),
                tail,
            }
        }
        OpV1::Delete { id } => Op::Delete { id: KeyId(id) },
        OpV1::Disable { id } => Op::Disable { id: KeyId(id) },
        OpV1::Enable { id } => Op::Enable { id: KeyId(id) },
        OpV1::Roll {
            id,
            hash,
            tail,
            grace,
        } => {
            if grace < 0 {
                return Err("a negative grace period".to_owned());
            }
            Op::Roll {
                id: KeyId(id),
                hash: KeyHash(hash),
                tail,
                grace,
            }
        }
    };
    Ok(Command {
        actor,
        via: wire.via.map(KeyId),
        op,
    })
}

fn sealed<T: Serialize>(
    magic: &[u8; 8],
    value: &T,
    chain: &Chain,
    domain: SealDomain,
) -> Result<Vec<u8>, String> {
    let mut bytes = magic.to_vec();
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    options(MAX_BYTES)
        .serialize_into(&mut bytes, value)
        .map_err(|e| e.to_string())?;
    let seal = chain.seal(domain, &bytes);
    bytes.extend_from_slice(&seal);
    Ok(bytes)
}

fn opened<T: for<'de> Deserialize<'de>>(
    magic: &[u8; 8],
    bytes: &[u8],
    chain: &Chain,
    domain: SealDomain,
) -> Result<T, String> {
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "{} bytes, more than a forwarded write may be",
            bytes.len()
        ));
    }
    match magic_version(bytes, magic, VERSION..=VERSION) {
        Ok(Some(_)) => {}
        Ok(None) => return Err("not a forwarded write of keyledger's".to_owned()),
        Err(e) => return Err(e.to_string()),
    }
    let body_len = bytes
        .len()
        .checked_sub(SEAL_LEN)
        .filter(|&n| n >= 10)
        .ok_or("too short to hold a seal")?;
    let (body, seal) = bytes.split_at(body_len);
    if !chain.seal_matches(domain, body, seal) {
        return Err("its seal does not verify with this fleet's chain key".to_owned());
    }
    options(MAX_BYTES)
        .deserialize(&body[10..])
        .map_err(|e| format!("sealed but undecodable: {e}"))
}

pub(crate) fn seal_request(request: &RequestV1, chain: &Chain) -> Result<Vec<u8>, String> {
    sealed(&REQUEST_MAGIC, request, chain, SealDomain::ForwardRequest)
}

pub(crate) fn open_request(bytes: &[u8], chain: &Chain) -> Result<RequestV1, String> {
    opened(&REQUEST_MAGIC, bytes, chain, SealDomain::ForwardRequest)
}

pub(crate) fn seal_answer(answer: &AnswerV1, chain: &Chain) -> Result<Vec<u8>, String> {
    sealed(&ANSWER_MAGIC, answer, chain, SealDomain::ForwardAnswer)
}

pub(crate) fn open_answer(bytes: &[u8], chain: &Chain) -> Result<AnswerV1, String> {
    opened(&ANSWER_MAGIC, bytes, chain, SealDomain::ForwardAnswer)
}
