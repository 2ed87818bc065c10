//! Credits: a key's quota of requests (or of weighted operations), as commands and records
//! name it: how many remain and, optionally, a refill (`10000/30d`: back up to 10,000 every
//! 30 days). Values and their rules only; spending them is the projection's.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::error::Error;
use super::rules::shown;

/// The most credits a key may hold or be given at once: 2^53, so that every count is
/// exact in JSON (an IEEE double) and no sum of a top-up overflows.
pub const MAX_CREDITS: u64 = 1 << 53;
/// The shortest refill period.
pub const MIN_REFILL_EVERY: Duration = Duration::from_secs(60);
/// The longest refill period: 366 days.
pub const MAX_REFILL_EVERY: Duration = Duration::from_secs(366 * 86_400);

/// A key's credits as set: how many remain, and how they refill, if they do. Each
/// accepted request spends its cost (1 unless the host names another); a key with none
/// left is refused as `usage_exceeded` until a refill or a top-up.
///
/// # Example
/// ```
/// use keyledger::{Credits, Refill};
/// let credits = Credits::new(10_000).unwrap().refill("10000/30d".parse().unwrap());
/// assert_eq!(credits.remaining(), 10_000);
/// assert_eq!(credits.refill_every().unwrap().to_string(), "10000/30d");
/// assert!(Credits::new(1 << 60).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credits {
    pub(crate) remaining: u64,
    pub(crate) refill: Option<Refill>,
}

impl Credits {
    /// `remaining` credits (0 to [`MAX_CREDITS`]), without a refill.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `credits` above [`MAX_CREDITS`].
    pub fn new(remaining: u64) -> Result<Self, Error> {
        check_amount("credits", remaining)?;
        Ok(Credits {
            remaining,
            refill: None,
        })
    }

    /// The same credits, refilled by `refill`.
    pub fn refill(mut self, refill: Refill) -> Self {
        self.refill = Some(refill);
        self
    }

    /// How many remain (as set: a key's current count is in its listing).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How they refill, if they do.
    pub fn refill_every(&self) -> Option<Refill> {
        self.refill
    }

    /// A top-up of `amount`, as the audit trail shows it: a count without a refill.
    pub(crate) fn added(amount: u64) -> Self {
        Credits {
            remaining: amount,
            refill: None,
        }
    }

    /// Every field by the rules: for commands and for records decoded from disk alike.
    pub(crate) fn check(&self) -> Result<(), Error> {
        check_amount("credits", self.remaining)?;
        if let Some(refill) = &self.refill {
            refill.check()?;
        }
        Ok(())
    }
}

/// Refilling: every `every` after the credits were set, the key's count goes back up to
/// `amount` (never down: credits topped up past it are kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refill {
    pub(crate) amount: u64,
    pub(crate) every_secs: u32,
}

impl Refill {
    /// Back up to `amount` (1 to [`MAX_CREDITS`]) every `every` (whole seconds, from a
    /// minute to 366 days).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `refill` for a zero or too large amount, or a period
    /// that is not whole seconds or lies outside a minute to 366 days.
    pub fn new(amount: u64, every: Duration) -> Result<Self, Error> {
        if every.subsec_nanos() != 0 {
            return Err(Error::invalid(
                "refill",
                format!("period {every:?} is not whole seconds"),
            ));
        }
        let refill = Refill {
            amount,
            every_secs: u32::try_from(every.as_secs()).unwrap_or(u32::MAX),
        };
        refill.check()?;
        Ok(refill)
    }

    /// What the count goes back up to.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// How often.
    pub fn every(&self) -> Duration {
        Duration::from_secs(u64::from(self.every_secs))
    }

    fn check(&self) -> Result<(), Error> {
        if self.amount == 0 {
            return Err(Error::invalid("refill", "an amount of 0 refills nothing"));
        }
        check_amount("refill", self.amount)?;
        if !(MIN_REFILL_EVERY..=MAX_REFILL_EVERY).contains(&self.every()) {
            return Err(Error::invalid(
                "refill",
                format!("period of {}s is outside a minute to 366 days", self.every_secs),
            ));
        }
        Ok(())
    }
}

/// Refuses a count above [`MAX_CREDITS`], naming `field`.
pub(crate) fn check_amount(field: &'static str, amount: u64) -> Result<(), Error> {
    if amount > MAX_CREDITS {
        return Err(Error::invalid(
            field,
            format!("{amount} is more than the most a key may hold, {MAX_CREDITS}"),
        ));
    }
    Ok(())
}

impl fmt::Display for Refill {
    /// `AMOUNT/PERIOD`, the period in its largest whole unit: `10000/30d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.amount, super::limit::Window(self.every_secs))
    }
}

impl FromStr for Refill {
    type Err = Error;

    /// `AMOUNT/PERIOD` (`10000/30d`, `500/1h`), the period a number and a unit (`s`, `m`,
    /// `h` or `d`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::invalid("refill", format!("{:?} {why}", shown(s)));
        let (amount, every) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("is not AMOUNT/PERIOD, like 10000/30d"))?;
        let amount: u64 = amount
            .trim()
            .parse()
            .map_err(|_| bad("has an amount that is not a whole number"))?;
        let every = super::limit::parse_window(every).map_err(bad)?;
        Refill::new(amount, every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_parse_and_print_in_their_largest_unit() {
        for (text, amount, secs, shown) in [
            ("10000/30d", 10_000, 30 * 86_400, "10000/30d"),
            ("500/1h", 500, 3_600, "500/1h"),
            ("5/90s", 5, 90, "5/90s"),
            ("1/m", 1, 60, "1/1m"),
        ] {
            let r: Refill = text.parse().unwrap();
            assert_eq!((r.amount(), r.every().as_secs()), (amount, secs), "{text}");
            assert_eq!(r.to_string(), shown);
        }
    }

    #[test]
    fn bad_credits_and_refills_are_refused_naming_the_field() {
        for text in [
            "0/1d",
            "10/59s",
            "10/367d",
            "-1/1d",
            "10",
            "10/1w",
            "x/1d",
            "10/1.5h",
            "9007199254740993/1d",
        ] {
            match text.parse::<Refill>() {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "refill", "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Credits::new(MAX_CREDITS + 1),
            Err(Error::InvalidInput { field: "credits", .. })
        ));
        assert!(Credits::new(0).is_ok(), "a key may start with none");
        assert!(Credits::new(MAX_CREDITS).is_ok());
        assert!(Refill::new(1, Duration::from_millis(60_500)).is_err());
    }
}
