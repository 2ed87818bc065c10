//! Writing a whole file so that a crash leaves either the old file or the new one, never a
//! part: write to a temporary name, fsync, rename, fsync the directory.
//!
//! A large file (a snapshot, a backup) is synced every few MiB as it is written. On a
//! journaling file system one `fdatasync` may have to write out every dirty page of the
//! file system first; left to pile up, a snapshot's hundred MiB would stall the writer's
//! next group commit behind it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::Error;

/// Writes `path` through `fill`, atomically and durably; on failure removes the partial
/// file and leaves any old `path` as it was.
pub(crate) fn write_atomically<T>(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<Paced>) -> Result<T, Error>,
) -> Result<T, Error> {
    let tmp = path.with_extension("partial");
    let result = (|| {
        let mut out = BufWriter::new(Paced {
            file: File::create(&tmp)?,
            unsynced: 0,
        });
        let value = fill(&mut out)?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| Error::Io(e.into_error()))?.file;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Bytes written between syncs of a large file.
const SYNC_EVERY: usize = 4 << 20;

/// A file that syncs its data every [`SYNC_EVERY`] bytes written.
pub(crate) struct Paced {
    file: File,
    unsynced: usize,
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = SYNC_EVERY - self.unsynced;
        let n = self.file.write(&buf[..buf.len().min(room)])?;
        self.unsynced += n;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Makes a rename or a new file in `path`'s directory durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}
