//! The hash chain and the head: how the log proves its own history.
//!
//! Every record carries the chain hash of the one before; the head (the last record's
//! sequence number, chain hash and time) is sealed with a key derived from the chain key,
//! so whoever lacks a secret chain key can neither forge records nor move the head. This
//! module only hashes; it never reads or writes the store (a key file goes through
//! `file`).

use std::path::Path;

use crate::file;
use crate::model::error::Error;

/// The secret key of a keyed chain: whoever lacks it cannot forge a history, or roll its
/// head back, without a keyed check noticing. Kept outside the store (a file, an
/// environment variable); never printed.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ChainKey(bytes)
    }

    /// A key from 64 hexadecimal digits (surrounding white space ignored).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if it is not 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, Error> {
        let hex = hex.trim().as_bytes();
        let digit = |c: u8| (c as char).to_digit(16);
        if hex.len() != 64 {
            return Err(Error::invalid(
                "chain key",
                format!("must be 64 hex digits, got {}", hex.len()),
            ));
        }
        let mut key = [0u8; 32];
        for (out, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => *out = (h * 16 + l) as u8,
                _ => return Err(Error::invalid("chain key", "must be 64 hex digits")),
            }
        }
        Ok(ChainKey(key))
    }

    /// A fresh random key, as 64 hex digits to keep somewhere safe.
    ///
    /// # Errors
    /// [`Error::Entropy`] if the OS random number generator fails.
    pub fn generate_hex() -> Result<String, Error> {
        use rand::TryRngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| Error::Entropy(e.to_string()))?;
        let hex = to_hex(&key);
        zeroize::Zeroize::zeroize(&mut key);
        Ok(hex)
    }

    /// The key on the first line of the file `path` (64 hex digits), which no user but
    /// its owner may read.
    ///
    /// # Errors
    /// [`Error::UnsafeFile`] if other users may read it, or it is neither a regular file
    /// nor a pipe; [`Error::Io`] if it cannot be read; [`Error::InvalidInput`] if it holds
    /// no key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_hex(&file::read_secret_file(path)?)
    }

    /// Writes a fresh random key (64 hex digits and a newline) to the new file `path`,
    /// readable by its owner only (mode 0600): never over, or through, anything already
    /// there.
    ///
    /// # Errors
    /// [`Error::Io`] of kind `AlreadyExists` if a file, a directory or a link is at
    /// `path` (it is left alone), or another I/O error; [`Error::Entropy`].
    pub fn create_file(path: impl AsRef<Path>) -> Result<(), Error> {
        let hex = zeroize::Zeroizing::new(Self::generate_hex()?);
        file::write_new(path.as_ref(), |out| {
            // Past the buffer, which would keep a copy of the key.
            let out = out.get_mut();
            std::io::Write::write_all(out, hex.as_bytes())?;
            std::io::Write::write_all(out, b"\n")?;
            Ok(())
        })
    }
}

impl Drop for ChainKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(redacted)")
    }
}

/// Lowercase hexadecimal.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The chain's hash function: blake3 keyed with either a public constant (anyone can
/// recompute the chain: it detects damage, not forgery) or a secret [`ChainKey`].
#[derive(Clone)]
pub(crate) struct Chain {
    key: [u8; 32],
    /// Seals heads and backups: derived from `key`, so a record hash is never a seal.
    seal_key: [u8; 32],
    keyed: bool,
}

const PUBLIC_CHAIN_KEY: &[u8; 32] = b"keyledger.log-chain.blake3.v1.26";
/// blake3 key-derivation context of the seal key.
const SEAL_CONTEXT: &str = "keyledger 2026-11 head and backup seal v2";

impl Chain {
    pub(crate) fn new(key: Option<&ChainKey>) -> Self {
        let (key, keyed) = match key {
            Some(k) => (k.0, true),
            None => (*PUBLIC_CHAIN_KEY, false),
        };
        Chain {
            key,
            seal_key: blake3::derive_key(SEAL_CONTEXT, &key),
            keyed,
        }
    }

    pub(crate) fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// The chain hash of a record, given its encoded bytes (which hold the previous hash).
    #[inline]
    pub(crate) fn hash(&self, encoded: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.key, encoded).as_bytes()
    }

    /// [`Chain::hash`] over a long input, fed a part at a time (a snapshot as it is
    /// written).
    pub(crate) fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.key)
    }

    /// The seal of a head or a backup: whoever lacks a secret chain key cannot make one.
    pub(crate) fn seal(&self, domain: SealDomain, bytes: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.seal_key);
        h.update(domain.tag());
        h.update(bytes);
        *h.finalize().as_bytes()
    }

    /// Whether `seal` is the seal of `bytes` in `domain`, compared in constant time
    /// (`blake3::Hash` equality), so that how long a refusal takes says nothing of how
    /// close a forgery came.
    pub(crate) fn seal_matches(&self, domain: SealDomain, bytes: &[u8], seal: &[u8]) -> bool {
        <[u8; 32]>::try_from(seal)
            .is_ok_and(|seal| blake3::Hash::from(self.seal(domain, bytes)) == blake3::Hash::from(seal))
    }

    /// A running seal over a long input (a backup).
    pub(crate) fn sealer(&self, domain: SealDomain) -> blake3::Hasher {
        let mut h = blake3::Hasher::new_keyed(&self.seal_key);
        h.update(domain.tag());
        h
    }

    /// Identifies the key without revealing it, so a wrong key gets a clear error.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        self.hash(b"keyledger chain key fingerprint")
    }

    /// How a store with this chain says so in its metadata.
    pub(crate) fn marker(&self) -> ChainMarker {
        if self.keyed {
            ChainMarker::Keyed(self.fingerprint())
        } else {
            ChainMarker::Public
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
        zeroize::Zeroize::zeroize(&mut self.seal_key);
    }
}

/// What a seal covers; part of the sealed bytes, so one kind can never pass for another.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SealDomain {
    Head,
    Backup,
    /// A message on a fleet's shared log.
    Message,
    /// A host's head in a fleet's heads bucket.
    HostHead,
    /// A host's report of what it admitted, on a fleet's usage subject.
    UsageReport,
    /// Commands a host forwards to the fleet's writer, and the writer's answer.
    ForwardRequest,
    ForwardAnswer,
}

impl SealDomain {
    fn tag(self) -> &'static [u8] {
        match self {
            SealDomain::Head => b"head\0",
            SealDomain::Backup => b"backup\0",
            SealDomain::Message => b"message\0",
            SealDomain::HostHead => b"host head\0",
            SealDomain::UsageReport => b"usage report\0",
            SealDomain::ForwardRequest => b"forward request\0",
            SealDomain::ForwardAnswer => b"forward answer\0",
        }
    }
}

/// How a store says its chain is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainMarker {
    Public,
    /// Keyed, with the key's fingerprint.
    Keyed([u8; 32]),
}

impl ChainMarker {
    /// Why `chain` cannot read a log with this marker, if it cannot.
    pub(crate) fn mismatch(self, chain: &Chain) -> Option<crate::model::error::ChainKeyProblem> {
        use crate::model::error::ChainKeyProblem;
        match (self, chain.is_keyed()) {
            (ChainMarker::Public, false) => None,
            (ChainMarker::Keyed(f), true) if f == chain.fingerprint() => None,
            (ChainMarker::Keyed(_), true) => Some(ChainKeyProblem::Wrong),
            (ChainMarker::Keyed(_), false) => Some(ChainKeyProblem::Missing),
            (ChainMarker::Public, true) => Some(ChainKeyProblem::NotKeyed),
        }
    }

    /// The marker's stored bytes: `0`, or `1` and the key's fingerprint.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        match self {
            ChainMarker::Public => vec![0],
            ChainMarker::Keyed(f) => {
                let mut v = vec![1];
                v.extend_from_slice(&f);
                v
            }
        }
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0] => Some(ChainMarker::Public),
            [1, fingerprint @ ..] => fingerprint.try_into().ok().map(ChainMarker::Keyed),
            _ => None,
        }
    }
}

/// The position of the log's last record: what the next record must follow, and what the
/// stored head seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Head {
    pub(crate) seq: u64,
    /// Chain hash of record `seq` (zeros before the first record).
    pub(crate) hash: [u8; 32],
    /// Time of record `seq`, in microseconds (0 before the first record).
    pub(crate) at: i64,
}

impl Head {
    pub(crate) const EMPTY: Head = Head {
        seq: 0,
        hash: [0; 32],
        at: 0,
    };
}

/// A point of a log's history to hold it to: a sequence number and that record's chain
/// hash. Kept outside the store (by an operator, a monitoring system, another host), it
/// lets `open` and `check` detect a store rolled back or replaced by a whole older copy,
/// which nothing inside the store can. Written and parsed as `SEQ:HASH` (64 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witness {
    /// The sequence number of the record.
    pub seq: u64,
    /// Its chain hash (zeros for sequence number 0).
    pub hash: [u8; 32],
}

impl std::fmt::Display for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, to_hex(&self.hash))
    }
}

impl std::str::FromStr for Witness {
    type Err = Error;

    /// Parses `SEQ:HASH`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("head", "must be SEQ:HASH, the hash as 64 hex digits");
        let (seq, hash) = s.trim().split_once(':').ok_or_else(bad)?;
        let seq = seq.parse::<u64>().map_err(|_| bad())?;
        let hash = ChainKey::from_hex(hash).map_err(|_| bad())?;
        Ok(Witness { seq, hash: hash.0 })
    }
}

/// The head as a store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredHead {
    /// Format 1's anchor: a sequence number and a chain hash, sealed by nothing. Read in
    /// stores that were never written by format 2, never written.
    Legacy { seq: u64, hash: [u8; 32] },
    /// Format 2: the whole head, sealed (the seal was checked when it was decoded).
    Sealed(Head),
}

impl StoredHead {
    pub(crate) fn seq(self) -> u64 {
        match self {
            StoredHead::Legacy { seq, .. } => seq,
            StoredHead::Sealed(h) => h.seq,
        }
    }

    pub(crate) fn hash(self) -> [u8; 32] {
        match self {
            StoredHead::Legacy { hash, .. } => hash,
            StoredHead::Sealed(h) => h.hash,
        }
    }

    /// Whether `head`, reached by replaying the log, is the one stored.
    pub(crate) fn matches(self, head: Head) -> bool {
        match self {
            StoredHead::Legacy { seq, hash } => seq == head.seq && hash == head.hash,
            StoredHead::Sealed(h) => h == head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_depend_on_the_key_and_the_domain() {
        let public = Chain::new(None);
        let keyed = Chain::new(Some(&ChainKey::from_bytes([7; 32])));
        let other = Chain::new(Some(&ChainKey::from_bytes([8; 32])));
        let bytes = b"head bytes";
        assert_ne!(
            public.seal(SealDomain::Head, bytes),
            keyed.seal(SealDomain::Head, bytes)
        );
        assert_ne!(
            keyed.seal(SealDomain::Head, bytes),
            other.seal(SealDomain::Head, bytes)
        );
        assert_ne!(
            keyed.seal(SealDomain::Head, bytes),
            keyed.seal(SealDomain::Backup, bytes)
        );
        assert_ne!(keyed.seal(SealDomain::Head, bytes), keyed.hash(bytes));
        let mut running = keyed.sealer(SealDomain::Backup);
        running.update(b"head ");
        running.update(b"bytes");
        assert_eq!(
            *running.finalize().as_bytes(),
            keyed.seal(SealDomain::Backup, bytes)
        );
    }

    #[test]
    fn markers_round_trip_and_name_the_mismatch() {
        let keyed = Chain::new(Some(&ChainKey::from_bytes([7; 32])));
        let public = Chain::new(None);
        for m in [public.marker(), keyed.marker()] {
            assert_eq!(ChainMarker::from_bytes(&m.to_bytes()), Some(m));
        }
        assert_eq!(ChainMarker::from_bytes(&[1, 2, 3]), None);
        assert_eq!(keyed.marker().mismatch(&keyed), None);
        assert_eq!(
            keyed.marker().mismatch(&public),
            Some(crate::model::error::ChainKeyProblem::Missing)
        );
        assert_eq!(
            public.marker().mismatch(&keyed),
            Some(crate::model::error::ChainKeyProblem::NotKeyed)
        );
        let other = Chain::new(Some(&ChainKey::from_bytes([8; 32])));
        assert_eq!(
            keyed.marker().mismatch(&other),
            Some(crate::model::error::ChainKeyProblem::Wrong)
        );
    }
}
