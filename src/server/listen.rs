//! Connections: accepting them (at most so many at once, and per client as `admit`
//! decides), HTTP/1.1 on each with a header read timeout, writes that may not stall past
//! the same timeout, and graceful shutdown.
//!
//! Knows nothing of routes; hands every request to the router with its peer address.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower_service::Service;

use super::Options;
use super::admit::Admission;
use crate::http::client_ip::TrustedProxies;
use crate::http::layer::PeerAddr;

/// How long accepting pauses after an error that is not about one connection (the
/// process's file table is full, say): connections close meanwhile and free descriptors.
/// Accepting never gives up, as axum's `serve` never does.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a connection turned away is told, if its socket takes it at once, before it is
/// closed: it holds no slot while the answer goes out.
const TURNED_AWAY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

pub(super) async fn serve(
    router: Router,
    listener: TcpListener,
    options: Options,
    proxies: TrustedProxies,
    shutdown: impl Future<Output = ()>,
) {
    let limits = options.limits(&proxies);
    let slots = Arc::new(Semaphore::new(limits.total));
    let admission = Admission::new(&limits, proxies);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => continue,
                Err(_) => {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(_) => {
                // Turned away: the slot is free again at once. Never waits on the client.
                let _ = stream.try_write(TURNED_AWAY);
                continue;
            }
        };
        // Small answers go out at once rather than wait for more to fill a packet.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(StallLimit::new(stream, options.read_timeout));
        let connection = http.serve_connection(
            io,
            Peer {
                router: router.clone(),
                peer,
            },
        );
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection that fails (reset, timed out, malformed) concerns only itself.
            let _ = watched.await;
            drop(admitted);
            drop(slot);
        });
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    let _ = tokio::time::timeout(options.shutdown_timeout, graceful.shutdown()).await;
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// The router, for one connection: each request gets the connection's peer address.
#[derive(Clone)]
struct Peer {
    router: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Peer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(PeerAddr(self.peer));
        // A router is always ready.
        self.router.clone().call(request.map(axum::body::Body::new))
    }
}

/// A socket whose writes may not stall (the peer not reading) for longer than `limit`:
/// past it, the write fails and the connection closes, so a client that never reads its
/// answer cannot hold a connection slot. Reads are bounded by hyper's header timeout and
/// the body deadline instead.
struct StallLimit {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallLimit {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        StallLimit {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a write's outcome on; a write that cannot proceed starts (or checks) the clock.
    fn watch<T>(&mut self, cx: &mut Context<'_>, outcome: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let limit = self.limit;
        let clock = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if clock.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for StallLimit {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallLimit {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, outcome)
    }
}
