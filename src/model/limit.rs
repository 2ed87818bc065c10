//! Rate limits: at most `limit` requests per `window`, as a key holds them and as commands
//! and records name them (`100/1m`). A key holds up to [`MAX_RATE_LIMITS`], in one
//! canonical order (shortest window first, no window twice), so that a set of limits has
//! exactly one encoding.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::error::Error;
use super::rules::shown;

/// Most rate limits on one key.
pub const MAX_RATE_LIMITS: usize = 4;
/// The shortest window a rate limit may have.
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);
/// The longest window a rate limit may have: 30 days.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(30 * 86_400);

const MICROS_PER_SECOND: u64 = 1_000_000;

/// At most `limit` accepted requests per `window` (whole seconds, from 1 s to 30 days),
/// with bursts of up to `limit` after a quiet window; see `docs/design.md`, "Rate limits",
/// for exactly what is admitted.
///
/// # Example
/// ```
/// use keyledger::RateLimit;
/// use std::time::Duration;
/// let limit: RateLimit = "100/1m".parse().unwrap();
/// assert_eq!((limit.limit(), limit.window()), (100, Duration::from_secs(60)));
/// assert_eq!(limit.to_string(), "100/1m");
/// assert!("0/1m".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateLimit {
    // Field order makes the derived order sort by window first.
    pub(crate) window_secs: u32,
    pub(crate) limit: u32,
}

impl RateLimit {
    /// At most `limit` requests per `window`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `rate limit` for a limit of zero, a window that is
    /// not whole seconds or lies outside 1 s to 30 days, or more than one request per
    /// microsecond of the window.
    pub fn new(limit: u32, window: Duration) -> Result<Self, Error> {
        if window.subsec_nanos() != 0 {
            return Err(Error::invalid(
                "rate limit",
                format!("window {window:?} is not whole seconds"),
            ));
        }
        let window_secs = u32::try_from(window.as_secs()).unwrap_or(u32::MAX);
        let limit = RateLimit { window_secs, limit };
        limit.check()?;
        Ok(limit)
    }

    /// The most requests accepted per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.window_secs))
    }

    /// The window in microseconds.
    pub(crate) fn window_micros(&self) -> u64 {
        u64::from(self.window_secs) * MICROS_PER_SECOND
    }

    /// Every field by the rules: for commands and for records decoded from disk alike.
    fn check(&self) -> Result<(), Error> {
        let window = self.window();
        if self.limit == 0 {
            return Err(Error::invalid(
                "rate limit",
                "a limit of 0 admits nothing: delete or disable the key instead",
            ));
        }
        if !(MIN_RATE_WINDOW..=MAX_RATE_WINDOW).contains(&window) {
            return Err(Error::invalid(
                "rate limit",
                format!("window {} is outside 1s to 30d", Window(self.window_secs)),
            ));
        }
        if u64::from(self.limit) > self.window_micros() {
            return Err(Error::invalid(
                "rate limit",
                "more than one request per microsecond of the window",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, Window(self.window_secs))
    }
}

/// A window in its largest whole unit: `30d`, `1h`, `90m`, `45s`.
pub(crate) struct Window(pub(crate) u32);

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        match s {
            _ if s != 0 && s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s != 0 && s.is_multiple_of(3_600) => write!(f, "{}h", s / 3_600),
            _ if s != 0 && s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

impl FromStr for RateLimit {
    type Err = Error;

    /// `LIMIT/WINDOW`, the window a number and a unit (`s`, `m`, `h` or `d`): `100/1m`,
    /// `5000/1h`, `20/1s`; a unit alone counts one (`100/m`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::invalid("rate limit", format!("{:?} {why}", shown(s)));
        let (limit, window) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("is not LIMIT/WINDOW, like 100/1m"))?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|_| bad("has a limit that is not a whole number up to 4294967295"))?;
        let window = parse_window(window).map_err(bad)?;
        RateLimit::new(limit, window)
    }
}

/// A window or period: a number and a unit (`s`, `m`, `h` or `d`), a unit alone counting
/// one (`m`); what is wrong with it otherwise.
pub(crate) fn parse_window(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("has a window without a unit (s, m, h or d)")?;
    let (count, unit) = text.split_at(unit_at);
    let count: u64 = match count {
        "" => 1,
        digits => digits.parse().map_err(|_| "has a window too long")?,
    };
    let unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err("has a window unit that is not s, m, h or d"),
    };
    let secs = count.checked_mul(unit).ok_or("has a window too long")?;
    Ok(Duration::from_secs(secs))
}

/// The limits in their canonical order (shortest window first). Refuses more than
/// [`MAX_RATE_LIMITS`], a window named twice, and any limit that breaks the rules.
pub(crate) fn canonical_limits(limits: &[RateLimit]) -> Result<Vec<RateLimit>, Error> {
    if limits.len() > MAX_RATE_LIMITS {
        return Err(Error::invalid(
            "rate limit",
            format!(
                "{} limits given; a key holds at most {MAX_RATE_LIMITS}",
                limits.len()
            ),
        ));
    }
    let mut sorted = limits.to_vec();
    sorted.sort_unstable();
    for limit in &sorted {
        limit.check()?;
    }
    if let Some(pair) = sorted.windows(2).find(|p| p[0].window_secs == p[1].window_secs) {
        return Err(Error::invalid(
            "rate limit",
            format!("two limits on the same window ({} and {})", pair[0], pair[1]),
        ));
    }
    Ok(sorted)
}

/// Whether stored limits are valid and in their canonical order (their one encoding).
pub(crate) fn validate_stored_limits(limits: &[RateLimit]) -> Result<(), Error> {
    if canonical_limits(limits)? == limits {
        Ok(())
    } else {
        Err(Error::invalid(
            "rate limit",
            "stored limits are not in their canonical order",
        ))
    }
}

/// A key's limits as the projection keeps them: up to four, the unused ones zero.
pub(crate) type LimitList = [RateLimit; MAX_RATE_LIMITS];

/// No limit: the unused entries of a [`LimitList`].
pub(crate) const NO_LIMIT: RateLimit = RateLimit {
    window_secs: 0,
    limit: 0,
};

/// `limits` (at most [`MAX_RATE_LIMITS`], canonical) as a [`LimitList`].
pub(crate) fn list_of(limits: &[RateLimit]) -> LimitList {
    let mut list = [NO_LIMIT; MAX_RATE_LIMITS];
    for (slot, limit) in list.iter_mut().zip(limits) {
        *slot = *limit;
    }
    list
}

/// The limits a [`LimitList`] holds.
pub(crate) fn in_list(list: &LimitList) -> &[RateLimit] {
    let used = list.iter().take_while(|l| l.limit != 0).count();
    &list[..used]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Result<RateLimit, Error> {
        s.parse()
    }

    #[test]
    fn limits_parse_and_print_in_their_largest_unit() {
        for (text, limit, secs, shown) in [
            ("100/1m", 100, 60, "100/1m"),
            ("5000/1h", 5000, 3600, "5000/1h"),
            ("20/1s", 20, 1, "20/1s"),
            ("100/m", 100, 60, "100/1m"),
            ("10/90s", 10, 90, "10/90s"),
            ("10/120s", 10, 120, "10/2m"),
            (" 7 / 30d ", 7, 30 * 86_400, "7/30d"),
        ] {
            let l = parsed(text).unwrap();
            assert_eq!((l.limit(), l.window().as_secs()), (limit, secs), "{text}");
            assert_eq!(l.to_string(), shown);
            assert_eq!(parsed(shown).unwrap(), l);
        }
    }

    #[test]
    fn bad_limits_are_refused_naming_the_field() {
        for text in [
            "0/1m",
            "100",
            "100/",
            "100/1",
            "100/1w",
            "-1/1m",
            "1/0s",
            "1/31d",
            "100/1.5m",
            "x/1m",
            "5000000000/1d",
            "2000000/1s",
            "1/99999999999999999999d",
        ] {
            match parsed(text) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "rate limit", "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(RateLimit::new(1, Duration::from_millis(1500)).is_err());
        assert!(RateLimit::new(1_000_000, Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_set_of_limits_has_one_order_and_no_window_twice() {
        let a = parsed("100/1m").unwrap();
        let b = parsed("20/1s").unwrap();
        let c = parsed("5000/1h").unwrap();
        assert_eq!(canonical_limits(&[c, a, b]).unwrap(), [b, a, c]);
        assert!(validate_stored_limits(&[b, a, c]).is_ok());
        assert!(validate_stored_limits(&[a, b]).is_err(), "out of order");
        assert!(
            canonical_limits(&[a, parsed("50/60s").unwrap()]).is_err(),
            "same window"
        );
        let five: Vec<RateLimit> = (1..=5)
            .map(|s| RateLimit::new(1, Duration::from_secs(s)).unwrap())
            .collect();
        assert!(canonical_limits(&five).is_err());
        assert!(canonical_limits(&five[..4]).is_ok());
        assert_eq!(in_list(&list_of(&[b, a])), [b, a]);
        assert!(in_list(&list_of(&[])).is_empty());
    }
}
