use super::*;
use crate::limits::{MAX_CORRELATE_BY, MAX_FILTER_SETS_PER_TYPE, MAX_TIMESTAMP_SECONDS, MAX_TYPES};

fn all_spec() -> pb::ListenerSpec {
    pb::ListenerSpec {
        kind: pb::ListenerKind::Start as i32,
        workflow_id: "wf".into(),
        condition: pb::ListenerCondition::All as i32,
        types: vec!["a".into(), "b".into()],
        ..Default::default()
    }
}

fn wait_spec() -> pb::ListenerSpec {
    pb::ListenerSpec {
        kind: pb::ListenerKind::Wait as i32,
        instance_id: "i".into(),
        condition: pb::ListenerCondition::One as i32,
        types: vec!["a".into()],
        ..Default::default()
    }
}

fn filter(ty: &str, clauses: &[(&str, &str)]) -> pb::EventFilter {
    pb::EventFilter {
        r#type: ty.into(),
        attributes: clauses.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        condition: String::new(),
    }
}

fn with_condition(ty: &str, condition: &str) -> pb::ListenerSpec {
    let set = pb::EventFilter { condition: condition.into(), ..filter(ty, &[]) };
    pb::ListenerSpec { filters: vec![set], ..all_spec() }
}

fn register(spec: pb::ListenerSpec) -> Result<Register, Violations> {
    let req = pb::RegisterListenerRequest { namespace: "ns".into(), listener: Some(spec), ..Default::default() };
    Register::from_proto(req, &Limits::default())
}

fn clauses(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("x{i}"), "v".to_string())).collect()
}

fn with_clauses(n: usize) -> pb::ListenerSpec {
    let attributes = clauses(n).into_iter().collect();
    pb::ListenerSpec {
        filters: vec![pb::EventFilter { r#type: "a".into(), attributes, condition: String::new() }],
        ..all_spec()
    }
}

fn days(d: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds: d * 86_400, nanos: 0 })
}

#[test]
fn spec_rules_at_and_past_each_boundary() {
    let types = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    let sets = |n: usize| (0..n).map(|i| filter("a", &[("subject", &*format!("s{i}"))])).collect::<Vec<_>>();
    let names = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
    let deadline = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let cases: Vec<(&str, pb::ListenerSpec, &[&str])> = vec![
        ("valid", all_spec(), &[]),
        ("64 types", pb::ListenerSpec { types: types(MAX_TYPES), ..all_spec() }, &[]),
        ("65 types", pb::ListenerSpec { types: types(MAX_TYPES + 1), ..all_spec() }, &["listener.types"]),
        ("type at 256 bytes", pb::ListenerSpec { types: vec!["t".repeat(256)], ..all_spec() }, &[]),
        (
            "type at 257 bytes",
            pb::ListenerSpec { types: vec!["a".into(), "t".repeat(257)], ..all_spec() },
            &["listener.types[1]"],
        ),
        ("32 filter sets", pb::ListenerSpec { filters: sets(MAX_FILTER_SETS_PER_TYPE), ..all_spec() }, &[]),
        (
            "33 filter sets",
            pb::ListenerSpec { filters: sets(MAX_FILTER_SETS_PER_TYPE + 1), ..all_spec() },
            &["listener.filters[32]"],
        ),
        ("32 clauses", with_clauses(MAX_CLAUSES), &[]),
        ("33 clauses", with_clauses(MAX_CLAUSES + 1), &["listener.filters[0].attributes"]),
        (
            "pattern at 1024 bytes",
            pb::ListenerSpec { filters: vec![filter("a", &[("subject", &"p".repeat(1024))])], ..all_spec() },
            &[],
        ),
        (
            "pattern at 1025 bytes",
            pb::ListenerSpec { filters: vec![filter("a", &[("subject", &"p".repeat(1025))])], ..all_spec() },
            &["listener.filters[0].attributes[subject]"],
        ),
        (
            "empty pattern",
            pb::ListenerSpec { filters: vec![filter("a", &[("subject", "")])], ..all_spec() },
            &["listener.filters[0].attributes[subject]"],
        ),
        (
            "invalid glob",
            pb::ListenerSpec { filters: vec![filter("a", &[("subject", "[")])], ..all_spec() },
            &["listener.filters[0].attributes[subject]"],
        ),
        (
            "clause name not an attribute name",
            pb::ListenerSpec { filters: vec![filter("a", &[("order-id", "1")])], ..all_spec() },
            &["listener.filters[0].attributes[order-id]"],
        ),
        (
            "clause names differing in case",
            pb::ListenerSpec { filters: vec![filter("a", &[("Subject", "1"), ("subject", "2")])], ..all_spec() },
            &["listener.filters[0].attributes[subject]"],
        ),
        (
            "filter on an unlisted type",
            pb::ListenerSpec { filters: vec![filter("c", &[("subject", "1")])], ..all_spec() },
            &["listener.filters[0].type"],
        ),
        ("lifespan 3650 days", pb::ListenerSpec { lifespan: days(3650), ..all_spec() }, &[]),
        ("lifespan 3651 days", pb::ListenerSpec { lifespan: days(3651), ..all_spec() }, &["listener.lifespan"]),
        ("negative lifespan", pb::ListenerSpec { lifespan: days(-1), ..all_spec() }, &["listener.lifespan"]),
        ("16 correlate_by", pb::ListenerSpec { correlate_by: names(MAX_CORRELATE_BY), ..all_spec() }, &[]),
        (
            "17 correlate_by",
            pb::ListenerSpec { correlate_by: names(MAX_CORRELATE_BY + 1), ..all_spec() },
            &["listener.correlate_by"],
        ),
        (
            "correlate_by not a name",
            pb::ListenerSpec { correlate_by: vec!["order id".into()], ..all_spec() },
            &["listener.correlate_by[0]"],
        ),
        (
            "correlate_by twice",
            pb::ListenerSpec { correlate_by: vec!["OrderId".into(), "orderid".into()], ..all_spec() },
            &["listener.correlate_by[1]"],
        ),
        ("workflow at 256 bytes", pb::ListenerSpec { workflow_id: "w".repeat(256), ..all_spec() }, &[]),
        (
            "workflow at 257 bytes",
            pb::ListenerSpec { workflow_id: "w".repeat(257), ..all_spec() },
            &["listener.workflow_id"],
        ),
        ("instance on START", pb::ListenerSpec { instance_id: "i".into(), ..all_spec() }, &["listener.instance_id"]),
        ("workflow on WAIT", pb::ListenerSpec { workflow_id: "w".into(), ..wait_spec() }, &["listener.workflow_id"]),
        ("deadline in year 9999", pb::ListenerSpec { deadline: deadline(MAX_TIMESTAMP_SECONDS), ..wait_spec() }, &[]),
        (
            "deadline in year 10000",
            pb::ListenerSpec { deadline: deadline(MAX_TIMESTAMP_SECONDS + 1), ..wait_spec() },
            &["listener.deadline"],
        ),
        (
            "policy on ONE",
            pb::ListenerSpec { policy: pb::ConsumptionPolicy::Latest as i32, ..wait_spec() },
            &["listener.policy"],
        ),
        ("unknown policy", pb::ListenerSpec { policy: 7, ..all_spec() }, &["listener.policy"]),
        ("no kind", pb::ListenerSpec { kind: 0, ..all_spec() }, &["listener.kind"]),
        ("condition only", with_condition("a", "data.amount >= 100"), &[]),
        ("condition at 4096 bytes", with_condition("a", &format!("true{}", " ".repeat(4092))), &[]),
        (
            "condition at 4097 bytes",
            with_condition("a", &format!("true{}", " ".repeat(4093))),
            &["listener.filters[0].condition"],
        ),
        ("condition that does not parse", with_condition("a", "data.amount >="), &["listener.filters[0].condition"]),
        ("no clause and no condition", with_condition("a", ""), &["listener.filters[0].attributes"]),
        ("no condition", pb::ListenerSpec { condition: 0, ..all_spec() }, &["listener.condition"]),
    ];
    for (what, spec, want) in cases {
        let got = register(spec).err().unwrap_or_default();
        assert_eq!(got.fields(), want, "{what}: {got:?}");
    }
}

#[test]
fn request_rules() {
    let req = |namespace: &str, listener, request_id: String| pb::RegisterListenerRequest {
        namespace: namespace.into(),
        listener,
        request_id,
        look_back: None,
    };
    let check = |r| Register::from_proto(r, &Limits::default()).err().unwrap_or_default().fields().join(",");
    assert_eq!(check(req("ns", Some(all_spec()), "r".repeat(128))), "");
    assert_eq!(check(req("ns", Some(all_spec()), "r".repeat(129))), "request_id");
    assert_eq!(check(req("", None, String::new())), "namespace,listener");
}

#[test]
fn names_are_lower_cased_and_all_listeners_default_to_first() {
    let spec = pb::ListenerSpec {
        filters: vec![filter("a", &[("Subject", "x")])],
        correlate_by: vec!["OrderId".into()],
        ..all_spec()
    };
    let r = register(spec).unwrap();
    assert_eq!(r.spec.filters[0].attributes.keys().collect::<Vec<_>>(), ["subject"]);
    assert_eq!(r.spec.correlate_by, ["orderid"]);
    assert_eq!(r.spec.policy, Some(Policy::First));
    let latest = pb::ListenerSpec { policy: pb::ConsumptionPolicy::Latest as i32, ..all_spec() };
    assert_eq!(register(latest).unwrap().spec.policy, Some(Policy::Latest));
    assert_eq!(register(wait_spec()).unwrap().spec.policy, None, "only ALL listeners have a policy");
}

#[test]
fn delete_listeners_selectors() {
    use pb::delete_listeners_request::Selector;
    let check = |selector| {
        let req = pb::DeleteListenersRequest { namespace: "ns".into(), selector };
        DeleteListeners::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!(check(Some(Selector::WorkflowId("w".repeat(256)))), "");
    assert_eq!(check(Some(Selector::WorkflowId("w".repeat(257)))), "workflow_id");
    assert_eq!(check(Some(Selector::InstanceId("i".repeat(256)))), "");
    assert_eq!(check(Some(Selector::InstanceId("i".repeat(257)))), "instance_id");
    assert_eq!(check(Some(Selector::InstanceId(String::new()))), "instance_id");
    assert_eq!(check(None), "selector");
}

#[test]
fn listener_ids_and_listings() {
    let get = |id: &str| {
        let req = pb::GetListenerRequest { namespace: "ns".into(), id: id.into(), include_partial_state: false };
        GetListener::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!(get(&Uuid::now_v7().to_string()), "");
    assert_eq!(get("not-a-uuid"), "id");
    let list = |kind, page_size| {
        let req = pb::ListListenersRequest { namespace: "ns".into(), kind, page_size, ..Default::default() };
        ListListeners::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!(list(0, 0), "");
    assert_eq!(list(9, -1), "kind,page_size");
}

#[test]
fn a_bad_condition_is_named_with_the_parsers_position() {
    let got = register(with_condition("a", "data.amount >= 100 &&\n  subject.startsWith(")).unwrap_err();
    assert_eq!(got.fields(), ["listener.filters[0].condition"]);
    let description = &got.invalid[0].description;
    assert!(description.starts_with("invalid expression at line 2, column 22: Syntax error: "), "{description}");
    let kept = register(with_condition("a", "data.amount >= 100")).unwrap();
    assert_eq!(kept.spec.filters[0].condition.as_deref(), Some("data.amount >= 100"));
    assert_eq!(register(with_clauses(1)).unwrap().spec.filters[0].condition, None, "empty is no condition");
}
