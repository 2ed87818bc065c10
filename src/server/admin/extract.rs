//! Who an admin request acts as and what it asks, taken from the request's head before any
//! body is read: [`Identified`] (key → actor), [`Admin`] (then a turn), [`OnKey`] (then the
//! path's key id), and [`Params`] (the query, as the route's parameter type documents it).
//!
//! The parameter types are the OpenAPI document's too (`IntoParams`): a route takes exactly
//! the query parameters its document lists, so the two cannot differ.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::openapi::path::ParameterIn;

use super::super::{Reject, Shared, query_pairs};
use super::NESTED_AT;
use crate::model::actor::Actor;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::store::KeyStore;

/// An admin key's request, authenticated (the key's own whitelist applies) and the actor
/// it acts as found: in memory, no turn needed.
pub(super) struct Identified {
    pub(super) actor: Actor,
    /// The admin key, or none for an admin a trusted proxy named.
    pub(super) key: Option<KeyId>,
}

/// Why an admin request was not let in, each answered as the admin API always answered it.
pub(super) enum AdminRejection {
    /// The layer refused the key: its answer, so `opaque_refusals` applies.
    Refused(Box<Response>),
    /// The key acts as no actor that may use the admin API.
    NoActor(Error),
    /// No turn within the read timeout: 503 `overloaded`.
    Overloaded,
    /// A query parameter the route's document does not list, or one given twice.
    Query(Reject),
    /// A trusted proxy's naming of the admin, refused.
    Named(Reject),
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
            AdminRejection::Query(reject) | AdminRejection::Named(reject) => reject.into_response(),
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
        if let Some(named) = shared
            .proxy_admins
            .as_ref()
            .and_then(|admins| admins.identify(parts))
        {
            let actor = named.map_err(AdminRejection::Named)?;
            super::super::log::note_actor(&parts.extensions, Some(&actor), None);
            QueryRules::check(parts).map_err(AdminRejection::Query)?;
            return Ok(Identified { actor, key: None });
        }
        let key = shared
            .layer
            .check_with_roles(&parts.headers, &parts.extensions, &[], 1)
            .map_err(|refusal| {
                super::super::log::note_refused(&parts.extensions, shared, &parts.headers, refusal);
                AdminRejection::Refused(Box::new(shared.layer.refusal_response(refusal)))
            })?;
        let actor = shared.store().acting_through(&key);
        super::super::log::note_actor(&parts.extensions, actor.as_ref().ok(), Some(key.id()));
        let actor = actor.map_err(AdminRejection::NoActor)?;
        QueryRules::check(parts).map_err(AdminRejection::Query)?;
        Ok(Identified {
            actor,
            key: Some(key.id()),
        })
    }
}

/// An admin request let in: who it acts as, and its turn, taken before any body is read
/// and held until its store call returns.
pub(super) struct Admin {
    pub(super) actor: Actor,
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
    pub(super) async fn call<T: Send + 'static>(
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
pub(super) struct OnKey {
    pub(super) admin: Admin,
    pub(super) id: KeyId,
}

/// Why an [`OnKey`] request was not let in.
pub(super) enum OnKeyRejection {
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
        let Path(KeyIdPath { id }) = Path::<KeyIdPath>::from_request_parts(parts, shared)
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
pub(super) async fn turn(
    semaphore: &Arc<Semaphore>,
    wait: Duration,
) -> Result<OwnedSemaphorePermit, AdminRejection> {
    match tokio::time::timeout(wait, Arc::clone(semaphore).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(AdminRejection::Overloaded),
    }
}

/// The path of a route on one key.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct KeyIdPath {
    /// The key's id: 16 lowercase hex digits.
    #[param(pattern = "^[0-9a-f]{16}$")]
    id: String,
}

/// The query parameters each admin route takes, as its OpenAPI operation lists them (by
/// method and route template): the admin router carries them as an extension, and
/// [`Identified`] refuses any other parameter, and any given twice, once the key is let in
/// (400 `invalid_input` naming `query`). So no route takes a parameter its document does
/// not list, nor ignores one a client thought it took.
#[derive(Debug, Default)]
pub(super) struct QueryRules(HashMap<(Method, String), Vec<String>>);

impl QueryRules {
    /// The rules of the operations in `paths` (routes as mounted in the admin router).
    pub(super) fn of(paths: &utoipa::openapi::OpenApi) -> QueryRules {
        let mut rules = HashMap::new();
        for (path, item) in &paths.paths.paths {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                let Some(op) = op else { continue };
                let names = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        utoipa::openapi::RefOr::T(p) if p.parameter_in == ParameterIn::Query => {
                            Some(p.name.clone())
                        }
                        _ => None,
                    })
                    .collect();
                rules.insert((method, format!("{NESTED_AT}{path}")), names);
            }
        }
        QueryRules(rules)
    }

    fn check(parts: &Parts) -> Result<(), Reject> {
        let route = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
        let rules = parts.extensions.get::<Arc<QueryRules>>();
        let (Some(route), Some(rules)) = (route, rules) else {
            // Every admin route is mounted with both: a request without is a bug here.
            return Err(Reject::internal());
        };
        // A HEAD is its GET without the body (axum answers it with the GET handler); a
        // method no operation lists never reaches a handler (405), so none is a 405 here.
        let method = if parts.method == Method::HEAD {
            Method::GET
        } else {
            parts.method.clone()
        };
        let Some(known) = rules.0.get(&(method, route.to_owned())) else {
            return Err(Reject::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            ));
        };
        let mut seen = Vec::new();
        for (name, _) in query_pairs(parts.uri.query()) {
            if !known.contains(&name) {
                let reason = if known.is_empty() {
                    format!("unknown parameter {name:?} (this route takes none)")
                } else {
                    format!("unknown parameter {name:?} (known: {})", known.join(", "))
                };
                return Err(Error::invalid("query", reason).into());
            }
            if seen.contains(&name) {
                return Err(Error::invalid("query", format!("{name:?} given twice")).into());
            }
            seen.push(name);
        }
        Ok(())
    }
}

/// A query's parameters as `P`, the route's parameter type (whose `IntoParams` documents
/// them, and so sets the [`QueryRules`] checked before). Every field of `P` is an
/// `Option<String>`, read as the handler reads it; its documented type says what the
/// handler accepts.
pub(super) struct Params<P>(pub(super) P);

impl<P: serde::de::DeserializeOwned, S: Sync> FromRequestParts<S> for Params<P> {
    type Rejection = Reject;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Reject> {
        let given: serde_json::Map<String, serde_json::Value> = query_pairs(parts.uri.query())
            .map(|(name, value)| (name, value.into()))
            .collect();
        serde_json::from_value(serde_json::Value::Object(given))
            .map(Params)
            .map_err(|e| Error::invalid("query", e.to_string()).into())
    }
}

/// `true` or `false`, for parameter `field`.
pub(super) fn flag(field: &'static str, value: Option<&String>) -> Result<bool, Reject> {
    match value.map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Error::invalid(field, "give true or false").into()),
    }
}

/// A string parameter's schema: one of `values`.
pub(super) fn one_of<'a>(values: impl IntoIterator<Item = &'a str>) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}
