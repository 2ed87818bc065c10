//! `keyledger serve`'s server on loopback, for the benchmarks that drive it over HTTP
//! (`benches/http.rs`, `benches/scale.rs`): each side on a tokio runtime of one worker
//! thread (the machines have two cores).

use std::net::SocketAddr;
use std::sync::Arc;

use keyledger::{KeyStore, Server, TrustedProxies};
use tokio::runtime::Runtime;

/// A multi-threaded runtime with one worker, its threads named `name`.
pub(crate) fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// `keyledger serve`'s server (the library's `Server`, as the binary runs it) on a free
/// loopback port of `rt`, trusting `proxies`.
pub(crate) fn serve_keyledger(rt: &Runtime, store: Arc<KeyStore>, proxies: &[&str]) -> SocketAddr {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(store).trusted_proxies(TrustedProxies::parse(proxies).unwrap());
    rt.spawn(server.run(listener, std::future::pending()));
    addr
}
