//! A quiet disk before each phase that writes: `sync`, then a bounded wait until the block
//! device under the benchmark's directory has nothing in flight and has written (or
//! discarded) nothing for a second, so that no phase is measured on the previous one's
//! background work (sled's flushes and segment cleaning, SQLite's checkpoints, the
//! kernel's writeback, the discards of deleted files on a `discard` mount).
//!
//! Shared by `benches/peers.rs` and `benches/scale.rs`; `-- --quiet-timeout SECS` bounds
//! the wait (60 s by default).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long the device must stay idle.
const IDLE: Duration = Duration::from_secs(1);
/// How often /proc/diskstats is read while waiting.
const POLL: Duration = Duration::from_millis(100);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The block device a benchmark writes to, how long to wait for it, and what each wait
/// found.
pub(crate) struct Disk {
    /// Its name in /proc/diskstats (`vda`, `nvme0n1`); `None` when the directory is on
    /// no block device of its own (tmpfs, overlayfs, btrfs).
    device: Option<String>,
    timeout: Duration,
    /// Each phase's wait, by the phase's name.
    waits: serde_json::Map<String, Value>,
}

/// One reading of the device's counters.
#[derive(Clone, Copy)]
struct Counters {
    in_flight: u64,
    sectors_written: u64,
    sectors_discarded: u64,
}

impl Disk {
    /// The whole disk holding `dir` (a partition's parent), found through `dir`'s device
    /// number and /sys/dev/block; the wait bounded by `--quiet-timeout SECS`.
    pub(crate) fn of(dir: &Path) -> Disk {
        let args: Vec<String> = std::env::args().collect();
        let timeout = args
            .iter()
            .position(|a| a == "--quiet-timeout")
            .and_then(|i| args.get(i + 1))
            .map_or(DEFAULT_TIMEOUT, |s| {
                Duration::from_secs_f64(s.parse().expect("--quiet-timeout takes seconds"))
            });
        Disk {
            device: device_of(dir),
            timeout,
            waits: serde_json::Map::new(),
        }
    }

    /// Before `phase`: syncs every file system, then waits until the device has been
    /// idle for a second (or the timeout passes), and notes how long each took and
    /// whether it got there.
    pub(crate) fn settle(&mut self, phase: &str) {
        let wait = self.wait();
        self.waits.insert(phase.to_owned(), wait);
    }

    /// The device, the timeout, and each phase's wait: `sync_s`, `waited_s` (after the
    /// sync) and `quiet` (whether the device was idle for a second before the timeout;
    /// null when there is no device to watch).
    pub(crate) fn report(&self) -> Value {
        json!({
            "device": self.device,
            "idle_needed_s": IDLE.as_secs_f64(),
            "timeout_s": self.timeout.as_secs_f64(),
            "before": self.waits,
        })
    }

    fn wait(&self) -> Value {
        let started = Instant::now();
        rustix::fs::sync();
        let synced = started.elapsed();
        let Some(device) = &self.device else {
            return json!({ "sync_s": synced.as_secs_f64(), "waited_s": 0.0, "quiet": null });
        };
        let waiting = Instant::now();
        let mut last = counters(device);
        let mut idle_since = Instant::now();
        let quiet = loop {
            if idle_since.elapsed() >= IDLE {
                break true;
            }
            if waiting.elapsed() >= self.timeout {
                break false;
            }
            std::thread::sleep(POLL);
            let now = counters(device);
            let written = |c: Option<Counters>| c.map(|c| (c.sectors_written, c.sectors_discarded));
            let busy = now.is_none_or(|c| c.in_flight > 0) || written(now) != written(last);
            if busy {
                idle_since = Instant::now();
            }
            last = now;
        };
        let waited = waiting.elapsed();
        if !quiet {
            eprintln!(
                "  disk {device} still busy after {:.0} s; going on",
                waited.as_secs_f64()
            );
        }
        json!({ "sync_s": synced.as_secs_f64(), "waited_s": waited.as_secs_f64(), "quiet": quiet })
    }
}

/// The name of the whole disk under `dir`, if it is on one.
fn device_of(dir: &Path) -> Option<String> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    // Major 0: an anonymous device (tmpfs, overlayfs, a btrfs subvolume).
    if major == 0 {
        return None;
    }
    let node = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let disk = if node.join("partition").exists() {
        node.parent()?
    } else {
        &node
    };
    Some(disk.file_name()?.to_str()?.to_owned())
}

/// The device's line of /proc/diskstats: in flight is field 12, sectors written field 10,
/// sectors discarded field 17 (kernels before 4.18 have none: 0).
fn counters(device: &str) -> Option<Counters> {
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let fields: Vec<u64> = stats.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.nth(2) == Some(device)).then(|| words.map(|w| w.parse().unwrap_or(0)).collect())
    })?;
    // After major, minor and name: reads (4 fields), writes (4), in flight, ...
    Some(Counters {
        sectors_written: *fields.get(6)?,
        in_flight: *fields.get(8)?,
        sectors_discarded: fields.get(13).copied().unwrap_or(0),
    })
}
