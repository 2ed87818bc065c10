//! The store's metadata and the checks against it: reading and initializing the layout
//! and chain markers, the stored (sealed) head, and whether replay reaches that head or a
//! witness.
//!
//! It reads and writes only metadata and the genesis head; it never applies a record.

use crate::chain::Chain;
use crate::chain::ChainMarker;
use crate::chain::Head;
use crate::chain::StoredHead;
use crate::chain::Witness;
use crate::codec;
use crate::codec::STORE_FORMAT;
use crate::log::Batch;
use crate::log::Log;
use crate::log::LogRead;
use crate::log::MetaKey;
use crate::model::error::Error;
use crate::model::problem::ProblemKind;

/// The store's layout and chain, as its metadata says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogInfo {
    pub(crate) format: u32,
    pub(crate) marker: ChainMarker,
}

/// Reads a store's metadata without changing anything; `None` for a log that was never
/// initialized.
pub(crate) fn read_info(log: &dyn LogRead) -> Result<Option<LogInfo>, Error> {
    let meta = |what: &str| Error::corrupt(0, ProblemKind::Invalid, what.to_owned());
    let Some(format) = log.meta(MetaKey::Format)? else {
        // Initialization writes the head first: a log with nothing but a genesis head
        // was cut short while it was created.
        let bare = log.scan(0).next().is_none();
        return match log.head()? {
            None if bare => Ok(None),
            Some(h) if bare && is_genesis(&h) => Ok(None),
            _ => Err(meta("the log has records but no format marker")),
        };
    };
    let format = <[u8; 4]>::try_from(format.as_slice())
        .map(u32::from_le_bytes)
        .map_err(|_| meta("the store's format marker is not 4 bytes"))?;
    if format == 0 || format > STORE_FORMAT {
        return Err(Error::UnsupportedVersion {
            found: format,
            supported: STORE_FORMAT,
        });
    }
    let marker = log
        .meta(MetaKey::Chain)?
        .ok_or_else(|| meta("the chain marker is missing"))?;
    let marker = ChainMarker::from_bytes(&marker).ok_or_else(|| meta("the chain marker is malformed"))?;
    Ok(Some(LogInfo { format, marker }))
}

/// Whether `bytes` are a sealed head at sequence number 0 (its seal unchecked: the chain
/// is not known yet): what creating a store writes first.
fn is_genesis(bytes: &[u8]) -> bool {
    codec::sealed_head_seq(bytes) == Some(0)
}

/// Makes an empty log a store in the current format, chained with `chain`: the sealed
/// genesis head first, then the markers, then a sync.
pub(crate) fn initialize(log: &mut dyn Log, chain: &Chain) -> Result<LogInfo, Error> {
    log.write(&Batch {
        discard_from: None,
        entries: &[],
        head: &codec::encode_head(Head::EMPTY, chain)?,
    })?;
    log.set_meta(MetaKey::Format, &STORE_FORMAT.to_le_bytes())?;
    log.set_meta(MetaKey::Chain, &chain.marker().to_bytes())?;
    log.sync()?;
    Ok(LogInfo {
        format: STORE_FORMAT,
        marker: chain.marker(),
    })
}

/// Checks that `chain` fits a store with this metadata.
pub(crate) fn chain_fits(info: LogInfo, chain: &Chain) -> Result<(), Error> {
    match info.marker.mismatch(chain) {
        Some(problem) => Err(Error::ChainKeyMismatch(problem)),
        None => Ok(()),
    }
}

/// The stored head, its seal checked; `None` only in a format 1 store that has no
/// records yet.
pub(crate) fn stored_head(
    log: &dyn LogRead,
    chain: &Chain,
    info: LogInfo,
) -> Result<Option<StoredHead>, Error> {
    if info.format == 1
        && let Some((key, last)) = log.floor(u64::MAX)?
        && codec::is_block(&last)
    {
        // The writer syncs format 2 before it writes its first block, and blocks only
        // follow format 1 entries: a format 1 store whose last entry is a block had its
        // marker rolled back, to pass off an unsealed anchor.
        return Err(Error::corrupt(
            key,
            ProblemKind::Head,
            "a format 1 store holds format 2 blocks: its format marker was rolled back",
        ));
    }
    match log.head()? {
        Some(bytes) => codec::decode_head(&bytes, chain, info.format == 1).map(Some),
        None if info.format == 1 => Ok(None),
        None => Err(Error::corrupt(
            0,
            ProblemKind::Head,
            "the head is missing: the log was wiped or truncated",
        )),
    }
}

/// Whether the head reached by replay is the stored one; names the damage if not.
pub(crate) fn reaches_head(stored: Option<StoredHead>, head: Head) -> Result<(), Error> {
    let stored_seq = stored.map_or(0, StoredHead::seq);
    match stored {
        None if head.seq == 0 => Ok(()),
        None => Err(Error::corrupt(
            0,
            ProblemKind::Head,
            "the log has records but no head",
        )),
        Some(_) if stored_seq > head.seq => Err(Error::corrupt(
            head.seq + 1,
            ProblemKind::Removed,
            format!(
                "records {}..={stored_seq} are missing: the log ends before its head",
                head.seq + 1
            ),
        )),
        Some(_) if stored_seq < head.seq => Err(Error::corrupt(
            stored_seq + 1,
            ProblemKind::Inserted,
            format!(
                "records {}..={} follow the head: never acknowledged, or inserted",
                stored_seq + 1,
                head.seq
            ),
        )),
        Some(s) if !s.matches(head) => Err(Error::corrupt(
            head.seq,
            ProblemKind::Edited,
            "the last record does not match the head: it was edited",
        )),
        Some(_) => Ok(()),
    }
}

/// The chain hash of record `seq`, read from the log; `None` if there is no such record.
pub(crate) fn record_hash(log: &dyn LogRead, chain: &Chain, seq: u64) -> Result<Option<[u8; 32]>, Error> {
    let Some((key, bytes)) = log.floor(seq)? else {
        return Ok(None);
    };
    Ok(codec::entry_records(key, &bytes)?
        .into_iter()
        .find(|(s, _)| *s == seq)
        .map(|(_, record)| chain.hash(record)))
}

/// Whether the log, whose state reached `head`, reaches or passes the witness: record
/// `witness.seq` exists and has the witness's chain hash. The chain links every later
/// record to it, so a log that passes was not rolled back past, or forked from, it.
pub(crate) fn reaches_witness(
    log: &dyn LogRead,
    chain: &Chain,
    head: Head,
    witness: Witness,
) -> Result<(), Error> {
    let mismatch = |reason: String| Error::WitnessMismatch {
        expected_seq: witness.seq,
        reason,
    };
    if head.seq < witness.seq {
        return Err(mismatch(format!(
            "the log ends at record {}: it was rolled back or replaced",
            head.seq
        )));
    }
    let hash = match witness.seq {
        0 => Some([0; 32]),
        seq if seq == head.seq => Some(head.hash),
        seq => record_hash(log, chain, seq)?,
    };
    if hash != Some(witness.hash) {
        return Err(mismatch(format!(
            "record {} is not the one the witness names: the log was forked or replaced",
            witness.seq
        )));
    }
    Ok(())
}
