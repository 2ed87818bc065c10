//! The reasons a check of a presented key ends in a refusal: the key's own
//! ([`Rejection`](super::Rejection)) and the request's (the tower layer's and `/auth`'s).
//!
//! Each reason's code is written here once; the slot a reason takes in the decision counts
//! (`store/stats.rs`) is its place in [`Reason::ALL`].

/// Why a check refused, in the order of [`Reason::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    MalformedLength,
    MalformedCharacter,
    MalformedPrefix,
    MalformedChecksum,
    HeaderMissing,
    HeaderRepeated,
    HeaderNotAscii,
    HeaderPadded,
    UnknownKey,
    IpNotWhitelisted,
    NoWhitelist,
    Expired,
    Disabled,
    Stale,
    RateLimited,
    UsageExceeded,
    RoleMissing,
    /// The request's client address could not be established (the layer's).
    ClientAddressUnknown,
    /// `/auth` was asked for a cost that is not a whole number in range.
    CostInvalid,
    /// Deciding itself failed (a panic in `/auth`): refused, blaming no key.
    Unavailable,
}

impl Reason {
    /// Every reason, each at the index of its slot.
    pub(crate) const ALL: [Reason; 20] = [
        Reason::MalformedLength,
        Reason::MalformedCharacter,
        Reason::MalformedPrefix,
        Reason::MalformedChecksum,
        Reason::HeaderMissing,
        Reason::HeaderRepeated,
        Reason::HeaderNotAscii,
        Reason::HeaderPadded,
        Reason::UnknownKey,
        Reason::IpNotWhitelisted,
        Reason::NoWhitelist,
        Reason::Expired,
        Reason::Disabled,
        Reason::Stale,
        Reason::RateLimited,
        Reason::UsageExceeded,
        Reason::RoleMissing,
        Reason::ClientAddressUnknown,
        Reason::CostInvalid,
        Reason::Unavailable,
    ];

    /// The stable, machine-readable name of the reason: a refusal body's `reason`, a
    /// decision line's, and a metric label's.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Reason::MalformedLength => "malformed_length",
            Reason::MalformedCharacter => "malformed_character",
            Reason::MalformedPrefix => "malformed_prefix",
            Reason::MalformedChecksum => "malformed_checksum",
            Reason::HeaderMissing => "header_missing",
            Reason::HeaderRepeated => "header_repeated",
            Reason::HeaderNotAscii => "header_not_ascii",
            Reason::HeaderPadded => "header_padded",
            Reason::UnknownKey => "unknown_key",
            Reason::IpNotWhitelisted => "ip_not_whitelisted",
            Reason::NoWhitelist => "no_whitelist",
            Reason::Expired => "expired",
            Reason::Disabled => "disabled",
            Reason::Stale => "stale",
            Reason::RateLimited => "rate_limited",
            Reason::UsageExceeded => "usage_exceeded",
            Reason::RoleMissing => "role_missing",
            Reason::ClientAddressUnknown => "client_address_unknown",
            Reason::CostInvalid => "cost_invalid",
            Reason::Unavailable => "unavailable",
        }
    }

    /// Its slot: its index in [`Reason::ALL`].
    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_sits_at_its_own_slot_with_a_code_of_its_own() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.slot(), i, "{reason:?}");
        }
        let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
    }
}
