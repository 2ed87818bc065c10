//! The names and field rules: the limits and reserved role names, how actor ids, key
//! names, roles and networks are checked (by every rule for a command, by the rules of its
//! format version for a stored record), and how user input is quoted in an error. It
//! knows no actor, key or event type, and never quotes a key-shaped text.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use super::id::{ADMIN_ROLE, SUPER_ADMIN_ROLE};
use crate::model::error::Error;
use crate::model::token::format::looks_like_key;
use crate::model::token::format::redact_keys;

/// Longest key name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest role name, in bytes.
pub const MAX_ROLE_LEN: usize = 64;
/// Most roles on one key.
pub const MAX_ROLES: usize = 32;
/// Most whitelist entries on one key.
pub const MAX_WHITELIST: usize = 1024;
/// Longest actor id, in characters.
pub const MAX_ACTOR_ID_CHARS: usize = 128;

/// Longest external (owner or tenant) id, in characters.
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;

/// Checks an external id: 1 to [`MAX_EXTERNAL_ID_CHARS`] characters, no control
/// characters, no surrounding spaces; for a command also no format characters and nothing
/// shaped like an API key.
pub(crate) fn validate_external_id(id: &str, origin: Origin) -> Result<(), Error> {
    let n = id.chars().count();
    if n == 0 || n > MAX_EXTERNAL_ID_CHARS {
        return Err(Error::invalid(
            "external_id",
            format!("must be 1 to {MAX_EXTERNAL_ID_CHARS} characters, got {n}"),
        ));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(Error::invalid(
            "external_id",
            "has control characters or surrounding white space",
        ));
    }
    if origin == Origin::Command {
        refuse_format_chars("external_id", id)?;
        refuse_key_shaped("external_id", id)?;
    }
    Ok(())
}

/// Checks a person named in a command (an admin key's, a revocation's) by the rules of an
/// actor id.
pub(crate) fn validate_person(person: &str) -> Result<(), Error> {
    validate_actor_id(person, Origin::Command)
}

/// Which rules a text field is held to: those in force when it was written.
///
/// Rules added to the format later (no format characters, nothing shaped like an API key)
/// apply to commands only; a record already in a log was valid when it was written and
/// must keep decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A command on its way in: every rule.
    Command,
    /// A record decoded from a log, a snapshot or a backup: the rules of its format version.
    Stored,
}

/// Checks an actor id: 1 to 128 characters, no control characters, no surrounding spaces;
/// for a command also no format characters and nothing shaped like an API key.
pub(super) fn validate_actor_id(id: &str, origin: Origin) -> Result<(), Error> {
    let n = id.chars().count();
    if n == 0 || n > MAX_ACTOR_ID_CHARS {
        return Err(Error::invalid(
            "actor",
            format!("id must be 1 to {MAX_ACTOR_ID_CHARS} characters, got {n}"),
        ));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(Error::invalid(
            "actor",
            "id has control characters or surrounding white space",
        ));
    }
    if origin == Origin::Command {
        refuse_format_chars("actor", id)?;
        refuse_key_shaped("actor", id)?;
    }
    Ok(())
}

/// Refuses text holding a Unicode format character, which would let it display as
/// something it is not (`alice\u{200B}` and `\u{202E}ecila` both show as `alice`).
fn refuse_format_chars(field: &'static str, text: &str) -> Result<(), Error> {
    match text.chars().find(|&c| is_format_char(c)) {
        Some(c) => Err(Error::invalid(
            field,
            format!(
                "must not contain the invisible format character U+{:04X}",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses text shaped like an API key: a secret pasted as a name or an id would be
/// stored for ever and printed by every listing. The text is not quoted.
pub(super) fn refuse_key_shaped(field: &'static str, text: &str) -> Result<(), Error> {
    if looks_like_key(text) {
        return Err(Error::invalid(
            field,
            "looks like an API key; a key's secret must never be stored or shown",
        ));
    }
    Ok(())
}

/// Whether `c` is a Unicode format character (general category Cf, Unicode 16.0):
/// invisible, yet able to hide, join or reorder the text around it.
pub(super) fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// User input as it may be quoted in an error: anything shaped like an API key redacted
/// (a secret pasted into the wrong field must not end up in a log), then cut short.
pub(crate) fn shown(s: &str) -> String {
    redact_keys(s).chars().take(40).collect()
}

/// Whether a key with these roles is an admin key: it holds `admin` or `super-admin`.
pub(crate) fn grants_admin(roles: &[String]) -> bool {
    roles.iter().any(|r| r == ADMIN_ROLE || r == SUPER_ADMIN_ROLE)
}

/// Checks a key's roles: 1 to [`MAX_ROLES`], each valid, none twice.
pub(crate) fn validate_roles(roles: &[String]) -> Result<(), Error> {
    if roles.is_empty() {
        return Err(Error::invalid("role", "a key needs at least one role"));
    }
    if roles.len() > MAX_ROLES {
        return Err(Error::invalid(
            "role",
            format!("at most {MAX_ROLES} roles, got {}", roles.len()),
        ));
    }
    for (i, role) in roles.iter().enumerate() {
        validate_role(role)?;
        if roles[..i].contains(role) {
            return Err(Error::invalid("role", format!("{role:?} is given twice")));
        }
    }
    Ok(())
}

/// Trims a key name and checks it: 1 to 100 characters, no control characters; for a
/// command also no format characters and nothing shaped like an API key.
pub(super) fn validate_name(name: &str, origin: Origin) -> Result<&str, Error> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters after trimming, got {n}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "must not contain control characters"));
    }
    if origin == Origin::Command {
        refuse_format_chars("name", name)?;
        refuse_key_shaped("name", name)?;
    }
    Ok(name)
}

/// Checks a role name: 1 to 64 of `[a-z0-9_-]`.
pub(crate) fn validate_role(role: &str) -> Result<(), Error> {
    if role.is_empty() || role.len() > MAX_ROLE_LEN {
        return Err(Error::invalid(
            "role",
            format!("{:?} must be 1 to {MAX_ROLE_LEN} characters", shown(role)),
        ));
    }
    if !role
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "role",
            format!("{:?} may only use a-z, 0-9, - and _", shown(role)),
        ));
    }
    Ok(())
}

/// Checks a whitelist and returns it in canonical form: at most [`MAX_WHITELIST`] entries,
/// no host bits set, no duplicates. A stored whitelist must come back unchanged.
pub(crate) fn validate_whitelist(nets: &[IpNet]) -> Result<Vec<IpNet>, Error> {
    if nets.len() > MAX_WHITELIST {
        return Err(Error::invalid(
            "network",
            format!(
                "at most {MAX_WHITELIST} whitelist entries per key, got {}",
                nets.len()
            ),
        ));
    }
    let out = nets
        .iter()
        .map(|&net| canonical_net(net))
        .collect::<Result<Vec<_>, _>>()?;
    distinct(&out)?;
    Ok(out)
}

/// Checks that no network appears twice (a sort, not a quadratic scan: whitelists can
/// hold [`MAX_WHITELIST`] entries).
fn distinct(nets: &[IpNet]) -> Result<(), Error> {
    let mut sorted = nets.to_vec();
    sorted.sort_unstable();
    match sorted.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(Error::invalid("network", format!("{} is given twice", w[0]))),
        None => Ok(()),
    }
}

/// The canonical form of a whitelist entry: IPv4-mapped IPv6 becomes IPv4, and host bits
/// must be zero (`10.1.2.3/8` is refused rather than silently widened or narrowed).
pub(crate) fn canonical_net(net: IpNet) -> Result<IpNet, Error> {
    let net = match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .map_err(|e| Error::invalid("network", e.to_string()))?,
            None => net,
        },
        other => other,
    };
    if net.trunc() != net {
        return Err(Error::invalid(
            "network",
            format!("{net} has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    Ok(net)
}

/// Parses a whitelist entry: an IPv4 or IPv6 address, or a CIDR range.
///
/// # Errors
/// [`Error::InvalidInput`] naming what is wrong.
///
/// # Example
/// ```
/// let net = keyledger::parse_net("10.0.0.0/8").unwrap();
/// assert_eq!(keyledger::parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
/// assert!(keyledger::parse_net("10.0.0.1/8").is_err());
/// # let _ = net;
/// ```
pub fn parse_net(s: &str) -> Result<IpNet, Error> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            Error::invalid(
                "network",
                format!("{:?} is not an IP address or CIDR range", shown(s)),
            )
        })?,
    };
    canonical_net(net)
}
