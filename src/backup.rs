//! Backups: the whole log as one portable, versioned, checksummed file, and its import
//! into an empty store.
//!
//! An export is written by the writer thread, so it is a consistent cut of the log. An
//! import reads and checks the whole file (checksum, every record, the chain, the access
//! rules) before it writes anything, and then writes it in one atomic batch.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::Error;
use crate::codec::{self, ExportHeader};
use crate::log::{Anchor, Batch, Chain, Log};
use crate::projection::{Head, Projection};

/// Largest export file read into memory (the records are checked in full before any is
/// written).
const MAX_EXPORT_BYTES: u64 = 16 << 30;

/// Writes records `1..=head.seq` of `log` to `path`; returns how many.
pub(crate) fn export(log: &dyn Log, head: Head, chain: &Chain, path: &Path) -> Result<u64, Error> {
    let tmp = path.with_extension("partial");
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = HashingWriter {
            inner: BufWriter::new(file),
            hasher: blake3::Hasher::new(),
        };
        out.write_all(&codec::encode_export_header(&ExportHeader {
            keyed: chain.is_keyed(),
            fingerprint: chain.fingerprint(),
            records: head.seq,
        })?)?;
        let mut written = 0u64;
        for item in log.scan(1) {
            let (seq, bytes) = item?;
            if seq > head.seq {
                break;
            }
            written += 1;
            if seq != written {
                return Err(Error::corrupt(written, "the log has a gap; run check"));
            }
            let len = u32::try_from(bytes.len()).map_err(|_| Error::corrupt(seq, "record too large"))?;
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&bytes)?;
        }
        if written != head.seq {
            return Err(Error::corrupt(written + 1, "the log ends early; run check"));
        }
        let checksum = out.hasher.finalize();
        out.inner.write_all(checksum.as_bytes())?;
        let file = out.inner.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::invalid("backup", reason)
}

/// Reads and checks a backup completely; imports it into `log`, which must be empty.
pub(crate) fn import(log: &mut dyn Log, chain: &Chain, path: &Path) -> Result<u64, Error> {
    if log.anchor()?.is_some() || log.scan(0).next().is_some() {
        return Err(Error::invalid(
            "store",
            "import needs an empty store; this one has records",
        ));
    }
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > MAX_EXPORT_BYTES {
        return Err(bad(format!(
            "{size} bytes is more than the {MAX_EXPORT_BYTES} this build reads"
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_EXPORT_BYTES).read_to_end(&mut bytes)?;
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or_else(|| bad("truncated: shorter than its checksum"))?;
    let (body, checksum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(bad("checksum does not match: the file is damaged or truncated"));
    }
    let (header, mut rest) = codec::decode_export_header(body)?;
    if header.keyed != chain.is_keyed() || header.fingerprint != chain.fingerprint() {
        return Err(bad(if header.keyed {
            "the backup's chain is keyed with another key than the one given (or none was given)"
        } else {
            "the backup's chain is not keyed, but a chain key was given"
        }));
    }
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut proj = Projection::new();
    for seq in 1..=header.records {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad(format!("ends inside record {seq}")))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len as u64 > codec::MAX_RECORD_BYTES || len > tail.len() {
            return Err(bad(format!("record {seq} has a bad length")));
        }
        let (record_bytes, after) = tail.split_at(len);
        let record = codec::decode_record(record_bytes, seq)?;
        if record.seq != seq {
            return Err(Error::corrupt(
                seq,
                format!("backup holds record {} at {seq}", record.seq),
            ));
        }
        proj.check(&record)?;
        proj.apply(&record, chain.hash(record_bytes))?;
        records.push((seq, record_bytes.to_vec()));
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the last record", rest.len())));
    }
    let head = proj.head();
    if head.seq > 0 {
        let anchor = Some(Anchor {
            seq: head.seq,
            hash: head.hash,
        });
        log.append(&Batch {
            discard_from: None,
            records: &records,
            anchor,
        })?;
        log.flush()?;
    }
    Ok(head.seq)
}
