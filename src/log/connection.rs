//! Where the shared log's stream is and how to reach it: plain values the fleet's options
//! hand down to the NATS engine, so that the engine knows nothing of the fleet.

// Without the `nats` feature the options are still kept (the fleet's options name them),
// but no engine reads them.
#![cfg_attr(not(feature = "nats"), allow(dead_code))]

use std::path::PathBuf;
use std::time::Duration;

/// How this host proves itself to the NATS server.
#[derive(Clone, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
    CredsFile(PathBuf),
}

impl Auth {
    /// What kind of proof this is, with every secret left out.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::UserPassword(..) => "user and password (redacted)",
            Auth::Token(_) => "token (redacted)",
            Auth::CredsFile(_) => "creds file",
        }
    }
}

/// TLS settings passed through to the NATS client.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    pub(crate) required: bool,
    pub(crate) root_certificates: Option<PathBuf>,
    pub(crate) client_certificate: Option<(PathBuf, PathBuf)>,
}

/// Everything the engine needs to connect and to find or make the stream and the heads
/// bucket.
#[derive(Clone)]
pub(crate) struct Connection {
    /// The server URLs, comma-separated (they may carry credentials: see
    /// [`without_userinfo`]).
    pub(crate) urls: String,
    pub(crate) auth: Auth,
    pub(crate) tls: Tls,
    /// The name this client gives the server.
    pub(crate) client_name: String,
    /// How long a request may wait for the server.
    pub(crate) request_timeout: Duration,
    /// How long, out of touch, an announcement waits before it counts as failed.
    pub(crate) patience: Duration,
    /// The stream's name and the one subject it takes.
    pub(crate) stream: String,
    pub(crate) subject: String,
    /// The subject the hosts report what they admitted on (core NATS, never the stream).
    pub(crate) usage_subject: String,
    /// Where a host takes the writes other hosts forward to it, and where it hears the
    /// answers to its own: these, a dot, its id (core NATS, never the stream).
    pub(crate) writes_subject: String,
    pub(crate) answers_subject: String,
    /// How many servers keep each message.
    pub(crate) replicas: usize,
    /// The key-value bucket the hosts announce their heads in, and how long its entries
    /// live at least.
    pub(crate) heads_bucket: String,
    pub(crate) heads_max_age: Duration,
    /// The object store the hosts leave sealed snapshots in, for joining hosts.
    pub(crate) snapshots_bucket: String,
    /// The host whose forwarded writes this connection takes: its subjects are probed as
    /// it connects. `None` for a connection that only reads.
    pub(crate) serves: Option<String>,
}

/// The server URLs with any `user:password@` or `token@` part replaced, for messages.
pub(crate) fn without_userinfo(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..])
            }
            (None, Some(at)) => format!("<redacted>@{}", &url[at + 1..]),
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}
