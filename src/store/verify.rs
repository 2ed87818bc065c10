//! Verification, the store's hot path: a presented key (or the `x-api-key` header) and
//! the client's address against the state, with what the request costs and the roles its
//! route requires. Read-only but for the key's counters (use, rate limits, credits); no
//! I/O, no lock taken for writing.

use std::net::IpAddr;

use super::KeyStore;
use crate::access::Rejection;
use crate::access::VerifiedKey;
use crate::model::token;

impl KeyStore {
    /// Checks a presented key and the client's address. O(1), no I/O, no lock taken for
    /// writing, and no allocation unless the key's name is longer than 22 bytes.
    ///
    /// A key that expired answers [`Rejection::Expired`], a disabled one
    /// [`Rejection::Disabled`]; every key answers [`Rejection::Stale`] on a host of a fleet
    /// that has fenced itself (unheard by the others past its lease, or, with
    /// [`FleetOptions::serve_past_lease`](crate::fleet::FleetOptions::serve_past_lease),
    /// past its `stale_reject` limit).
    ///
    /// A successful verify stamps the key's last use, to the minute: at most one write to
    /// shared memory per key and minute, never to the log; the stamps are saved to the
    /// store's directory periodically and at close. Each verify of a known key is counted
    /// too, accepted or refused by reason (an atomic add; see [`KeyStore::usage`]).
    ///
    /// # Errors
    /// A [`Rejection`] saying why the key is refused.
    pub fn verify(&self, token: &str, client_ip: IpAddr) -> Result<VerifiedKey, Rejection> {
        self.verify_with_cost(token, client_ip, 1)
    }

    /// [`KeyStore::verify`] for a request that costs `cost` of the key's credits (a
    /// weighted operation; 0 spends nothing and only looks). A key without credits
    /// ignores the cost; a key with fewer left than `cost` is refused as
    /// [`Rejection::UsageExceeded`] and spends nothing. Rate limits count the request
    /// once, whatever its cost.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the key is refused.
    ///
    /// # Example
    /// ```
    /// use keyledger::{Actor, Credits, KeyStore, NewKey, Rejection};
    /// let store = KeyStore::builder().open_temporary().unwrap();
    /// let new = NewKey::new("bot").role("bot").credits(Credits::new(10).unwrap());
    /// let created = store.create_key(&Actor::admin("alice"), new).unwrap();
    /// let (secret, ip) = (created.key.expose_secret(), "192.0.2.1".parse().unwrap());
    /// assert_eq!(store.verify_with_cost(secret, ip, 7).unwrap().credits_remaining(), Some(3));
    /// assert!(matches!(store.verify_with_cost(secret, ip, 4), Err(Rejection::UsageExceeded { .. })));
    /// assert_eq!(store.verify(secret, ip).unwrap().credits_remaining(), Some(2));
    /// ```
    pub fn verify_with_cost(
        &self,
        token: &str,
        client_ip: IpAddr,
        cost: u64,
    ) -> Result<VerifiedKey, Rejection> {
        self.verify_for_roles(token, client_ip, cost, &[])
    }

    /// [`KeyStore::verify_with_cost`] for a route that requires `roles`: a key lacking one
    /// is refused with [`Rejection::RoleMissing`] before its rate limits and credits are
    /// touched, so a request the route refuses spends neither.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the key is refused.
    pub fn verify_for_roles(
        &self,
        token: &str,
        client_ip: IpAddr,
        cost: u64,
        roles: &[&str],
    ) -> Result<VerifiedKey, Rejection> {
        self.verify_requiring(token, client_ip, cost, roles.iter().copied())
    }

    /// [`KeyStore::verify_for_roles`] with the roles as an iterator (cloned for each
    /// candidate hash), so that a caller with roles from two places allocates nothing.
    #[inline]
    pub(crate) fn verify_requiring<'r, R>(
        &self,
        token: &str,
        client_ip: IpAddr,
        cost: u64,
        roles: R,
    ) -> Result<VerifiedKey, Rejection>
    where
        R: Iterator<Item = &'r str> + Clone,
    {
        if self.rejecting.rejects() {
            return Err(Rejection::Stale);
        }
        match token::parse(token) {
            Ok(hash) => self.ledger.read().verify(
                &hash,
                client_ip,
                self.require_whitelist,
                cost,
                roles.clone(),
                self.ledger.clock(),
            ),
            Err(malformed) => self.verify_foreign(token, client_ip, cost, roles, malformed),
        }
    }

    /// The id of the key a token in keyledger's format is the secret of (live, or a
    /// previous secret in its grace period), checking nothing else and counting no use:
    /// for the log line of a request refused for a reason that named a key.
    #[cfg(feature = "serve")]
    pub(crate) fn key_id_of(&self, token: &str) -> Option<crate::model::id::KeyId> {
        let hash = token::parse(token).ok()?;
        self.ledger.read().id_of_hash(&hash)
    }

    /// A token outside keyledger's format: only keys adopted from another system can
    /// have one, and only they pay for the lookups (and a SHA-256 hash).
    #[cold]
    fn verify_foreign<'r>(
        &self,
        token: &str,
        client_ip: IpAddr,
        cost: u64,
        roles: impl Iterator<Item = &'r str> + Clone,
        malformed: crate::model::token::format::Malformed,
    ) -> Result<VerifiedKey, Rejection> {
        let proj = self.ledger.read();
        let mut found = false;
        for hash in proj.foreign_candidates(token) {
            found = true;
            match proj.verify(
                &hash,
                client_ip,
                self.require_whitelist,
                cost,
                roles.clone(),
                self.ledger.clock(),
            ) {
                // A secret retired by its own hash (deleted, rolled out) does not come
                // back through a key adopted later by its SHA-256.
                Err(Rejection::UnknownKey) if proj.was_retired(&hash) => break,
                Err(Rejection::UnknownKey) => continue,
                answer => return answer,
            }
        }
        Err(if found {
            Rejection::UnknownKey
        } else {
            Rejection::Malformed(malformed)
        })
    }

    /// Picks the key out of the `x-api-key` header and verifies it; see
    /// [`api_key_from_headers`](crate::model::token::api_key_from_headers).
    ///
    /// # Errors
    /// A [`Rejection`] saying why the request is refused.
    pub fn verify_headers<'a, I>(&self, headers: I, client_ip: IpAddr) -> Result<VerifiedKey, Rejection>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        self.verify(token::api_key_from_headers(headers)?, client_ip)
    }

    /// [`KeyStore::verify_headers`] for a request that costs `cost` of the key's credits;
    /// see [`KeyStore::verify_with_cost`].
    ///
    /// # Errors
    /// A [`Rejection`] saying why the request is refused.
    pub fn verify_headers_with_cost<'a, I>(
        &self,
        headers: I,
        client_ip: IpAddr,
        cost: u64,
    ) -> Result<VerifiedKey, Rejection>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        self.verify_with_cost(token::api_key_from_headers(headers)?, client_ip, cost)
    }
}
