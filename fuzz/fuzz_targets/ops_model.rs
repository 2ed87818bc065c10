//! An arbitrary sequence of actors and commands, with restarts and a clock that moves,
//! checked after every step against a small in-memory model of the permission rules, the
//! key lifecycle (expiry, rolls with grace periods, disable and enable, adopted keys), the
//! people admin keys act for and their revocation, rate limits (a bucket per limit, full
//! again after a restart or a change), credits (spent by each accepted verify's cost,
//! refilled on the clock, kept across restarts), and of what verifies. Restarts open from
//! snapshots, whose prefix must then verify.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use keyledger::{
    Actor, Credits, Error, ExistingKey, IpNet, KeyId, KeyStore, KeyUpdate, ManualClock, NewKey, RateLimit, Refill, Rejection,
};

/// Microseconds since the epoch.
fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
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
        /// Minutes from now (0: now, which is refused).
        expires_in: Option<u8>,
        /// Make it an admin key acting for this person.
        admin_for: Option<Who>,
        /// Rate limits: see [`limit`].
        limits: Vec<(u8, u8)>,
        /// Credits to start with.
        credits: Option<u8>,
    },
    /// Set, add to or remove a key's credits.
    Credits {
        who: Who,
        key: u8,
        change: CreditChange,
    },
    /// Set a key's rate limits (none removes them).
    Limit {
        who: Who,
        key: u8,
        limits: Vec<(u8, u8)>,
    },
    /// Set (`tenant-N`, N below 4) or remove a key's external id.
    Update {
        who: Who,
        key: u8,
        external_id: Option<u8>,
    },
    /// Move the clock forward by seconds.
    Tick {
        seconds: u8,
    },
    /// Revoke a person: their admin keys, and with `with_keys` every key they made.
    RevokeActor {
        who: Who,
        person: Who,
        with_keys: bool,
    },
    /// Adopt existing secrets: indexes into [`FOREIGN`].
    Import {
        who: Who,
        secrets: Vec<u8>,
    },
    Roll {
        who: Who,
        key: u8,
        grace_minutes: u8,
    },
    Disable {
        who: Who,
        key: u8,
    },
    Enable {
        who: Who,
        key: u8,
    },
    /// Move the clock forward.
    Advance {
        minutes: u8,
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
        /// What it costs of the key's credits (0 to 2).
        cost: u8,
        /// Present the previous secret of a rolled key instead.
        previous: bool,
    },
    Restart,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum CreditChange {
    /// Set to `n`, refilled back up to `n + 1` every minute, two minutes or hour.
    Set { n: u8, refill: Option<u8> },
    /// Add `1 + n % 5`.
    Add { n: u8 },
    Remove,
}

/// A refill from the small universe the model uses.
fn refill_of(n: u8, r: u8) -> Refill {
    let every = [60, 120, 3_600][usize::from(r) % 3];
    Refill::new(u64::from(n) + 1, Duration::from_secs(every)).expect("refill")
}

/// The model of a key's credits: what is left, and its refill (amount, period and the
/// time the credits were set, in microseconds since the epoch) with the next one due.
#[derive(Clone, Debug)]
struct CreditModel {
    left: u64,
    refill: Option<(u64, u64, u64)>,
    next: u64,
}

impl CreditModel {
    fn new(credits: Credits, at: u64) -> Self {
        let refill = credits
            .refill_every()
            .map(|r| (r.amount(), r.every().as_micros() as u64, at));
        CreditModel {
            left: credits.remaining(),
            refill,
            next: refill.map_or(u64::MAX, |(_, every, at)| at + every),
        }
    }

    fn spend(&mut self, cost: u64, now: u64) -> Result<(), Rejection> {
        if let Some((amount, every, at)) = self.refill
            && now >= self.next
        {
            self.left = self.left.max(amount);
            self.next = at + ((now - at) / every + 1) * every;
        }
        if self.left < cost {
            return Err(Rejection::UsageExceeded {
                retry_after: self.refill.map(|_| Duration::from_micros(self.next - now)),
            });
        }
        self.left -= cost;
        Ok(())
    }
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

/// A small universe of rate limits: 1 to 4 requests per second, minute or hour (and
/// `5000000/1s`, refused: more than one per microsecond).
fn limit((n, w): (u8, u8)) -> Option<RateLimit> {
    let window = [1, 60, 3600, 0][usize::from(w) % 4];
    let limit = if window == 0 { 5_000_000 } else { 1 + u32::from(n % 4) };
    RateLimit::new(limit, Duration::from_secs(window.max(1))).ok()
}

/// The limits a command names, as the store would take them: canonical, or why not.
fn limits_of(raw: &[(u8, u8)]) -> Result<Vec<RateLimit>, &'static str> {
    let mut out = Vec::new();
    for &r in raw.iter().take(6) {
        out.push(limit(r).ok_or("invalid")?);
    }
    out.sort_by_key(|l| (l.window(), l.limit()));
    if out.len() > 4 || out.windows(2).any(|p| p[0].window() == p[1].window()) {
        return Err("invalid");
    }
    Ok(out)
}

/// The model of a key's buckets: per limit, the time its next request is due
/// (microseconds), as a token bucket of `limit` spaced `⌈window/limit⌉` apart.
#[derive(Default)]
struct Buckets {
    limits: Vec<RateLimit>,
    due: Vec<u64>,
}

impl Buckets {
    fn set(&mut self, limits: Vec<RateLimit>) {
        self.due = vec![0; limits.len()];
        self.limits = limits;
    }

    fn refill(&mut self) {
        self.due = vec![0; self.limits.len()];
    }

    fn take(&mut self, now: u64) -> Result<(), Rejection> {
        let mut next = self.due.clone();
        for (i, l) in self.limits.iter().enumerate() {
            let n = u64::from(l.limit());
            let t = (l.window().as_micros() as u64).div_ceil(n);
            let base = next[i].max(now);
            if base - now > t * (n - 1) {
                return Err(Rejection::RateLimited {
                    limit: *l,
                    retry_after: Duration::from_micros(base - now - t * (n - 1)),
                });
            }
            next[i] = base + t;
        }
        self.due = next;
        Ok(())
    }
}

/// Secrets a platform issued before keyledger: the first three adopted as they are, the
/// last three by their SHA-256 hashes (disjoint, so a token has one way in).
const FOREIGN: [(&str, &str); 6] = [
    ("legacy_token_number_0001", ""),
    ("legacy_token_number_0002", ""),
    ("legacy_token_number_0003", ""),
    (
        "hashed_only_token_000004",
        "cb9df2c59306768d3387b87fdf5476c44b08f393be8f5fdfc2732dd6217c6029",
    ),
    (
        "hashed_only_token_000005",
        "b1b56a8d2c9bf34d1e6eb2ed931d6a82bbfa2c251bf9114ff92d725e2176a273",
    ),
    (
        "hashed_only_token_000006",
        "acc0e24411b969b8c62955cb707f08d56beaf9313486ca36c304a949ee95341d",
    ),
];

struct ModelKey {
    id: KeyId,
    owner: &'static str,
    secret: String,
    /// The previous secret and the end of its grace period.
    previous: Option<(String, SystemTime)>,
    deleted: bool,
    disabled: bool,
    expires: Option<SystemTime>,
    whitelist: Vec<IpNet>,
    /// For an admin key (`admin` or `super-admin`): the person it acts as.
    person: Option<&'static str>,
    buckets: Buckets,
    credits: Option<CreditModel>,
    external_id: Option<String>,
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

fn kind<T>(r: &Result<T, Error>) -> Result<(), &'static str> {
    match r {
        Ok(_) => Ok(()),
        Err(Error::PermissionDenied { .. }) => Err("denied"),
        Err(Error::KeyNotFound(_)) => Err("not found"),
        Err(Error::KeyDeleted(_)) => Err("deleted"),
        Err(Error::WhitelistUnchanged { .. }) => Err("unchanged"),
        Err(Error::LastWhitelistEntry { .. }) => Err("last entry"),
        Err(Error::StateUnchanged { .. }) => Err("unchanged"),
        Err(Error::InvalidInput { .. }) => Err("invalid"),
        Err(Error::NothingToRevoke { .. }) => Err("nothing"),
        Err(Error::ImportEntry { source, .. }) => match **source {
            Error::PermissionDenied { .. } => Err("denied"),
            _ => Err("invalid"),
        },
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let dir = tempfile::tempdir().expect("temp dir");
    // In the past, so that 64 steps of at most 255 minutes stay behind the system clock
    // (records are refused when a day ahead of it).
    let clock = ManualClock::new(SystemTime::now() - Duration::from_secs(30 * 86_400));
    // Small snapshot intervals, so restarts open from snapshots too.
    let open = || {
        KeyStore::builder()
            .snapshot_every(3)
            .keep_refused(4)
            .clock(clock.clone())
            .open(dir.path())
    };
    let mut store = open().expect("open");
    let mut keys: Vec<ModelKey> = Vec::new();
    let mut seq = 0u64;
    let mut refused = 0usize;
    // Every adopted secret the log ever held: never adopted again, live or not.
    let mut ever_adopted: Vec<usize> = Vec::new();
    let unknown: KeyId = "ffffffffffffffff".parse().expect("id");
    for op in ops.into_iter().take(64) {
        let now = clock.now();
        let refused_before = refused;
        match op {
            Op::Create {
                who,
                name,
                grant_super,
                nets,
                expires_in,
                admin_for,
                ref limits,
                credits,
            } => {
                let mut new = NewKey::new(format!("key {name}")).role("bot");
                let credits = credits.map(|n| Credits::new(u64::from(n)).expect("credits"));
                if let Some(c) = credits {
                    new = new.credits(c);
                }
                // A limit `RateLimit::new` refuses never reaches the store; the others must
                // make a canonical set.
                let valid: Vec<(u8, u8)> = limits.iter().take(6).copied().filter(|&r| limit(r).is_some()).collect();
                for &r in &valid {
                    new = new.rate_limit(limit(r).expect("valid"));
                }
                let limits_ok = limits_of(&valid);
                if let Some(person) = admin_for {
                    new = new.role("admin").acting_for(owner_of(person));
                }
                let expires = expires_in.map(|m| now + Duration::from_secs(60 * u64::from(m)));
                if let Some(at) = expires {
                    new = new.expires_at(at);
                }
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
                // An admin names only herself; only a super admin names anyone.
                let allowed = match who {
                    Who::Eve => false,
                    Who::Root => true,
                    Who::Alice | Who::Bob => {
                        !grant_super && admin_for.is_none_or(|p| owner_of(p) == owner_of(who))
                    }
                };
                let person = (grant_super || admin_for.is_some())
                    .then(|| admin_for.map_or(owner_of(who), owner_of));
                let in_future = expires.is_none_or(|at| at > now);
                match result {
                    Ok(created) => {
                        assert!(allowed && in_future && limits_ok.is_ok(), "{who:?} created a key");
                        let mut buckets = Buckets::default();
                        buckets.set(limits_ok.clone().unwrap_or_default());
                        // Credits are a record of their own, in the same commit.
                        seq += 1 + u64::from(credits.is_some());
                        assert_eq!(created.seq, seq);
                        keys.push(ModelKey {
                            id: created.id,
                            owner: owner_of(who),
                            secret: created.key.expose_secret().to_owned(),
                            previous: None,
                            deleted: false,
                            disabled: false,
                            expires,
                            whitelist: distinct,
                            person,
                            buckets,
                            credits: credits.map(|c| CreditModel::new(c, micros(now))),
                            external_id: None,
                        });
                    }
                    Err(Error::PermissionDenied { .. }) => {
                        assert!(!allowed);
                        refused += 1;
                    }
                    Err(Error::InvalidInput { .. }) => assert!(!in_future || limits_ok.is_err()),
                    Err(e) => panic!("create: {e}"),
                }
            }
            Op::Import { who, ref secrets } => {
                let picks: Vec<usize> = secrets
                    .iter()
                    .take(4)
                    .map(|&s| usize::from(s) % FOREIGN.len())
                    .collect();
                let adopted: Vec<ExistingKey> = picks
                    .iter()
                    .map(|&i| {
                        let new = NewKey::new(format!("adopted {i}")).role("bot");
                        match FOREIGN[i] {
                            (secret, "") => ExistingKey::with_secret(new, secret),
                            (_, hash) => ExistingKey::with_sha256(new, hash),
                        }
                        .expect("valid adopted key")
                    })
                    .collect();
                // A secret once adopted is known for ever: live, in a grace, rolled out or
                // deleted.
                let taken = |p: usize| ever_adopted.contains(&p);
                let duplicate = picks
                    .iter()
                    .enumerate()
                    .any(|(i, &p)| picks[..i].contains(&p) || taken(p));
                let expected = match who {
                    _ if picks.is_empty() => Err("invalid"),
                    Who::Eve => Err("denied"),
                    _ if duplicate => Err("invalid"),
                    _ => Ok(()),
                };
                let result = store.import_keys(&who.actor(), adopted);
                assert_eq!(kind(&result), expected, "{op:?}");
                match result {
                    Ok(ids) => {
                        seq += ids.len() as u64;
                        for (id, p) in ids.into_iter().zip(picks) {
                            ever_adopted.push(p);
                            keys.push(ModelKey {
                                id,
                                owner: owner_of(who),
                                secret: FOREIGN[p].0.to_owned(),
                                previous: None,
                                deleted: false,
                                disabled: false,
                                expires: None,
                                whitelist: Vec::new(),
                                person: None,
                                buckets: Buckets::default(),
                                credits: None,
                                external_id: None,
                            });
                        }
                    }
                    Err(_) if expected == Err("denied") => refused += 1,
                    Err(_) => {}
                }
            }
            Op::Roll {
                who,
                key,
                grace_minutes,
            } => {
                let i = usize::from(key);
                let id = keys.get(i).map_or(unknown, |k| k.id);
                let expected = expect_modify(who, keys.get(i));
                let grace = Duration::from_secs(60 * u64::from(grace_minutes));
                let result = store.roll_key(&who.actor(), id, grace);
                assert_eq!(kind(&result), expected, "{op:?}");
                match result {
                    Ok(rolled) => {
                        seq += 1;
                        assert_eq!(rolled.previous_valid_until, now + grace);
                        let k = &mut keys[i];
                        let old = std::mem::replace(&mut k.secret, rolled.key.expose_secret().to_owned());
                        let held = (grace > Duration::ZERO).then(|| (old, now + grace));
                        k.previous = held;
                    }
                    Err(Error::PermissionDenied { .. }) => refused += 1,
                    Err(_) => {}
                }
            }
            Op::Disable { who, key } | Op::Enable { who, key } => {
                let disabling = matches!(op, Op::Disable { .. });
                let i = usize::from(key);
                let id = keys.get(i).map_or(unknown, |k| k.id);
                let mut expected = expect_modify(who, keys.get(i));
                if expected.is_ok() && keys[i].disabled == disabling {
                    expected = Err("unchanged");
                }
                let result = if disabling {
                    store.disable_key(&who.actor(), id).map(|r| r.seq)
                } else {
                    store.enable_key(&who.actor(), id)
                };
                assert_eq!(kind(&result), expected, "{op:?}");
                if result.is_ok() {
                    seq += 1;
                    keys[i].disabled = disabling;
                }
                if expected == Err("denied") {
                    refused += 1;
                }
            }
            Op::RevokeActor {
                who,
                person,
                with_keys,
            } => {
                let p = owner_of(person);
                let revoked: Vec<usize> = (0..keys.len())
                    .filter(|&i| {
                        let k = &keys[i];
                        !k.deleted && (k.person == Some(p) || (with_keys && k.owner == p))
                    })
                    .collect();
                let expected = match who {
                    Who::Root if revoked.is_empty() => Err("nothing"),
                    Who::Root => Ok(()),
                    _ => Err("denied"),
                };
                let result = store.revoke_actor(&who.actor(), p, with_keys);
                assert_eq!(kind(&result), expected, "{op:?}");
                match result {
                    Ok(answer) => {
                        seq += 1;
                        assert_eq!(answer.seq, seq);
                        let ids: Vec<KeyId> = revoked.iter().map(|&i| keys[i].id).collect();
                        assert_eq!(answer.keys, ids, "{op:?}");
                        for i in revoked {
                            keys[i].deleted = true;
                        }
                    }
                    Err(Error::PermissionDenied { .. }) => refused += 1,
                    Err(_) => {}
                }
            }
            Op::Advance { minutes } => clock.advance(Duration::from_secs(60 * u64::from(minutes))),
            Op::Tick { seconds } => clock.advance(Duration::from_secs(u64::from(seconds % 8))),
            Op::Limit { who, key, ref limits } => {
                let i = usize::from(key);
                let id = keys.get(i).map_or(unknown, |k| k.id);
                let valid: Vec<(u8, u8)> = limits.iter().take(6).copied().filter(|&r| limit(r).is_some()).collect();
                let asked: Vec<RateLimit> = valid.iter().map(|&r| limit(r).expect("valid")).collect();
                let canonical = limits_of(&valid);
                // Bad input is refused before the key is looked at.
                let mut expected = match &canonical {
                    Err(e) => Err(*e),
                    Ok(_) => expect_modify(who, keys.get(i)),
                };
                if let (Ok(()), Ok(new)) = (expected, &canonical)
                    && keys[i].buckets.limits == *new
                {
                    expected = Err("unchanged");
                }
                let result = store.set_rate_limits(&who.actor(), id, asked);
                assert_eq!(kind(&result), expected, "{op:?}");
                if expected == Err("denied") {
                    refused += 1;
                }
                if result.is_ok() {
                    seq += 1;
                    keys[i].buckets.set(canonical.unwrap_or_default());
                    assert_eq!(store.key(id).expect("key").rate_limits, keys[i].buckets.limits);
                }
            }
            Op::Update { who, key, external_id } => {
                let i = usize::from(key);
                let id = keys.get(i).map_or(unknown, |k| k.id);
                let wanted = external_id.map(|n| format!("tenant-{}", n % 4));
                let mut expected = expect_modify(who, keys.get(i));
                if expected.is_ok() && keys[i].external_id == wanted {
                    expected = Err("unchanged");
                }
                let update = match &wanted {
                    Some(e) => KeyUpdate::new().external_id(e.clone()),
                    None => KeyUpdate::new().no_external_id(),
                };
                let result = store.update_key(&who.actor(), id, update);
                assert_eq!(kind(&result), expected, "{op:?}");
                if expected == Err("denied") {
                    refused += 1;
                }
                if result.is_ok() {
                    seq += 1;
                    keys[i].external_id = wanted;
                    assert_eq!(store.key(id).expect("key").external_id, keys[i].external_id);
                }
            }
            Op::Credits { who, key, change } => {
                let i = usize::from(key);
                let id = keys.get(i).map_or(unknown, |k| k.id);
                let mut expected = expect_modify(who, keys.get(i));
                let has = expected.is_ok() && keys[i].credits.is_some();
                let result = match change {
                    CreditChange::Set { n, refill } => {
                        let mut c = Credits::new(u64::from(n)).expect("credits");
                        if let Some(r) = refill {
                            c = c.refill(refill_of(n, r));
                        }
                        store.set_credits(&who.actor(), id, Some(c)).map(|s| (s, Some(c)))
                    }
                    CreditChange::Add { n } => {
                        if expected.is_ok() && !has {
                            expected = Err("invalid");
                        }
                        store.add_credits(&who.actor(), id, 1 + u64::from(n % 5)).map(|s| (s, None))
                    }
                    CreditChange::Remove => {
                        if expected.is_ok() && !has {
                            expected = Err("unchanged");
                        }
                        store.set_credits(&who.actor(), id, None).map(|s| (s, None))
                    }
                };
                assert_eq!(kind(&result), expected, "{op:?}");
                if expected == Err("denied") {
                    refused += 1;
                }
                if let Ok((_, set)) = result {
                    seq += 1;
                    let model = &mut keys[i].credits;
                    match change {
                        CreditChange::Set { .. } => *model = set.map(|c| CreditModel::new(c, micros(now))),
                        CreditChange::Add { n } => {
                            if let Some(m) = model {
                                m.left += 1 + u64::from(n % 5);
                            }
                        }
                        CreditChange::Remove => *model = None,
                    }
                    let shown = store.key(id).expect("key").credits.map(|c| c.remaining);
                    assert_eq!(shown, model.as_ref().map(|m| m.left), "{op:?}");
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
                    store
                        .unwhitelist_ip_allowing_any_address(&who.actor(), id, [n])
                        .map(|r| r.seq)
                } else {
                    store.unwhitelist_ip(&who.actor(), id, [n]).map(|r| r.seq)
                };
                assert_eq!(kind(&result), expected, "{op:?}");
                if expected == Err("denied") {
                    refused += 1;
                }
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
                if expected == Err("denied") {
                    refused += 1;
                }
                if result.is_ok() {
                    seq += 1;
                    keys[i].deleted = true;
                }
            }
            Op::Verify {
                key,
                ip: a,
                cost,
                previous,
            } => {
                let cost = u64::from(cost % 3);
                let Some(k) = keys.get(usize::from(key)) else {
                    continue;
                };
                let (secret, valid) = match (&k.previous, previous) {
                    (Some((old, until)), true) => (old.clone(), now < *until),
                    (None, true) => continue,
                    (_, false) => (k.secret.clone(), true),
                };
                // An adopted secret whose grace ended may have been adopted again since.
                if keys.iter().any(|o| o.id != k.id && !o.deleted && o.secret == secret) {
                    continue;
                }
                let client = ip(a);
                let mapped = match client {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
                    v4 => v4,
                };
                let steady = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                let expected = if k.deleted || !valid {
                    Err(Rejection::UnknownKey)
                } else if k.expires.is_some_and(|at| now >= at) {
                    Err(Rejection::Expired)
                } else if k.disabled {
                    Err(Rejection::Disabled)
                } else if k.whitelist.is_empty() || k.whitelist.iter().any(|n| n.contains(&mapped)) {
                    Ok(k.id)
                } else {
                    Err(Rejection::IpNotWhitelisted)
                };
                let k = &mut keys[usize::from(key)];
                let expected = match expected {
                    Ok(id) => {
                        // A request refused for its credits takes nothing from the limits.
                        let before = k.buckets.due.clone();
                        let taken = k.buckets.take(steady).and_then(|()| match &mut k.credits {
                            Some(c) => c.spend(cost, micros(now)),
                            None => Ok(()),
                        });
                        if matches!(taken, Err(Rejection::UsageExceeded { .. })) {
                            k.buckets.due = before;
                        }
                        taken.map(|()| id)
                    }
                    other => other,
                };
                let answer = store.verify_with_cost(&secret, client, cost);
                assert_eq!(answer.as_ref().map(|v| v.id()), expected.as_ref().map(|id| *id), "{op:?}");
                if let Ok(v) = &answer {
                    assert_eq!(v.credits_remaining(), k.credits.as_ref().map(|c| c.left));
                }
            }
            Op::Restart => {
                drop(store);
                store = open().expect("reopen");
                for k in &mut keys {
                    k.buckets.refill();
                }
                assert_eq!(store.wait_for_integrity(), keyledger::Integrity::Verified);
                for k in &keys {
                    assert_eq!(store.key(k.id).expect("key").external_id, k.external_id);
                }
            }
        }
        assert_eq!(store.last_seq(), seq);
        assert_eq!(store.live_key_count(), keys.iter().filter(|k| !k.deleted).count());
        if refused != refused_before {
            assert_eq!(store.refused().expect("trail").len(), refused.min(4));
        }
    }
    assert_eq!(store.refused().expect("trail").len(), refused.min(4));
});
