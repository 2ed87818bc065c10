//! `GET /metrics`: the store's statistics ([`KeyStore::statistics`]) and the admin API's
//! requests in the Prometheus text format (0.0.4), encoded with `prometheus-client` at
//! each scrape. Every name, help text and label is written here once; the README's
//! "Metrics" table says what each means.
//!
//! Never on the listener that answers `/auth`: its routes are a `Router<Arc<Exposition>>`,
//! a state the public router (`Router<Arc<Shared>>`) can neither merge nor nest, and
//! [`Metrics::run`] serves them on a listener of their own.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Options;
use crate::http::client_ip::TrustedProxies;
use crate::store::KeyStore;
use crate::store::stats::Histogram;

/// The most connections the metrics listener holds at once: a scraper or two.
const METRICS_CONNECTIONS: usize = 16;

/// The admin API's requests by method, route template and status, as the admin
/// middleware counts them; shared by a [`Server`](super::Server)'s routers and its
/// [`Metrics`].
#[derive(Debug, Clone, Default)]
pub(crate) struct AdminRequests(Family<AdminLabels, Counter>);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdminLabels {
    method: &'static str,
    route: String,
    status: u16,
}

impl AdminRequests {
    /// Counts one request. The method a client sent is a label only when it is one the
    /// admin API knows (else `other`), and the route is a template or `unmatched`: a
    /// client cannot grow the labels.
    pub(super) fn count(&self, method: &Method, route: &str, status: StatusCode) {
        let method = match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            _ => "other",
        };
        let labels = AdminLabels {
            method,
            route: route.to_owned(),
            status: status.as_u16(),
        };
        self.0.get_or_create(&labels).inc();
    }
}

/// A [`Server`](super::Server)'s metrics: `GET /metrics` on a listener of its own
/// (`keyledger serve --metrics-listen`), never the one that answers `/auth`; see
/// [`Server::metrics`](super::Server::metrics). Every metric is in the README's "Metrics"
/// table.
///
/// # Example
/// ```no_run
/// # async fn doc(store: std::sync::Arc<keyledger::KeyStore>) -> std::io::Result<()> {
/// let server = keyledger::Server::new(store);
/// let metrics = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
/// tokio::spawn(server.metrics().run(metrics, std::future::pending()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Metrics {
    exposition: Arc<Exposition>,
    options: Options,
}

/// What a scrape encodes.
struct Exposition {
    registry: Registry,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(super) fn new(store: Arc<KeyStore>, admin: AdminRequests, options: Options) -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "keyledger_admin_requests",
            "Admin API requests answered, by method, route template and status",
            admin.0,
        );
        registry.register_collector(Box::new(StoreCollector(store)));
        Metrics {
            exposition: Arc::new(Exposition { registry }),
            options,
        }
    }

    /// Every metric now, in the Prometheus text format (version 0.0.4, the content type
    /// `text/plain; version=0.0.4; charset=utf-8`): for a host that serves it itself.
    pub fn encode(&self) -> String {
        self.exposition.encode()
    }

    /// `GET /metrics` alone (anything else is 404), for a host to serve on a listener
    /// that only its monitoring reaches: never mount it beside [`Server::router`](super::Server::router).
    pub fn router(&self) -> Router {
        Router::<Arc<Exposition>>::new()
            .route("/metrics", get(scrape))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(Arc::clone(&self.exposition))
    }

    /// Serves [`router`](Self::router) on `listener` until `shutdown` completes, with the
    /// server's read timeout and at most 16 connections.
    pub async fn run(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) {
        let router = self.router();
        let options = Options {
            max_connections: METRICS_CONNECTIONS,
            max_connections_per_client: METRICS_CONNECTIONS,
            proxy_connections: None,
            ..self.options
        };
        super::listen::serve(router, listener, options, TrustedProxies::none(), shutdown).await;
    }
}

impl Exposition {
    fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String never fails, nor does encoding what the store read out.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

async fn scrape(State(exposition): State<Arc<Exposition>>) -> Response {
    let mut answer = exposition.encode().into_response();
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    answer
}

/// The store's statistics, read out at each scrape.
#[derive(Debug)]
struct StoreCollector(Arc<KeyStore>);

impl Collector for StoreCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = self.0.statistics();
        let mut decisions = e.encode_descriptor(
            "keyledger_auth_decisions",
            "Decisions of /auth and ApiKeyLayer, by outcome (accepted, rejected) and reason \
             (ok for accepted; else the refusal's reason code).",
            None,
            MetricType::Counter,
        )?;
        let accepted = [("outcome", "accepted"), ("reason", "ok")];
        decisions
            .encode_family(&accepted)?
            .encode_counter::<NoLabelSet, _, u64>(&s.accepted, None)?;
        for (reason, count) in &s.refused {
            let labels = [("outcome", "rejected"), ("reason", *reason)];
            decisions
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(count, None)?;
        }
        histogram(
            &mut e,
            "keyledger_verify_duration_seconds",
            "Time to decide each /auth and ApiKeyLayer request: the key and client address read, and the verify.",
            &s.verify_seconds,
        )?;
        histogram(
            &mut e,
            "keyledger_writer_batch_commands",
            "Commands in each batch the writer took (group commit).",
            &s.batch_commands,
        )?;
        histogram(
            &mut e,
            "keyledger_writer_commit_duration_seconds",
            "Time from the writer taking a batch to its callers answered: prepared, made durable \
             (or appended to the shared log), applied.",
            &s.commit_seconds,
        )?;
        histogram(
            &mut e,
            "keyledger_log_sync_duration_seconds",
            "Time each sync (fsync) of the log took.",
            &s.sync_seconds,
        )?;
        histogram(
            &mut e,
            "keyledger_snapshot_duration_seconds",
            "Time each snapshot saved took, from its start to its file synced.",
            &s.snapshot_seconds,
        )?;
        gauge(
            &mut e,
            "keyledger_snapshot_size_bytes",
            "Size of the last snapshot saved (0 before the first).",
            s.snapshot_bytes,
        )?;
        counter(
            &mut e,
            "keyledger_snapshot_failures",
            "Snapshots that could not be saved.",
            s.snapshot_failures,
        )?;
        histogram(
            &mut e,
            "keyledger_last_used_save_duration_seconds",
            "Time each save of the last-used stamps and usage counts took.",
            &s.last_used_save_seconds,
        )?;
        gauge(
            &mut e,
            "keyledger_live_keys",
            "Keys not deleted (disabled and expired ones included).",
            s.live_keys as u64,
        )?;
        gauge(
            &mut e,
            "keyledger_log_records",
            "Records in the log (the last one's sequence number).",
            s.log_records,
        )?;
        let Some(fleet) = &s.fleet else {
            return Ok(());
        };
        let mut lag = e.encode_descriptor(
            "keyledger_fleet_host_lag_records",
            "Records each host of the fleet heard from is behind this host.",
            None,
            MetricType::Gauge,
        )?;
        for host in &fleet.hosts {
            lag.encode_family(&[("host", host.host.as_str())])?
                .encode_gauge(&host.lag)?;
        }
        let live = fleet.hosts.iter().filter(|h| h.live).count() as u64;
        gauge(
            &mut e,
            "keyledger_fleet_live_hosts",
            "Hosts of the fleet heard from within their lease, this one included.",
            live,
        )?;
        counter(
            &mut e,
            "keyledger_fleet_unconfirmed_revocations",
            "Revocations whose wait ended with hosts that had not applied them.",
            s.unconfirmed_revocations,
        )?;
        gauge(
            &mut e,
            "keyledger_fleet_stale_seconds",
            "Time since this host last heard from the shared log (0 while in contact).",
            fleet.stale_for.as_secs_f64(),
        )?;
        gauge(
            &mut e,
            "keyledger_fleet_rejecting",
            "1 while this host rejects every key (fenced, catching up, or leaving), else 0.",
            u64::from(fleet.rejecting),
        )?;
        gauge(
            &mut e,
            "keyledger_fleet_halted",
            "1 once this host stopped writing, else 0.",
            u64::from(fleet.halted.is_some()),
        )?;
        gauge(
            &mut e,
            "keyledger_fleet_healthy",
            "1 while this host reports itself healthy in the fleet, else 0 (see /healthz).",
            u64::from(!fleet.unhealthy),
        )?;
        let writes = &fleet.writes;
        counter(
            &mut e,
            "keyledger_fleet_forwarded_commands",
            "Commands this host forwarded to the fleet's writer and had answered.",
            writes.forwarded,
        )?;
        counter(
            &mut e,
            "keyledger_fleet_served_commands",
            "Commands other hosts forwarded to this host, as the fleet's writer, and it took.",
            writes.served,
        )?;
        counter(
            &mut e,
            "keyledger_fleet_forward_fallbacks",
            "Times the writer could not be reached and this host appended its batches itself.",
            writes.fallbacks,
        )?;
        counter(
            &mut e,
            "keyledger_fleet_refused_write_requests",
            "Requests on this host's writes subject refused (unsealed, foreign, replayed, too old or new).",
            writes.refused_requests,
        )
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: impl EncodeGaugeValue) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}
