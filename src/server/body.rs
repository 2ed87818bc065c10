//! Bodies: request bodies read whole with a size limit and a deadline (the admin API's
//! [`JsonBody`] extractor, with its typed [`BodyRejection`]), JSON answers, and long lists
//! (keys, audit entries) written a chunk at a time as they are serialized.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;

use super::{MAX_BODY_BYTES, Reject, Shared};
use crate::model::error::Error;

/// About how many bytes each chunk of a long list holds.
const CHUNK: usize = 64 * 1024;

/// One JSON value as the whole answer.
pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_type(status, Body::from(bytes), "application/json"),
        // The API's shapes are plain structs of strings and numbers: never happens.
        Err(_) => with_type(
            StatusCode::INTERNAL_SERVER_ERROR,
            Body::from(r#"{"error":"internal","message":"the answer could not be encoded"}"#),
            "application/json",
        ),
    }
}

pub(super) fn with_type(status: StatusCode, body: Body, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// How a list is laid out.
#[derive(Clone, Copy)]
pub(super) enum Layout {
    /// One JSON array (`application/json`).
    Array,
    /// One JSON value a line (`application/x-ndjson`), as the command line's `--json`.
    Lines,
}

/// A list of `T`, each serialized by `encode` only when the connection takes the chunk it
/// falls in: a long list costs the server its items, not their JSON as well.
pub(super) fn list<T: Send + Unpin + 'static>(
    layout: Layout,
    items: Vec<T>,
    encode: fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
) -> Response {
    let content_type = match layout {
        Layout::Array => "application/json",
        Layout::Lines => "application/x-ndjson",
    };
    let body = JsonList {
        layout,
        items: items.into_iter(),
        encode,
        opened: false,
        first: true,
        done: false,
    };
    with_type(StatusCode::OK, Body::new(body), content_type)
}

struct JsonList<T> {
    layout: Layout,
    items: std::vec::IntoIter<T>,
    encode: fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
    opened: bool,
    first: bool,
    done: bool,
}

impl<T: Unpin> http_body::Body for JsonList<T> {
    type Data = Bytes;
    type Error = serde_json::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut buf = Vec::with_capacity(CHUNK + 1024);
        if let (Layout::Array, false) = (this.layout, this.opened) {
            buf.push(b'[');
            this.opened = true;
        }
        while buf.len() < CHUNK {
            let Some(item) = this.items.next() else {
                if let Layout::Array = this.layout {
                    buf.push(b']');
                }
                this.done = true;
                break;
            };
            if let (Layout::Array, false) = (this.layout, this.first) {
                buf.push(b',');
            }
            this.first = false;
            if let Err(e) = (this.encode)(&item, &mut buf) {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            if let Layout::Lines = this.layout {
                buf.push(b'\n');
            }
        }
        if buf.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Why a request body was not taken: each answered as the admin API always answered it.
#[derive(Debug)]
pub(super) enum BodyRejection {
    /// More than `limit` bytes (declared or sent): 413.
    TooLarge { limit: usize },
    /// Not all there within the deadline: 408 `timeout`.
    Timeout { deadline: Duration },
    /// The connection failed while sending it: 400.
    Unreadable(String),
    /// Not the JSON the route takes: 400.
    Invalid(String),
}

impl From<BodyRejection> for Reject {
    fn from(rejection: BodyRejection) -> Self {
        match rejection {
            BodyRejection::TooLarge { limit } => {
                let e = Error::invalid("body", format!("larger than {limit} bytes"));
                let mut reject = Reject::from(e);
                *reject.0.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                reject
            }
            BodyRejection::Timeout { deadline } => Reject::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {} ms",
                    deadline.as_millis()
                ),
            ),
            BodyRejection::Unreadable(e) => Error::invalid("body", format!("could not be read: {e}")).into(),
            BodyRejection::Invalid(e) => Error::invalid("body", e).into(),
        }
    }
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        Reject::from(self).into_response()
    }
}

/// A JSON request body of at most [`MAX_BODY_BYTES`] read within the read timeout, as `T`
/// (an empty body reads as `{}`). Reads nothing before the extractors ahead of it in a
/// handler (authentication, the turn) have let the request in.
pub(super) struct JsonBody<T>(pub(super) T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<Shared>> for JsonBody<T> {
    type Rejection = BodyRejection;

    async fn from_request(request: Request, shared: &Arc<Shared>) -> Result<Self, BodyRejection> {
        let (parts, body) = request.into_parts();
        let bytes = read(&parts.headers, body, MAX_BODY_BYTES, shared.options.read_timeout).await?;
        parse(&bytes).map(JsonBody)
    }
}

/// Reads a request body whole: at most `limit` bytes (413 past it, before reading when
/// the request says its length), within `deadline` (408 past it).
pub(super) async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyRejection> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyRejection::TooLarge { limit });
    }
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyRejection::Timeout { deadline }),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyRejection::TooLarge { limit })
        }
        Ok(Err(e)) => Err(BodyRejection::Unreadable(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parses a JSON body into `T`; an empty body, or `null`, reads as `{}` for bodies whose
/// every field is optional.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyRejection> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| BodyRejection::Invalid(e.to_string()))
}
