//! The JSON of credits: `{"remaining": 10000, "refill": {"amount": 10000, "every": "30d"}}`,
//! in key answers (with `next_refill_at`), audit entries, `POST /v1/keys`, import lines and
//! `PUT /v1/keys/{id}/credits`. Shapes only: the rules are [`Credits`]'.

use serde::{Deserialize, Serialize};

use super::rfc3339;
use crate::model::credits::{Credits, Refill};
use crate::model::error::Error;
use crate::projection::credits::CreditsView;

/// A key's credits: how many remain and, if they refill, how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CreditsJson {
    /// How many remain: in a key's answer, now (on the host that answers); as set, in a
    /// request or an audit entry.
    pub remaining: u64,
    /// How they refill; `null` (or absent) for never.
    #[serde(default)]
    pub refill: Option<RefillJson>,
    /// In a key's answer: when the next refill is due (RFC 3339); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refill_at: Option<String>,
}

/// A refill: back up to `amount` every `every` (`1h`, `30d`; a minute to 366 days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RefillJson {
    /// What the count goes back up to.
    pub amount: u64,
    /// The period, in its largest whole unit.
    pub every: String,
}

impl From<&Refill> for RefillJson {
    fn from(r: &Refill) -> Self {
        let text = r.to_string();
        let every = text.split_once('/').map_or(text.as_str(), |(_, w)| w).to_owned();
        RefillJson {
            amount: r.amount(),
            every,
        }
    }
}

impl From<&Credits> for CreditsJson {
    fn from(c: &Credits) -> Self {
        CreditsJson {
            remaining: c.remaining(),
            refill: c.refill_every().as_ref().map(RefillJson::from),
            next_refill_at: None,
        }
    }
}

impl From<&CreditsView> for CreditsJson {
    fn from(c: &CreditsView) -> Self {
        CreditsJson {
            remaining: c.remaining,
            refill: c.refill.as_ref().map(RefillJson::from),
            next_refill_at: c.next_refill_at.map(rfc3339),
        }
    }
}

impl CreditsJson {
    /// The credits it names, by the rules of [`Credits`] and [`Refill`]
    /// (`next_refill_at` is the store's to say, and ignored).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `credits` or `refill`.
    pub fn to_credits(&self) -> Result<Credits, Error> {
        let credits = Credits::new(self.remaining)?;
        Ok(match &self.refill {
            Some(r) => credits.refill(format!("{}/{}", r.amount, r.every).parse()?),
            None => credits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_round_trip_through_their_json() {
        let credits = Credits::new(10_000).unwrap().refill("10000/30d".parse().unwrap());
        let json = serde_json::to_string(&CreditsJson::from(&credits)).unwrap();
        assert_eq!(
            json,
            r#"{"remaining":10000,"refill":{"amount":10000,"every":"30d"}}"#
        );
        let back: CreditsJson = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_credits().unwrap(), credits);
        let plain: CreditsJson = serde_json::from_str(r#"{"remaining":5}"#).unwrap();
        assert_eq!(plain.to_credits().unwrap(), Credits::new(5).unwrap());
    }

    #[test]
    fn bad_credits_json_is_refused_naming_the_field() {
        for (text, field) in [
            (r#"{"remaining":9007199254740993}"#, "credits"),
            (r#"{"remaining":5,"refill":{"amount":0,"every":"1d"}}"#, "refill"),
            (r#"{"remaining":5,"refill":{"amount":5,"every":"30s"}}"#, "refill"),
            (
                r#"{"remaining":5,"refill":{"amount":5,"every":"1d/2"}}"#,
                "refill",
            ),
        ] {
            let json: CreditsJson = serde_json::from_str(text).unwrap();
            match json.to_credits() {
                Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in [
            r#"{"remaining":-1}"#,
            r#"{"remaining":5,"x":1}"#,
            r#"{"remaining":1.5}"#,
        ] {
            assert!(serde_json::from_str::<CreditsJson>(text).is_err(), "{text}");
        }
    }
}
