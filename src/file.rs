//! How keyledger opens files: every file it writes, every file it reads from a store's
//! directory, and the secret files it is pointed at go through here, so that what someone
//! plants in a directory decides nothing.
//!
//! A write goes to a new file of an unpredictable name, created `O_CREAT|O_EXCL|O_NOFOLLOW`
//! at mode 0600 whatever the umask, is synced, then renamed over its target (a rename
//! replaces a link, never writes through it) or linked to a name that must not exist, and
//! the directory is synced: a crash leaves the old file or the new one, never a part. A
//! read from a store's directory never follows a link and never blocks: anything but a
//! regular file there is [`Error::UnsafeFile`]. Nothing here knows what a file holds.
//!
//! A large file (a snapshot, a backup) is synced every few MiB as it is written. On a
//! journaling file system one `fdatasync` may have to write out every dirty page of the
//! file system first; left to pile up, a snapshot's hundred MiB would stall the writer's
//! next group commit behind it.

use std::fs::{File, FileType, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::model::error::Error;
use crate::model::error::FileProblem;

/// The suffix of a file being written; see [`remove_leftovers`].
const TEMP_SUFFIX: &str = ".partial";

/// Writes `path` through `fill`, atomically and durably, replacing any file (or link) at
/// `path`; on failure removes the new file and leaves any old `path` as it was.
pub(crate) fn write_atomically<T>(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<Paced>) -> Result<T, Error>,
) -> Result<T, Error> {
    write(path, true, fill)
}

/// As [`write_atomically`], but never over an existing name: a file, a directory or a link
/// (dangling or not) at `path` is [`Error::Io`] of kind `AlreadyExists` and is left alone.
pub(crate) fn write_new<T>(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<Paced>) -> Result<T, Error>,
) -> Result<T, Error> {
    write(path, false, fill)
}

fn write<T>(
    path: &Path,
    replace: bool,
    fill: impl FnOnce(&mut BufWriter<Paced>) -> Result<T, Error>,
) -> Result<T, Error> {
    let tmp = temp_name(path)?;
    let file = private_options().write(true).create_new(true).open(&tmp)?;
    let result = (|| {
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let mut out = BufWriter::new(Paced { file, unsynced: 0 });
        let value = fill(&mut out)?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| Error::Io(e.into_error()))?.file;
        file.sync_all()?;
        if replace {
            std::fs::rename(&tmp, path)?;
        } else {
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)?;
        }
        sync_dir(path)?;
        Ok(value)
    })();
    if result.is_err() {
        // An unlink never follows a link; the name is this call's own.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `<dir>/<name>.<16 random hex digits>.partial`: a name no one can plant in advance.
fn temp_name(path: &Path) -> Result<PathBuf, Error> {
    use rand::TryRngCore;
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", format!("{} names no file", path.display())))?;
    let nonce = rand::rngs::OsRng
        .try_next_u64()
        .map_err(|e| Error::Entropy(e.to_string()))?;
    let mut tmp = name.to_os_string();
    tmp.push(format!(".{nonce:016x}{TEMP_SUFFIX}"));
    Ok(path.with_file_name(tmp))
}

/// Removes from `dir` what writes of the files named `names` left when a process died
/// (`<name>.*.partial`), without following a link. A file that cannot be removed stays:
/// it is never read.
pub(crate) fn remove_leftovers(dir: &Path, names: &[&str]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = names
            .iter()
            .any(|n| name.strip_prefix(n).is_some_and(|rest| rest.starts_with('.')));
        if ours && name.ends_with(TEMP_SUFFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
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

/// The whole of the regular file `path` in a store's directory, or `None` if there is
/// none. Opened without following a link and without blocking, and checked before a byte
/// is read, so a FIFO, a device or a link to one is refused, never waited on.
///
/// # Errors
/// [`Error::UnsafeFile`] for a link, anything but a regular file, or a file larger than
/// `limit` (no file of its format can be, so it was planted: a sparse file of terabytes
/// would otherwise abort the process); [`Error::Io`].
pub(crate) fn read_store_file(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, Error> {
    let file = match private_options().read(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refused_open(path, e)),
    };
    let meta = file.metadata()?;
    regular(path, meta.file_type())?;
    let too_large = |size| Error::UnsafeFile {
        path: path.to_path_buf(),
        problem: FileProblem::TooLarge { size, limit },
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    // Within the limit, but perhaps more than this machine can hold: an error, not an
    // abort of the process.
    bytes
        .try_reserve_exact(usize::try_from(meta.len()).unwrap_or(usize::MAX))
        .map_err(|_| Error::Io(std::io::ErrorKind::OutOfMemory.into()))?;
    // A file that grows while it is read stops at the limit all the same.
    (&file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Opens (creating it, mode 0600) the store's lock file `path`, which must be a regular
/// file: not a link, and not a FIFO that opening would wait on.
///
/// # Errors
/// [`Error::UnsafeFile`]; [`Error::Io`].
pub(crate) fn open_lock(path: &Path) -> Result<File, Error> {
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| refused_open(path, e))?;
    regular(path, file.metadata()?.file_type())?;
    Ok(file)
}

/// Whether `path` is a directory, looking at the name itself: `false` if nothing is
/// there.
///
/// # Errors
/// [`Error::UnsafeFile`] for a link (even to a directory) or any other kind of file;
/// [`Error::Io`].
pub(crate) fn is_real_dir(path: &Path) -> Result<bool, Error> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(meta) => Err(unsafe_file(path, meta.file_type(), "a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Io(e)),
    }
}

/// Refuses a directory tree at `path` that holds anything but directories and regular
/// files (a link, a FIFO, a device, a socket), looking at each name itself; nothing at
/// `path` is fine.
///
/// # Errors
/// [`Error::UnsafeFile`] naming the first such file, or `path` itself if it is not a
/// directory; [`Error::Io`].
pub(crate) fn check_tree(path: &Path) -> Result<(), Error> {
    if !is_real_dir(path)? {
        return Ok(());
    }
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else {
                regular(&entry.path(), kind)?;
            }
        }
    }
    Ok(())
}

/// Creates directory `path` (and any missing parent, as `mkdir -p` would) with mode 0700
/// whatever the umask, and makes it durable in its parent.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn create_private_dir(path: &Path) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)?;
    // The mode again, on the directory just made (not on whatever a name swapped in
    // meanwhile would point to): `mkdir`'s mode is masked by the umask.
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::DIRECTORY | OFlags::NOFOLLOW).bits().cast_signed())
            .open(path)?;
        dir.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    sync_dir(path)
}

/// Refuses a store directory that users other than its owner's group may write: whoever
/// can write it can swap `log/` or plant files between keyledger's checks and their use.
///
/// # Errors
/// [`Error::UnsafeFile`] with [`FileProblem::WritableByOthers`]; [`Error::Io`].
pub(crate) fn check_store_dir(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path)?.permissions()) & 0o7777;
        if mode & 0o002 != 0 {
            return Err(Error::UnsafeFile {
                path: path.to_path_buf(),
                problem: FileProblem::WritableByOthers { mode },
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Most bytes read from a secret file: its first line is all that counts.
const MAX_SECRET_FILE_BYTES: u64 = 1024;

/// The first line of the secret file `path` (a chain key, an admin key), trimmed. The
/// operator named it, so a link is followed; but it must be a regular file or a pipe
/// (`<(command)`), no user but its owner may read it, and its owner must be this user or
/// root.
///
/// # Errors
/// [`Error::UnsafeFile`]: [`FileProblem::ReadableByOthers`] (mode `& 0o044`),
/// [`FileProblem::OwnedByOther`], or another kind of file; [`Error::Io`] if it cannot be
/// read.
///
/// # Example
/// ```no_run
/// let admin_key = keyledger::read_secret_file("/etc/keyledger/admin.key")?;
/// # Ok::<(), keyledger::Error>(())
/// ```
pub fn read_secret_file(path: impl AsRef<Path>) -> Result<Zeroizing<String>, Error> {
    let path = path.as_ref();
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    #[cfg(unix)]
    let pipe = std::os::unix::fs::FileTypeExt::is_fifo(&kind);
    #[cfg(not(unix))]
    let pipe = false;
    if !pipe {
        regular(path, kind)?;
    }
    #[cfg(unix)]
    {
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if mode & 0o044 != 0 {
            return Err(Error::UnsafeFile {
                path: path.to_path_buf(),
                problem: FileProblem::ReadableByOthers { mode },
            });
        }
        // Its owner could change it: only this user or root may own a secret it trusts.
        let owner = std::os::unix::fs::MetadataExt::uid(&meta);
        if owner != 0 && owner != rustix::process::geteuid().as_raw() {
            return Err(Error::UnsafeFile {
                path: path.to_path_buf(),
                problem: FileProblem::OwnedByOther { uid: owner },
            });
        }
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_SECRET_FILE_BYTES).read_to_string(&mut text)?;
    Ok(Zeroizing::new(
        text.lines().next().unwrap_or_default().trim().to_owned(),
    ))
}

/// Options that create at mode 0600, never follow a link in the last component, and never
/// wait for the other end of a FIFO or for a device.
pub(crate) fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits().cast_signed());
    }
    options
}

/// Why opening `path` failed: a link where none is followed, or the system's error.
fn refused_open(path: &Path, e: std::io::Error) -> Error {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => unsafe_file(path, meta.file_type(), "a regular file"),
        _ => Error::Io(e),
    }
}

/// Refuses anything but a regular file.
fn regular(path: &Path, kind: FileType) -> Result<(), Error> {
    if kind.is_file() {
        Ok(())
    } else {
        Err(unsafe_file(path, kind, "a regular file"))
    }
}

fn unsafe_file(path: &Path, kind: FileType, expected: &'static str) -> Error {
    let problem = if kind.is_symlink() {
        FileProblem::Symlink
    } else {
        FileProblem::WrongKind {
            expected,
            found: kind_name(kind),
        }
    };
    Error::UnsafeFile {
        path: path.to_path_buf(),
        problem,
    }
}

fn kind_name(kind: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a file of an unknown kind"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
        write_atomically(path, |out| Ok(out.write_all(bytes)?))
    }

    #[test]
    fn a_write_replaces_a_link_at_its_target_and_leaves_what_it_pointed_to() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "kept").unwrap();
        let target = dir.path().join("out");
        symlink(&victim, &target).unwrap();
        write(&target, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "kept");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary left"
        );
    }

    #[test]
    fn a_new_file_is_never_written_over_an_existing_name_or_a_dangling_link() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing");
        std::fs::write(&existing, "kept").unwrap();
        let dangling = dir.path().join("dangling");
        let elsewhere = dir.path().join("elsewhere");
        symlink(&elsewhere, &dangling).unwrap();
        for path in [&existing, &dangling] {
            let refused = write_new(path, |out| Ok(out.write_all(b"new")?));
            assert!(
                matches!(&refused, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists),
                "{refused:?}"
            );
        }
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "kept");
        assert!(!elsewhere.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary left"
        );
    }

    #[test]
    fn only_leftovers_of_the_named_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "snapshot.0123456789abcdef.partial",
            "snapshot.partial",
            "snapshotx.partial",
            "last-used",
            "other.1.partial",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        remove_leftovers(dir.path(), &["snapshot", "last-used"]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["last-used", "other.1.partial", "snapshotx.partial"]);
    }

    #[test]
    fn a_secret_file_its_group_or_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, " secret \nsecond line\n").unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(
                read_secret_file(&path),
                Err(Error::UnsafeFile {
                    problem: FileProblem::ReadableByOthers { mode: m },
                    ..
                }) if m == mode
            ));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().as_str(), "secret");
    }

    #[test]
    fn a_store_file_that_is_a_link_or_a_directory_is_refused_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_store_file(&dir.path().join("missing"), 1 << 20)
                .unwrap()
                .is_none()
        );
        let link = dir.path().join("link");
        symlink("/dev/zero", &link).unwrap();
        assert!(matches!(
            read_store_file(&link, 1 << 20),
            Err(Error::UnsafeFile {
                problem: FileProblem::Symlink,
                ..
            })
        ));
        assert!(matches!(
            read_store_file(dir.path(), 1 << 20),
            Err(Error::UnsafeFile {
                problem: FileProblem::WrongKind {
                    found: "a directory",
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn a_store_file_larger_than_its_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_store_file(&path, 10).unwrap().unwrap(), b"0123456789");
        assert!(matches!(
            read_store_file(&path, 9),
            Err(Error::UnsafeFile {
                problem: FileProblem::TooLarge { size: 10, limit: 9 },
                ..
            })
        ));
    }
}
