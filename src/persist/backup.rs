//! Backups: the whole log as one portable, versioned, sealed file, and its import into an
//! empty store.
//!
//! An export is written by the writer thread, so it is a consistent cut of the log. An
//! import streams the file twice with bounded memory: first it checks everything (the
//! seal, every record, the chain, the access rules) and writes nothing; then it writes the
//! records in blocks, and the head that makes them count last.

pub(crate) mod header;

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use crate::chain::Chain;
use crate::chain::Head;
use crate::chain::SealDomain;
use crate::codec;
use crate::codec::block::BlockWriter;
use crate::file;
use crate::ledger;
use crate::ledger::Ledger;
use crate::log::Batch;
use crate::log::Entry;
use crate::log::Log;
use crate::log::LogRead;
use crate::model::error::ChainKeyProblem;
use crate::model::error::Error;
use crate::persist::backup::header::EXPORT_HEADER_LEN;
use crate::persist::backup::header::EXPORT_TRAILER_LEN;
use crate::persist::backup::header::ExportHeader;

/// Writes records `1..=head.seq` of `log` to `path`; returns how many.
pub(crate) fn export(log: &dyn LogRead, head: Head, chain: &Chain, path: &Path) -> Result<u64, Error> {
    file::write_atomically(path, |out| {
        let mut out = SealingWriter {
            inner: out,
            sealer: chain.sealer(SealDomain::Backup),
        };
        out.write_all(&crate::persist::backup::header::encode_export_header(
            &ExportHeader {
                version: 0,
                keyed: chain.is_keyed(),
                fingerprint: chain.fingerprint(),
                records: head.seq,
            },
        )?)?;
        let mut written = 0u64;
        'entries: for item in log.scan(1) {
            let (key, bytes) = item?;
            for (seq, record) in codec::entry_records(key, &bytes)? {
                if seq > head.seq {
                    break 'entries;
                }
                written += 1;
                if seq != written {
                    return Err(Error::corrupt(
                        written,
                        crate::model::problem::ProblemKind::Removed,
                        "the log has a gap; run check",
                    ));
                }
                let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
                out.write_all(&len.to_le_bytes())?;
                out.write_all(record)?;
            }
        }
        if written != head.seq {
            return Err(Error::corrupt(
                written + 1,
                crate::model::problem::ProblemKind::Removed,
                "the log ends early; run check",
            ));
        }
        let seal = out.sealer.finalize();
        out.inner.write_all(seal.as_bytes())?;
        Ok(written)
    })
}

struct SealingWriter<W> {
    inner: W,
    sealer: blake3::Hasher,
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sealer.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("backup", reason)
}

/// A backup file read record by record, its trailer computed on the way.
struct Reader {
    input: BufReader<File>,
    header: ExportHeader,
    hasher: blake3::Hasher,
    next: u64,
    record: Vec<u8>,
}

impl Reader {
    fn open(path: &Path, chain: &Chain) -> Result<Self, Error> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; EXPORT_HEADER_LEN];
        input
            .read_exact(&mut head)
            .map_err(|_| bad("not a keyledger backup: too short for a header"))?;
        let header = crate::persist::backup::header::decode_export_header(&head)?;
        let most = header
            .records
            .saturating_mul(4 + codec::MAX_RECORD_BYTES)
            .saturating_add((EXPORT_HEADER_LEN + EXPORT_TRAILER_LEN) as u64);
        if size > most {
            return Err(bad(format!(
                "the file is {size} bytes, more than a backup of {} records can hold",
                header.records
            )));
        }
        if header.keyed != chain.is_keyed() || (header.keyed && header.fingerprint != chain.fingerprint()) {
            return Err(Error::ChainKeyMismatch(match (header.keyed, chain.is_keyed()) {
                (true, false) => ChainKeyProblem::Missing,
                (false, true) => ChainKeyProblem::NotKeyed,
                _ => ChainKeyProblem::Wrong,
            }));
        }
        // Version 1 ended with blake3 of the file, which anyone can recompute; version 2
        // with the chain's backup seal. A keyed backup must be sealed, or rewriting its
        // header to version 1 would let anyone cut records off its end.
        let mut hasher = match header.version {
            1 if header.keyed => {
                return Err(bad(
                    "a keyed backup of format 1 has an unsealed trailer, which anyone could forge; \
                     export it again with this version",
                ));
            }
            1 => blake3::Hasher::new(),
            _ => chain.sealer(SealDomain::Backup),
        };
        hasher.update(&head);
        Ok(Reader {
            input,
            header,
            hasher,
            next: 1,
            record: Vec::new(),
        })
    }

    /// The next record, or `None` after the last.
    fn next_record(&mut self) -> Result<Option<(u64, &[u8])>, Error> {
        let seq = self.next;
        if seq > self.header.records {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| bad(format!("ends inside record {seq}")))?;
        let n = u32::from_le_bytes(len);
        if u64::from(n) > codec::MAX_RECORD_BYTES {
            return Err(bad(format!("record {seq} has a bad length")));
        }
        self.record.resize(n as usize, 0);
        self.input
            .read_exact(&mut self.record)
            .map_err(|_| bad(format!("ends inside record {seq}")))?;
        self.hasher.update(&len);
        self.hasher.update(&self.record);
        self.next += 1;
        Ok(Some((seq, &self.record)))
    }

    /// After the last record: the trailer must follow, and nothing after it.
    fn finish(mut self) -> Result<[u8; 32], Error> {
        let mut trailer = [0u8; EXPORT_TRAILER_LEN];
        self.input
            .read_exact(&mut trailer)
            .map_err(|_| bad("truncated: the trailer is missing"))?;
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(bad("bytes after the trailer"));
        }
        let expected = self.hasher.finalize();
        if expected.as_bytes() != &trailer {
            return Err(bad(if self.header.version >= 2 && self.header.keyed {
                "the seal does not match: the file is damaged, truncated or forged"
            } else {
                "the checksum does not match: the file is damaged or truncated"
            }));
        }
        Ok(trailer)
    }
}

/// What checking a backup found: the head it leads to and its trailer.
pub(crate) struct Checked {
    pub(crate) head: Head,
    trailer: [u8; 32],
}

/// Reads and checks a whole backup, writing nothing: the trailer, every record, the
/// chain and the access rules.
pub(crate) fn check(path: &Path, chain: &Chain) -> Result<Checked, Error> {
    let mut reader = Reader::open(path, chain)?;
    let ledger = Ledger::new(chain.clone());
    let now = ledger::now_micros();
    // A record that does not fit is reported only once the trailer is known to be good:
    // a damaged file is a damaged file, wherever the damage is.
    let mut refused = None;
    {
        let mut state = ledger.write_state();
        while let Some((seq, record)) = reader.next_record()? {
            if refused.is_none()
                && let Err(e) = ledger.accept_record(&mut state, seq, record, now)
            {
                refused = Some(e);
            }
        }
    }
    let trailer = reader.finish()?;
    if let Some(e) = refused {
        return Err(e);
    }
    Ok(Checked {
        head: ledger.head(),
        trailer,
    })
}

/// Blocks per engine write when importing.
const IMPORT_WRITE_BLOCKS: usize = 256;

/// Writes a backup that [`check`] passed into `log`, which holds no record. The records
/// count only once the last write sets the head; until then the head stays at `genesis`.
pub(crate) fn write(
    log: &mut dyn Log,
    chain: &Chain,
    path: &Path,
    checked: &Checked,
    genesis: &[u8],
) -> Result<u64, Error> {
    let mut reader = Reader::open(path, chain)?;
    let mut pending: Vec<Entry> = Vec::new();
    let mut block: Option<BlockWriter> = None;
    while let Some((seq, record)) = reader.next_record()? {
        if block.as_ref().is_some_and(|b| !b.fits(record.len())) {
            pending.extend(block.take().map(BlockWriter::finish));
        }
        block.get_or_insert_with(|| BlockWriter::new(seq)).push(record);
        if pending.len() >= IMPORT_WRITE_BLOCKS {
            log.write(&Batch {
                discard_from: None,
                entries: &std::mem::take(&mut pending),
                head: genesis,
            })?;
        }
    }
    if reader.finish()? != checked.trailer {
        return Err(bad("the file changed while it was imported"));
    }
    pending.extend(block.map(BlockWriter::finish));
    log.write(&Batch {
        discard_from: None,
        entries: &pending,
        head: &codec::encode_head(checked.head, chain)?,
    })?;
    log.sync()?;
    Ok(checked.head.seq)
}
