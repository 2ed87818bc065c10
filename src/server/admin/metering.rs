//! The admin API's routes about how much a key may be used and was: its rate limits, its
//! credits and its usage. Shapes and store calls only, under the same extractors and
//! answers as the rest of the admin API (`super`).

use std::time::SystemTime;

use axum::response::Response;
use http::StatusCode;

use super::extract::{KeyIdPath, OnKey, Params};
use super::{key_answer, view_of};
use crate::json::credits::CreditsJson;
use crate::json::keys::KeyJson;
use crate::json::limits::RateLimitJson;
use crate::json::parse_time;
use crate::json::usage::UsageJson;
use crate::json::usage::usage_since_default;
use crate::model::error::Error;
use crate::model::usage::Granularity;
use crate::server::Reject;
use crate::server::body::{self, JsonBody};

/// `GET /v1/keys/{id}/usage`'s query.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageQuery {
    /// RFC 3339: the first bucket holds this time (default: 24 hours, or 30 days, before
    /// `until`).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// RFC 3339: the last bucket holds this time (default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// `hour` (the default) or `day` (UTC days).
    #[param(value_type = Option<String>, schema_with = granularities)]
    granularity: Option<String>,
}

fn granularities() -> utoipa::openapi::Object {
    super::extract::one_of(Granularity::ALL.map(Granularity::as_str))
}

/// `GET /v1/keys/{id}/usage[?since=&until=&granularity=hour|day]`: the key's requests per
/// hour (or UTC day), accepted and refused by reason; by default the last 24 hours (30 days).
#[utoipa::path(get, path = "/keys/{id}/usage", tag = "metering", operation_id = "key_usage", params(KeyIdPath, UsageQuery),
    responses((status = 200, description = "The key's accepted and refused requests per hour or day.", body = UsageJson)))]
pub(super) async fn usage(
    OnKey { admin, id }: OnKey,
    Params(params): Params<UsageQuery>,
) -> Result<Response, Reject> {
    let granularity = params
        .granularity
        .map_or(Ok(Granularity::Hour), |s| s.parse::<Granularity>())?;
    let until = params.until.map(|s| parse_time("until", &s)).transpose()?;
    let since = params.since.map(|s| parse_time("since", &s)).transpose()?;
    let buckets = admin
        .call(move |store, _| {
            let until = until.unwrap_or_else(SystemTime::now);
            let since = since.unwrap_or_else(|| usage_since_default(granularity, until));
            store.usage(id, since, until, granularity)
        })
        .await?;
    Ok(body::json(
        StatusCode::OK,
        &UsageJson::new(id, granularity, &buckets),
    ))
}

/// What `PUT /v1/keys/{id}/limits` takes: every limit the key is to have.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsBody {
    rate_limits: Vec<RateLimitJson>,
}

/// `PUT /v1/keys/{id}/limits` `{"rate_limits": [{"limit": 100, "window": "1m"}, ...]}`:
/// the key's view with exactly these limits; an empty list removes them. The list is
/// required, so an empty body removes nothing.
#[utoipa::path(put, path = "/keys/{id}/limits", tag = "metering", operation_id = "set_rate_limits", params(KeyIdPath), request_body = LimitsBody,
    responses((status = 200, description = "The key with its rate limits replaced.", body = KeyJson)))]
pub(super) async fn limits(
    OnKey { admin, id }: OnKey,
    JsonBody(change): JsonBody<LimitsBody>,
) -> Result<Response, Reject> {
    let limits = RateLimitJson::to_limits(&change.rate_limits)?;
    let view = admin
        .call(move |store, actor| {
            store.set_rate_limits(actor, id, limits)?;
            view_of(store, id)
        })
        .await?;
    Ok(key_answer(StatusCode::OK, &KeyJson::from(&view)))
}

/// What `PUT /v1/keys/{id}/credits` takes: the key's credits, or `null` to remove them.
/// The field is required, so an empty body removes nothing.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreditsBody {
    #[schema(value_type = Option<CreditsJson>, required = true)]
    credits: serde_json::Value,
}

/// `PUT /v1/keys/{id}/credits` `{"credits": {"remaining": 10000, "refill": {"amount":
/// 10000, "every": "30d"}}}` (or `{"credits": null}`): the key's view with these credits,
/// its count started again.
#[utoipa::path(put, path = "/keys/{id}/credits", tag = "metering", operation_id = "set_credits", params(KeyIdPath), request_body = CreditsBody,
    responses((status = 200, description = "The key with its credits set (or removed, for `null`).", body = KeyJson)))]
pub(super) async fn set_credits(
    OnKey { admin, id }: OnKey,
    JsonBody(change): JsonBody<CreditsBody>,
) -> Result<Response, Reject> {
    let credits = match change.credits {
        serde_json::Value::Null => None,
        value => Some(
            serde_json::from_value::<CreditsJson>(value)
                .map_err(|e| Error::invalid("credits", e.to_string()))?
                .to_credits()?,
        ),
    };
    let view = admin
        .call(move |store, actor| {
            store.set_credits(actor, id, credits)?;
            view_of(store, id)
        })
        .await?;
    Ok(key_answer(StatusCode::OK, &KeyJson::from(&view)))
}

/// What `POST /v1/keys/{id}/credits/add` takes.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AddCreditsBody {
    amount: u64,
}

/// `POST /v1/keys/{id}/credits/add` `{"amount": 500}`: the key's view with `amount` more
/// credits.
#[utoipa::path(post, path = "/keys/{id}/credits/add", tag = "metering", operation_id = "add_credits", params(KeyIdPath), request_body = AddCreditsBody,
    responses((status = 200, description = "The key with the credits added.", body = KeyJson)))]
pub(super) async fn add_credits(
    OnKey { admin, id }: OnKey,
    JsonBody(change): JsonBody<AddCreditsBody>,
) -> Result<Response, Reject> {
    let view = admin
        .call(move |store, actor| {
            store.add_credits(actor, id, change.amount)?;
            view_of(store, id)
        })
        .await?;
    Ok(key_answer(StatusCode::OK, &KeyJson::from(&view)))
}
