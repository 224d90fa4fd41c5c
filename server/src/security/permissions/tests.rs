use prost::Message;
use prost_types::FileDescriptorSet;
use prost_types::field_descriptor_proto::Type;

use super::*;

/// Every method of every eventbus service in the contract, as (path, input message name).
fn contract_methods() -> Vec<(String, String)> {
    let set = FileDescriptorSet::decode(eventbus_client::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "eventbus.v1") {
        for service in &file.service {
            for method in &service.method {
                methods
                    .push((format!("/eventbus.v1.{}/{}", service.name(), method.name()), method.input_type().into()));
            }
        }
    }
    methods
}

#[test]
fn every_method_of_the_contract_has_exactly_one_line_in_the_table() {
    let contract = contract_methods();
    for (path, _) in &contract {
        let lines = METHODS.iter().filter(|(method, _)| method == path).count();
        assert_eq!(lines, 1, "{path} needs exactly one line in METHODS");
    }
    for (method, _) in METHODS {
        assert!(contract.iter().any(|(path, _)| path == method), "{method} is in METHODS but not in the contract");
    }
}

#[test]
fn namespaced_requests_carry_their_namespace_in_field_1() {
    let set = FileDescriptorSet::decode(eventbus_client::FILE_DESCRIPTOR_SET).unwrap();
    for (path, input) in contract_methods() {
        if !matches!(requirement(&path), Some(Requirement::Namespace(_))) {
            continue;
        }
        let name = input.rsplit('.').next().unwrap();
        let message = set.file.iter().flat_map(|f| &f.message_type).find(|m| m.name() == name).unwrap();
        let field = message.field.iter().find(|f| f.number() == 1).unwrap_or_else(|| panic!("{name} has no field 1"));
        assert_eq!((field.name(), field.r#type()), ("namespace", Type::String), "{name}: field 1");
    }
}

#[test]
fn methods_outside_the_table_are_refused_and_health_is_open() {
    let cases = [
        ("/grpc.health.v1.Health/Check", Some(Requirement::Open)),
        ("/grpc.health.v1.Health/Watch", Some(Requirement::Open)),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Some(Requirement::Open)),
        ("/eventbus.v1.EventBusService/Publish", Some(Requirement::Namespace(Role::Publisher))),
        ("/eventbus.v1.EventBusService/DropEverything", None),
        ("/eventbus.v1.EventBusService/Publish/", None),
        ("/other.Service/Publish", None),
        ("", None),
    ];
    for (path, expected) in cases {
        assert_eq!(requirement(path), expected, "{path}");
    }
}

#[test]
fn roles_include_the_roles_below_them() {
    use Role::*;
    let cases = [
        (Publisher, vec![Publisher]),
        (Reader, vec![Reader]),
        (Listener, vec![Reader, Listener]),
        (Subscriber, vec![Subscriber]),
        (Operator, vec![Publisher, Reader, Listener, Subscriber, Operator]),
        (Admin, Role::ALL.to_vec()),
    ];
    for (role, included) in cases {
        let got: Vec<Role> = Role::ALL.into_iter().filter(|r| role.includes(*r)).collect();
        assert_eq!(got, included, "{role}");
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!("root".parse::<Role>().unwrap_err().starts_with("unknown role \"root\""));
}

#[test]
fn grants_cover_their_namespace_or_pattern() {
    let grant = |role, namespaces: &str| Grant { role, namespaces: namespaces.into() };
    let publish = Requirement::Namespace(Role::Publisher);
    let tokens = Requirement::Server(Role::Admin);
    let cases = [
        (grant(Role::Publisher, "shop"), publish, "shop", true),
        (grant(Role::Publisher, "shop"), publish, "shop2", false),
        (grant(Role::Publisher, "shop"), publish, "", false),
        (grant(Role::Reader, "shop"), publish, "shop", false),
        (grant(Role::Operator, "shop"), publish, "shop", true),
        (grant(Role::Publisher, "team-a.*"), publish, "team-a.orders", true),
        (grant(Role::Publisher, "team-a.*"), publish, "team-a.x.y", true),
        (grant(Role::Publisher, "team-a.*"), publish, "team-a.", false),
        (grant(Role::Publisher, "team-a.*"), publish, "team-a", false),
        (grant(Role::Publisher, "team-a.*"), publish, "team-ab.orders", false),
        (grant(Role::Publisher, "*"), publish, "anything", true),
        (grant(Role::Admin, "shop"), tokens, "", false),
        (grant(Role::Admin, "team-a.*"), tokens, "", false),
        (grant(Role::Operator, "*"), tokens, "", false),
        (grant(Role::Admin, "*"), tokens, "", true),
        (grant(Role::Reader, "shop"), Requirement::Open, "", true),
    ];
    for (grant, requirement, namespace, allowed) in cases {
        assert_eq!(grant.allows(requirement, namespace), allowed, "{grant:?} {requirement:?} {namespace:?}");
    }
}

#[test]
fn patterns_are_a_name_a_prefix_or_everything() {
    let long = "n".repeat(129);
    let cases = [
        ("shop", true),
        ("team-a.*", true),
        ("*", true),
        ("", false),
        (".*", false),
        ("a*", false),
        ("*.b", false),
        ("a b", false),
        ("é", false),
        (&long, false),
        (&long[1..], true),
    ];
    for (pattern, valid) in cases {
        assert_eq!(valid_pattern(pattern), valid, "{pattern:?}");
    }
}

#[test]
fn the_namespace_is_read_from_any_namespaced_request() {
    use eventbus_client::pb;
    let publish = pb::PublishRequest { namespace: "shop".into(), events: vec![Default::default()] };
    let ack = pb::AckRequest { namespace: "ops".into(), consumer_group: "g".into(), sequences: vec![1, 2] };
    assert_eq!(namespace_of(&publish.encode_to_vec()).unwrap(), "shop");
    assert_eq!(namespace_of(&ack.encode_to_vec()).unwrap(), "ops");
    assert_eq!(namespace_of(&[]).unwrap(), "");
    assert!(namespace_of(&[0x0a, 0x05, b'a']).is_err(), "a truncated message does not decode");
}
