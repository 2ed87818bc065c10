//! The admin API (`/v1`): the command line's management and read commands over HTTP, as
//! the actor an admin key acts as ([`KeyStore::acting_through`]), answering the command
//! line's JSON; and who that actor is (`/v1/whoami`).
//!
//! Authenticates every request before reading its body, takes a turn (bounded) before any
//! store call, and runs store calls on the blocking pool (writes wait for a sync). The
//! extractors do it ([`Identified`]: key → actor; [`Admin`]: then the turn; [`OnKey`]: then
//! the path's key id), ahead of the body's ([`JsonBody`]), so no handler repeats it.
//! Ownership and every other rule are the store's; nothing here decides who may do what.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use ipnet::IpNet;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod extract;
mod metering;
mod pages;

use super::body::{self, JsonBody};
use super::{MAX_IMPORT_BODY_BYTES, Reject, Shared};
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
use extract::{Admin, Identified, KeyIdPath, OnKey, Params, QueryRules, flag, turn};

/// Where the server mounts the admin routes.
pub(super) const NESTED_AT: &str = "/v1";

/// The admin API's routes and their OpenAPI paths, from the same declarations (each
/// handler's `#[utoipa::path]`): a route cannot be mounted undocumented, nor take a query
/// parameter its document does not list ([`QueryRules`]). To be mounted at `/v1`.
pub(super) fn routes() -> (Router<Arc<Shared>>, utoipa::openapi::OpenApi) {
    let (router, paths) = OpenApiRouter::new()
        .routes(routes!(pages::list, create))
        .routes(routes!(import))
        .routes(routes!(show, delete, update))
        .routes(routes!(whitelist, unwhitelist))
        .routes(routes!(metering::limits))
        .routes(routes!(metering::set_credits))
        .routes(routes!(metering::add_credits))
        .routes(routes!(metering::usage))
        .routes(routes!(roll))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(revoke_actor))
        .routes(routes!(pages::audit))
        .routes(routes!(whoami))
        .routes(routes!(fleet))
        .split_for_parts();
    let rules = Arc::new(QueryRules::of(&paths));
    let router = router
        .method_not_allowed_fallback(super::method_not_allowed)
        .layer(axum::Extension(rules));
    (router, paths)
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

/// `GET /v1/keys/{id}`: one key, whatever its status.
#[utoipa::path(get, path = "/keys/{id}", tag = "keys", operation_id = "show_key", params(KeyIdPath),
    responses((status = 200, description = "The key, whatever its status (live, expired, disabled or deleted).", body = KeyJson)))]
async fn show(OnKey { admin, id }: OnKey) -> Result<Response, Reject> {
    let view = admin.call(move |store, _| view_of(store, id)).await?;
    Ok(key_answer(StatusCode::OK, &KeyJson::from(&view)))
}

/// What `POST /v1/keys` takes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
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
    #[schema(value_type = Option<Object>)]
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
#[utoipa::path(post, path = "/keys", tag = "keys", operation_id = "create_key", request_body = CreateBody,
    responses((status = 201, description = "The new key, with its secret in `key`: shown this once.", body = KeyJson)))]
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

/// `POST /v1/actors/{actor}/revoke`'s query, read before the body (an unknown parameter
/// is reported first).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WithKeysParam {
    /// `true`: every key the person created is deleted too, in the same record.
    #[param(value_type = Option<bool>)]
    with_keys: Option<String>,
}

/// What `POST /v1/actors/{actor}/revoke` takes (an empty body is `{}`).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeActorBody {
    #[serde(default)]
    with_keys: Option<bool>,
}

/// `POST /v1/actors/{actor}/revoke[?with_keys=true]` (or `{"with_keys": true}`): every
/// admin key acting as the person is deleted (with `with_keys`, every key they created
/// too), in one record, before the answer; the answer names the keys.
#[utoipa::path(post, path = "/actors/{actor}/revoke", tag = "actors", operation_id = "revoke_actor",
    params(("actor" = String, Path, description = "The person whose admin keys are revoked."), WithKeysParam),
    request_body(content = RevokeActorBody, description = "Optional: `{\"with_keys\": true}` as in the query."),
    responses((status = 200, description = "The keys revoked, in one record.", body = crate::json::people::RevokedActorJson)))]
async fn revoke_actor(
    Path(person): Path<String>,
    admin: Admin,
    Params(WithKeysParam { with_keys: in_query }): Params<WithKeysParam>,
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
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys", operation_id = "delete_key", params(KeyIdPath),
    responses((status = 200, description = "The key, now deleted: it no longer verifies. Its history stays in the audit.", body = KeyJson)))]
async fn delete(on: OnKey) -> Result<Response, Reject> {
    act_on_key(on, |store, actor, id| {
        store.delete_key(actor, id).map(|r| r.unconfirmed)
    })
    .await
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WhitelistBody {
    ips: Vec<String>,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UnwhitelistBody {
    ips: Vec<String>,
    #[serde(default)]
    allow_any_address: bool,
}

/// `POST /v1/keys/{id}/whitelist` `{"ips": [...]}`: the key's view with them added.
#[utoipa::path(post, path = "/keys/{id}/whitelist", tag = "keys", operation_id = "whitelist_ips", params(KeyIdPath),
    request_body = WhitelistBody,
    responses((status = 200, description = "The key with the addresses added to its whitelist.", body = KeyJson)))]
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
#[utoipa::path(delete, path = "/keys/{id}/whitelist", tag = "keys", operation_id = "unwhitelist_ips", params(KeyIdPath),
    request_body = UnwhitelistBody,
    responses((status = 200, description = "The key with the addresses removed from its whitelist.", body = KeyJson)))]
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

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RollBody {
    /// The command line's duration syntax; none is `0s`.
    #[serde(default)]
    grace: Option<String>,
}

/// `POST /v1/keys/{id}/roll` `{"grace": "1h"}`: the command line's `roll --json` object,
/// with the new secret shown this once.
#[utoipa::path(post, path = "/keys/{id}/roll", tag = "keys", operation_id = "roll_key", params(KeyIdPath),
    request_body(content = RollBody, description = "Optional: a grace period for the previous secret."),
    responses((status = 200, description = "The new secret, shown this once.", body = RollJson)))]
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
#[utoipa::path(post, path = "/keys/{id}/disable", tag = "keys", operation_id = "disable_key", params(KeyIdPath),
    responses((status = 200, description = "The key, now disabled: it no longer verifies until enabled.", body = KeyJson)))]
async fn disable(on: OnKey) -> Result<Response, Reject> {
    act_on_key(on, |store, actor, id| {
        store.disable_key(actor, id).map(|r| r.unconfirmed)
    })
    .await
}

/// `PATCH /v1/keys/{id}` with only the fields to change (`name`, `roles` or `add_roles`
/// and `remove_roles`, `external_id`, `meta`; `null` removes an external id or metadata):
/// the key's view after the one `updated` record. The actor is the admin key's.
#[utoipa::path(patch, path = "/keys/{id}", tag = "keys", operation_id = "update_key", params(KeyIdPath),
    request_body = crate::json::owner::UpdateJson,
    responses((status = 200, description = "The key after the change, one `updated` record.", body = KeyJson)))]
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
#[utoipa::path(post, path = "/keys/{id}/enable", tag = "keys", operation_id = "enable_key", params(KeyIdPath),
    responses((status = 200, description = "The key, enabled again.", body = KeyJson)))]
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
#[utoipa::path(post, path = "/keys/import", tag = "keys", operation_id = "import_keys",
    request_body(content = String, content_type = "application/x-ndjson",
        description = "The `import-keys` JSON Lines: one key a line, all adopted or none."),
    responses((status = 201, description = "The adopted keys' ids, by line.", body = Vec<ImportedJson>)))]
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
#[utoipa::path(get, path = "/whoami", tag = "session", operation_id = "whoami",
    responses((status = 200, description = "Who the presented admin key acts as.", body = WhoamiJson)))]
async fn whoami(Identified { actor, key }: Identified) -> Result<Response, Reject> {
    Ok(body::json(StatusCode::OK, &WhoamiJson::new(&actor, key)))
}

/// `GET /v1/fleet`: this host's fleet as it sees it, for an admin key: `{"host", "stream",
/// "stream_id", "stale_ms", "unhealthy", "rejecting", "halted", "stream_fault",
/// "foreign_messages", "last_foreign", "causes": [{"cause", "reason"}], "hosts": [...],
/// "ignored_heads", "last_ignored": {"ignored_head", "reason"}, "heads_bucket_lost",
/// "writes": {"writer", "forwarded", "served", "fallbacks", "refused_requests",
/// "last_refused"}}`,
/// each host with its
/// head (`seq`, `position`), `lag` behind this host, when it was last heard from, and
/// whether it is live, stale, halted or forked. 404 `not_a_fleet` on a single host.
#[utoipa::path(get, path = "/fleet", tag = "fleet", operation_id = "fleet_status",
    responses((status = 200, description = "This host's fleet as it sees it.", body = FleetJson),
        (status = 404, description = "`not_a_fleet`: a single host.", body = crate::json::ErrorJson)))]
async fn fleet(State(shared): State<Arc<Shared>>, _: Identified) -> Result<Response, Reject> {
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
#[derive(serde::Serialize, utoipa::ToSchema)]
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
    writes: WritesJson,
}

/// Where this host's writes go: `writer` (the fleet's writer, or this host), commands
/// `forwarded` to it and `served` for others, `fallbacks` (times the writer could not be
/// reached), and requests refused on this host's writes subject, with the last reason.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct WritesJson {
    writer: String,
    forwarded: u64,
    served: u64,
    fallbacks: u64,
    refused_requests: u64,
    last_refused: Option<String>,
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
            writes: WritesJson {
                writer: f.writes.writer.clone(),
                forwarded: f.writes.forwarded,
                served: f.writes.served,
                fallbacks: f.writes.fallbacks,
                refused_requests: f.writes.refused_requests,
                last_refused: f.writes.last_refused.clone(),
            },
        }
    }
}
