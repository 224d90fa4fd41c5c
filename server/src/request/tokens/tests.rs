use super::*;

fn grant(role: pb::Role, namespaces: &str) -> pb::Grant {
    pb::Grant { role: role as i32, namespaces: namespaces.into() }
}

fn create(name: &str, grants: Vec<pb::Grant>, expire_time: Option<prost_types::Timestamp>) -> pb::CreateTokenRequest {
    pb::CreateTokenRequest { name: name.into(), grants, expire_time }
}

fn after(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: Utc::now().timestamp() + seconds, nanos: 0 }
}

#[test]
fn create_token_names_every_invalid_field() {
    let ok = || vec![grant(pb::Role::Publisher, "shop")];
    let long = "n".repeat(MAX_NAME_BYTES + 1);
    let cases: Vec<(pb::CreateTokenRequest, Vec<&str>)> = vec![
        (create("ci", ok(), None), vec![]),
        (create("", vec![grant(pb::Role::Admin, "*"), grant(pb::Role::Reader, "team-a.*")], Some(after(60))), vec![]),
        (create(&long, ok(), None), vec!["name"]),
        (create("a\nb", ok(), None), vec!["name"]),
        (create("ci", vec![], None), vec!["grants"]),
        (create("ci", vec![grant(pb::Role::Reader, "shop"); MAX_GRANTS + 1], None), vec!["grants"]),
        (create("ci", vec![grant(pb::Role::Unspecified, "shop")], None), vec!["grants[0].role"]),
        (create("ci", vec![pb::Grant { role: 99, namespaces: "shop".into() }], None), vec!["grants[0].role"]),
        (
            create("ci", vec![grant(pb::Role::Reader, "shop"), grant(pb::Role::Reader, "")], None),
            vec!["grants[1].namespaces"],
        ),
        (create("ci", vec![grant(pb::Role::Reader, "a*")], None), vec!["grants[0].namespaces"]),
        (create("ci", vec![grant(pb::Role::Unspecified, "")], None), vec!["grants[0].role", "grants[0].namespaces"]),
        (create("ci", ok(), Some(after(-60))), vec!["expire_time"]),
        (create("ci", ok(), Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 })), vec!["expire_time"]),
        (create(&long, vec![], Some(after(-1))), vec!["name", "grants", "expire_time"]),
    ];
    for (request, fields) in cases {
        let got = CreateToken::from_proto(request.clone(), &Limits::default());
        match got {
            Ok(_) => assert!(fields.is_empty(), "{request:?} is invalid"),
            Err(v) => assert_eq!(v.fields(), fields, "{request:?}"),
        }
    }
}

#[test]
fn create_token_converts_roles_and_patterns() {
    let request = create("ci", vec![grant(pb::Role::Listener, "team-a.*"), grant(pb::Role::Operator, "*")], None);
    let checked = CreateToken::from_proto(request, &Limits::default()).unwrap();
    let expected = [
        Grant { role: Role::Listener, namespaces: "team-a.*".into() },
        Grant { role: Role::Operator, namespaces: "*".into() },
    ];
    assert_eq!(checked.grants, expected);
    assert_eq!(checked.expires_at, None);
}

#[test]
fn token_ids_and_pages() {
    let bad = TokenId::from_proto(pb::RevokeTokenRequest { id: "x".into() }, &Limits::default());
    assert_eq!(bad.unwrap_err().fields(), ["id"]);
    let id = Uuid::now_v7();
    let got = TokenId::from_proto(pb::GetTokenRequest { id: id.to_string() }, &Limits::default()).unwrap();
    assert_eq!(got.id, id);
    let list =
        ListTokens::from_proto(pb::ListTokensRequest { page_size: -1, ..Default::default() }, &Limits::default());
    assert_eq!(list.unwrap_err().fields(), ["page_size"]);
}
