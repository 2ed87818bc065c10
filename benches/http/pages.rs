//! `keys_page`: `GET /v1/keys` pages of 100 out of N keys (`--page-keys N`, 1,000,000 by
//! default), on `keyledger serve`'s server, one keep-alive connection in a closed loop:
//! the first page, a page from the middle (its cursor found by following pages of 1,000),
//! a page through a name filter that one key in 100 matches, and a filter that matches no
//! key (the worst case: every key is passed). Target: `keys_page_p99_ms` ≤ 2.

use std::sync::Arc;

use keyledger::{Actor, KeyStore, NewKey, read_import_lines};
use serde_json::{Value, json};

use super::{Comparison, Mode, load, runtime, serve_keyledger};

/// Adopts `n` keys into `store`, a chunk at a time; one in 100 is named `needle`.
fn adopt(store: &KeyStore, n: usize) {
    let root = Actor::super_admin("loader");
    let chunk = 100_000;
    for start in (0..n).step_by(chunk) {
        let lines: String = (start..(start + chunk).min(n))
            .map(|i| {
                let name = if i % 100 == 0 { "needle" } else { "bench key" };
                format!("{{\"name\": \"{name} {i}\", \"roles\": [\"bot\"], \"key\": \"page_bench_secret_{i:016}\"}}\n")
            })
            .collect();
        store
            .import_keys(&root, read_import_lines(lines.as_bytes()).unwrap())
            .unwrap();
    }
}

pub(crate) fn keys_page(mode: &Mode) -> Comparison {
    let n = mode.page_keys;
    let store = KeyStore::builder().open_temporary().unwrap();
    let loaded = std::time::Instant::now();
    adopt(&store, n);
    eprintln!("keys_page: {n} keys adopted in {:?}", loaded.elapsed());
    let admin = store
        .create_key(
            &Actor::super_admin("root"),
            NewKey::new("bench admin")
                .role("super-admin")
                .allow("127.0.0.0/8".parse().unwrap()),
        )
        .unwrap()
        .key
        .expose_secret()
        .to_owned();
    let server = runtime("server");
    let addr = serve_keyledger(&server, Arc::new(store), &[]);
    let client = runtime("client");

    // A cursor half way through, by following pages of 1,000.
    let mut cursor = String::new();
    let mut seen = 0;
    while seen < n / 2 {
        let path = if cursor.is_empty() {
            "/v1/keys?limit=1000".to_owned()
        } else {
            format!("/v1/keys?limit=1000&cursor={cursor}")
        };
        let page = client.block_on(get_json(addr, &path, &admin));
        seen += page["keys"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let deep: &'static str = Box::leak(format!("/v1/keys?limit=100&cursor={cursor}").into_boxed_str());
    let paths: [(&str, &'static str); 4] = [
        ("first", "/v1/keys?limit=100"),
        ("middle", deep),
        ("filtered_1_in_100", "/v1/keys?q=needle&limit=100"),
        ("filter_matching_none", "/v1/keys?q=no-such-key&limit=100"),
    ];
    let secrets = [admin];
    let mut figures = serde_json::Map::new();
    let mut ratios = Vec::new();
    for (name, path) in paths {
        let warm = load(&client, addr, path, &secrets, mode.warmup);
        assert_eq!(warm.failures, 0, "{path} answered something other than 200");
        let run = load(&client, addr, path, &secrets, mode.per_run * 2);
        assert_eq!(run.failures, 0, "{path} answered something other than 200");
        eprintln!(
            "  keys_page {name:>20}: p50 {:>8.3} ms, p99 {:>8.3} ms ({} requests)",
            run.p50_us / 1e3,
            run.p99_us / 1e3,
            run.requests
        );
        figures.insert(name.to_owned(), run.json());
        let ratio = match name {
            "first" => Some("keys_page_p99_ms"),
            "middle" => Some("keys_page_middle_p99_ms"),
            "filtered_1_in_100" => Some("keys_page_filtered_p99_ms"),
            _ => None,
        };
        if let Some(ratio) = ratio {
            ratios.push((ratio, run.p99_us / 1e3));
        }
    }
    drop(client);
    drop(server);
    figures.insert("keys".to_owned(), json!(n));
    figures.insert(
        "route".to_owned(),
        json!(
            "keyledger serve: GET /v1/keys?limit=100 (the first page, a page from the middle, q=needle \
               matching 1 key in 100, q matching none), one keep-alive connection, closed loop"
        ),
    );
    Comparison {
        name: "keys_page",
        figures: Value::Object(figures),
        ratios,
    }
}

/// One admin API GET, its JSON answer (a 200).
async fn get_json(addr: std::net::SocketAddr, path: &str, key: &str) -> Value {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", "bench")
        .header("x-api-key", key)
        .body(Empty::<&'static [u8]>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}
