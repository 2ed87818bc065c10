use crate::model::actor::Actor;
use crate::model::actor::ActorRole;
use crate::model::id::KeyId;
use crate::model::key::KeySource;
use crate::model::record::Event;
use crate::model::record::Record;
use crate::model::rules::MAX_WHITELIST;
use crate::model::rules::parse_net;
use crate::model::rules::validate_whitelist;
use ipnet::IpNet;

use super::rules::{Origin, is_format_char, validate_actor_id, validate_name, validate_role};
use crate::model::error::Error;
use crate::model::token::KeyHash;

#[test]
fn names_are_trimmed_and_bounded() {
    for origin in [Origin::Command, Origin::Stored] {
        assert_eq!(validate_name("  bot  ", origin).unwrap(), "bot");
        assert!(validate_name("   ", origin).is_err());
        assert!(validate_name(&"x".repeat(101), origin).is_err());
        assert!(validate_name(&"é".repeat(100), origin).is_ok());
        assert!(validate_name("a\u{7}b", origin).is_err());
    }
}

/// Every format character (general category Cf) of Unicode 16.0, as ranges.
const CF: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

#[test]
fn every_format_character_is_recognised_and_its_neighbours_are_not() {
    for (lo, hi) in CF {
        for c in (lo..=hi).filter_map(char::from_u32) {
            assert!(is_format_char(c), "U+{:04X}", u32::from(c));
        }
        for outside in [lo - 1, hi + 1].into_iter().filter_map(char::from_u32) {
            assert!(!is_format_char(outside), "U+{:04X}", u32::from(outside));
        }
    }
    for c in "aZ09 _-.'é日本ßΩا\u{0300}\u{FE0F}🔑👍\u{2028}\u{FFFC}".chars() {
        assert!(!is_format_char(c), "U+{:04X}", u32::from(c));
    }
}

#[test]
fn format_characters_are_refused_in_commands_and_kept_in_stored_records() {
    for lying in [
        "alice\u{200B}",
        "\u{202E}ecila",
        "\u{FEFF}bom",
        "a\u{2066}b\u{2069}",
        "soft\u{00AD}hyphen",
        "tag\u{E0041}",
    ] {
        assert!(
            matches!(
                validate_name(lying, Origin::Command),
                Err(Error::InvalidInput { field: "name", .. })
            ),
            "{lying:?}"
        );
        assert!(
            matches!(
                validate_actor_id(lying, Origin::Command),
                Err(Error::InvalidInput { field: "actor", .. })
            ),
            "{lying:?}"
        );
        assert!(matches!(
            Actor::admin(lying).validate(),
            Err(Error::InvalidInput { .. })
        ));
        assert_eq!(validate_name(lying, Origin::Stored).unwrap(), lying);
        assert!(validate_actor_id(lying, Origin::Stored).is_ok());
    }
    for fine in [
        "café",
        "日本のボット",
        "🔑 rotation bot",
        "naïve façade",
        "ok-name_2",
    ] {
        assert_eq!(validate_name(fine, Origin::Command).unwrap(), fine);
        assert!(validate_actor_id(fine, Origin::Command).is_ok(), "{fine}");
    }
}

#[test]
fn key_shaped_names_and_actor_ids_are_refused_in_commands_without_quoting_them() {
    let key = crate::model::token::ApiKey::generate().unwrap();
    let secret = key.expose_secret();
    let body = &secret[4..20];
    for shaped in [
        secret.to_owned(),
        format!("backup of {secret}"),
        format!("{secret} (old)"),
        "klk_".to_owned(),
        format!("bot klk_{body}"),
    ] {
        let name = validate_name(&shaped, Origin::Command).unwrap_err();
        let actor = validate_actor_id(&shaped, Origin::Command).unwrap_err();
        for e in [name, actor] {
            assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
            assert!(!e.to_string().contains(body), "{e}");
            assert!(!format!("{e:?}").contains(body), "{e:?}");
        }
        assert!(validate_name(&shaped, Origin::Stored).is_ok());
        assert!(validate_actor_id(&shaped, Origin::Stored).is_ok());
    }
    assert!(validate_name("KLK-notes for klk", Origin::Command).is_ok());
}

/// A creation record by `actor` of a key named `name`.
pub(crate) fn created(actor: &str, name: &str, whitelist: Vec<IpNet>) -> Record {
    Record {
        seq: 1,
        at: 1_700_000_000_000_000,
        actor: Actor::admin(actor),
        via: None,
        event: Event::Created {
            id: KeyId(0x0123_4567_89ab_cdef),
            hash: KeyHash([7; 32]),
            tail: *b"Ab3z",
            name: name.to_owned(),
            roles: vec!["bot".to_owned()],
            whitelist,
            expires_at: None,
            source: KeySource::Generated,
            acts_for: None,
            rate_limits: Vec::new(),
        },
        prev: [0; 32],
    }
}

#[test]
fn stored_whitelists_obey_the_same_rules_as_requested_ones() {
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let ok = vec![net("10.0.0.0/8"), net("2001:db8::/32")];
    assert!(created("root", "bot", ok.clone()).validate().is_ok());
    assert_eq!(validate_whitelist(&ok).unwrap(), ok);
    for bad in [
        vec![net("10.0.0.0/8"), net("10.0.0.0/8")],
        vec![net("10.1.0.0/8")],
        vec![net("::ffff:10.0.0.0/104")],
        vec![net("10.0.0.1/32"); MAX_WHITELIST + 1],
    ] {
        assert!(
            matches!(
                created("root", "bot", bad.clone()).validate(),
                Err(Error::InvalidInput { field: "network", .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn role_names_use_a_small_alphabet() {
    assert!(validate_role("bot_2-x").is_ok());
    for bad in ["", "Bot", "a b", "é", &"r".repeat(65)] {
        assert!(
            matches!(validate_role(bad), Err(Error::InvalidInput { field: "role", .. })),
            "{bad}"
        );
    }
}

#[test]
fn nets_are_canonical() {
    assert_eq!(
        parse_net("::ffff:10.1.2.3").unwrap(),
        parse_net("10.1.2.3").unwrap()
    );
    assert_eq!(
        parse_net("::ffff:10.1.0.0/112").unwrap(),
        parse_net("10.1.0.0/16").unwrap()
    );
    assert!(parse_net("2001:db8::/32").is_ok());
    for bad in [
        "10.0.0.1/8",
        "300.1.1.1",
        "10.0.0.0/33",
        "",
        "fe80::/129",
        "1.2.3.4/-1",
    ] {
        assert!(
            matches!(parse_net(bad), Err(Error::InvalidInput { field: "network", .. })),
            "{bad}"
        );
    }
}

#[test]
fn errors_never_quote_a_key() {
    let key = crate::model::token::ApiKey::generate().unwrap();
    let secret = key.expose_secret();
    let errors = [
        secret.parse::<KeyId>().unwrap_err(),
        parse_net(secret).unwrap_err(),
        validate_role(secret).unwrap_err(),
        secret.parse::<ActorRole>().unwrap_err(),
    ];
    for e in errors {
        assert!(!e.to_string().contains(&secret[4..20]), "{e}");
    }
}

#[test]
fn key_ids_round_trip_and_reject_garbage() {
    let id = KeyId(0x00ab_cdef_0123_4567);
    assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
    for bad in ["", "00ABCDEF01234567", "00abcdef0123456", "+0abcdef01234567"] {
        assert!(bad.parse::<KeyId>().is_err(), "{bad}");
    }
}
