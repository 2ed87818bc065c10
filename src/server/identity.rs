//! Admins named by a trusted proxy instead of an admin key: the platform's own sign-in
//! (oauth2-proxy, nginx with `auth_basic` or `auth_request`) in front of the admins' page
//! and the admin API puts the signed-in person's name in a header, and keyledger maps it
//! to an actor with [`ProxyAdmins`]' table (`serve --admin-user-header X-Forwarded-User
//! --admin-user alice=admin`).
//!
//! The header is believed only from a connection whose own address is one of the admin
//! proxies, single addresses named for this alone (`--admin-proxy`), not the networks
//! trusted for `X-Forwarded-For`, which are often wide (a pod network): anyone else who
//! sends it is refused, not ignored (it is misconfiguration or an attack). It must hold
//! exactly one name: a proxy that appends the header instead of replacing it would pass a
//! client's forged name first, so two values, or a list, are refused too. The proxy's session
//! is a cookie the browser sends with any request, a forged cross-site one included, so a
//! request named this way must also carry [`CSRF_HEADER`], which no other site can make a
//! browser send (it needs a CORS preflight keyledger never grants), and must not say
//! `Sec-Fetch-Site: cross-site` or `same-site`. What the actor then does is recorded as
//! them, with no key (`via` is empty).

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::request::Parts;
use http::{HeaderName, StatusCode};

use super::Reject;
use crate::model::actor::{Actor, ActorRole};
use crate::model::error::{Denial, Error};
use crate::model::rules::shown;

/// The header every request named by the proxy must carry (any value): the admins' page
/// sends it; a page of another site cannot make a browser send it.
pub(crate) const CSRF_HEADER: &str = "x-keyledger-csrf";

/// Headers a proxy's identity may never be read from: keyledger's own, the key's, and
/// those the proxy and the client set for other purposes.
const RESERVED: [&str; 8] = [
    "x-api-key",
    CSRF_HEADER,
    "x-forwarded-for",
    "host",
    "cookie",
    "authorization",
    "origin",
    "sec-fetch-site",
];

/// The people a trusted proxy may name, the header it names them in, and the addresses it
/// connects from.
#[derive(Debug, Clone)]
pub struct ProxyAdmins {
    header: HeaderName,
    users: BTreeMap<String, ActorRole>,
    proxies: Vec<IpAddr>,
}

impl ProxyAdmins {
    /// Admins named in `header` (e.g. `X-Forwarded-User`), none yet.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (`admin user header`) for a name that is not a header
    /// name, or one of keyledger's, the key's or the proxy's own headers.
    pub fn new(header: &str) -> Result<Self, Error> {
        let header = HeaderName::try_from(header).map_err(|_| {
            Error::invalid(
                "admin user header",
                format!("{:?} is not a header name", shown(header)),
            )
        })?;
        if RESERVED.contains(&header.as_str()) || header.as_str().starts_with("x-keyledger-") {
            return Err(Error::invalid(
                "admin user header",
                format!(
                    "{header} carries something else; name the header your proxy sets (X-Forwarded-User)"
                ),
            ));
        }
        Ok(ProxyAdmins {
            header,
            users: BTreeMap::new(),
            proxies: Vec::new(),
        })
    }

    /// The proxy may connect from `addr` (one address: a network would let every host on
    /// it name any admin). Without one, every request that carries the header is refused.
    pub fn proxy(mut self, addr: IpAddr) -> Self {
        if !self.proxies.contains(&addr) {
            self.proxies.push(addr);
        }
        self
    }

    /// As [`proxy`](Self::proxy), from text: one IPv4 or IPv6 address.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (`admin proxy`) for anything else, a network included.
    pub fn proxy_from(self, addr: &str) -> Result<Self, Error> {
        let parsed = addr.trim().parse::<IpAddr>().map_err(|_| {
            Error::invalid(
                "admin proxy",
                format!(
                    "{:?} is not one address: name the proxy's own address (a network would let every host on it \
                     name any admin)",
                    shown(addr)
                ),
            )
        })?;
        Ok(self.proxy(parsed))
    }

    /// `name` may sign in, as `role` (admin or super admin).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (`admin user`) for a name no actor may have, a role that
    /// is not an admin's, or a name given twice.
    pub fn user(mut self, name: &str, role: ActorRole) -> Result<Self, Error> {
        if role == ActorRole::User {
            return Err(Error::invalid(
                "admin user",
                format!("{:?}: give admin or super-admin", shown(name)),
            ));
        }
        Actor::new(name, role)
            .validate()
            .map_err(|e| Error::invalid("admin user", e.to_string()))?;
        // Sign-ins that ignore case (LDAP, most directories) would let the case typed pick
        // the role.
        if self.users.keys().any(|known| known.eq_ignore_ascii_case(name)) {
            return Err(Error::invalid(
                "admin user",
                format!(
                    "{:?} is given twice (names are told apart regardless of case)",
                    shown(name)
                ),
            ));
        }
        self.users.insert(name.to_owned(), role);
        Ok(self)
    }

    /// `NAME=ROLE` (`alice=admin`, `root=super-admin`) added, as [`user`](Self::user).
    ///
    /// # Errors
    /// As [`user`](Self::user), and for text that is not `NAME=ROLE`.
    pub fn user_from(self, pair: &str) -> Result<Self, Error> {
        let Some((name, role)) = pair.rsplit_once('=') else {
            return Err(Error::invalid(
                "admin user",
                format!("{:?} is not NAME=ROLE (alice=admin)", shown(pair)),
            ));
        };
        let role = role
            .parse::<ActorRole>()
            .map_err(|e| Error::invalid("admin user", e.to_string()))?;
        self.user(name, role)
    }

    /// The header the proxy names people in.
    pub fn header(&self) -> &str {
        self.header.as_str()
    }

    /// The actor a request names, if it names one: `None` when it does not carry the
    /// header (the admin key decides then); else the actor, or why the request is refused.
    pub(super) fn identify(&self, parts: &Parts) -> Option<Result<Actor, Reject>> {
        let named = parts.headers.get(&self.header)?;
        Some(self.named(parts, named))
    }

    fn named(&self, parts: &Parts, named: &http::HeaderValue) -> Result<Actor, Reject> {
        let peer = super::peer_addr(&parts.extensions);
        if !peer.is_some_and(|peer| self.proxies.contains(&peer)) {
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                "proxy_identity_untrusted",
                format!(
                    "{} is believed from the admin proxies only (--admin-proxy); this connection is not one",
                    self.header
                ),
            ));
        }
        let values = parts.headers.get_all(&self.header).iter().count();
        if values != 1 || named.as_bytes().contains(&b',') {
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                "proxy_identity_ambiguous",
                format!(
                    "{} must hold one name, once: a proxy must replace the header a client sent, not add to it",
                    self.header
                ),
            ));
        }
        let fetched_from = parts
            .headers
            .get("sec-fetch-site")
            .map(http::HeaderValue::as_bytes);
        let cross_site = matches!(fetched_from, Some(b"cross-site" | b"same-site"));
        if cross_site || !parts.headers.contains_key(CSRF_HEADER) {
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                "csrf_refused",
                format!(
                    "a request signed in by the proxy must come from the admins' page: with {CSRF_HEADER}, \
                     and not from another site"
                ),
            ));
        }
        let name = named.to_str().unwrap_or_default();
        match self.users.get(name) {
            Some(role) => Ok(Actor::new(name, *role)),
            None => Err(Error::denied(&shown(name), Denial::NotAnAdmin).into()),
        }
    }
}
