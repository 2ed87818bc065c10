//! The layer's unit tests: the mapping of every refusal, the check's order, and the
//! service's readiness and pass-through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;

use super::*;
use crate::model::actor::Actor;
use crate::model::key::NewKey;
use crate::model::token::HeaderProblem;
use crate::model::token::format::Malformed;

/// A key past `2/1h`, free again in 1799.2 s.
const RATE_LIMITED: Rejection = Rejection::RateLimited {
    limit: crate::model::limit::RateLimit {
        window_secs: 3600,
        limit: 2,
    },
    retry_after: std::time::Duration::from_millis(1_799_200),
};

/// Every variant of every reason. A new `Rejection` does not compile in `status` until
/// it is mapped; add it here too.
fn every_refusal() -> Vec<Refusal> {
    let malformed = [
        Malformed::Length,
        Malformed::Character,
        Malformed::Prefix,
        Malformed::Checksum,
    ]
    .map(Rejection::Malformed);
    let header = [
        HeaderProblem::Missing,
        HeaderProblem::Repeated,
        HeaderProblem::NotAscii,
        HeaderProblem::Padded,
    ]
    .map(Rejection::Header);
    let rest = [
        Rejection::UnknownKey,
        Rejection::IpNotWhitelisted,
        Rejection::NoWhitelist,
        Rejection::Expired,
        Rejection::Disabled,
        Rejection::Stale,
        RATE_LIMITED,
    ];
    let mut all: Vec<Refusal> = malformed
        .into_iter()
        .chain(header)
        .chain(rest)
        .map(Refusal::Key)
        .collect();
    all.extend([
        Refusal::RoleMissing,
        Refusal::NoPeerAddress,
        Refusal::ForwardedFor(ForwardedForProblem::Malformed),
        Refusal::ForwardedFor(ForwardedForProblem::TooManyHops),
    ]);
    all
}

#[test]
fn every_refusal_answers_401_403_429_or_503_with_its_reason_as_json() {
    for refusal in every_refusal() {
        let response: Response<String> = refusal.response();
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        let status = response.status();
        let error = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            other => panic!("{refusal:?} answers {other}"),
        };
        assert_eq!(
            status == StatusCode::SERVICE_UNAVAILABLE,
            refusal == Refusal::Key(Rejection::Stale),
            "{refusal:?}"
        );
        assert_eq!(
            status == StatusCode::TOO_MANY_REQUESTS,
            refusal == Refusal::Key(RATE_LIMITED),
            "{refusal:?}"
        );
        let rate_headers = ["retry-after", "ratelimit", "ratelimit-policy"]
            .map(|name| response.headers().get(name).map(|v| v.to_str().unwrap()));
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(
                rate_headers,
                [
                    Some("1800"),
                    Some(r#""2/1h";r=0;t=1800"#),
                    Some(r#""2/1h";q=2;w=3600"#)
                ]
            );
        } else {
            assert_eq!(rate_headers, [None; 3], "{refusal:?}");
        }
        assert_eq!(
            body,
            serde_json::json!({"error": error, "reason": refusal.code()})
        );
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            response
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap()),
            (status == StatusCode::UNAUTHORIZED).then_some("ApiKey header=\"x-api-key\""),
            "{refusal:?}"
        );
        assert_eq!(response.extensions().get::<Refusal>(), Some(&refusal));
    }
}

#[test]
fn only_a_key_that_is_good_but_not_for_here_is_forbidden() {
    let forbidden: Vec<&str> = every_refusal()
        .iter()
        .filter(|r| r.status() == StatusCode::FORBIDDEN)
        .map(Refusal::code)
        .collect();
    assert_eq!(
        forbidden,
        [
            "ip_not_whitelisted",
            "no_whitelist",
            "role_missing",
            "client_address_unknown",
            "client_address_unknown",
            "client_address_unknown"
        ]
    );
}

struct Fixture {
    store: Arc<KeyStore>,
    secret: String,
}

fn fixture() -> Fixture {
    let store = KeyStore::builder().open_temporary().unwrap();
    let created = store
        .create_key(
            &Actor::admin("alice"),
            NewKey::new("bot")
                .role("notifier")
                .allow("198.51.100.0/24".parse().unwrap())
                .external_id("tenant-1"),
        )
        .unwrap();
    Fixture {
        store: Arc::new(store),
        secret: created.key.expose_secret().to_owned(),
    }
}

fn request(secret: Option<&str>, peer: Option<&str>, forwarded: &[&str]) -> Request<()> {
    let mut builder = Request::builder().uri("/");
    if let Some(secret) = secret {
        builder = builder.header("x-api-key", secret);
    }
    for hop in forwarded {
        builder = builder.header("x-forwarded-for", *hop);
    }
    let mut request = builder.body(()).unwrap();
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(peer.parse().unwrap(), 40000)));
    }
    request
}

fn check(layer: &ApiKeyLayer, request: &Request<()>) -> Result<VerifiedKey, Refusal> {
    layer.check(request.headers(), request.extensions())
}

#[test]
fn check_reads_the_key_then_the_address_then_the_roles() {
    let f = fixture();
    let layer = ApiKeyLayer::new(Arc::clone(&f.store));
    let good = check(&layer, &request(Some(&f.secret), Some("198.51.100.7"), &[])).unwrap();
    assert_eq!(good.name(), "bot");
    assert_eq!(
        check(&layer, &request(None, None, &[])),
        Err(Refusal::Key(Rejection::Header(HeaderProblem::Missing)))
    );
    assert_eq!(
        check(&layer, &request(Some(&f.secret), None, &[])),
        Err(Refusal::NoPeerAddress)
    );
    assert_eq!(
        check(&layer, &request(Some(&f.secret), Some("203.0.113.1"), &[])),
        Err(Refusal::Key(Rejection::IpNotWhitelisted))
    );
    let needs_two = layer.clone().require_role("notifier").require_role("admin");
    assert_eq!(
        check(&needs_two, &request(Some(&f.secret), Some("198.51.100.7"), &[])),
        Err(Refusal::RoleMissing)
    );
    let needs_one = layer.require_role("notifier");
    assert!(check(&needs_one, &request(Some(&f.secret), Some("198.51.100.7"), &[])).is_ok());
}

#[test]
fn behind_trusted_proxies_the_forwarded_address_is_verified() {
    let f = fixture();
    let layer = ApiKeyLayer::new(Arc::clone(&f.store))
        .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).unwrap());
    let via = |forwarded: &[&str]| check(&layer, &request(Some(&f.secret), Some("10.0.0.1"), forwarded));
    assert!(via(&["198.51.100.7"]).is_ok());
    assert!(via(&["203.0.113.1, 198.51.100.7, 10.0.0.2"]).is_ok());
    assert_eq!(
        via(&["198.51.100.7, 203.0.113.1"]),
        Err(Refusal::Key(Rejection::IpNotWhitelisted))
    );
    assert_eq!(
        via(&["198.51.100.7, nonsense"]),
        Err(Refusal::ForwardedFor(ForwardedForProblem::Malformed))
    );
    // Without trust the same header is ignored.
    let direct = ApiKeyLayer::new(Arc::clone(&f.store));
    assert_eq!(
        check(
            &direct,
            &request(Some(&f.secret), Some("10.0.0.1"), &["198.51.100.7"])
        ),
        Err(Refusal::Key(Rejection::IpNotWhitelisted))
    );
}

#[test]
fn another_peer_address_reader_replaces_the_extension() {
    let f = fixture();
    let layer = ApiKeyLayer::new(Arc::clone(&f.store)).peer_addr_from(|ext| ext.get::<IpAddr>().copied());
    let mut req = request(Some(&f.secret), Some("198.51.100.7"), &[]);
    assert_eq!(check(&layer, &req), Err(Refusal::NoPeerAddress));
    req.extensions_mut()
        .insert("198.51.100.9".parse::<IpAddr>().unwrap());
    assert!(check(&layer, &req).is_ok());
}

/// An inner service that counts readiness checks and calls, and answers with the
/// verified key's name.
#[derive(Clone, Default)]
struct Inner {
    ready: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Service<Request<()>> for Inner {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.ready.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let owner = request
            .extensions()
            .get::<crate::model::owner::KeyOwner>()
            .and_then(|o| o.external_id.clone());
        let name = request
            .extensions()
            .get::<VerifiedKey>()
            .map(|k| format!("{} for {}", k.name(), owner.as_deref().unwrap_or("nobody")));
        std::future::ready(name.map(Response::new).ok_or("no verified key"))
    }
}

fn answer<S>(service: &mut S, request: Request<()>) -> Result<Response<String>, &'static str>
where
    S: Service<Request<()>, Response = Response<String>, Error = &'static str>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut future = std::pin::pin!(service.call(request));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the test's inner service is always ready"),
    }
}

#[test]
fn the_service_passes_good_requests_with_the_key_and_its_owner_and_answers_the_rest_itself() {
    let f = fixture();
    let inner = Inner::default();
    let mut service = ApiKeyLayer::new(Arc::clone(&f.store)).layer(inner.clone());
    let passed = answer(&mut service, request(Some(&f.secret), Some("198.51.100.7"), &[])).unwrap();
    assert_eq!(passed.body(), "bot for tenant-1");
    assert_eq!(inner.calls.load(Ordering::Relaxed), 1);

    let refused = answer(&mut service, request(Some(&f.secret), Some("203.0.113.1"), &[])).unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(!refused.body().contains(&f.secret[4..]));
    assert_eq!(
        inner.calls.load(Ordering::Relaxed),
        1,
        "a refused request never reaches the inner service"
    );
    assert_eq!(
        inner.ready.load(Ordering::Relaxed),
        2,
        "readiness is the inner service's"
    );
}

#[test]
fn opaque_refusals_still_tell_a_rate_limited_key_when_to_retry() {
    let f = fixture();
    let opaque = ApiKeyLayer::new(Arc::clone(&f.store)).opaque_refusals(true);
    let limited: Response<String> = opaque.refusal_response(Refusal::Key(RATE_LIMITED));
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1800");
    let elsewhere: Response<String> = opaque.refusal_response(Refusal::Key(Rejection::IpNotWhitelisted));
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
    assert!(elsewhere.headers().get("retry-after").is_none());
}
