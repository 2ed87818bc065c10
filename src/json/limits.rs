//! The JSON of a rate limit: `{"limit": 100, "window": "1m"}`, in key answers, audit
//! entries, `POST /v1/keys` and `PUT /v1/keys/{id}/limits`. Shapes only: the rules are
//! [`RateLimit`]'s.

use serde::{Deserialize, Serialize};

use crate::model::error::Error;
use crate::model::limit::RateLimit;

/// A rate limit: at most `limit` requests per `window` (`30s`, `1m`, `1h`, `1d`; whole
/// seconds from 1 s to 30 days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitJson {
    /// The most requests accepted per window.
    pub limit: u32,
    /// The window, in its largest whole unit: `20s`, `1m`, `1h`, `30d`.
    #[schema(pattern = "^[0-9]+[smhd]$")]
    pub window: String,
}

impl From<&RateLimit> for RateLimitJson {
    fn from(l: &RateLimit) -> Self {
        let text = l.to_string();
        let window = text.split_once('/').map_or(text.as_str(), |(_, w)| w).to_owned();
        RateLimitJson {
            limit: l.limit(),
            window,
        }
    }
}

impl RateLimitJson {
    /// The limit it names, by the rules of [`RateLimit`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `rate limit`.
    pub fn to_limit(&self) -> Result<RateLimit, Error> {
        format!("{}/{}", self.limit, self.window).parse()
    }

    /// Every limit a list names; the first bad one is the error.
    ///
    /// # Errors
    /// As [`RateLimitJson::to_limit`].
    pub fn to_limits(list: &[RateLimitJson]) -> Result<Vec<RateLimit>, Error> {
        list.iter().map(RateLimitJson::to_limit).collect()
    }

    /// The JSON of each limit.
    pub fn list(limits: &[RateLimit]) -> Vec<RateLimitJson> {
        limits.iter().map(RateLimitJson::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_round_trips_through_its_json() {
        let limit: RateLimit = "5000/1h".parse().unwrap();
        let json = serde_json::to_string(&RateLimitJson::from(&limit)).unwrap();
        assert_eq!(json, r#"{"limit":5000,"window":"1h"}"#);
        let back: RateLimitJson = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_limit().unwrap(), limit);
        let bad: RateLimitJson = serde_json::from_str(r#"{"limit":0,"window":"1m"}"#).unwrap();
        assert!(matches!(
            bad.to_limit(),
            Err(Error::InvalidInput {
                field: "rate limit",
                ..
            })
        ));
        let odd: RateLimitJson = serde_json::from_str(r#"{"limit":1,"window":"1m/2"}"#).unwrap();
        assert!(odd.to_limit().is_err());
        assert!(serde_json::from_str::<RateLimitJson>(r#"{"limit":1,"window":"1m","x":1}"#).is_err());
    }
}
