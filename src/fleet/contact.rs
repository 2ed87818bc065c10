//! When the fleet last heard this host, kept in its replica (`meta/contact`, version 1; see
//! `docs/design.md`, "Format versions"): the send time of its last announcement the server
//! acknowledged, on the clocks that outlive the process, the limit it announced then, and
//! how many hosts shared rate limits and credits. A host started while the shared log is out
//! of reach counts its staleness and its fence from it (so a restart cannot make it fresher
//! than it is) and keeps to that share. Decoding is total; a record of another version or
//! size is no record.

use std::time::{Duration, SystemTime};

use crate::clock::{CLOCK_TICK, boot_clock, micros_of, monotonic_micros};

/// What the record starts with, then its version.
const MAGIC: [u8; 8] = *b"KLHEARD\0";
pub(crate) const VERSION: u16 = 1;
/// Magic, version u16, system time i64, boot id, boot clock u64, limit u64, hosts u16.
const LEN: usize = 8 + 2 + 8 + 16 + 8 + 8 + 2;

/// See the module doc. Taken at each acknowledged announcement; never later than the
/// moment it stands for (the readings are moved back by the fence clock's tick).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastHeard {
    /// The system clock then: microseconds since the Unix epoch.
    pub(crate) wall: i64,
    /// The boot it happened in (zeros when unknown) and `CLOCK_BOOTTIME` then, in
    /// microseconds: within the same boot, the elapsed time does not depend on the system
    /// clock.
    pub(crate) boot_id: [u8; 16],
    pub(crate) boot: u64,
    /// The limit this host announced then, in microseconds: how long after its last
    /// acknowledged announcement it rejects every key, and what the others count it out by.
    pub(crate) limit: u64,
    /// How many hosts shared each key's rate limits and credits, this one included.
    pub(crate) hosts: u16,
}

impl LastHeard {
    /// The announcement sent at `sent` (on [`monotonic_micros`]) was acknowledged, by a host
    /// announcing `limit` and sharing with `hosts` hosts.
    pub(crate) fn sent_at(sent: u64, limit: Duration, hosts: usize) -> Self {
        let tick = u64::try_from(CLOCK_TICK.as_micros()).unwrap_or(0);
        let ago = monotonic_micros().saturating_sub(sent).saturating_add(tick);
        let (boot_id, boot) = match boot_clock() {
            Some((id, now)) => (id, now.saturating_sub(ago)),
            None => ([0; 16], 0),
        };
        LastHeard {
            wall: micros_of(SystemTime::now()).saturating_sub(i64::try_from(ago).unwrap_or(i64::MAX)),
            boot_id,
            boot,
            limit: u64::try_from(limit.as_micros()).unwrap_or(u64::MAX),
            hosts: u16::try_from(hosts).unwrap_or(u16::MAX).max(1),
        }
    }

    /// How long ago it was, now: on the boot clock within the same boot, else on the system
    /// clock; `None` when the system clock is behind the record (it was set back, or is
    /// wrong after a reboot), which tells nothing.
    pub(crate) fn elapsed(&self) -> Option<Duration> {
        self.elapsed_at(boot_clock(), micros_of(SystemTime::now()))
    }

    fn elapsed_at(&self, boot: Option<([u8; 16], u64)>, wall: i64) -> Option<Duration> {
        match boot {
            Some((id, now)) if id == self.boot_id => now.checked_sub(self.boot).map(Duration::from_micros),
            _ => u64::try_from(wall.checked_sub(self.wall)?)
                .ok()
                .map(Duration::from_micros),
        }
    }

    /// The limit this host announced then.
    pub(crate) fn limit(&self) -> Duration {
        Duration::from_micros(self.limit)
    }

    /// Fixed-width, little-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.wall.to_le_bytes());
        out.extend_from_slice(&self.boot_id);
        out.extend_from_slice(&self.boot.to_le_bytes());
        out.extend_from_slice(&self.limit.to_le_bytes());
        out.extend_from_slice(&self.hosts.to_le_bytes());
        out
    }

    /// A record of version 1 and its exact size; `None` for anything else.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (magic, rest) = bytes.split_first_chunk::<8>()?;
        let (version, rest) = rest.split_first_chunk::<2>()?;
        if bytes.len() != LEN || *magic != MAGIC || u16::from_le_bytes(*version) != VERSION {
            return None;
        }
        let (wall, rest) = rest.split_first_chunk::<8>()?;
        let (boot_id, rest) = rest.split_first_chunk::<16>()?;
        let (boot, rest) = rest.split_first_chunk::<8>()?;
        let (limit, rest) = rest.split_first_chunk::<8>()?;
        let (hosts, _) = rest.split_first_chunk::<2>()?;
        Some(LastHeard {
            wall: i64::from_le_bytes(*wall),
            boot_id: *boot_id,
            boot: u64::from_le_bytes(*boot),
            limit: u64::from_le_bytes(*limit),
            hosts: u16::from_le_bytes(*hosts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LastHeard {
        LastHeard {
            wall: 1_800_000_000_000_000,
            boot_id: [9; 16],
            boot: 5_000_000,
            limit: 12_000_000,
            hosts: 3,
        }
    }

    #[test]
    fn a_record_reads_back_and_anything_else_is_no_record() {
        let r = record();
        let bytes = r.encode();
        assert_eq!(bytes.len(), LEN);
        assert_eq!(LastHeard::decode(&bytes), Some(r));
        assert_eq!(r.limit(), Duration::from_secs(12));
        let mut newer = bytes.clone();
        newer[8] = 2;
        assert_eq!(LastHeard::decode(&newer), None, "another version");
        let mut other = bytes.clone();
        other[0] = b'X';
        assert_eq!(LastHeard::decode(&other), None, "another magic");
        assert_eq!(LastHeard::decode(&bytes[..LEN - 1]), None, "cut short");
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(LastHeard::decode(&longer), None, "too long");
        assert_eq!(LastHeard::decode(&[]), None);
    }

    #[test]
    fn the_version_1_fixture_decodes_as_documented() {
        let fixture = include_bytes!("../../tests/fixtures/contact-v1.bin");
        assert_eq!(LastHeard::decode(fixture), Some(record()));
        assert_eq!(record().encode(), fixture);
    }

    /// Within the boot it was taken in, the boot clock says how long ago it was, whatever
    /// the system clock did; in another boot, the system clock does, and one behind the
    /// record says nothing.
    #[test]
    fn elapsed_time_is_read_on_the_boot_clock_within_a_boot_and_never_guessed() {
        let r = record();
        let wall = r.wall + 3_000_000;
        assert_eq!(
            r.elapsed_at(Some(([9; 16], 7_000_000)), r.wall - 60_000_000),
            Some(Duration::from_secs(2)),
            "the same boot: the system clock set back an hour does not count"
        );
        assert_eq!(
            r.elapsed_at(Some(([1; 16], 1_000)), wall),
            Some(Duration::from_secs(3)),
            "another boot: the system clock"
        );
        assert_eq!(r.elapsed_at(None, wall), Some(Duration::from_secs(3)));
        assert_eq!(r.elapsed_at(Some(([1; 16], 1_000)), r.wall - 1), None);
        assert_eq!(r.elapsed_at(Some(([9; 16], 4_000_000)), wall), None);
    }

    #[test]
    fn a_record_taken_now_is_never_later_than_the_send_it_stands_for() {
        let sent = monotonic_micros();
        let before = micros_of(SystemTime::now());
        std::thread::sleep(Duration::from_millis(30));
        let r = LastHeard::sent_at(sent, Duration::from_secs(1), 3);
        assert!(r.wall <= before + 1_000, "{} > {before}", r.wall);
        assert!(r.elapsed().unwrap() >= Duration::from_millis(30));
        assert_eq!(r.limit(), Duration::from_secs(1));
        assert_eq!(r.hosts, 3);
    }
}
