use eventbus_client::pb;
use prost::Message;
use tonic::Code;

use super::*;

const ADMIN: &str = "ebt_0123456789abcdefghijklmnopqrstuvwxyz-_";

fn tokens() -> Tokens {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin");
    std::fs::write(&path, format!("{ADMIN}\n")).unwrap();
    Tokens::load(&path).unwrap()
}

fn headers(authorization: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
    }
    headers
}

#[tokio::test]
async fn bearer_tokens_are_checked_by_their_hash() {
    let tokens = tokens();
    let other = format!("Bearer {}", "ebt_1123456789abcdefghijklmnopqrstuvwxyz-_");
    let cases = [
        (None, Err(Refusal::Missing)),
        (Some("Basic YWRtaW46YWRtaW4="), Err(Refusal::Malformed)),
        (Some(ADMIN), Err(Refusal::Malformed)),
        (Some("Bearer ebt_short"), Err(Refusal::Malformed)),
        (Some("Bearer abc_0123456789abcdefghijklmnopqrstuvwxyz"), Err(Refusal::Malformed)),
        (Some("Bearer ebt_0123456789abcdefghijklmnopqrstuvwxyz-_ "), Err(Refusal::Malformed)),
        (Some(other.as_str()), Err(Refusal::Unknown)),
    ];
    for (authorization, expected) in cases {
        assert_eq!(tokens.authenticate(&headers(authorization)).await, expected, "{authorization:?}");
    }
    let admin = tokens.authenticate(&headers(Some(&format!("Bearer {ADMIN}")))).await.unwrap();
    assert_eq!(admin.grants, [Grant { role: Role::Admin, namespaces: "*".into() }]);
}

#[test]
fn a_token_file_must_hold_a_well_formed_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin");
    std::fs::write(&path, "hunter2").unwrap();
    let message = Tokens::load(&path).unwrap_err().to_string();
    assert!(message.ends_with("does not hold a token: `ebt_` and at least 32 more letters, digits, '-' or '_'"));
    let message = format!("{:#}", Tokens::load(&dir.path().join("missing")).unwrap_err());
    assert!(message.starts_with("reading "), "{message}");
}

/// A gRPC request of `method` carrying `message`, with `token` as its bearer token.
fn request(method: &str, token: Option<&str>, message: &impl Message) -> http::Request<Body> {
    let encoded = message.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    body.extend_from_slice(&encoded);
    let mut req = http::Request::builder().uri(format!("http://localhost{method}"));
    if let Some(token) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::new(Full::new(tonic::codegen::Bytes::from(body)))).unwrap()
}

#[tokio::test]
async fn calls_are_checked_against_the_table_and_keep_their_body() {
    let metrics = Arc::new(Metrics::default());
    let auth = Auth::new(Arc::new(tokens()), metrics.clone(), 1 << 20);
    let publish = pb::PublishRequest { namespace: "shop".into(), events: vec![] };
    let cases = [
        ("/eventbus.v1.EventBusService/Publish", None, Some(Code::Unauthenticated)),
        ("/eventbus.v1.EventBusService/Publish", Some("ebt_nope"), Some(Code::Unauthenticated)),
        ("/eventbus.v1.EventBusService/Publish", Some(&ADMIN.replace('0', "1")), Some(Code::Unauthenticated)),
        ("/eventbus.v1.EventBusService/NotInTheTable", Some(ADMIN), Some(Code::PermissionDenied)),
        ("/eventbus.v1.EventBusService/Publish", Some(ADMIN), None),
    ];
    for (method, token, expected) in cases {
        let checked = auth.check(request(method, token, &publish)).await;
        assert_eq!(checked.as_ref().err().map(Status::code), expected, "{method} {token:?}");
        if let Ok(req) = checked {
            assert_eq!(req.extensions().get::<Principal>().map(|p| p.name.as_str()), Some("admin"));
            let body = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(grpc_message(&body), Some(&publish.encode_to_vec()[..]), "the handler gets the same body");
        }
    }
    let counted = ["missing", "malformed", "unknown", "denied"].map(|reason| metrics.auth_failures(reason));
    assert_eq!(counted, [1, 1, 1, 1], "eventbus_auth_failures_total by reason");
}

#[test]
fn grpc_messages_are_one_uncompressed_frame() {
    let cases: [(&[u8], Option<&[u8]>); 5] = [
        (&[0, 0, 0, 0, 2, 10, 0], Some(&[10, 0])),
        (&[0, 0, 0, 0, 0], Some(&[])),
        (&[1, 0, 0, 0, 2, 10, 0], None),
        (&[0, 0, 0, 0, 3, 10, 0], None),
        (&[0, 0], None),
    ];
    for (body, message) in cases {
        assert_eq!(grpc_message(body), message, "{body:?}");
    }
}

#[tokio::test]
async fn the_http_ingress_needs_what_publish_needs() {
    let publish = "/eventbus.v1.EventBusService/Publish";
    let publisher =
        Principal { name: "ci".into(), grants: vec![Grant { role: Role::Publisher, namespaces: "shop".into() }] };
    let reader = Principal { name: "ro".into(), grants: vec![Grant { role: Role::Reader, namespaces: "*".into() }] };
    let cases = [(&publisher, "shop", true), (&publisher, "other", false), (&reader, "shop", false)];
    for (principal, namespace, allowed) in cases {
        assert_eq!(principal.may(publish, namespace), allowed, "{} on {namespace}", principal.name);
    }
    assert!(!publisher.may("/eventbus.v1.EventBusService/NoSuchMethod", "shop"), "not in the table: nobody");

    let metrics = Arc::new(Metrics::default());
    let auth = Auth::new(Arc::new(tokens()), metrics.clone(), 1 << 20);
    let admin = auth.authorize(&headers(Some(&format!("Bearer {ADMIN}"))), publish, "shop").await.unwrap();
    assert_eq!(admin.name, "admin");
    let refused = auth.authorize(&headers(None), publish, "shop").await.unwrap_err();
    assert!(matches!(refused, ApiError::Unauthenticated(_)), "{refused:?}");
    assert_eq!(metrics.auth_failures("missing"), 1);
}

#[test]
fn every_refusal_has_its_reason_and_code() {
    let cases = [
        (Refusal::Missing, "missing", Code::Unauthenticated),
        (Refusal::Malformed, "malformed", Code::Unauthenticated),
        (Refusal::Unknown, "unknown", Code::Unauthenticated),
        (Refusal::Expired, "expired", Code::Unauthenticated),
        (Refusal::Revoked, "revoked", Code::Unauthenticated),
        (Refusal::Denied, "denied", Code::PermissionDenied),
        (Refusal::Unavailable, "unavailable", Code::Unavailable),
        (Refusal::Unreadable, "unreadable", Code::InvalidArgument),
    ];
    for (refusal, reason, code) in cases {
        assert_eq!((refusal.reason(), Status::from(refusal.error()).code()), (reason, code), "{refusal:?}");
    }
}

#[test]
fn a_principal_may_what_its_grants_allow_in_a_namespace() {
    let grant = |role, namespaces: &str| Grant { role, namespaces: namespaces.into() };
    let reader = Principal { name: "r".into(), grants: vec![grant(Role::Reader, "shop")] };
    let operator = Principal { name: "o".into(), grants: vec![grant(Role::Operator, "team.*")] };
    let cases = [
        (&reader, Role::Reader, "shop", true),
        (&reader, Role::Operator, "shop", false),
        (&reader, Role::Reader, "other", false),
        (&operator, Role::Operator, "team.a", true),
        (&operator, Role::Reader, "team.a", true),
        (&operator, Role::Operator, "shop", false),
    ];
    for (principal, role, namespace, want) in cases {
        assert_eq!(principal.may_as(role, namespace), want, "{} {role} on {namespace}", principal.name);
    }
}

#[test]
fn a_stream_message_needs_its_methods_role_on_its_own_namespace() {
    let stream = "/eventbus.v1.EventBusService/PublishStream";
    let grant = |role, namespaces: &str| Grant { role, namespaces: namespaces.into() };
    let publisher = Principal { name: "p".into(), grants: vec![grant(Role::Publisher, "shop")] };
    let reader = Principal { name: "r".into(), grants: vec![grant(Role::Reader, "*")] };
    assert!(publisher.may(stream, ""), "the call: a publisher somewhere");
    assert!(!reader.may(stream, ""), "the call: a reader is no publisher");
    assert!(publisher.may_send(stream, "shop"));
    assert!(!publisher.may_send(stream, "other"), "a message to another namespace");
    assert!(!publisher.may_send("/eventbus.v1.EventBusService/Publish", "shop"), "not a stream of messages");
}
