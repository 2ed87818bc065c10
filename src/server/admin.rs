//! The admin API (`/v1`): the command line's management and read commands over HTTP, as
//! the actor an admin key acts as ([`KeyStore::acting_through`]), answering the command
//! line's JSON; and who that actor is (`/v1/whoami`).
//!
//! Authenticates every request before reading its body, takes a turn (bounded) before any
//! store call, and runs store calls on the blocking pool (writes wait for a sync). The
//! extractors do it ([`Identified`]: key → actor; [`Admin`]: then the turn; [`OnKey`]: then
//! the path's key id), ahead of the body's ([`JsonBody`]), so no handler repeats it.
//! Ownership and every other rule are the store's; nothing here decides who may do what.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::request::Parts;
use http::{HeaderMap, StatusCode, Uri};
use ipnet::IpNet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod metering;
mod pages;

use super::body::{self, JsonBody};
use super::{MAX_IMPORT_BODY_BYTES, Reject, Shared, query_pairs};
use crate::json::ImportedJson;
use crate::json::RollJson;
use crate::json::WhoamiJson;
use crate::json::credits::CreditsJson;
use crate::json::keys::KeyJson;
use crate::json::limits::RateLimitJson;
use crate::json::parse_grace;
use crate::json::parse_lifetime;
use crate::json::parse_time;
use crate::json::read_import_lines;
use crate::model::actor::Actor;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::rules::parse_net;
use crate::projection::KeyView;
use crate::store::KeyStore;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/keys", get(pages::list).post(create))
        .route("/keys/import", post(import))
        .route("/keys/{id}", get(show).delete(delete).patch(update))
        .route("/keys/{id}/whitelist", post(whitelist).delete(unwhitelist))
        .route("/keys/{id}/limits", put(metering::limits))
        .route("/keys/{id}/credits", put(metering::set_credits))
        .route("/keys/{id}/credits/add", post(metering::add_credits))
        .route("/keys/{id}/usage", get(metering::usage))
        .route("/keys/{id}/roll", post(roll))
        .route("/keys/{id}/disable", post(disable))
        .route("/keys/{id}/enable", post(enable))
        .route("/actors/{actor}/revoke", post(revoke_actor))
        .route("/audit", get(pages::audit))
        .route("/whoami", get(whoami))
        .route("/fleet", get(fleet))
        .method_not_allowed_fallback(super::method_not_allowed)
}

/// An admin key's request, authenticated (the key's own whitelist applies) and the actor
/// it acts as found: in memory, no turn needed.
struct Identified {
    actor: Actor,
    key: KeyId,
}

/// Why an admin request was not let in, each answered as the admin API always answered it.
enum AdminRejection {
    /// The layer refused the key: its answer, so `opaque_refusals` applies.
    Refused(Box<Response>),
    /// The key acts as no actor that may use the admin API.
    NoActor(Error),
    /// No turn within the read timeout: 503 `overloaded`.
    Overloaded,
}

impl IntoResponse for AdminRejection {
    fn into_response(self) -> Response {
        match self {
            AdminRejection::Refused(answer) => *answer,
            AdminRejection::NoActor(e) => Reject::from(e).into_response(),
            AdminRejection::Overloaded => Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many admin requests at once; retry",
            )
            .into_response(),
        }
    }
}

impl From<AdminRejection> for Reject {
    fn from(rejection: AdminRejection) -> Self {
        Reject(Box::new(rejection.into_response()))
    }
}

impl FromRequestParts<Arc<Shared>> for Identified {
    type Rejection = AdminRejection;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, AdminRejection> {
        let key = shared
            .layer
            .check_with_roles(&parts.headers, &parts.extensions, &[], 1)
            .map_err(|refusal| {
                super::log::note_refused(&parts.extensions, shared, &parts.headers, refusal);
                AdminRejection::Refused(Box::new(shared.layer.refusal_response(refusal)))
            })?;
        let actor = shared.store().acting_through(&key);
        super::log::note_actor(&parts.extensions, actor.as_ref().ok(), key.id());
        let actor = actor.map_err(AdminRejection::NoActor)?;
        Ok(Identified { actor, key: key.id() })
    }
}

/// An admin request let in: who it acts as, and its turn, taken before any body is read
/// and held until its store call returns.
struct Admin {
    actor: Actor,
    turn: OwnedSemaphorePermit,
    store: Arc<KeyStore>,
}

impl FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = AdminRejection;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, AdminRejection> {
        let Identified { actor, .. } = Identified::from_request_parts(parts, shared).await?;
        let turn = turn(&shared.admin, shared.options.read_timeout).await?;
        Ok(Admin {
            actor,
            turn,
            store: Arc::clone(shared.store()),
        })
    }
}

impl Admin {
    /// Runs `f` as the admin's actor on the blocking pool, holding the turn until it
    /// returns (even if the client has gone by then).
    async fn call<T: Send + 'static>(
        self,
        f: impl FnOnce(&KeyStore, &Actor) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Reject> {
        let Admin { actor, turn, store } = self;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            f(&store, &actor)
        })
        .await
        .map_err(|_| Reject::internal())?
        .map_err(Reject::from)
    }
}

/// An admin request on one key (`/keys/{id}...`): the path taken apart first (axum's own
/// answer if it cannot be), then the admin let in, then the id read, so that a request
/// that is not authenticated learns nothing about the ids it tries.
struct OnKey {
    admin: Admin,
    id: KeyId,
}

/// Why an [`OnKey`] request was not let in.
enum OnKeyRejection {
    Path(PathRejection),
    Admin(AdminRejection),
    /// Not a key id: 400 `invalid_input`.
    Id(Error),
}

impl IntoResponse for OnKeyRejection {
    fn into_response(self) -> Response {
        match self {
            OnKeyRejection::Path(rejection) => rejection.into_response(),
            OnKeyRejection::Admin(rejection) => rejection.into_response(),
            OnKeyRejection::Id(e) => Reject::from(e).into_response(),
        }
    }
}

impl FromRequestParts<Arc<Shared>> for OnKey {
    type Rejection = OnKeyRejection;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, OnKeyRejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, shared)
            .await
            .map_err(OnKeyRejection::Path)?;
        let admin = Admin::from_request_parts(parts, shared)
            .await
            .map_err(OnKeyRejection::Admin)?;
        let id = id.parse::<KeyId>().map_err(OnKeyRejection::Id)?;
        Ok(OnKey { admin, id })
    }
}

/// A turn from `semaphore`, waiting at most `wait`.
async fn turn(semaphore: &Arc<Semaphore>, wait: Duration) -> Result<OwnedSemaphorePermit, AdminRejection> {
    match tokio::time::timeout(wait, Arc::clone(semaphore).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(AdminRejection::Overloaded),
    }
}

/// The key's view after a change, as the answer.
fn view_of(store: &KeyStore, id: KeyId) -> Result<KeyView, Error> {
    store.key(id).ok_or(Error::KeyNotFound(id))
}

fn key_answer(status: StatusCode, json: &KeyJson) -> Response {
    body::json(status, json)
}

fn nets(ips: &[String]) -> Result<Vec<IpNet>, Reject> {
    Ok(ips.iter().map(|s| parse_net(s)).collect::<Result<_, _>>()?)
}

/// A query's parameters, each at most once and each one of `known`.
fn query(uri: &Uri, known: &[&str]) -> Result<HashMap<String, String>, Reject> {
    let mut out = HashMap::new();
    for (name, value) in query_pairs(uri.query()) {
        if !known.contains(&name.as_str()) {
            let known = known.join(", ");
            let reason = format!("unknown parameter {name:?} (known: {known})");
            return Err(Error::invalid("query", reason).into());
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(Error::invalid("query", format!("{name:?} given twice")).into());
        }
    }
    Ok(out)
}

/// `with_keys` as the query gives it, read before the body (an unknown parameter is
/// reported first).
struct WithKeys(Option<String>);

impl FromRequestParts<Arc<Shared>> for WithKeys {
    type Rejection = Reject;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Shared>) -> Result<Self, Reject> {
        Ok(WithKeys(query(&parts.uri, &["with_keys"])?.remove("with_keys")))
    }
}

/// `true` or `false`.
fn flag(field: &'static str, value: Option<&String>) -> Result<bool, Reject> {
    match value.map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Error::invalid(field, "give true or false").into()),
    }
}

/// `GET /v1/keys/{id}`: one key, whatever its status.
async fn show(OnKey { admin, id }: OnKey) -> Result<Response, Reject> {
    let view = admin.call(move |store, _| view_of(store, id)).await?;
    Ok(key_answer(StatusCode::OK, &KeyJson::from(&view)))
}

/// What `POST /v1/keys` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    ips: Vec<String>,
    /// RFC 3339.
    #[serde(default)]
    expires_at: Option<String>,
    /// The command line's duration syntax, counted from the write.
    #[serde(default)]
    expires_in: Option<String>,
    /// For an admin key: the person it acts as.
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    rate_limits: Vec<RateLimitJson>,
    #[serde(default)]
    credits: Option<CreditsJson>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    meta: Option<serde_json::Value>,
}

/// Over the admin API, an admin key a super admin makes names the person it is for (their
/// own id for a key of their own): one made without would act as the super admin, and
/// whoever holds it could touch every key the super admin made (the issue-17 attack, made
/// by forgetting a field). The command line, run by whoever holds the store, may make one
/// for its own actor without naming it; an admin's admin keys are always her own.
fn person_named(actor: &Actor, new: &crate::model::key::NewKey) -> Result<(), Error> {
    if crate::model::rules::grants_admin(&new.roles)
        && new.acts_for.is_none()
        && actor.role() == crate::model::actor::ActorRole::SuperAdmin
    {
        return Err(Error::invalid(
            "actor",
            "an admin key made through the admin API names the person it is for (\"actor\"; your own id for a \
             key of your own); an import line cannot, so make admin keys with POST /v1/keys",
        ));
    }
    Ok(())
}

/// `POST /v1/keys`: 201 with the new key's view and, this once, its secret in `key`.
async fn create(admin: Admin, JsonBody(spec): JsonBody<CreateBody>) -> Result<Response, Reject> {
    let mut new = crate::model::key::NewKey::new(spec.name);
    if let Some(person) = spec.actor {
        new = new.acting_for(person);
    }
    for role in spec.roles {
        new = new.role(role);
    }
    person_named(&admin.actor, &new)?;
    for net in nets(&spec.ips)? {
        new = new.allow(net);
    }
    for limit in RateLimitJson::to_limits(&spec.rate_limits)? {
        new = new.rate_limit(limit);
    }
    if let Some(credits) = &spec.credits {
        new = new.credits(credits.to_credits()?);
    }
    if let Some(id) = spec.external_id {
        new = new.external_id(id);
    }
    if let Some(meta) = spec.meta {
        new = new.meta(crate::model::owner::Meta::from_value(meta)?);
    }
    let lifetime = match (spec.expires_at, spec.expires_in) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("expires_in", "give expires_at or expires_in, not both").into());
        }
        (Some(at), None) => {
            new = new.expires_at(parse_time("expires_at", &at)?);
            None
        }
        (None, Some(d)) => Some(parse_lifetime(&d)?),
        (None, None) => None,
    };
    let created = admin
        .call(move |store, actor| {
            // Counted from now, after the wait for a turn, as the command line counts it
            // from after opening the store.
            if let Some(lifetime) = lifetime {
                new = new.expires_at(expiry_in(lifetime)?);
            }
            let created = store.create_key(actor, new)?;
            Ok(KeyJson::created(&view_of(store, created.id)?, &created.key))
        })
        .await?;
    Ok(key_answer(StatusCode::CREATED, &created))
}

/// What `POST /v1/actors/{actor}/revoke` takes (an empty body is `{}`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeActorBody {
    #[serde(default)]
    with_keys: Option<bool>,
}

/// `POST /v1/actors/{actor}/revoke[?with_keys=true]` (or `{"with_keys": true}`): every
/// admin key acting as the person is deleted (with `with_keys`, every key they created
/// too), in one record, before the answer; the answer names the keys.
async fn revoke_actor(
    Path(person): Path<String>,
    admin: Admin,
    WithKeys(in_query): WithKeys,
    JsonBody(spec): JsonBody<RevokeActorBody>,
) -> Result<Response, Reject> {
    let with_keys = match (in_query.as_ref(), spec.with_keys) {
        (Some(q), Some(b)) if flag("with_keys", Some(q))? != b => {
            return Err(Error::invalid("with_keys", "the query and the body disagree").into());
        }
        (q @ Some(_), _) => flag("with_keys", q)?,
        (None, b) => b.unwrap_or(false),
    };
    let answer = admin
        .call(move |store, actor| {
            let revoked = store.revoke_actor(actor, &person, with_keys)?;
            Ok(crate::json::people::RevokedActorJson::new(
                &person, with_keys, &revoked,
            ))
        })
        .await?;
    Ok(body::json(StatusCode::OK, &answer))
}

/// Now plus `lifetime`, which must stay within the times RFC 3339 can write.
fn expiry_in(lifetime: Duration) -> Result<SystemTime, Error> {
    jiff::Timestamp::now()
        .checked_add(lifetime)
        .map(SystemTime::from)
        .map_err(|_| {
            Error::invalid(
                "expires_in",
                "reaches past the year 9999; give a shorter duration",
            )
        })
}

/// `DELETE /v1/keys/{id}`: the key's view, now deleted. It no longer verifies.
async fn delete(on: OnKey) -> Result<Response, Reject> {
    act_on_key(on, |store, actor, id| {
        store.delete_key(actor, id).map(|r| r.unconfirmed)
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WhitelistBody {
    ips: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UnwhitelistBody {
    ips: Vec<String>,
    #[serde(default)]
    allow_any_address: bool,
}

/// `POST /v1/keys/{id}/whitelist` `{"ips": [...]}`: the key's view with them added.
async fn whitelist(
    OnKey { admin, id }: OnKey,
    JsonBody(change): JsonBody<WhitelistBody>,
) -> Result<Response, Reject> {
    let nets = nets(&change.ips)?;
    let view = admin
        .call(move |store, actor| {
            store.whitelist_ip(actor, id, nets)?;
            view_of(store, id)
        })
        .await?;
    Ok(key_answer(StatusCode::OK, &KeyJson::from(&view)))
}

/// `DELETE /v1/keys/{id}/whitelist` `{"ips": [...], "allow_any_address": false}`: the
/// key's view with them removed. Removing the last entry needs `allow_any_address`.
async fn unwhitelist(
    OnKey { admin, id }: OnKey,
    JsonBody(change): JsonBody<UnwhitelistBody>,
) -> Result<Response, Reject> {
    let nets = nets(&change.ips)?;
    let answer = admin
        .call(move |store, actor| {
            let revoked = if change.allow_any_address {
                store.unwhitelist_ip_allowing_any_address(actor, id, nets)?
            } else {
                store.unwhitelist_ip(actor, id, nets)?
            };
            let mut answer = KeyJson::from(&view_of(store, id)?);
            answer.unconfirmed = revoked.unconfirmed;
            Ok(answer)
        })
        .await?;
    Ok(key_answer(StatusCode::OK, &answer))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollBody {
    /// The command line's duration syntax; none is `0s`.
    #[serde(default)]
    grace: Option<String>,
}

/// `POST /v1/keys/{id}/roll` `{"grace": "1h"}`: the command line's `roll --json` object,
/// with the new secret shown this once.
async fn roll(OnKey { admin, id }: OnKey, JsonBody(spec): JsonBody<RollBody>) -> Result<Response, Reject> {
    let grace = spec.grace.as_deref().map(parse_grace).transpose()?;
    let rolled = admin
        .call(move |store, actor| {
            let rolled = store.roll_key(actor, id, grace.unwrap_or_default())?;
            Ok(RollJson::from(&rolled))
        })
        .await?;
    Ok(body::json(StatusCode::OK, &rolled))
}

/// `POST /v1/keys/{id}/disable`: the key's view, now disabled.
async fn disable(on: OnKey) -> Result<Response, Reject> {
    act_on_key(on, |store, actor, id| {
        store.disable_key(actor, id).map(|r| r.unconfirmed)
    })
    .await
}

/// `PATCH /v1/keys/{id}` with only the fields to change (`name`, `roles` or `add_roles`
/// and `remove_roles`, `external_id`, `meta`; `null` removes an external id or metadata):
/// the key's view after the one `updated` record. The actor is the admin key's.
async fn update(
    OnKey { admin, id }: OnKey,
    JsonBody(change): JsonBody<crate::json::owner::UpdateJson>,
) -> Result<Response, Reject> {
    let update = change.into_update()?;
    let view = admin
        .call(move |store, actor| {
            store.update_key(actor, id, update)?;
            view_of(store, id)
        })
        .await?;
    Ok(key_answer(StatusCode::OK, &KeyJson::from(&view)))
}

/// `POST /v1/keys/{id}/enable`: the key's view, enabled again.
async fn enable(on: OnKey) -> Result<Response, Reject> {
    act_on_key(on, |store, actor, id| {
        store.enable_key(actor, id).map(|_| Vec::new())
    })
    .await
}

/// What [`act_on_key`] does: the hosts that had not confirmed, for a revocation.
type KeyAction = fn(&KeyStore, &Actor, KeyId) -> Result<Vec<String>, Error>;

/// An action on one key that takes no body (delete, disable, enable): the key's view after
/// it, with the hosts that had not confirmed a revocation.
async fn act_on_key(OnKey { admin, id }: OnKey, to: KeyAction) -> Result<Response, Reject> {
    let answer = admin
        .call(move |store, actor| {
            let unconfirmed = to(store, actor, id)?;
            let mut answer = KeyJson::from(&view_of(store, id)?);
            answer.unconfirmed = unconfirmed;
            Ok(answer)
        })
        .await?;
    Ok(key_answer(StatusCode::OK, &answer))
}

/// `POST /v1/keys/import` with the `import-keys` JSON Lines as the body (at most
/// [`MAX_IMPORT_BODY_BYTES`]), all or none: 201 with `[{"line", "id"}, ...]`.
async fn import(
    State(shared): State<Arc<Shared>>,
    admin: Admin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Reject> {
    let one_at_a_time = turn(&shared.imports, shared.options.read_timeout).await?;
    let bytes = body::read(&headers, body, MAX_IMPORT_BODY_BYTES, shared.options.read_timeout).await?;
    let imported = admin
        .call(move |store, actor| {
            let _one_at_a_time = one_at_a_time;
            let keys = read_import_lines(&bytes[..])?;
            for (index, key) in (1..).zip(&keys) {
                person_named(actor, &key.new).map_err(|source| Error::ImportEntry {
                    index,
                    source: Box::new(source),
                })?;
            }
            let ids = store.import_keys(actor, keys)?;
            // Every line holds one key, so the store's entry N is line N.
            Ok((1..)
                .zip(ids)
                .map(|(line, id)| ImportedJson::new(line, id))
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(body::json(StatusCode::CREATED, &imported))
}

/// `GET /v1/whoami`: who the presented admin key acts as, `{"actor", "actor_role",
/// "key_id"}`; the admins' page asks it on sign-in.
async fn whoami(Identified { actor, key }: Identified, uri: Uri) -> Result<Response, Reject> {
    query(&uri, &[])?;
    Ok(body::json(StatusCode::OK, &WhoamiJson::new(&actor, key)))
}

/// `GET /v1/fleet`: this host's fleet as it sees it, for an admin key: `{"host", "stream",
/// "stream_id", "stale_ms", "unhealthy", "rejecting", "halted", "stream_fault",
/// "foreign_messages", "last_foreign", "causes": [{"cause", "reason"}], "hosts": [...],
/// "ignored_heads", "last_ignored": {"ignored_head", "reason"}, "heads_bucket_lost"}`,
/// each host with its
/// head (`seq`, `position`), `lag` behind this host, when it was last heard from, and
/// whether it is live, stale, halted or forked. 404 `not_a_fleet` on a single host.
async fn fleet(State(shared): State<Arc<Shared>>, _: Identified, uri: Uri) -> Result<Response, Reject> {
    query(&uri, &[])?;
    let Some(status) = shared.store().fleet_status() else {
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            "not_a_fleet",
            "this store is a single host: it was not started with --nats",
        ));
    };
    Ok(body::json(StatusCode::OK, &FleetJson::from(&status)))
}

/// `/v1/fleet`'s answer.
#[derive(serde::Serialize)]
struct FleetJson {
    host: String,
    stream: String,
    stream_id: String,
    stale_ms: u128,
    unhealthy: bool,
    rejecting: bool,
    halted: Option<String>,
    stream_fault: Option<String>,
    foreign_messages: u64,
    last_foreign: Option<String>,
    causes: Vec<crate::server::CauseJson>,
    hosts: Vec<crate::json::HostJson>,
    ignored_heads: u64,
    last_ignored: Option<crate::json::IgnoredJson>,
    heads_bucket_lost: u64,
}

impl From<&crate::fleet::FleetStatus> for FleetJson {
    fn from(f: &crate::fleet::FleetStatus) -> Self {
        FleetJson {
            host: f.host.clone(),
            stream: f.stream.clone(),
            stream_id: f.stream_id.clone(),
            stale_ms: f.stale_for.as_millis(),
            unhealthy: f.unhealthy,
            rejecting: f.rejecting,
            halted: f.halted.clone(),
            stream_fault: f.stream_fault.clone(),
            foreign_messages: f.foreign_messages,
            last_foreign: f.last_foreign.clone(),
            causes: crate::server::causes(f),
            hosts: f.hosts.iter().map(crate::json::HostJson::from).collect(),
            ignored_heads: f.ignored_heads,
            last_ignored: f.last_ignored.as_ref().map(crate::json::IgnoredJson::from),
            heads_bucket_lost: f.heads_bucket_lost,
        }
    }
}
