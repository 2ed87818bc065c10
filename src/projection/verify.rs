//! Checking a presented key against the state: the hash-table probe, the grace periods,
//! tokens outside keyledger's format, and the state the access rules read.
//!
//! Read-only (apart from the key's use: `usage.rs`); it never changes a key and never does I/O.

use std::net::IpAddr;

use super::{HashPrefix, LIVE, NEVER, NEVER_S, Projection};
use crate::access;
use crate::access::KeyName;
use crate::access::KeyState;
use crate::access::Rejection;
use crate::access::VerifiedKey;
use crate::clock::Clock;
use crate::model::id::KeyId;
use crate::model::token;
use crate::model::token::KeyHash;

impl Projection {
    /// Looks a key's hash up and checks it: a hash-table probe, one key record, a copy of
    /// the name, the count of the key's use (an atomic add; at most once a minute a stamp
    /// of its last use), and for a metered key its limiter and credit cell (`cost` spent
    /// from its credits). Reads the (coarse) clock only for a key that expires or a secret
    /// in its grace period. A key lacking one of `roles` is refused before its limits and
    /// credits are touched.
    #[inline]
    pub(crate) fn verify<'r>(
        &self,
        hash: &KeyHash,
        ip: IpAddr,
        require_whitelist: bool,
        cost: u64,
        roles: impl Iterator<Item = &'r str>,
        clock: &Clock,
    ) -> Result<VerifiedKey, Rejection> {
        let prefix = HashPrefix::of(hash);
        let keys = &self.keys;
        let index = match self
            .by_hash
            .find(self.seed.key_hash(prefix), |i| keys[i as usize].hash == prefix)
        {
            Some(i) => i,
            None => self.in_grace(prefix, clock).ok_or(Rejection::UnknownKey)?,
        };
        let answer = self.verify_key(index, ip, require_whitelist, cost, roles, clock);
        self.usage.count(
            &self.keys[index as usize].used,
            index,
            answer.as_ref().err(),
            clock.minute(),
        );
        answer
    }

    /// Checks the key at `index`, found by its hash: what a verify counts against the key.
    #[inline]
    fn verify_key<'r>(
        &self,
        index: u32,
        ip: IpAddr,
        require_whitelist: bool,
        cost: u64,
        mut roles: impl Iterator<Item = &'r str>,
        clock: &Clock,
    ) -> Result<VerifiedKey, Rejection> {
        let key = &self.keys[index as usize];
        if key.expires_s != NEVER_S {
            // The whole second first; the exact time only from the key's last second on.
            let now = clock.now_micros_coarse();
            if now.div_euclid(1_000_000) >= i64::from(key.expires_s)
                && now >= self.cold[index as usize].expires
            {
                return Err(Rejection::Expired);
            }
        }
        if key.disabled {
            return Err(Rejection::Disabled);
        }
        access::ip_allowed(self.whitelists.get(key.whitelist), ip, require_whitelist)?;
        // Before anything is spent: a request the route refuses uses no rate or credits.
        if !roles.all(|r| self.roles_of(key).0.contains(&r)) {
            return Err(Rejection::RoleMissing);
        }
        let (rate, credits) = match key.meter {
            0 => (None, None),
            meter => self.meter(meter, cost, clock.steady_micros(), clock.now_micros_coarse())?,
        };
        Ok(VerifiedKey {
            id: key.id,
            name: key
                .name
                .bytes
                // A long name's length mark is past the inline bytes: `None`, the arena.
                .get(..usize::from(key.name.len))
                .and_then(KeyName::short)
                .unwrap_or_else(|| KeyName::new(self.name_of(key))),
            roles: self.roles_of(key),
            rate,
            credits,
        })
    }

    /// The key whose previous secret has this hash, while its grace period lasts.
    #[cold]
    fn in_grace(&self, prefix: HashPrefix, clock: &Clock) -> Option<u32> {
        if self.graces.is_empty() {
            return None;
        }
        let grace = self
            .graces
            .find(self.seed.key_hash(prefix), |g| g.hash == prefix)?;
        (clock.now_micros_coarse() < grace.until).then_some(grace.key)
    }

    /// The hashes a token outside keyledger's format could be kept under, if any key
    /// was adopted that way: its own hash, then that of its SHA-256 digest.
    pub(crate) fn foreign_candidates(&self, token: &str) -> impl Iterator<Item = KeyHash> {
        let fits = (self.adopted_foreign || self.adopted_sha256) && token::fits_adopted_rule(token);
        let own = (fits && self.adopted_foreign).then(|| KeyHash::of(token));
        let sha = (fits && self.adopted_sha256).then(|| KeyHash::of_sha256_token(token));
        own.into_iter().chain(sha)
    }

    /// The id of the key this hash is the secret of (or, in its grace period, the previous
    /// secret of), counting nothing.
    #[cfg(feature = "serve")]
    pub(crate) fn id_of_hash(&self, hash: &KeyHash) -> Option<KeyId> {
        let prefix = HashPrefix::of(hash);
        if let Some(key) = self.live_key_by_prefix(prefix) {
            return Some(key.id);
        }
        let grace = self
            .graces
            .find(self.seed.key_hash(prefix), |g| g.hash == prefix)?;
        Some(self.keys[grace.key as usize].id)
    }

    pub(crate) fn contains_id(&self, id: KeyId) -> bool {
        self.key_index(id).is_some()
    }

    /// Whether a live key, or a previous secret in its grace period, has this hash.
    pub(crate) fn contains_hash(&self, hash: &KeyHash) -> bool {
        self.contains_prefix(HashPrefix::of(hash))
    }

    /// The state the access rules need for key `id`.
    pub(crate) fn key_state(&self, id: KeyId) -> Option<KeyState<'_>> {
        let index = self.key_index(id)? as usize;
        let (key, cold) = (&self.keys[index], &self.cold[index]);
        let roles = self.roles_of(key).0;
        Some(KeyState {
            owner: &self.actors[self.rows[cold.created as usize].actor as usize],
            deleted: cold.deleted != LIVE,
            disabled: key.disabled,
            whitelist: self.whitelist_of(key),
            roles,
            grants_super_admin: roles.contains(&crate::model::id::SUPER_ADMIN_ROLE),
            grants_admin: roles.contains(&crate::model::id::ADMIN_ROLE),
            expires_at: (cold.expires != NEVER).then_some(cold.expires),
            rate_limits: self.limits_of(index as u32),
            credits: self.credits_held(index as u32),
        })
    }

    /// Unindexes every key for verification, so that none verifies: a state that proved
    /// damaged fails closed. Listings and the audit trail stay readable.
    pub(crate) fn stop_verifying(&mut self) {
        self.by_hash.clear();
        self.graces.clear();
        self.grace_of.clear();
    }

    pub(crate) fn live_count(&self) -> usize {
        self.by_hash.len()
    }
}
