//! The store's clock: record times, expiry, grace periods and last-used minutes.
//!
//! Production stores read the system clock, except on the verify path's last-used stamp,
//! which reads a minute counter the writer thread refreshes every second (an atomic load
//! instead of a clock read on every verify). Tests and simulations inject a
//! [`ManualClock`], which moves only when told: no sleeps, and boundaries hit exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (0 before it, saturating far after it).
pub(crate) fn micros_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The time `micros` microseconds after the Unix epoch.
pub(crate) fn system_time(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

const MICROS_PER_MINUTE: i64 = 60_000_000;

/// Whole minutes since the Unix epoch.
pub(crate) fn minute_of(micros: i64) -> u32 {
    u32::try_from(micros.max(0) / MICROS_PER_MINUTE).unwrap_or(u32::MAX)
}

/// The start of minute `minute`.
pub(crate) fn minute_start(minute: u32) -> i64 {
    i64::from(minute) * MICROS_PER_MINUTE
}

/// A clock that moves only when told: for tests and simulations of expiry, grace periods
/// and last-used times. Clones share one time.
///
/// # Example
/// ```
/// use std::time::{Duration, SystemTime};
/// let clock = keyledger::ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
/// let store = keyledger::KeyStore::builder().clock(clock.clone()).open_temporary().unwrap();
/// clock.advance(Duration::from_secs(90));
/// # drop(store);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: SystemTime) -> Self {
        ManualClock(Arc::new(AtomicI64::new(micros_of(at))))
    }

    /// Moves the clock to `at` (backwards too: record times still never go backwards).
    pub fn set(&self, at: SystemTime) {
        self.0.store(micros_of(at), Ordering::Release);
    }

    /// Moves the clock forward by `by` (to the microsecond).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(by, Ordering::AcqRel);
    }

    /// The time the clock shows.
    pub fn now(&self) -> SystemTime {
        system_time(self.0.load(Ordering::Acquire))
    }
}

/// The clock a store runs on.
#[derive(Debug)]
pub(crate) struct Clock {
    manual: Option<ManualClock>,
    /// The system clock's current minute, refreshed by [`Clock::tick`].
    minute: AtomicU32,
}

impl Clock {
    pub(crate) fn system() -> Self {
        let clock = Clock {
            manual: None,
            minute: AtomicU32::new(0),
        };
        clock.tick();
        clock
    }

    pub(crate) fn manual(clock: ManualClock) -> Self {
        Clock {
            manual: Some(clock),
            minute: AtomicU32::new(0),
        }
    }

    /// Microseconds since the Unix epoch, now.
    #[inline]
    pub(crate) fn now_micros(&self) -> i64 {
        match &self.manual {
            Some(m) => m.0.load(Ordering::Acquire),
            None => micros_of(SystemTime::now()),
        }
    }

    /// Microseconds since the Unix epoch, from the kernel's coarse clock (exact for a
    /// manual clock): for the verify path's expiry and grace checks. A precise clock read
    /// (`SystemTime::now`) reads the CPU's time stamp counter, which waits for every
    /// memory load in flight; measured on the 2-core benchmark VM, it cost a verify of a
    /// key that expires 200 ns, the coarse clock a few. It lags the precise clock by at
    /// most one kernel tick (1 to 4 ms): a key may verify that long past its expiry.
    #[inline]
    pub(crate) fn now_micros_coarse(&self) -> i64 {
        match &self.manual {
            Some(m) => m.0.load(Ordering::Acquire),
            None => coarse_micros(),
        }
    }

    /// Microseconds on a clock that never goes back, for rate limits: the kernel's coarse
    /// monotonic clock (exact for a manual clock, which shows its own time).
    #[inline]
    pub(crate) fn steady_micros(&self) -> u64 {
        match &self.manual {
            Some(m) => u64::try_from(m.0.load(Ordering::Acquire)).unwrap_or(0),
            None => monotonic_micros(),
        }
    }

    /// The current minute, to within a second of the system clock (exact for a manual
    /// clock): one atomic load.
    #[inline]
    pub(crate) fn minute(&self) -> u32 {
        match &self.manual {
            Some(m) => minute_of(m.0.load(Ordering::Relaxed)),
            None => self.minute.load(Ordering::Relaxed),
        }
    }

    /// Refreshes the system clock's minute; the writer calls it at least every second.
    pub(crate) fn tick(&self) {
        if self.manual.is_none() {
            self.minute
                .store(minute_of(micros_of(SystemTime::now())), Ordering::Relaxed);
        }
    }
}

/// The kernel's coarse wall clock, through the vDSO (no system call, no counter read).
#[cfg(target_os = "linux")]
#[inline]
fn coarse_micros() -> i64 {
    clock_micros(rustix::time::ClockId::RealtimeCoarse)
}

/// Microseconds on the clock a fleet host's fence runs on: monotonic, and coarse on Linux (the last
/// tick's value, read through the vDSO without waiting for the loads in flight; at most
/// [`CLOCK_TICK`] behind the precise clock).
pub(crate) fn monotonic_micros() -> u64 {
    #[cfg(target_os = "linux")]
    {
        u64::try_from(clock_micros(rustix::time::ClockId::MonotonicCoarse)).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let start = *START.get_or_init(std::time::Instant::now);
        u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Microseconds this machine has spent suspended since it booted, as far as its clocks
/// tell (Linux: `CLOCK_BOOTTIME` runs on through a suspend, [`monotonic_micros`]'s clock does not); 0
/// elsewhere.
pub(crate) fn suspended() -> u64 {
    #[cfg(target_os = "linux")]
    {
        u64::try_from(
            clock_micros(rustix::time::ClockId::Boottime)
                .saturating_sub(clock_micros(rustix::time::ClockId::Monotonic)),
        )
        .unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// This boot of the machine, as its kernel names it (Linux's `boot_id`), and microseconds
/// on `CLOCK_BOOTTIME` (which counts from the boot and runs on through a suspend): a
/// duration between two readings of the same boot holds whatever the system clock did
/// meanwhile. `None` elsewhere, or if the kernel does not say.
pub(crate) fn boot_clock() -> Option<([u8; 16], u64)> {
    #[cfg(target_os = "linux")]
    {
        static BOOT: std::sync::OnceLock<Option<[u8; 16]>> = std::sync::OnceLock::new();
        let id = (*BOOT.get_or_init(|| {
            let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            parse_boot_id(&text)
        }))?;
        let micros = u64::try_from(clock_micros(rustix::time::ClockId::Boottime)).ok()?;
        Some((id, micros))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// A boot id as the kernel writes it (a UUID: 32 hex digits and four dashes).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_boot_id(text: &str) -> Option<[u8; 16]> {
    let digits: Vec<u8> = text.trim().bytes().filter(|b| *b != b'-').collect();
    if digits.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (byte, pair) in id.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    // All zeros names no boot.
    (id != [0; 16]).then_some(id)
}

/// `d` in whole seconds, rounded up: a wait told in seconds is never shorter than the real one.
pub(crate) fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// How far [`monotonic_micros`] may lag the precise clock: a kernel tick at `HZ=100`.
pub(crate) const CLOCK_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// A kernel clock's reading in microseconds, through the vDSO where the clock has one.
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn clock_micros(clock: rustix::time::ClockId) -> i64 {
    let t = rustix::time::clock_gettime(clock);
    t.tv_sec
        .saturating_mul(1_000_000)
        .saturating_add(t.tv_nsec / 1_000)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn coarse_micros() -> i64 {
    micros_of(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let manual = ManualClock::new(start);
        let clock = Clock::manual(manual.clone());
        assert_eq!(clock.now_micros(), 1_800_000_000_000_000);
        manual.advance(Duration::from_micros(59_999_999));
        assert_eq!(clock.minute(), 30_000_000);
        manual.advance(Duration::from_micros(1));
        assert_eq!(clock.minute(), 30_000_001);
        assert_eq!(system_time(clock.now_micros()), manual.now());
    }

    #[test]
    fn a_boot_id_is_read_as_the_kernel_writes_it_and_nothing_else() {
        let id = parse_boot_id("0f2a7c1e-5b3d-4e8f-9a6b-1c2d3e4f5a6b\n").unwrap();
        assert_eq!(id[0], 0x0f);
        assert_eq!(id[15], 0x6b);
        for bad in [
            "",
            "0f2a7c1e",
            "zz2a7c1e-5b3d-4e8f-9a6b-1c2d3e4f5a6b",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(parse_boot_id(bad), None, "{bad}");
        }
        #[cfg(target_os = "linux")]
        {
            let (first, at) = boot_clock().unwrap();
            let (second, later) = boot_clock().unwrap();
            assert_eq!(first, second);
            assert!(later >= at);
        }
    }

    #[test]
    fn the_system_minute_follows_the_system_clock() {
        let clock = Clock::system();
        let now = minute_of(micros_of(SystemTime::now()));
        assert!(clock.minute().abs_diff(now) <= 1);
        assert_eq!(minute_start(minute_of(125_000_000)), 120_000_000);
        let (coarse, precise) = (clock.now_micros_coarse(), clock.now_micros());
        assert!(
            coarse <= precise + 1_000 && precise - coarse < 1_000_000,
            "{coarse} {precise}"
        );
    }
}
