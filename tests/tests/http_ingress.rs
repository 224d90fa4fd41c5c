//! The CloudEvents HTTP ingress end to end over real sockets, on SQLite and Postgres: the three
//! modes (binary, structured, batched) crossed with a valid event, each invalid field (with the
//! paths and messages gRPC Publish gives), duplicates, a body over the limit, a content type
//! that is not a CloudEvent, and tokens; a batch read back over gRPC; the probes and a database
//! outage (503, never 500); the TLS of gRPC on the HTTP listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use eventbus_client::pb;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use eventbus_client::pb::cloud_event::{CloudEventAttributeValue, Data};
use eventbus_tests::certs::{Ca, write_server_files};
use eventbus_tests::http::{Reply, get, post, request_on};
use eventbus_tests::{Backend, Database, Proxy, TestServer, within};
use serde_json::{Map, Value, json};
use tonic_types::StatusExt;

eventbus_tests::backend_cases!(
    each_mode_publishes_and_a_batch_reads_back_over_grpc,
    invalid_fields_are_named_as_grpc_names_them_and_nothing_is_stored,
    duplicates_are_stored_once,
    limits_and_content_types,
    tokens_guard_the_ingress_and_not_the_probes,
    traceparent_headers_continue_the_trace,
);

eventbus_tests::backend_cases!(postgres only: a_database_outage_is_503_on_the_ingress_and_readyz);

const NS: &str = "shop";

fn path(ns: &str) -> String {
    format!("/v1/namespaces/{ns}/events")
}

/// The modes of the HTTP binding.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Binary,
    Structured,
    Batched,
}

const MODES: [Mode; 3] = [Mode::Binary, Mode::Structured, Mode::Batched];

/// A valid event in the JSON format.
fn event(id: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({"specversion": "1.0", "id": id, "source": "/tests", "type": "order.created"})
    else {
        unreachable!()
    };
    map
}

/// Percent-encodes a header value as the HTTP binding says (space, '"', '%', and anything
/// outside printable ASCII).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `events` in `mode` (binary mode: the first event only) with `extra` headers.
async fn send(addr: SocketAddr, ns: &str, mode: Mode, events: &[Map<String, Value>], extra: &[(&str, &str)]) -> Reply {
    let mut headers: Vec<(String, String)> = extra.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let body = match mode {
        Mode::Binary => {
            let e = &events[0];
            let mut body = Vec::new();
            for (name, value) in e {
                match (name.as_str(), value) {
                    ("data", Value::String(s)) => body = s.clone().into_bytes(),
                    ("data", v) => body = v.to_string().into_bytes(),
                    ("datacontenttype", Value::String(s)) => headers.push(("content-type".into(), s.clone())),
                    (_, Value::String(s)) => headers.push((format!("ce-{name}"), percent_encode(s))),
                    (_, v) => headers.push((format!("ce-{name}"), v.to_string())),
                }
            }
            body
        }
        Mode::Structured => {
            headers.push(("content-type".into(), "application/cloudevents+json; charset=utf-8".into()));
            serde_json::to_vec(&events[0]).unwrap()
        }
        Mode::Batched => {
            headers.push(("content-type".into(), "application/cloudevents-batch+json".into()));
            serde_json::to_vec(events).unwrap()
        }
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    post(addr, &path(ns), &headers, &body).await
}

/// Every stored event of a namespace, in sequence order, through gRPC ListEvents.
async fn stored(s: &TestServer, ns: &str) -> Vec<pb::StoredEvent> {
    let request = pb::ListEventsRequest { namespace: ns.into(), page_size: 1000, ..Default::default() };
    s.client.raw().list_events(request).await.unwrap().into_inner().events
}

fn results(reply: &Reply) -> Vec<(u64, bool)> {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["sequence"].as_u64().unwrap(), r["duplicate"].as_bool().unwrap()))
        .collect()
}

fn attr(ce: &pb::CloudEvent, name: &str) -> Option<Attr> {
    ce.attributes.get(name).and_then(|v| v.attr.clone())
}

async fn each_mode_publishes_and_a_batch_reads_back_over_grpc(db: Database) {
    let s = TestServer::start_http(&db, |_| {}).await;
    let http = s.http.unwrap();
    let mut binary = event("b1");
    binary.insert("subject".into(), json!("eu/ünïcode x"));
    binary.insert("tenant".into(), json!("acme"));
    binary.insert("datacontenttype".into(), json!("application/json"));
    binary.insert("data".into(), json!({"total": 42}));
    assert_eq!(results(&send(http, NS, Mode::Binary, &[binary], &[]).await), [(1, false)]);
    let mut structured = event("s1");
    structured.insert("time".into(), json!("2026-12-06T10:00:00.25+01:00"));
    structured.insert("count".into(), json!(3));
    structured.insert("data_base64".into(), json!("AJ8="));
    assert_eq!(results(&send(http, NS, Mode::Structured, &[structured], &[]).await), [(2, false)]);
    let mut second = event("c2");
    second.insert("dataschema".into(), json!("https://acme.io/order"));
    second.insert("datacontenttype".into(), json!("text/plain"));
    second.insert("data".into(), json!("plain text"));
    let batch = [event("c1"), second, event("c3")];
    assert_eq!(results(&send(http, NS, Mode::Batched, &batch, &[]).await), [(3, false), (4, false), (5, false)]);

    let events = stored(&s, NS).await;
    let ids: Vec<(u64, String)> = events.iter().map(|e| (e.sequence, e.event.clone().unwrap().id)).collect();
    assert_eq!(ids, [(1, "b1".into()), (2, "s1".into()), (3, "c1".into()), (4, "c2".into()), (5, "c3".into())]);
    let ce: Vec<pb::CloudEvent> = events.into_iter().map(|e| e.event.unwrap()).collect();
    let string = |s: &str| Some(Attr::CeString(s.into()));
    assert_eq!(
        (ce[0].source.as_str(), ce[0].r#type.as_str(), ce[0].spec_version.as_str()),
        ("/tests", "order.created", "1.0")
    );
    assert_eq!(attr(&ce[0], "subject"), string("eu/ünïcode x"), "percent-decoded");
    assert_eq!(attr(&ce[0], "tenant"), string("acme"));
    assert_eq!(attr(&ce[0], "datacontenttype"), string("application/json"));
    assert_eq!(ce[0].data, Some(Data::TextData(r#"{"total":42}"#.into())));
    let time = prost_types::Timestamp { seconds: 1_796_547_600, nanos: 250_000_000 };
    assert_eq!(attr(&ce[1], "time"), Some(Attr::CeTimestamp(time)));
    assert_eq!(attr(&ce[1], "count"), Some(Attr::CeInteger(3)));
    assert_eq!(ce[1].data, Some(Data::BinaryData(vec![0, 159])));
    assert_eq!(attr(&ce[3], "dataschema"), Some(Attr::CeUri("https://acme.io/order".into())));
    assert_eq!(ce[3].data, Some(Data::TextData("plain text".into())));
    assert_eq!((ce[2].attributes.len(), ce[2].data.clone()), (0, None));
}

/// One invalid event: how it is made from a valid one, in the JSON format and (when gRPC can
/// say the same) as a protobuf event, and the violation expected.
struct Invalid {
    what: &'static str,
    json: fn(&mut Map<String, Value>),
    proto: Option<fn(&mut pb::CloudEvent)>,
    field: &'static str,
    description: &'static str,
}

fn invalid_cases() -> Vec<Invalid> {
    vec![
        Invalid {
            what: "missing id",
            json: |e| drop(e.remove("id")),
            proto: Some(|e| e.id.clear()),
            field: "id",
            description: "is required",
        },
        Invalid {
            what: "missing source",
            json: |e| drop(e.remove("source")),
            proto: Some(|e| e.source.clear()),
            field: "source",
            description: "is required",
        },
        Invalid {
            what: "missing type",
            json: |e| drop(e.remove("type")),
            proto: Some(|e| e.r#type.clear()),
            field: "type",
            description: "is required",
        },
        Invalid {
            what: "missing specversion",
            json: |e| drop(e.remove("specversion")),
            proto: Some(|e| e.spec_version.clear()),
            field: "spec_version",
            description: "must be \"1.0\"",
        },
        Invalid {
            what: "bad source URI",
            json: |e| drop(e.insert("source".into(), json!("not a uri"))),
            proto: Some(|e| e.source = "not a uri".into()),
            field: "source",
            description: "must be a URI reference (RFC 3986)",
        },
        Invalid {
            what: "bad dataschema URI",
            json: |e| drop(e.insert("dataschema".into(), json!("relative/only"))),
            proto: Some(|e| {
                let value = CloudEventAttributeValue { attr: Some(Attr::CeUri("relative/only".into())) };
                e.attributes.insert("dataschema".into(), value);
            }),
            field: "attributes[dataschema]",
            description: "a ce_uri must be an absolute URI (RFC 3986)",
        },
        Invalid {
            what: "bad extension name",
            json: |e| drop(e.insert("my_ext".into(), json!("x"))),
            proto: Some(|e| {
                let value = CloudEventAttributeValue { attr: Some(Attr::CeString("x".into())) };
                e.attributes.insert("my_ext".into(), value);
            }),
            field: "attributes[my_ext]",
            description: "attribute names are 1 to 64 lower-case ASCII letters and digits",
        },
        Invalid {
            what: "bad time",
            json: |e| drop(e.insert("time".into(), json!("yesterday"))),
            proto: None,
            field: "attributes[time]",
            description: "must be an RFC 3339 timestamp",
        },
    ]
}

/// The (field, description) pairs of a gRPC status.
fn grpc_violations(status: &tonic::Status) -> Vec<(String, String)> {
    let bad = status.get_details_bad_request().expect("field violations");
    bad.field_violations.into_iter().map(|v| (v.field, v.description)).collect()
}

fn http_violations(reply: &Reply) -> Vec<(String, String)> {
    let body = reply.json();
    let violations = body["error"]["field_violations"].as_array().cloned().unwrap_or_default();
    violations
        .iter()
        .map(|v| (v["field"].as_str().unwrap().to_owned(), v["description"].as_str().unwrap().to_owned()))
        .collect()
}

async fn invalid_fields_are_named_as_grpc_names_them_and_nothing_is_stored(db: Database) {
    let s = TestServer::start_http(&db, |_| {}).await;
    let http = s.http.unwrap();
    for case in invalid_cases() {
        let mut bad = event("bad");
        (case.json)(&mut bad);
        let expected = vec![(format!("events[0].{}", case.field), case.description.to_owned())];
        if let Some(proto) = case.proto {
            let mut e = eventbus_tests::event("order.created", "bad");
            proto(&mut e);
            let status = s.client.raw().publish(pb::PublishRequest { namespace: NS.into(), events: vec![e] }).await;
            assert_eq!(grpc_violations(&status.unwrap_err()), expected, "{} over gRPC", case.what);
        }
        for mode in MODES {
            // A batch fails whole: the valid event after the invalid one is not stored either.
            let reply = send(http, NS, mode, &[bad.clone(), event("fine")], &[]).await;
            assert_eq!(reply.status, 400, "{} in {mode:?}: {}", case.what, String::from_utf8_lossy(&reply.body));
            assert_eq!(reply.json()["error"]["code"], "INVALID_ARGUMENT");
            assert_eq!(http_violations(&reply), expected, "{} in {mode:?}", case.what);
            let message = format!("{}: {}", expected[0].0, expected[0].1);
            assert_eq!(reply.json()["error"]["message"], message.as_str());
        }
    }
    for (mode, body) in [(Mode::Structured, "{\"id\":"), (Mode::Batched, "{\"id\":\"1\"}")] {
        let content_type = match mode {
            Mode::Structured => "application/cloudevents+json",
            _ => "application/cloudevents-batch+json",
        };
        let reply = post(http, &path(NS), &[("content-type", content_type)], body.as_bytes()).await;
        assert_eq!(reply.status, 400, "bad JSON in {mode:?}");
        let field = if matches!(mode, Mode::Structured) { "events[0]" } else { "events" };
        assert_eq!(reply.fields(), [field]);
    }
    let empty = post(http, &path(NS), &[("content-type", "application/cloudevents-batch+json")], b"[]").await;
    assert_eq!(
        (empty.status, http_violations(&empty)),
        (400, vec![("events".into(), "must hold 1 to 1000 events, not 0".into())])
    );
    let bad_namespace = send(http, "no%20spaces", Mode::Structured, &[event("1")], &[]).await;
    assert_eq!((bad_namespace.status, bad_namespace.fields()), (400, vec!["namespace".to_owned()]));
    assert!(stored(&s, NS).await.is_empty(), "a refused request stores nothing");
    // Per case: 1 event in binary and structured mode, 2 batched, and 1 over gRPC when it can
    // say it; and the event in the bad namespace.
    let metrics = String::from_utf8(get(http, "/metrics").await.body).unwrap();
    let expected = invalid_cases().iter().map(|c| 4 + u64::from(c.proto.is_some())).sum::<u64>() + 1;
    let line = format!("eventbus_events_rejected_total {expected}");
    assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
}

async fn duplicates_are_stored_once(db: Database) {
    let s = TestServer::start_http(&db, |_| {}).await;
    let http = s.http.unwrap();
    for mode in MODES {
        let first = send(http, NS, mode, &[event("same")], &[]).await;
        let expected = if matches!(mode, Mode::Binary) { (1, false) } else { (1, true) };
        assert_eq!(results(&first), [expected], "{mode:?}");
    }
    let batch = send(http, NS, Mode::Batched, &[event("new"), event("same"), event("new")], &[]).await;
    assert_eq!(results(&batch), [(2, false), (1, true), (2, true)]);
    assert_eq!(stored(&s, NS).await.len(), 2);
}

async fn limits_and_content_types(db: Database) {
    let s = TestServer::start_http(&db, |c| {
        c.limits.max_data_bytes = 16;
        c.limits.max_message_bytes = 1024;
    })
    .await;
    let http = s.http.unwrap();
    let mut big_data = event("big");
    big_data.insert("data".into(), json!("x".repeat(32)));
    let mut huge = event("huge");
    huge.insert("padding".into(), json!("p".repeat(2000)));
    for mode in MODES {
        let reply = send(http, NS, mode, &[big_data.clone()], &[]).await;
        assert_eq!(reply.status, 413, "{mode:?}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["error"]["code"], "RESOURCE_EXHAUSTED");
        assert_eq!(http_violations(&reply), [("events[0].data".into(), "at most 16 bytes of data".into())]);
        // Binary mode carries the padding in a header: the body limit is for the other modes.
        if !matches!(mode, Mode::Binary) {
            let reply = send(http, NS, mode, &[huge.clone()], &[]).await;
            assert_eq!(reply.status, 413, "{mode:?}");
            let message = "the request body is over 1024 bytes, the maximum message size";
            assert_eq!(reply.json()["error"]["message"], message);
        }
    }
    let binary = [("content-type", "application/octet-stream"), ("ce-id", "x")];
    let reply = post(http, &path(NS), &binary, &[1u8; 2000]).await;
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (413, Some("RESOURCE_EXHAUSTED")));
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("content-type", "text/plain")], "not a CloudEvent: content type \"text/plain\" without ce-* headers"),
        (&[], "not a CloudEvent: content type \"\" without ce-* headers"),
        (
            &[("content-type", "application/cloudevents+avro")],
            "event format application/cloudevents+avro is not supported",
        ),
    ];
    for (headers, message) in cases {
        let reply = post(http, &path(NS), headers, b"{}").await;
        assert_eq!(reply.status, 415, "{headers:?}");
        let got = reply.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(got.starts_with(message), "{got}");
    }
    assert!(stored(&s, NS).await.is_empty());
}

const ADMIN: &str = "ebt_0123456789abcdefghijklmnopqrstuvwxyz-_";

async fn tokens_guard_the_ingress_and_not_the_probes(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin");
    std::fs::write(&file, ADMIN).unwrap();
    let mut s = TestServer::start_http(&db, |c| {
        c.admin_token_file = Some(file);
        c.token_cache = Duration::from_secs(1);
    })
    .await;
    s.client = s.client.clone().with_token(ADMIN).unwrap();
    let http = s.http.unwrap();
    let unknown = format!("Bearer ebt_{}", "z".repeat(40));
    let cases: [(Option<&str>, &str); 3] = [
        (None, "missing token: send `authorization: Bearer <token>`"),
        (Some("Basic YWRtaW46YWRtaW4="), "malformed token: expected `authorization: Bearer ebt_...`"),
        (Some(&unknown), "invalid token"),
    ];
    for mode in MODES {
        for (authorization, message) in cases {
            let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
            let reply = send(http, NS, mode, &[event("1")], &headers).await;
            assert_eq!(reply.status, 401, "{mode:?} {authorization:?}");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
            assert_eq!(
                reply.json()["error"],
                json!({"code": "UNAUTHENTICATED", "message": message, "field_violations": []})
            );
        }
    }
    let bearer = format!("Bearer {ADMIN}");
    let reply = send(http, NS, Mode::Structured, &[event("1")], &[("authorization", &bearer)]).await;
    assert_eq!(results(&reply), [(1, false)]);
    // Tokens made through TokenService: outside its grants 403, revoked 401.
    let made = |role: pb::Role, namespaces: &str| {
        let grants = vec![pb::Grant { role: role as i32, namespaces: namespaces.into() }];
        pb::CreateTokenRequest { name: format!("{role:?} on {namespaces}"), grants, expire_time: None }
    };
    let publisher = s.client.tokens().create_token(made(pb::Role::Publisher, NS)).await.unwrap().into_inner();
    let reader = s.client.tokens().create_token(made(pb::Role::Reader, "*")).await.unwrap().into_inner();
    let publisher_bearer = format!("Bearer {}", publisher.secret);
    let reader_bearer = format!("Bearer {}", reader.secret);
    let denied = [(NS, &reader_bearer), ("elsewhere", &publisher_bearer)];
    for mode in MODES {
        for (namespace, bearer) in denied {
            let reply = send(http, namespace, mode, &[event("2")], &[("authorization", bearer)]).await;
            assert_eq!(reply.status, 403, "{mode:?} {namespace}");
            assert_eq!(reply.json()["error"]["code"], json!("PERMISSION_DENIED"));
        }
    }
    let reply = send(http, NS, Mode::Binary, &[event("2")], &[("authorization", &publisher_bearer)]).await;
    assert_eq!(results(&reply), [(2, false)]);
    let id = publisher.token.unwrap().id;
    s.client.tokens().revoke_token(pb::RevokeTokenRequest { id }).await.unwrap();
    // The revocation reaches this server's cache within --token-cache-seconds.
    // Until then the token still publishes: each such event is counted.
    let accepted = within(Duration::from_secs(10), "the revocation seen by the ingress", async {
        for n in 3.. {
            let auth = [("authorization", publisher_bearer.as_str())];
            let reply = send(http, NS, Mode::Binary, &[event(&n.to_string())], &auth).await;
            if reply.status == 401 {
                return n - 3;
            }
            assert_eq!(reply.status, 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        unreachable!()
    })
    .await;
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(http, probe).await.status, 200, "{probe} needs no token");
    }
    let metrics = String::from_utf8(get(http, "/metrics").await.body).unwrap();
    assert!(metrics.contains("eventbus_auth_failures_total{reason=\"missing\"} 3"), "{metrics}");
    assert!(metrics.contains("eventbus_auth_failures_total{reason=\"denied\"} 6"), "{metrics}");
    assert!(metrics.contains("eventbus_auth_failures_total{reason=\"revoked\"} 1"), "{metrics}");
    assert_eq!(stored(&s, NS).await.len(), 2 + accepted, "nothing refused was stored");
    assert!(stored(&s, "elsewhere").await.is_empty());
}

async fn traceparent_headers_continue_the_trace(db: Database) {
    let s = TestServer::start_http(&db, |_| {}).await;
    let http = s.http.unwrap();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let call = [("traceparent", traceparent), ("tracestate", "vendor=1")];
    let mut own = event("own");
    own.insert("traceparent".into(), json!("00-11111111111111111111111111111111-2222222222222222-01"));
    for (mode, events) in [(Mode::Binary, vec![event("b")]), (Mode::Batched, vec![event("c"), own])] {
        results(&send(http, NS, mode, &events, &call).await);
    }
    results(&send(http, NS, Mode::Structured, &[event("none")], &[]).await);
    let stored: Vec<(String, String, String)> =
        stored(&s, NS).await.into_iter().map(|e| (e.event.unwrap().id, e.traceparent, e.tracestate)).collect();
    let call = (traceparent.to_owned(), "vendor=1".to_owned());
    let own = ("00-11111111111111111111111111111111-2222222222222222-01".to_owned(), String::new());
    assert_eq!(
        stored,
        [
            ("b".into(), call.0.clone(), call.1.clone()),
            ("c".into(), call.0.clone(), call.1.clone()),
            ("own".into(), own.0, own.1),
            ("none".into(), String::new(), String::new()),
        ],
        "the call's context, unless the event carries its own"
    );
}

async fn a_database_outage_is_503_on_the_ingress_and_readyz(db: Database) {
    let mut proxy = Proxy::start(db.server_addr().await).await;
    let s =
        TestServer::start_http(&db.through(proxy.addr), |c| c.store.database_timeout = Duration::from_secs(1)).await;
    let http = s.http.unwrap();
    assert_eq!(get(http, "/readyz").await.status, 200);
    assert_eq!(get(http, "/healthz").await.status, 200);
    proxy.cut().await;
    for mode in MODES {
        let reply = within(Duration::from_secs(3), "an answer", send(http, NS, mode, &[event("1")], &[])).await;
        assert_eq!(reply.status, 503, "{mode:?}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["error"]["message"], "database unavailable, retry later");
    }
    within(Duration::from_secs(8), "/readyz to say 503", async {
        while get(http, "/readyz").await.status != 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(get(http, "/healthz").await.status, 200, "the process stays alive");
    proxy.restore().await;
    within(Duration::from_secs(8), "/readyz to say 200 again", async {
        while get(http, "/readyz").await.status != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(results(&send(http, NS, Mode::Binary, &[event("1")], &[]).await), [(1, false)]);
}

/// Opens a TLS connection to `addr` trusting `ca`, offering HTTP/1.1.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Ca,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert.as_bytes()).unwrap()).unwrap();
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_listener_takes_the_tls_of_grpc() {
    let db = Database::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("eventbus test CA");
    let files = write_server_files(dir.path(), &ca.server(), None);
    let s = TestServer::start_listening(
        &db,
        |c| c.tls = Some(files),
        Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        |addr| eventbus_client::Client::connect_tls(format!("https://{addr}"), ca.trusted_by_client()),
    )
    .await;
    let http = s.http.unwrap();
    let host = http.to_string();
    let tls = tls_connect(http, &ca).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let reply = request_on(tls, &host, "GET", "/healthz", &[], b"").await.unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"ok\n"[..]));
    let body = serde_json::to_vec(&event("over-tls")).unwrap();
    let headers = [("content-type", "application/cloudevents+json")];
    let tls = tls_connect(http, &ca).await.unwrap();
    let reply = request_on(tls, &host, "POST", &path(NS), &headers, &body).await.unwrap();
    assert_eq!(results(&reply), [(1, false)]);
    let plain = tokio::net::TcpStream::connect(http).await.unwrap();
    assert!(request_on(plain, &host, "GET", "/healthz", &[], b"").await.is_none(), "no plaintext HTTP");
    let stranger = Ca::new("another CA");
    assert!(tls_connect(http, &stranger).await.is_err(), "a certificate of another CA is not trusted");
}
