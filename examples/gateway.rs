//! An axum app whose `/notifications` route only a key with the role `notifier` may call.
//!
//! ```sh
//! cargo run --example gateway --features tower                      # a store in memory, with a demo key
//! cargo run --example gateway --features tower -- --db keyledger.db # keys made with the CLI
//! cargo run --example gateway --features tower -- --listen 127.0.0.1:8080 --trusted-proxy 10.0.0.0/8
//! ```
//!
//! It prints a `curl` line to call it with. Ctrl-C stops it gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use keyledger::{Actor, ApiKeyLayer, KeyStore, NewKey, TrustedProxies, VerifiedKey, parse_net};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = None;
    let mut listen: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut proxies = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--db" => db = Some(value()?),
            "--listen" => listen = value()?.parse()?,
            "--trusted-proxy" => proxies.push(value()?),
            _ => return Err(format!("unknown argument {arg:?}").into()),
        }
    }

    let (store, demo_key) = match db {
        Some(dir) => (KeyStore::builder().create_if_missing(false).open(dir)?, None),
        None => {
            let store = KeyStore::builder().open_temporary()?;
            let created = store.create_key(
                &Actor::admin("gateway-example"),
                NewKey::new("demo bot")
                    .role("notifier")
                    .allow(parse_net("127.0.0.0/8")?)
                    .allow(parse_net("::1")?),
            )?;
            let secret = created.key.expose_secret().to_owned();
            (store, Some(secret))
        }
    };

    let auth = ApiKeyLayer::new(Arc::new(store))
        .trusted_proxies(TrustedProxies::parse(&proxies)?)
        .peer_addr_from(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.ip()));
    let app = Router::new()
        .route(
            "/notifications",
            get(notifications).route_layer(auth.require_role("notifier")),
        )
        .route("/healthz", get(|| async { "ok\n" }));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let key = demo_key.as_deref().unwrap_or("$KEY");
    println!("listening on http://{addr}");
    println!("  curl -i -H 'x-api-key: {key}' http://{addr}/notifications");
    println!("  curl -i http://{addr}/notifications        # 401, no key");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Reached only through the layer, so the verified key is always there.
async fn notifications(Extension(key): Extension<VerifiedKey>) -> String {
    let roles: Vec<&str> = key.roles().collect();
    format!(
        "no new notifications for {:?} (key {}, roles {roles:?})\n",
        key.name(),
        key.id()
    )
}
