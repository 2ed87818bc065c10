//! The header of an export (backup) file: magic, version, the chain's fingerprint and the
//! record count. It owns only these bytes; the file's records and trailer are the
//! backup's.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::codec::STORE_FORMAT;
use crate::codec::primitives::magic_version;
use crate::codec::primitives::options;
use crate::model::error::Error;

/// The first bytes of every export file.
const EXPORT_MAGIC: [u8; 8] = *b"KLEDGER\x00";
/// The export file format this build writes. Version 1 (an unsealed blake3 trailer) is
/// still read.
const EXPORT_VERSION: u16 = 2;
/// Length of an export file's header.
pub(crate) const EXPORT_HEADER_LEN: usize = 8 + 2 + 4 + 1 + 32 + 8;
/// Length of an export file's trailer.
pub(crate) const EXPORT_TRAILER_LEN: usize = 32;

/// What an export file says about itself.
pub(crate) struct ExportHeader {
    /// 1: the trailer is blake3 of the file before it; 2: it is the chain's backup seal.
    pub(crate) version: u16,
    pub(crate) keyed: bool,
    pub(crate) fingerprint: [u8; 32],
    pub(crate) records: u64,
}

#[derive(Serialize, Deserialize)]
struct ExportHeaderV1 {
    magic: [u8; 8],
    version: u16,
    /// Ignored since version 2: records in a backup are records, whatever the store's
    /// layout.
    store_format: u32,
    keyed: u8,
    fingerprint: [u8; 32],
    records: u64,
}

/// Encodes an export file's header, in the current version.
pub(crate) fn encode_export_header(h: &ExportHeader) -> Result<Vec<u8>, Error> {
    let wire = ExportHeaderV1 {
        magic: EXPORT_MAGIC,
        version: EXPORT_VERSION,
        store_format: STORE_FORMAT,
        keyed: u8::from(h.keyed),
        fingerprint: h.fingerprint,
        records: h.records,
    };
    options(EXPORT_HEADER_LEN as u64)
        .serialize(&wire)
        .map_err(|e| Error::invalid("backup", e.to_string()))
}

/// Decodes an export file's header.
pub(crate) fn decode_export_header(bytes: &[u8; EXPORT_HEADER_LEN]) -> Result<ExportHeader, Error> {
    let bad = |reason: String| Error::invalid("backup", reason);
    let Some(version) = magic_version(bytes, &EXPORT_MAGIC, 1..=EXPORT_VERSION)? else {
        return Err(bad("not a keyledger backup".into()));
    };
    let wire: ExportHeaderV1 = options(EXPORT_HEADER_LEN as u64)
        .deserialize(bytes)
        .map_err(|e| bad(format!("bad header: {e}")))?;
    if version == 1 && wire.store_format != 1 {
        return Err(Error::UnsupportedVersion {
            found: wire.store_format,
            supported: 1,
        });
    }
    let keyed = match wire.keyed {
        0 => false,
        1 => true,
        other => return Err(bad(format!("bad keyed flag {other}"))),
    };
    Ok(ExportHeader {
        version,
        keyed,
        fingerprint: wire.fingerprint,
        records: wire.records,
    })
}
