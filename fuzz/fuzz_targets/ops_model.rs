//! An arbitrary sequence of actors and commands, with restarts, checked after every step
//! against a small in-memory model of the permission rules and of what verifies.
//! Restarts open from snapshots, whose prefix must then verify.
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use keyledger::{Actor, Error, IpNet, KeyId, KeyStore, NewKey, Rejection};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Who {
    Root,
    Alice,
    Bob,
    Eve,
}

impl Who {
    fn actor(self) -> Actor {
        match self {
            Who::Root => Actor::super_admin("root"),
            Who::Alice => Actor::admin("alice"),
            Who::Bob => Actor::admin("bob"),
            Who::Eve => Actor::user("eve"),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Create {
        who: Who,
        name: u8,
        grant_super: bool,
        nets: Vec<u8>,
    },
    Whitelist {
        who: Who,
        key: u8,
        net: u8,
    },
    Unwhitelist {
        who: Who,
        key: u8,
        net: u8,
        /// Whether emptying the whitelist (admitting every address) is asked for.
        any: bool,
    },
    Delete {
        who: Who,
        key: u8,
    },
    Verify {
        key: u8,
        ip: u8,
    },
    Restart,
}

/// A small universe of networks and client addresses, so that matches happen.
fn net(i: u8) -> IpNet {
    let all = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "192.0.2.7/32",
        "2001:db8::/32",
        "::1/128",
        "0.0.0.0/0",
    ];
    all[usize::from(i) % all.len()].parse().expect("net")
}

fn ip(i: u8) -> IpAddr {
    let all = [
        "10.1.2.3",
        "10.200.0.1",
        "192.0.2.7",
        "192.0.2.8",
        "2001:db8::5",
        "::1",
        "::ffff:10.1.0.9",
        "8.8.8.8",
    ];
    all[usize::from(i) % all.len()].parse().expect("ip")
}

struct ModelKey {
    id: KeyId,
    owner: &'static str,
    secret: String,
    deleted: bool,
    whitelist: Vec<IpNet>,
}

fn owner_of(who: Who) -> &'static str {
    match who {
        Who::Root => "root",
        Who::Alice => "alice",
        Who::Bob => "bob",
        Who::Eve => "eve",
    }
}

/// What the rules say about `who` acting on key `k` (`None` for an unknown key).
fn expect_modify(who: Who, k: Option<&ModelKey>) -> Result<(), &'static str> {
    match (who, k) {
        (Who::Eve, _) => Err("denied"),
        (_, None) => Err("not found"),
        (Who::Alice | Who::Bob, Some(k)) if k.owner != owner_of(who) => Err("denied"),
        (_, Some(k)) if k.deleted => Err("deleted"),
        _ => Ok(()),
    }
}

fn kind(r: &Result<u64, Error>) -> Result<(), &'static str> {
    match r {
        Ok(_) => Ok(()),
        Err(Error::PermissionDenied { .. }) => Err("denied"),
        Err(Error::KeyNotFound(_)) => Err("not found"),
        Err(Error::KeyDeleted(_)) => Err("deleted"),
        Err(Error::WhitelistUnchanged { .. }) => Err("unchanged"),
        Err(Error::LastWhitelistEntry { .. }) => Err("last entry"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let dir = tempfile::tempdir().expect("temp dir");
    // Small snapshot intervals, so restarts open from snapshots too.
    let open = || KeyStore::builder().snapshot_every(3).open(dir.path());
    let mut store = open().expect("open");
    let mut keys: Vec<ModelKey> = Vec::new();
    let mut seq = 0u64;
    let unknown: KeyId = "ffffffffffffffff".parse().expect("id");
    for op in ops.into_iter().take(64) {
        match op {
            Op::Create {
                who,
                name,
                grant_super,
                nets,
            } => {
                let mut new = NewKey::new(format!("key {name}")).role("bot");
                if grant_super {
                    new = new.role("super-admin");
                }
                let mut distinct: Vec<IpNet> = Vec::new();
                for n in nets.into_iter().take(4).map(net) {
                    if !distinct.contains(&n) {
                        distinct.push(n);
                    }
                }
                for n in &distinct {
                    new = new.allow(*n);
                }
                let result = store.create_key(&who.actor(), new);
                let allowed = match who {
                    Who::Eve => false,
                    Who::Root => true,
                    Who::Alice | Who::Bob => !grant_super,
                };
                match result {
                    Ok(created) => {
                        assert!(allowed, "{who:?} created a key");
                        seq += 1;
                        assert_eq!(created.seq, seq);
                        keys.push(ModelKey {
                            id: created.id,
                            owner: owner_of(who),
                            secret: created.key.expose_secret().to_owned(),
                            deleted: false,
                            whitelist: distinct,
                        });
                    }
                    Err(Error::PermissionDenied { .. }) => assert!(!allowed),
                    Err(e) => panic!("create: {e}"),
                }
            }
            Op::Whitelist { who, key, net: n } | Op::Unwhitelist { who, key, net: n, .. } => {
                let adding = matches!(op, Op::Whitelist { .. });
                let any = matches!(op, Op::Unwhitelist { any: true, .. });
                let n = net(n);
                let i = usize::from(key);
                let id = keys.get(i).map_or(unknown, |k| k.id);
                let mut expected = expect_modify(who, keys.get(i));
                if expected.is_ok() && keys[i].whitelist.contains(&n) == adding {
                    expected = Err("unchanged");
                }
                if expected.is_ok() && !adding && !any && keys[i].whitelist == [n] {
                    expected = Err("last entry");
                }
                let result = if adding {
                    store.whitelist_ip(&who.actor(), id, [n])
                } else if any {
                    store.unwhitelist_ip_allowing_any_address(&who.actor(), id, [n])
                } else {
                    store.unwhitelist_ip(&who.actor(), id, [n])
                };
                assert_eq!(kind(&result), expected, "{op:?}");
                if result.is_ok() {
                    seq += 1;
                    let wl = &mut keys[i].whitelist;
                    if adding {
                        wl.push(n)
                    } else {
                        wl.retain(|x| *x != n)
                    }
                }
            }
            Op::Delete { who, key } => {
                let i = usize::from(key);
                let id = keys.get(i).map_or(unknown, |k| k.id);
                let expected = expect_modify(who, keys.get(i));
                let result = store.delete_key(&who.actor(), id);
                assert_eq!(kind(&result), expected, "{op:?}");
                if result.is_ok() {
                    seq += 1;
                    keys[i].deleted = true;
                }
            }
            Op::Verify { key, ip: a } => {
                let Some(k) = keys.get(usize::from(key)) else {
                    continue;
                };
                let client = ip(a);
                let mapped = match client {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
                    v4 => v4,
                };
                let expected = if k.deleted {
                    Err(Rejection::UnknownKey)
                } else if k.whitelist.is_empty() || k.whitelist.iter().any(|n| n.contains(&mapped)) {
                    Ok(k.id)
                } else {
                    Err(Rejection::IpNotWhitelisted)
                };
                assert_eq!(store.verify(&k.secret, client).map(|v| v.id()), expected);
            }
            Op::Restart => {
                drop(store);
                store = open().expect("reopen");
                assert_eq!(store.wait_for_integrity(), keyledger::Integrity::Verified);
            }
        }
        assert_eq!(store.last_seq(), seq);
        assert_eq!(store.live_key_count(), keys.iter().filter(|k| !k.deleted).count());
    }
});
