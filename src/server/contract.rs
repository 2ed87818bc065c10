//! The admin API's contract: the OpenAPI 3.1 document `GET /v1/openapi.json` answers.
//!
//! Its paths come from the routes as [`admin::routes`](super::admin) mounts them, each from
//! its handler's `#[utoipa::path]`; its bodies and answers are the schemas of the very
//! types the handlers read and write (`ToSchema`); its query parameters are the types the
//! handlers parse their queries into (`IntoParams`). What every route shares is added here,
//! once: the `x-api-key` scheme, the error answers and their shape ([`ErrorJson`]), and the
//! links from a created key to the routes on one key (for stateful clients and testers).

use utoipa::OpenApi;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::{AnyOf, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};

use crate::json::ErrorJson;

/// The security scheme's name in the document.
const SCHEME: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyledger admin API",
        description = "Issue, restrict, revoke and audit API keys over HTTP, as the admin key in \
            `x-api-key` acts. Every answer is JSON with `cache-control: no-store`; every error is an \
            `ErrorJson`. Forward-auth (`/auth`), health and the admins' page are not part of it.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorJson)),
    tags(
        (name = "keys", description = "Keys: create, import, list, show, change, revoke."),
        (name = "metering", description = "How much a key may be used (rate limits, credits) and was (usage)."),
        (name = "actors", description = "People an admin key acts as."),
        (name = "audit", description = "The hash-chained history of every change, and refused commands."),
        (name = "session", description = "Who the presented admin key acts as."),
        (name = "fleet", description = "This host's view of its fleet (hosts sharing one log on NATS)."),
    )
)]
struct Contract;

/// The errors every route may answer, with when.
const ALWAYS: [(u16, &str); 5] = [
    (
        400,
        "`invalid_input`: a parameter or the body is not what the route takes (`field` names it).",
    ),
    (
        401,
        "`unauthorized`: no admin key, or one that does not verify (`reason` says why unless the \
         server answers opaquely).",
    ),
    (
        403,
        "`forbidden` (the key is refused from this address, or is not an admin key), \
         `permission_denied` (the actor may not do this; `reason` names the rule), or for an \
         admin named by a proxy, `proxy_identity_untrusted` (the header came from \
         elsewhere), `proxy_identity_ambiguous` (not one name, once) or `csrf_refused` (no \
         `x-keyledger-csrf`, or from another site).",
    ),
    (
        429,
        "`too_many_requests`: the admin key is past one of its rate limits or out of credits.",
    ),
    (
        503,
        "`overloaded` (too many admin requests at once), or the store cannot serve: damaged, \
         closed, halted or cut off from its fleet.",
    ),
];

/// The errors of a route on one key, or that names one.
const ON_A_KEY: (u16, &str) = (
    404,
    "`key_not_found`: no key has this id (`key_deleted` for a change to a deleted key).",
);

/// The errors of a route that writes.
const WRITES: (u16, &str) = (
    409,
    "The change conflicts with the key's state (already disabled, an address already \
     whitelisted, the last whitelist entry, nothing to revoke).",
);

/// The errors of a route that reads a body.
const BODIES: [(u16, &str); 2] = [
    (408, "`timeout`: the body did not arrive within the read timeout."),
    (413, "`invalid_input` (`field`: `body`): the body is too large."),
];

/// Answers of one of several shapes that may overlap (an empty page of audit entries is
/// also an empty page of refused commands): each must match at least one, not exactly one.
const ANSWERS_OF_SEVERAL_SHAPES: [&str; 2] = ["AuditAnswer", "KeysAnswer"];

/// `oneOf` (the derive's schema of an untagged enum) made `anyOf`.
fn any_of(schema: &mut Schema) {
    if let Schema::OneOf(one) = schema {
        let mut any = AnyOf::new();
        any.items = std::mem::take(&mut one.items);
        any.description = one.description.take();
        *schema = Schema::AnyOf(any);
    }
}

/// The document for the admin routes `paths` (as mounted at [`NESTED_AT`](super::admin::NESTED_AT)), as JSON.
pub(super) fn document(paths: utoipa::openapi::OpenApi) -> String {
    let mut doc = Contract::openapi().nest(super::admin::NESTED_AT, paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-api-key",
            "An admin or super admin key, as `create --role admin` made it.",
        ))),
    );
    doc.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
    for name in ANSWERS_OF_SEVERAL_SHAPES {
        if let Some(RefOr::T(schema)) = components.schemas.get_mut(name) {
            any_of(schema);
        }
    }
    let on_key_ops: Vec<String> = doc
        .paths
        .paths
        .iter()
        .filter(|(path, _)| path.starts_with("/v1/keys/{id}"))
        .flat_map(|(_, item)| operations(item).map(|(_, op)| op.operation_id.clone()))
        .flatten()
        .collect();
    for (path, item) in &mut doc.paths.paths {
        let names_a_key = path.contains("{id}") || path == "/v1/audit";
        for (method, op) in operations_mut(item) {
            let writes = !matches!(method, HttpMethod::Get);
            let mut errors: Vec<(u16, &str)> = ALWAYS.to_vec();
            if names_a_key {
                errors.push(ON_A_KEY);
            }
            if writes {
                errors.push(WRITES);
                errors.extend(BODIES);
            }
            for (status, when) in errors {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_answer(when).into());
            }
            if op.operation_id.as_deref() == Some("create_key") {
                link_created_key(op, &on_key_ops);
            }
        }
    }
    // Serializing a document of strings and maps cannot fail; an empty answer would be
    // caught by the contract test at once.
    serde_json::to_string(&doc).unwrap_or_default()
}

/// An error answer: the `ErrorJson` shape, `when` it is given.
fn error_answer(when: &str) -> Response {
    ResponseBuilder::new()
        .description(when)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorJson"))),
        )
        .build()
}

/// Links from `POST /v1/keys`'s 201 to every operation on one key, with the new key's id:
/// what a stateful client (or Schemathesis) follows to act on the key it made.
fn link_created_key(op: &mut Operation, targets: &[String]) {
    let Some(RefOr::T(created)) = op.responses.responses.get_mut("201") else {
        return;
    };
    for target in targets {
        let link = LinkBuilder::new()
            .operation_id(target)
            .parameter("id", "$response.body#/id")
            .description(format!("`{target}` on the key just created"))
            .build();
        created.links.insert(target.clone(), link.into());
    }
}

fn operations(item: &utoipa::openapi::PathItem) -> impl Iterator<Item = (HttpMethod, &Operation)> {
    [
        (HttpMethod::Get, &item.get),
        (HttpMethod::Post, &item.post),
        (HttpMethod::Put, &item.put),
        (HttpMethod::Patch, &item.patch),
        (HttpMethod::Delete, &item.delete),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_ref().map(|op| (method, op)))
}

fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, &mut item.get),
        (HttpMethod::Post, &mut item.post),
        (HttpMethod::Put, &mut item.put),
        (HttpMethod::Patch, &mut item.patch),
        (HttpMethod::Delete, &mut item.delete),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::store::page::MAX_PAGE_LIMIT;

    fn doc() -> Value {
        serde_json::from_str(&document(super::super::admin::routes().1)).unwrap()
    }

    #[test]
    fn page_sizes_are_documented_with_the_stores_own_bounds() {
        let doc = doc();
        for path in ["/v1/keys", "/v1/audit"] {
            let limit = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "limit")
                .unwrap();
            assert_eq!(limit["schema"]["maximum"], MAX_PAGE_LIMIT, "{path}");
            assert_eq!(limit["schema"]["minimum"], 1, "{path}");
        }
    }

    #[test]
    fn answers_of_overlapping_shapes_match_any_of_them_not_exactly_one() {
        let doc = doc();
        for name in ANSWERS_OF_SEVERAL_SHAPES {
            let schema = &doc["components"]["schemas"][name];
            assert!(schema["anyOf"].is_array(), "{name}: {schema}");
            assert!(schema.get("oneOf").is_none(), "{name}: {schema}");
        }
    }

    #[test]
    fn a_created_key_links_to_every_operation_on_one_key_and_every_operation_its_errors() {
        let doc = doc();
        let links = doc["paths"]["/v1/keys"]["post"]["responses"]["201"]["links"]
            .as_object()
            .unwrap();
        let mut on_key = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for status in ["400", "401", "403", "429", "503"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
                if path.starts_with("/v1/keys/{id}") {
                    on_key += 1;
                    let id = op["operationId"].as_str().unwrap();
                    assert_eq!(links[id]["parameters"]["id"], "$response.body#/id", "{id}");
                    assert!(responses.contains_key("404"), "{method} {path}");
                }
            }
        }
        assert_eq!(links.len(), on_key);
    }
}
