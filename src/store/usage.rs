//! Reading a key's use: its requests per hour or per UTC day, from the counts the
//! projection keeps (see `projection/usage.rs`). Reads memory only.

use std::time::SystemTime;

use super::KeyStore;
use crate::clock::micros_of;
use crate::clock::minute_of;
use crate::clock::minute_start;
use crate::clock::system_time;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::usage::Granularity;
use crate::model::usage::RejectedCounts;
use crate::model::usage::UsageBucket;
use crate::projection::usage::KEPT_HOURS;
use crate::projection::usage::OUTCOMES;

impl KeyStore {
    /// Key `id`'s requests from `since` to `until`, one bucket per hour or UTC day: every
    /// bucket that `since` or `until` falls in, or that lies between them, with zeros for
    /// quiet ones, oldest first. The current (unfinished) hour or day is included; a bucket
    /// after it is not (`until` is read as now when it is later). Accepted requests and
    /// those refused for a reason of the key's own (expired, disabled, address, rate limit,
    /// credits) are counted; unknown keys and a stale host's refusals are not.
    ///
    /// Counts are kept for the current hour and the 720 before it (30 days), in memory, and
    /// saved with the last-used stamps (at the same interval, and at close); a deleted key's
    /// stay readable. A request that verified but lacked a role counts as accepted.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `since`) if `since` is after `until`, or if the first
    /// bucket starts more than 720 hours before the current hour (for days: the first
    /// whole UTC day in them is the earliest); [`Error::KeyNotFound`] if no key with this id
    /// was ever created. Nothing changes either way.
    ///
    /// # Example
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use keyledger::{Actor, Granularity, KeyStore, ManualClock, NewKey};
    ///
    /// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    /// let store = KeyStore::builder().clock(clock.clone()).open_temporary()?;
    /// let created = store.create_key(&Actor::admin("alice"), NewKey::new("bot").role("bot"))?;
    /// for _ in 0..3 {
    ///     store.verify(created.key.expose_secret(), "10.1.2.3".parse()?).expect("active");
    /// }
    /// let now = clock.now();
    /// let hours = store.usage(created.id, now - Duration::from_secs(7200), now, Granularity::Hour)?;
    /// assert_eq!(hours.len(), 3);
    /// assert_eq!(hours[2].accepted, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn usage(
        &self,
        id: KeyId,
        since: SystemTime,
        until: SystemTime,
        granularity: Granularity,
    ) -> Result<Vec<UsageBucket>, Error> {
        if since > until {
            return Err(Error::invalid("since", "is after until"));
        }
        let hour_of = |t: SystemTime| minute_of(micros_of(t)) / 60;
        let step = granularity.hours();
        let now = hour_of(system_time(self.ledger.clock().now_micros()));
        let oldest = now.saturating_sub(KEPT_HOURS);
        let first = hour_of(since) / step * step;
        let last = hour_of(until).min(now) / step * step;
        if first < oldest {
            let reason = format!(
                "counts are kept for 30 days: give a time at most {KEPT_HOURS} hours before the current \
                 hour{}",
                if step > 1 {
                    ", in a day that begins within them"
                } else {
                    ""
                }
            );
            return Err(Error::invalid("since", reason));
        }
        let hours = self
            .ledger
            .read()
            .usage_hours(id, first, last.saturating_add(step - 1))
            .ok_or(Error::KeyNotFound(id))?;
        let mut buckets = Vec::new();
        let mut counted = hours.iter().peekable();
        let mut start = first;
        while start <= last {
            let mut sum = [0u64; OUTCOMES];
            while let Some((_, counts)) = counted.next_if(|(h, _)| *h < start + step) {
                for (s, n) in sum.iter_mut().zip(counts) {
                    *s = s.saturating_add(*n);
                }
            }
            buckets.push(UsageBucket {
                start: system_time(minute_start(start * 60)),
                accepted: sum[0],
                rejected: RejectedCounts::from_codes(&sum),
            });
            start += step;
        }
        Ok(buckets)
    }
}
