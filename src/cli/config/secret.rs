//! What a setting must not hold, and what the print hides: a secret itself where the path
//! of the file holding it belongs, and a user, password or token inside a URL. It only
//! looks at text; it never reads a file.

use keyledger::KEY_PREFIX;

/// What `value`, given where a file's path belongs, looks like if it is a secret itself
/// rather than a path: an API key, a chain key, a PEM block, an nkey seed, a JWT, or
/// several lines (a file's contents).
pub(super) fn shape(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if v.contains(KEY_PREFIX) {
        Some("an API key")
    } else if v.contains("-----BEGIN") {
        Some("a PEM block (a certificate, a private key or NATS credentials)")
    } else if v.contains('\n') {
        Some("a file's contents (several lines)")
    } else if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some("a chain key (64 hex digits)")
    } else if is_nkey_seed(v) {
        Some("an nkey seed")
    } else if v.starts_with("eyJ") && v.matches('.').count() == 2 && !v.contains('/') {
        Some("a JWT")
    } else {
        None
    }
}

/// An nkey seed: `S` and a type letter, then base32 (58 characters in all).
fn is_nkey_seed(v: &str) -> bool {
    v.len() == 58
        && v.starts_with('S')
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// Where the user information of each URL in `value` (comma-separated, as `--nats` takes
/// a cluster's) is: `user:password` or a token before an `@`.
fn userinfo(value: &str) -> Vec<std::ops::Range<usize>> {
    let mut found = Vec::new();
    let mut offset = 0;
    for part in value.split(',') {
        if let Some(scheme) = part.find("://") {
            let start = scheme + 3;
            let rest = &part[start..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if let Some(at) = rest[..end].rfind('@') {
                found.push(offset + start..offset + start + at);
            }
        }
        offset += part.len() + 1;
    }
    found
}

/// Whether `value` holds a URL with a user, password or token in it.
pub(super) fn has_credentials(value: &str) -> bool {
    !userinfo(value).is_empty()
}

/// `value` with the password (or token) of each URL in it replaced by `REDACTED`; a
/// user's name stays.
pub(super) fn redact_credentials(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut from = 0;
    for range in userinfo(value) {
        out.push_str(&value[from..range.start]);
        match value[range.clone()].split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":REDACTED");
            }
            None => out.push_str("REDACTED"),
        }
        from = range.end;
    }
    out.push_str(&value[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_given_for_a_path_are_told_from_paths() {
        let key = format!("{KEY_PREFIX}{}", "A".repeat(36));
        let seed = format!("SU{}", "A".repeat(56));
        for secret in [
            key.as_str(),
            &"0123456789abcdef".repeat(4),
            "-----BEGIN NATS USER JWT-----",
            "line one\nline two",
            &seed,
            "eyJhbGciOiJlZDI1NTE5In0.eyJzdWIiOiJVQSJ9.c2ln",
        ] {
            assert!(shape(secret).is_some(), "{secret:?}");
        }
        for path in [
            "/etc/keyledger/chain.key",
            "chain.key",
            "/run/credentials/keyledger.service/nats.creds",
            "/var/lib/keyledger/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "SUPER-SECRET-FILE-NAME",
        ] {
            assert_eq!(shape(path), None, "{path:?}");
        }
    }

    #[test]
    fn credentials_in_urls_are_found_and_redacted_names_kept() {
        assert!(!has_credentials("nats://nats.internal:4222,tls://b:4222"));
        assert!(!has_credentials("127.0.0.1:8080"));
        assert!(has_credentials("nats://host-1:s3cret@nats.internal:4222"));
        assert_eq!(
            redact_credentials("nats://a:4222,nats://host-1:s3cret@b:4222,tls://tok3n@c:4222/x@y"),
            "nats://a:4222,nats://host-1:REDACTED@b:4222,tls://REDACTED@c:4222/x@y"
        );
        assert_eq!(redact_credentials("no url here"), "no url here");
    }
}
