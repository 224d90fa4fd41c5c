//! The web console's routes, in process (no browser): status codes of pages that exist and
//! that do not, escaping of hostile event data, the token login, the permission table per role
//! (buttons included), the cross-site POST guard, and a database that is away.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use eventbus_engine::store::{GroupSpec, NewToken, StartPosition, Store, StoreConfig, TokenGrant};
use eventbus_engine::{AttrValue, Data, Event, TraceContext};
use eventbus_server::console;
use eventbus_server::metrics::Metrics;
use eventbus_server::security::auth::Tokens;
use eventbus_server::security::permissions::Role;
use eventbus_server::security::tokens::sha256;
use eventbus_server::{EventBus, ServerConfig};
use eventbus_tests::{Database, Proxy};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

eventbus_tests::backend_cases!(
    pages_answer_with_the_status_of_their_grpc_call,
    hostile_event_data_is_escaped,
    events_page_through_in_pages_of_50,
    roles_see_what_their_grants_allow,
    login_sets_a_strict_cookie_and_posts_need_the_same_origin,
);

eventbus_tests::backend_cases!(postgres only: a_database_away_is_503);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const READER: &str = "ebt_reader_reader_reader_reader_reader_00";
const OPERATOR: &str = "ebt_operator_operator_operator_operator_0";

/// The console over a store of the database, and the store to fill it with.
struct Console {
    app: Router,
    store: Store,
    _shutdown: watch::Sender<bool>,
}

/// Where the console links traces to.
const JAEGER: &str = "http://jaeger.test:16686";

/// The console over a store of the database; with `tokens`, it checks database tokens, two of
/// which exist: [`READER`] and [`OPERATOR`] of namespace `shop`.
async fn console(db: &Database, tokens: bool) -> Console {
    let mut config = StoreConfig::new(&db.url);
    config.database_timeout = Duration::from_secs(1);
    let store = Store::open(config.clone()).await.unwrap();
    let auth = if tokens { Some(Arc::new(two_roles(&store).await)) } else { None };
    let (tx, rx) = watch::channel(false);
    let mut server = ServerConfig::new(config);
    server.jaeger_ui_url = Some(JAEGER.into());
    let bus = EventBus::new(store.clone(), server, Arc::new(Metrics::default()), rx);
    Console { app: console::router(bus, auth), store, _shutdown: tx }
}

/// The bootstrap token of a temporary file, and [`READER`] and [`OPERATOR`] of namespace `shop`
/// in the database.
async fn two_roles(store: &Store) -> Tokens {
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin");
    std::fs::write(&admin, "ebt_admin_admin_admin_admin_admin_admin_0").unwrap();
    for (secret, role) in [(READER, Role::Reader), (OPERATOR, Role::Operator)] {
        let grants = vec![TokenGrant { role: role.as_str().into(), namespaces: "shop".into() }];
        let token = NewToken { name: role.to_string(), grants, secret_sha256: sha256(secret), expires_at: None };
        store.create_token(token).await.unwrap();
    }
    Tokens::load(&admin).unwrap().with_store(store.clone(), Duration::from_secs(5))
}

fn event(id: &str, event_type: &str, subject: &str, data: &str) -> Event {
    Event {
        namespace: String::new(),
        sequence: 0,
        id: id.into(),
        source: "/shop".into(),
        specversion: "1.0".into(),
        event_type: event_type.into(),
        subject: Some(subject.into()),
        time: None,
        datacontenttype: Some("text/plain".into()),
        dataschema: None,
        extensions: BTreeMap::from([("note".to_owned(), AttrValue::String("<i>ext</i>".into()))]),
        data: Some(Data::Text(data.into())),
        received_at: chrono::Utc::now(),
        trace: TraceContext::default(),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, method: Method, path: &str, headers: &[(&str, &str)], form: &str) -> Answer {
    let mut req = Request::builder().method(method).uri(path).header(header::HOST, "console.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !form.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let response = app.clone().oneshot(req.body(Body::from(form.to_owned())).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Answer { status: parts.status, headers: parts.headers, body }
}

async fn get(app: &Router, path: &str, cookie: Option<&str>) -> Answer {
    let cookie = cookie.map(|token| format!("eventbus_token={token}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    send(app, Method::GET, path, &headers, "").await
}

fn location(a: &Answer) -> &str {
    a.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

async fn pages_answer_with_the_status_of_their_grpc_call(db: Database) {
    let c = console(&db, false).await;
    let mut traced = event("1", "order.created", "o/1", "hello");
    traced.trace.traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    c.store.publish("shop", vec![traced, event("2", "order.paid", "o/1", "")]).await.unwrap();
    let unknown_listener = format!("/ui/ns/shop/listeners/{}", uuid::Uuid::now_v7());
    let cases = [
        ("/ui/", StatusCode::OK),
        ("/ui/ns/shop/events", StatusCode::OK),
        ("/ui/ns/shop/events?type=order.created&follow=1", StatusCode::OK),
        ("/ui/ns/shop/events/rows?after=0", StatusCode::OK),
        ("/ui/ns/shop/events/1", StatusCode::OK),
        ("/ui/ns/shop/listeners", StatusCode::OK),
        ("/ui/ns/shop/groups", StatusCode::OK),
        ("/ui/assets/console.js", StatusCode::OK),
        ("/ui/ns/shop/events/3", StatusCode::NOT_FOUND),
        ("/ui/ns/ghost/events", StatusCode::NOT_FOUND),
        ("/ui/ns/ghost/groups", StatusCode::NOT_FOUND),
        (unknown_listener.as_str(), StatusCode::NOT_FOUND),
        ("/ui/ns/shop/groups/none", StatusCode::NOT_FOUND),
        ("/ui/nowhere", StatusCode::NOT_FOUND),
        ("/ui/assets/secret.txt", StatusCode::NOT_FOUND),
        ("/ui/ns/shop/events/first", StatusCode::BAD_REQUEST),
        ("/ui/ns/shop/events?from=yesterday", StatusCode::BAD_REQUEST),
        ("/ui/ns/shop/events?page_token=forged", StatusCode::BAD_REQUEST),
        ("/ui/ns/shop/listeners/not-a-uuid", StatusCode::BAD_REQUEST),
        ("/ui/open?namespace=bad%20name", StatusCode::BAD_REQUEST),
        ("/ui/ns/%2F%2Fevil.example", StatusCode::BAD_REQUEST),
        ("/ui/ns/shop", StatusCode::SEE_OTHER),
    ];
    for (path, status) in cases {
        let a = get(&c.app, path, None).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert!(a.headers.contains_key(header::CONTENT_SECURITY_POLICY), "{path}");
    }
    let a = get(&c.app, "/ui/ns/shop/events?type=order.created", None).await;
    assert_eq!(a.body.matches("<tr data-sequence=").count(), 1, "{}", a.body);
    let a = get(&c.app, "/ui/ns/shop/events?type=other", None).await;
    assert_eq!(a.body.matches("<tr data-sequence=").count(), 0);
    // Jaeger links for events that carry a trace, and none for the others.
    let link = format!("href=\"{JAEGER}/trace/{TRACE_ID}\"");
    assert!(get(&c.app, "/ui/ns/shop/events/1", None).await.body.contains(&link));
    assert_eq!(get(&c.app, "/ui/ns/shop/events", None).await.body.matches(&link).count(), 1);
    assert!(!get(&c.app, "/ui/ns/shop/events/2", None).await.body.contains("/trace/"));
    let a = get(&c.app, "/ui/ns/ghost/events", None).await;
    assert!(a.body.contains("namespace &quot;ghost&quot; not found"), "{}", a.body);
    assert_eq!(location(&get(&c.app, "/ui/open?namespace=shop", None).await), "/ui/ns/shop/events");
}

/// Returns the link of the anchor with this id.
fn link(body: &str, id: &str) -> Option<String> {
    let start = body.find(&format!("id=\"{id}\" href=\""))? + id.len() + 12;
    Some(body[start..].split('"').next()?.replace("&amp;", "&"))
}

async fn events_page_through_in_pages_of_50(db: Database) {
    let c = console(&db, false).await;
    let events = (0..120).map(|i| event(&i.to_string(), if i % 2 == 0 { "even" } else { "odd" }, "s", "x"));
    c.store.publish("many", events.collect()).await.unwrap();
    let mut path = "/ui/ns/many/events?type=even".to_owned();
    let mut pages = Vec::new();
    loop {
        let a = get(&c.app, &path, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        pages.push((a.body.matches("<tr data-sequence=").count(), link(&a.body, "first-page").is_some()));
        match link(&a.body, "next-page") {
            Some(next) => path = next,
            None => break,
        }
    }
    assert_eq!(pages, vec![(50, false), (10, true)]);
}

async fn hostile_event_data_is_escaped(db: Database) {
    let c = console(&db, false).await;
    let script = "<script>alert(1)</script>";
    c.store.publish("shop", vec![event("<b>1</b>", "order.created", "<img src=x>", script)]).await.unwrap();
    for path in ["/ui/ns/shop/events/1", "/ui/ns/shop/events", "/ui/ns/shop/events/rows?after=0"] {
        let a = get(&c.app, path, None).await;
        assert_eq!(a.status, StatusCode::OK);
        for raw in [script, "<img src=x>", "<b>1</b>", "<i>ext</i>"] {
            assert!(!a.body.contains(raw), "{path} has {raw} unescaped");
        }
        assert!(a.body.contains("&lt;img src=x&gt;"), "{path}: {}", a.body);
    }
    let a = get(&c.app, "/ui/ns/shop/events/1", None).await;
    assert!(a.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", a.body);
    assert!(a.body.contains("&lt;i&gt;ext&lt;/i&gt;"), "{}", a.body);
}

async fn roles_see_what_their_grants_allow(db: Database) {
    let c = console(&db, true).await;
    c.store.publish("shop", vec![event("1", "order.created", "o/1", "x")]).await.unwrap();
    c.store.publish("other", vec![event("1", "order.created", "o/1", "x")]).await.unwrap();
    let group = GroupSpec {
        name: "payments".into(),
        kinds: vec![],
        workflow_ids: vec![],
        start: StartPosition::Earliest,
        max_attempts: 3,
    };
    c.store.ensure_group("shop", group).await.unwrap();
    // (path, no token, reader, operator)
    let see = StatusCode::OK;
    let login = StatusCode::SEE_OTHER;
    let forbidden = StatusCode::FORBIDDEN;
    let cases = [
        ("/ui/", login, see, see),
        ("/ui/ns/shop/events", login, see, see),
        ("/ui/ns/shop/events/1", login, see, see),
        ("/ui/ns/shop/groups/payments", login, see, see),
        ("/ui/ns/other/events", login, forbidden, forbidden),
        ("/ui/ns/other/events/1", login, forbidden, forbidden),
        ("/ui/ns/other/listeners", login, forbidden, forbidden),
    ];
    for (path, anonymous, reader, operator) in cases {
        let got = [
            get(&c.app, path, None).await.status,
            get(&c.app, path, Some(READER)).await.status,
            get(&c.app, path, Some(OPERATOR)).await.status,
        ];
        assert_eq!(got, [anonymous, reader, operator], "{path}");
    }
    let a = get(&c.app, "/ui/ns/shop/events", None).await;
    assert_eq!(location(&a), "/ui/login?next=%2Fui%2Fns%2Fshop%2Fevents");
    let a = get(&c.app, "/ui/ns/shop/events", Some("ebt_revoked_revoked_revoked_revoked_revoked")).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let cleared = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.starts_with("eventbus_token=;") && cleared.contains("Max-Age=0"), "{cleared}");
    // A reader sees the group but no action it could not take.
    let reader = get(&c.app, "/ui/ns/shop/groups/payments", Some(READER)).await.body;
    assert!(!reader.contains("id=\"seek\"") && reader.contains("Dead letters need the operator role"), "{reader}");
    let operator = get(&c.app, "/ui/ns/shop/groups/payments", Some(OPERATOR)).await.body;
    assert!(operator.contains("id=\"seek\"") && operator.contains("No dead letters."), "{operator}");
    // Without ListNamespaces, the picker lists the granted namespaces.
    let picker = get(&c.app, "/ui/", Some(READER)).await.body;
    assert!(picker.contains("href=\"/ui/ns/shop/events\"") && !picker.contains("id=\"namespaces\""), "{picker}");
    // Actions check the same table: a reader's POST is refused even from the console's origin.
    let seek = "/ui/ns/shop/groups/payments/seek";
    for (token, status) in [(READER, StatusCode::FORBIDDEN), (OPERATOR, StatusCode::SEE_OTHER)] {
        let cookie = format!("eventbus_token={token}");
        let headers = [("cookie", cookie.as_str()), ("origin", "http://console.test")];
        let a = send(&c.app, Method::POST, seek, &headers, "target=latest&value=").await;
        assert_eq!(a.status, status, "{token}: {}", a.body);
    }
}

async fn login_sets_a_strict_cookie_and_posts_need_the_same_origin(db: Database) {
    let c = console(&db, true).await;
    c.store.publish("shop", vec![event("1", "order.created", "o/1", "x")]).await.unwrap();
    let same = [("origin", "http://console.test")];
    let form = format!("token={OPERATOR}&next=%2Fui%2Fns%2Fshop%2Fevents");
    let a = send(&c.app, Method::POST, "/ui/login", &same, &form).await;
    assert_eq!((a.status, location(&a)), (StatusCode::SEE_OTHER, "/ui/ns/shop/events"), "{}", a.body);
    let cookie = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert_eq!(cookie, format!("eventbus_token={OPERATOR}; Path=/ui; HttpOnly; SameSite=Strict"));
    let a = send(&c.app, Method::POST, "/ui/login", &same, "token=ebt_wrong_wrong_wrong_wrong_wrong_wrong_wrong").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("Refused: invalid token") && !a.headers.contains_key(header::SET_COOKIE));
    let form = format!("token={OPERATOR}&next=https%3A%2F%2Fevil.example%2F");
    assert_eq!(location(&send(&c.app, Method::POST, "/ui/login", &same, &form).await), "/ui/");
    // Cross-site POSTs are refused before anything runs, logged in or not.
    let cookie = format!("eventbus_token={OPERATOR}");
    let redrive = "/ui/ns/shop/groups/payments/redrive";
    let cases: [(&[(&str, &str)], StatusCode); 5] = [
        (&[("cookie", &cookie)], StatusCode::FORBIDDEN),
        (&[("cookie", &cookie), ("origin", "http://evil.example")], StatusCode::FORBIDDEN),
        (
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site"), ("origin", "http://console.test")],
            StatusCode::FORBIDDEN,
        ),
        // Allowed through to the handler: the group does not exist.
        (&[("cookie", &cookie), ("origin", "http://console.test")], StatusCode::NOT_FOUND),
        (&[("cookie", &cookie), ("sec-fetch-site", "same-origin")], StatusCode::NOT_FOUND),
    ];
    for (headers, status) in cases {
        let a = send(&c.app, Method::POST, redrive, headers, "sequence=").await;
        assert_eq!(a.status, status, "{headers:?}: {}", a.body);
    }
}

async fn a_database_away_is_503(db: Database) {
    let mut proxy = Proxy::start(db.server_addr().await).await;
    let c = console(&db.through(proxy.addr), false).await;
    c.store.publish("shop", vec![event("1", "order.created", "o/1", "x")]).await.unwrap();
    assert_eq!(get(&c.app, "/ui/ns/shop/events", None).await.status, StatusCode::OK);
    proxy.cut().await;
    let a = get(&c.app, "/ui/ns/shop/events", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.body.contains("database unavailable, retry later"), "{}", a.body);
    proxy.restore().await;
}
