//! The store: ties commands, the ledger, the log and the writer thread together.
//!
//! Data flows one way: a command is checked against the state and turned into records by
//! the ledger, made durable by the one writer thread (group commit), accepted by the ledger
//! (which applies it), and only then answered. Reads (`verify`, listings, audit) never
//! touch disk or wait for the writer.
//!
//! This file is the facade: `KeyStore`, its public methods and what they return. Opening
//! is in `builder.rs`, the writer thread in `writer.rs`, the threads that snapshot, verify
//! and save last-used stamps in `background.rs`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use ipnet::IpNet;

use crate::access::VerifiedKey;
use crate::chain::Witness;
use crate::fleet::FleetStatus;
use crate::fleet::Revoked;
use crate::fleet::fence::Fence;
use crate::fleet::hosts::Fleet;
use crate::ledger;
use crate::ledger::Command;
use crate::ledger::Ledger;
use crate::ledger::Op;
use crate::log::LogRead;
use crate::model::actor::Actor;
use crate::model::actor::ActorRole;
use crate::model::credits::Credits;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::key::NewKey;
use crate::model::limit::RateLimit;
use crate::model::owner::KeyOwner;
use crate::model::owner::KeyUpdate;
use crate::model::problem::Problem;
use crate::model::refusal::RefusedAttempt;
use crate::model::token::ApiKey;
use crate::model::token::ExistingKey;
use crate::persist::trail;
use crate::projection::AuditEntry;
use crate::projection::KeyView;

use background::{IntegrityCell, Saver};
use writer::{Pending, Request, Route};

pub(crate) mod background;
pub(crate) mod builder;
pub(crate) mod credits;
pub(crate) mod forwarding;
pub(crate) mod joining;
pub(crate) mod page;
pub(crate) mod people;
pub(crate) mod stats;
pub(crate) mod usage;
pub(crate) mod verify;
pub(crate) mod writer;

pub(crate) use builder::Builder;

/// A new key, as returned once by [`KeyStore::create_key`].
#[derive(Debug)]
pub struct CreatedKey {
    /// The key's public id.
    pub id: KeyId,
    /// The sequence number of the creation in the log.
    pub seq: u64,
    /// The secret: show it to its owner once; the store cannot show it again.
    pub key: ApiKey,
}

/// A rolled key's new secret, as returned once by [`KeyStore::roll_key`].
#[derive(Debug)]
pub struct RolledKey {
    /// The key's public id (unchanged).
    pub id: KeyId,
    /// The sequence number of the roll in the log.
    pub seq: u64,
    /// The new secret: show it to its owner once.
    pub key: ApiKey,
    /// Until when the previous secret keeps verifying (the roll's own time for no grace).
    pub previous_valid_until: SystemTime,
    /// For a roll with no grace in fleet mode (a revocation of the previous secret): the
    /// hosts that may still accept the previous secret when the wait ended; see [`Revoked`].
    pub unconfirmed: Vec<String>,
}

/// Whether a store's history is proven; see [`KeyStore::integrity`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Integrity {
    /// Every record from the first was checked when the store opened (or since).
    Verified,
    /// Opened from a snapshot: the records before it are being verified in the
    /// background.
    Verifying,
    /// The records before the snapshot do not prove the state it holds: the store fails
    /// closed, verifying no key and refusing writes. If `check` (with snapshots) names only
    /// the snapshot, remove the snapshot file and reopen; otherwise restore from a backup.
    Damaged(Problem),
}

/// An embedded API-key store: an append-only event log on disk and in-memory projections.
///
/// All methods take `&self`; share it between threads with an `Arc`. Writes are
/// serialized through one writer thread and return once durable; `verify` runs in
/// parallel on every thread and never waits for a write.
pub struct KeyStore {
    ledger: Arc<Ledger>,
    /// Reads the security trail.
    trail: Box<dyn LogRead>,
    require_whitelist: bool,
    integrity: Arc<IntegrityCell>,
    tx: Option<Sender<Request>>,
    /// The writer's queue as forwarded writes reach it; emptied at close.
    inbox: writer::Inbox,
    writer: Option<JoinHandle<()>>,
    /// Saves the last-used stamps every so often, and once more when the store closes.
    last_used: Option<Saver>,
    credit_counts: Option<Saver>,
    verifier: Option<JoinHandle<()>>,
    /// Stops the verifier when the store closes: a short-lived process need not wait for it.
    cancel: Arc<AtomicBool>,
    dir: Option<PathBuf>,
    from_snapshot: bool,
    /// The fleet this store is a host of, if any.
    fleet: Option<Arc<Fleet>>,
    /// Closed while this host, unheard by its fleet for too long or catching up after it,
    /// rejects every key; always open for a single host.
    rejecting: Arc<Fence>,
    /// What the store counts (see `stats.rs`).
    stats: Arc<stats::Stats>,
    _lock: Option<File>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("last_seq", &self.last_seq())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Options for opening a store.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Opens the store in directory `path` with default options, creating it if needed.
    ///
    /// # Errors
    /// As [`Builder::open`].
    ///
    /// # Example
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = keyledger::KeyStore::open(dir.path().join("keys")).unwrap();
    /// assert_eq!(store.last_seq(), 0);
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::default().open(path)
    }

    /// The answer to a revocation: in a fleet, once every host that may accept keys has applied record
    /// `seq` (or the wait ended).
    fn revoked(&self, seq: u64) -> Revoked {
        let unconfirmed = self.fleet.as_ref().map(|f| f.confirm(seq)).unwrap_or_default();
        if !unconfirmed.is_empty() {
            self.stats.unconfirmed();
        }
        Revoked { seq, unconfirmed }
    }

    /// The fleet as this host sees it (every host heard from, its head and lag, and this
    /// host's contact with the shared log); `None` for a single host.
    pub fn fleet_status(&self) -> Option<FleetStatus> {
        let fleet = self.fleet.as_ref()?;
        let head = self.ledger.head();
        Some(fleet.status(|seq| {
            match seq {
                s if s == head.seq => Some(head.hash),
                s => ledger::record_hash(&*self.trail, self.ledger.chain(), s)
                    .ok()
                    .flatten(),
            }
        }))
    }

    fn submit(&self, actor: &Actor, op: Op) -> Result<(KeyId, u64), Error> {
        actor.validate()?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let command = Command {
            actor: actor.plain(),
            via: actor.via(),
            op,
        };
        tx.send(Request::Write(Box::new(Pending {
            command,
            reply,
            route: Route::Local,
        })))
        .map_err(|_| Error::Closed)?;
        answer.recv().map_err(|_| Error::Closed)?
    }

    /// Creates a key and returns its id and its secret; the secret is shown only here.
    ///
    /// Only admins and super admins may create keys, and only a super admin may grant the
    /// `super-admin` role. Returns once the creation is durable and the key verifies.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad name, role or network; [`Error::PermissionDenied`];
    /// [`Error::Io`] or [`Error::Storage`] if it could not be made durable.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, KeyStore, NewKey};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let created = store.create_key(&Actor::admin("alice"), NewKey::new("bot").role("notifier")).unwrap();
    /// let verified = store.verify(created.key.expose_secret(), "10.0.0.1".parse().unwrap()).unwrap();
    /// assert_eq!(verified.id(), created.id);
    /// ```
    pub fn create_key(&self, actor: &Actor, new: NewKey) -> Result<CreatedKey, Error> {
        let new = new.validated()?;
        let key = ApiKey::generate()?;
        let op = Op::Create {
            new,
            hash: key.hash(),
            tail: key.tail(),
        };
        let (id, seq) = self.submit(actor, op)?;
        Ok(CreatedKey { id, seq, key })
    }

    /// Adds addresses or ranges to a key's whitelist, all or none. Returns the sequence
    /// number of the last record written.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::KeyDeleted`], [`Error::PermissionDenied`],
    /// [`Error::WhitelistUnchanged`] if one is already there, [`Error::InvalidInput`] for a
    /// bad network or past [`MAX_WHITELIST`](crate::model::rules::MAX_WHITELIST); storage errors.
    pub fn whitelist_ip(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<u64, Error> {
        let nets = request_nets(nets)?;
        self.submit(actor, Op::Whitelist { id, nets }).map(|(_, seq)| seq)
    }

    /// Removes addresses or ranges from a key's whitelist, all or none. Returns what
    /// [`KeyStore::delete_key`] returns, for the last record written.
    ///
    /// An empty whitelist admits every address (unless the store requires a whitelist),
    /// so removing the last entry is refused: use
    /// [`KeyStore::unwhitelist_ip_allowing_any_address`] to mean it.
    ///
    /// # Errors
    /// As [`KeyStore::whitelist_ip`]; [`Error::WhitelistUnchanged`] if one is not there;
    /// [`Error::LastWhitelistEntry`] if the whitelist would end up empty.
    pub fn unwhitelist_ip(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<Revoked, Error> {
        self.unwhitelist(actor, id, nets, false)
    }

    /// Removes addresses or ranges from a key's whitelist, even the last one: a key whose
    /// whitelist ends up empty admits every address (unless the store requires a
    /// whitelist).
    ///
    /// # Errors
    /// As [`KeyStore::unwhitelist_ip`], without [`Error::LastWhitelistEntry`].
    pub fn unwhitelist_ip_allowing_any_address(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
    ) -> Result<Revoked, Error> {
        self.unwhitelist(actor, id, nets, true)
    }

    fn unwhitelist(
        &self,
        actor: &Actor,
        id: KeyId,
        nets: impl IntoIterator<Item = IpNet>,
        allow_any_address: bool,
    ) -> Result<Revoked, Error> {
        let nets = request_nets(nets)?;
        let op = Op::Unwhitelist {
            id,
            nets,
            allow_any_address,
        };
        let (_, seq) = self.submit(actor, op)?;
        Ok(self.revoked(seq))
    }

    /// Deletes a key. When this returns, the key no longer verifies on any thread; in a
    /// fleet ([`Builder::fleet`]), on any host either (a host cut off rejects every key
    /// before it is counted out), unless the answer lists hosts that had not confirmed
    /// within the wait. Returns the deletion's sequence number and
    /// those hosts.
    ///
    /// A super admin may delete any key, an admin only the keys they created.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::KeyDeleted`], [`Error::PermissionDenied`]; storage
    /// errors.
    pub fn delete_key(&self, actor: &Actor, id: KeyId) -> Result<Revoked, Error> {
        let (_, seq) = self.submit(actor, Op::Delete { id })?;
        Ok(self.revoked(seq))
    }

    /// Gives a key a new secret, shown once; its id, name, roles, whitelist and expiry
    /// stay. The previous secret keeps verifying for `grace` (zero: it stops at once).
    /// Rolling again during a grace period ends that period at once, so at most two
    /// secrets of a key ever verify. The rules are those of [`KeyStore::delete_key`].
    ///
    /// # Errors
    /// As [`KeyStore::delete_key`]; [`Error::InvalidInput`] for a grace period longer
    /// than [`MAX_GRACE`].
    pub fn roll_key(&self, actor: &Actor, id: KeyId, grace: Duration) -> Result<RolledKey, Error> {
        if grace > MAX_GRACE {
            return Err(Error::invalid(
                "grace",
                format!("at most {} days", MAX_GRACE.as_secs() / 86_400),
            ));
        }
        let key = ApiKey::generate()?;
        let op = Op::Roll {
            id,
            hash: key.hash(),
            tail: key.tail(),
            grace: i64::try_from(grace.as_micros()).unwrap_or(i64::MAX),
        };
        let (id, seq) = self.submit(actor, op)?;
        let previous_valid_until = self
            .ledger
            .read()
            .audit(seq)
            .next()
            .and_then(|e| e.previous_valid_until)
            .unwrap_or_else(SystemTime::now);
        let unconfirmed = match grace {
            Duration::ZERO => self.revoked(seq).unconfirmed,
            _ => Vec::new(),
        };
        Ok(RolledKey {
            id,
            seq,
            key,
            previous_valid_until,
            unconfirmed,
        })
    }

    /// Disables a key: it is rejected with [`Rejection::Disabled`] until enabled again.
    /// The rules are those of [`KeyStore::delete_key`], and so is what it returns.
    ///
    /// # Errors
    /// As [`KeyStore::delete_key`]; [`Error::StateUnchanged`] if it is already disabled.
    pub fn disable_key(&self, actor: &Actor, id: KeyId) -> Result<Revoked, Error> {
        let (_, seq) = self.submit(actor, Op::Disable { id })?;
        Ok(self.revoked(seq))
    }

    /// Enables a disabled key again. Returns the sequence number.
    ///
    /// # Errors
    /// As [`KeyStore::delete_key`]; [`Error::StateUnchanged`] if it is not disabled.
    pub fn enable_key(&self, actor: &Actor, id: KeyId) -> Result<u64, Error> {
        self.submit(actor, Op::Enable { id }).map(|(_, seq)| seq)
    }

    /// Sets a key's rate limits, replacing the ones it has (none removes them); the key's
    /// buckets start full again. One chained record, under the rules of
    /// [`KeyStore::whitelist_ip`]. Returns the sequence number.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::KeyDeleted`], [`Error::PermissionDenied`];
    /// [`Error::InvalidInput`] naming `rate limit` for more than
    /// [`MAX_RATE_LIMITS`](crate::model::limit::MAX_RATE_LIMITS) or a window named twice;
    /// [`Error::StateUnchanged`] if the key already has exactly these; storage errors.
    pub fn set_rate_limits(
        &self,
        actor: &Actor,
        id: KeyId,
        rate_limits: impl IntoIterator<Item = RateLimit>,
    ) -> Result<u64, Error> {
        let rate_limits = rate_limits.into_iter().collect();
        self.submit(actor, Op::SetLimits { id, rate_limits })
            .map(|(_, seq)| seq)
    }

    /// Changes a key's name, roles, external id or metadata: only what `update` names, in
    /// one chained record (`updated`, carrying only the fields that change), under the
    /// rules of [`KeyStore::whitelist_ip`] and of a creation: an admin only on her own
    /// keys, never granting `super-admin`; no update adds or removes the `admin` or
    /// `super-admin` role; an admin key may not give itself a role it does not hold.
    /// Returns the sequence number.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field for a bad name, role (none left, too
    /// many), external id or an update naming nothing; [`Error::KeyNotFound`],
    /// [`Error::KeyDeleted`], [`Error::PermissionDenied`]; [`Error::StateUnchanged`] when
    /// it changes nothing; storage errors.
    pub fn update_key(&self, actor: &Actor, id: KeyId, update: KeyUpdate) -> Result<u64, Error> {
        let update = update.validated()?;
        self.submit(actor, Op::Update { id, update }).map(|(_, seq)| seq)
    }

    /// The external id and metadata of key `id`, whatever its status: one lookup apart
    /// from the verify path (which never reads them), for a host that has just verified
    /// the key. `None` for no such key.
    pub fn key_owner(&self, id: KeyId) -> Option<KeyOwner> {
        self.ledger.read().owner_of(id)
    }

    /// Sets a key's credits, replacing what it has (none removes them): its count starts
    /// again from `credits.remaining()`, and refills fall at whole periods from now. One
    /// chained record, under the rules of [`KeyStore::whitelist_ip`]. Returns the
    /// sequence number.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`], [`Error::KeyDeleted`], [`Error::PermissionDenied`];
    /// [`Error::StateUnchanged`] to remove credits from a key that has none; storage
    /// errors.
    pub fn set_credits(&self, actor: &Actor, id: KeyId, credits: Option<Credits>) -> Result<u64, Error> {
        if let Some(credits) = &credits {
            credits.check()?;
        }
        self.submit(actor, Op::SetCredits { id, credits })
            .map(|(_, seq)| seq)
    }

    /// Adds `amount` to a key's credits (a top-up; its refill is unchanged). One chained
    /// record, under the rules of [`KeyStore::whitelist_ip`]. Returns the sequence number.
    ///
    /// # Errors
    /// As [`KeyStore::set_credits`]; [`Error::InvalidInput`] naming `credits` for an
    /// amount of 0, a key without credits, or a total past
    /// [`MAX_CREDITS`](crate::model::credits::MAX_CREDITS) (as the log counts it: the count
    /// set plus every top-up).
    pub fn add_credits(&self, actor: &Actor, id: KeyId, amount: u64) -> Result<u64, Error> {
        if amount == 0 {
            return Err(Error::invalid("credits", "adding 0 credits changes nothing"));
        }
        crate::model::credits::check_amount("credits", amount)?;
        self.submit(actor, Op::AddCredits { id, amount })
            .map(|(_, seq)| seq)
    }

    /// Adopts keys a platform already issued (see [`ExistingKey`]), all or none, made
    /// durable as one commit; returns their new ids in order. The rules are those of
    /// [`KeyStore::create_key`]. The audit kind is `imported`.
    ///
    /// # Errors
    /// [`Error::ImportEntry`] naming the first refused key by its position from 1, with
    /// why (bad input, a secret already in use, [`Error::PermissionDenied`]);
    /// [`Error::InvalidInput`] for no keys at all; storage errors. Nothing is written on
    /// any error.
    pub fn import_keys(&self, actor: &Actor, keys: Vec<ExistingKey>) -> Result<Vec<KeyId>, Error> {
        let count = keys.len() as u64;
        let keys = keys
            .into_iter()
            .enumerate()
            .map(|(n, mut k)| {
                k.new = k.new.validated().map_err(|e| Error::ImportEntry {
                    index: n + 1,
                    source: Box::new(e),
                })?;
                Ok(k)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let (_, last) = self.submit(actor, Op::Import { keys })?;
        Ok(self
            .ledger
            .read()
            .audit(last + 1 - count)
            .take(count as usize)
            .filter_map(|e| e.key_id)
            .collect())
    }

    /// The actor a request authenticated by admin key `key` acts as: the person the key
    /// was made for ([`NewKey::acting_for`]), or else the actor who created it, with the
    /// lesser of the creator's role when it made the key and the key's own (`super-admin`
    /// or `admin`): the person's granted role. The command carries the key (its records
    /// and refusals name it as `via`). The permission rules are then exactly those of that
    /// person: keys made through it are theirs, and an admin may act only on her own.
    /// Commands through the key are refused once it is deleted (or its person revoked,
    /// [`KeyStore::revoke_actor`]), disabled or expired, even if it verified when the
    /// request began; and an admin (through a key or not) may not change a key that holds
    /// the `super-admin` role ([`crate::model::error::Denial::OutranksActor`]).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] if the key is no longer active, or holds neither the `admin` nor the
    /// `super-admin` role; [`Error::KeyNotFound`] if it is gone.
    pub fn acting_through(&self, key: &VerifiedKey) -> Result<Actor, Error> {
        let view = self.key(key.id()).ok_or(Error::KeyNotFound(key.id()))?;
        // The refusal names the person the key stands for, as the same command typed at
        // the command line by that person would.
        let person = view
            .acts_for
            .clone()
            .unwrap_or_else(|| view.created_by.id().to_owned());
        if view.status != crate::projection::KeyStatus::Active {
            return Err(Error::denied(
                &person,
                crate::model::error::Denial::AdminKeyRevoked { key: key.id() },
            ));
        }
        let granted = if view.roles.iter().any(|r| r == crate::model::id::SUPER_ADMIN_ROLE) {
            ActorRole::SuperAdmin
        } else if view.roles.iter().any(|r| r == crate::model::id::ADMIN_ROLE) {
            ActorRole::Admin
        } else {
            return Err(Error::denied(&person, crate::model::error::Denial::NotAnAdmin));
        };
        // The lesser role has the larger code.
        let creator = view.created_by.role();
        let role = if creator.code() >= granted.code() {
            creator
        } else {
            granted
        };
        Ok(Actor::new(person, role).through(key.id()))
    }

    /// The security trail: management commands the access rules refused (who tried what
    /// on which key, when, and why), oldest first. Kept apart from the key log and
    /// bounded (see [`Builder::keep_refused`]); a refused command changes no key and no
    /// sequence number.
    ///
    /// # Errors
    /// Storage errors, or [`Error::Corrupt`] if the trail is damaged.
    pub fn refused(&self) -> Result<Vec<RefusedAttempt>, Error> {
        self.trail
            .refused()?
            .iter()
            .map(|bytes| crate::persist::trail::format::decode_refused(bytes))
            .filter_map(|r| r.map(trail::attempt_of).transpose())
            .collect()
    }

    /// Writes the whole log to `path` as a portable, versioned, checksummed backup, while
    /// the store keeps serving (writes wait for the export). Returns the number of records.
    /// The file is readable by its owner only (mode 0600), and replaces whatever is at
    /// `path` (a link there is replaced, not written through).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written; storage errors.
    pub fn export(&self, path: impl AsRef<Path>) -> Result<u64, Error> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        tx.send(Request::Export(path.as_ref().to_path_buf(), reply))
            .map_err(|_| Error::Closed)?;
        answer.recv().map_err(|_| Error::Closed)?
    }

    /// The live keys (neither deleted nor expired), oldest first.
    pub fn keys(&self) -> Vec<KeyView> {
        self.ledger.read().keys(false, self.ledger.clock().now_micros())
    }

    /// Every key ever created, deleted and expired ones included, oldest first.
    pub fn all_keys(&self) -> Vec<KeyView> {
        self.ledger.read().keys(true, self.ledger.clock().now_micros())
    }

    /// One key, whatever its status.
    pub fn key(&self, id: KeyId) -> Option<KeyView> {
        self.ledger.read().key(id, self.ledger.clock().now_micros())
    }

    /// The audit trail: who created, whitelisted, unwhitelisted and deleted which key, when.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.ledger.read().audit(1).collect()
    }

    /// One entry of the audit trail: the one of record `seq`.
    pub fn audit_entry(&self, seq: u64) -> Option<AuditEntry> {
        if seq == 0 {
            return None;
        }
        self.ledger.read().audit(seq).next()
    }

    /// Every key as it stood right after record `seq`: the log's time travel.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `seq` is beyond the end of the log.
    pub fn keys_at(&self, seq: u64) -> Result<Vec<KeyView>, Error> {
        let proj = self.ledger.read();
        if seq > proj.head().seq {
            return Err(Error::invalid(
                "seq",
                format!("{seq} is past the last record, {}", proj.head().seq),
            ));
        }
        Ok(proj.keys_at(seq))
    }

    /// Whether this store was opened from a snapshot (and the log's tail) rather than by
    /// replaying the whole log.
    pub fn opened_from_snapshot(&self) -> bool {
        self.from_snapshot
    }

    /// The sequence number of the last record (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.ledger.read().head().seq
    }

    /// The head: the last record's sequence number and chain hash. Keep it outside the
    /// store and hand it to [`Builder::expect_head`] to detect a store rolled back or
    /// replaced by an older copy.
    pub fn head(&self) -> Witness {
        let head = self.ledger.head();
        Witness {
            seq: head.seq,
            hash: head.hash,
        }
    }

    /// Whether the history this store was opened from is proven. Opening from a
    /// snapshot takes the records before it on trust and verifies them in the
    /// background; until then this is [`Integrity::Verifying`]. A store whose history
    /// proves damaged fails closed: it verifies no key and refuses every write.
    pub fn integrity(&self) -> Integrity {
        self.integrity.get()
    }

    /// Waits until the background verification (if any) has finished; see
    /// [`KeyStore::integrity`].
    pub fn wait_for_integrity(&self) -> Integrity {
        self.integrity.wait()
    }

    /// Whether the writer has stopped (after the log took records the state could not,
    /// or a panic): every write now answers [`Error::Closed`], while reads go on. Reopen
    /// the store.
    pub fn is_closed(&self) -> bool {
        self.writer.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// How many keys are live.
    pub fn live_key_count(&self) -> usize {
        self.ledger.read().live_count()
    }
}

/// The longest grace period a roll may give the previous secret.
pub const MAX_GRACE: Duration = Duration::from_secs(365 * 86_400);

fn request_nets(nets: impl IntoIterator<Item = IpNet>) -> Result<Vec<IpNet>, Error> {
    let nets: Vec<IpNet> = nets.into_iter().collect();
    if nets.is_empty() {
        return Err(Error::invalid("network", "no address or range given"));
    }
    crate::model::rules::validate_whitelist(&nets)
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Release);
        // This host leaves the fleet: it stops announcing (and withdraws its head).
        if let Some(fleet) = &self.fleet {
            fleet.close();
        }
        self.inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        self.tx.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(saver) = self.credit_counts.take() {
            saver.finish();
        }
        if let Some(saver) = self.last_used.take() {
            saver.finish();
        }
        if let Some(verifier) = self.verifier.take() {
            let _ = verifier.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
pub(crate) mod snapshot_tests;

#[cfg(test)]
pub(crate) mod fleet_tests;
