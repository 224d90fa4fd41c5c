use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use super::*;
use crate::event::TraceContext;

fn event() -> Event {
    Event {
        namespace: "ns".into(),
        sequence: 7,
        id: "e1".into(),
        source: "/shop/eu".into(),
        specversion: "1.0".into(),
        event_type: "order.created".into(),
        subject: Some("eu/orders/42".into()),
        time: Some(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()),
        datacontenttype: Some("application/json".into()),
        dataschema: Some("https://acme.io/schemas/order".into()),
        extensions: BTreeMap::from([
            ("paid".into(), AttrValue::Boolean(true)),
            ("qty".into(), AttrValue::Integer(42)),
            ("region".into(), AttrValue::String("eu-west".into())),
            ("blob".into(), AttrValue::Bytes(vec![0, 1, 255])),
            ("link".into(), AttrValue::Uri("https://acme.io/a".into())),
            ("path".into(), AttrValue::UriRef("/a/b".into())),
            ("due".into(), AttrValue::Timestamp(Utc.with_ymd_and_hms(2026, 12, 24, 18, 0, 0).unwrap())),
        ]),
        data: Some(Data::Text(
            r#"{"amount": 150, "price": 9.5, "big": 18446744073709551615, "note": null, "gift": false,
               "customer": {"address": {"country": "DE"}},
               "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 3}]}"#
                .into(),
        )),
        received_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 1).unwrap(),
        trace: TraceContext::default(),
    }
}

fn eval(text: &str, event: &Event) -> Result<bool, String> {
    let condition = FilterCondition::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    condition.eval(&Bindings::new(event))
}

/// Every binding, with its type: each case must be true on [`event`].
#[test]
fn every_attribute_is_bound_with_its_type() {
    let cases = [
        // Context attributes.
        r#"id == "e1" && type(id) == string"#,
        r#"source == "/shop/eu""#,
        r#"specversion == "1.0""#,
        r#"type == "order.created""#,
        r#"subject.startsWith("eu/")"#,
        r#"time == timestamp("2026-11-22T10:00:00Z") && type(time) == google.protobuf.Timestamp"#,
        r#"time < timestamp("2026-11-22T10:00:00.000000001Z")"#,
        r#"datacontenttype == "application/json""#,
        r#"dataschema == "https://acme.io/schemas/order" && type(dataschema) == string"#,
        // Extensions, one of each type.
        r#"paid && type(paid) == bool"#,
        r#"qty == 42 && qty + 1 == 43 && type(qty) == int"#,
        r#"region == "eu-west" && type(region) == string"#,
        r#"blob == b"\x00\x01\xff" && size(blob) == 3 && type(blob) == bytes"#,
        r#"link == "https://acme.io/a" && type(link) == string"#,
        r#"path == "/a/b" && type(path) == string"#,
        r#"due > time && type(due) == google.protobuf.Timestamp"#,
        // Data: decoded JSON.
        r#"data.amount >= 100 && type(data.amount) == int"#,
        r#"data.price == 9.5 && type(data.price) == double"#,
        r#"data.amount > 99.5 && data.price < 10"#,
        r#"data.big == 18446744073709551615u && type(data.big) == uint"#,
        r#"data.note == null && !data.gift"#,
        r#"data.customer.address.country == "DE""#,
        r#"data["customer"]["address"]["country"] == "DE""#,
        r#"data.items.size() == 2 && data.items[1].sku == "b""#,
        r#"data.items.exists(i, i.qty > 2) && !data.items.all(i, i.qty > 2)"#,
        r#"data.items.map(i, i.qty) == [1, 3] && data.items.filter(i, i.sku == "a").size() == 1"#,
        r#"has(data.amount) && !has(data.missing) && has(data.customer.address)"#,
        r#"data.?missing.orValue(0) == 0"#,
        // The issue's example.
        r#"data.amount >= 100 && subject.startsWith("eu/")"#,
        r#"subject.matches("^eu/orders/[0-9]+$")"#,
    ];
    let e = event();
    for text in cases {
        assert_eq!(eval(text, &e), Ok(true), "{text}");
    }
}

#[test]
fn data_is_json_only_for_json_content_types_that_parse() {
    let with = |content_type: Option<&str>, data: Option<Data>| Event {
        datacontenttype: content_type.map(Into::into),
        data,
        ..event()
    };
    let text = |s: &str| Some(Data::Text(s.into()));
    let cases = [
        ("absent content type", with(None, text(r#"{"a": 1}"#)), "data.a == 1"),
        ("json with parameters", with(Some("application/json; charset=utf-8"), text(r#"{"a": 1}"#)), "data.a == 1"),
        ("structured suffix", with(Some("application/cloudevents+json"), text(r#"{"a": 1}"#)), "data.a == 1"),
        ("text/json, any case", with(Some("TEXT/JSON"), text("[1, 2]")), "data == [1, 2]"),
        ("binary json", with(None, Some(Data::Binary(br#"{"a": 1}"#.to_vec()))), "data.a == 1"),
        ("json scalar", with(None, text("42")), "data == 42"),
        (
            "non-json content type",
            with(Some("text/plain"), text(r#"{"a": 1}"#)),
            r#"type(data) == bytes && data == b"{\"a\": 1}""#,
        ),
        ("json that does not parse", with(Some("application/json"), text("{oops")), r#"data == b"{oops""#),
        ("absent type, not json", with(None, text("hello")), r#"string(data) == "hello""#),
        (
            "binary, not json",
            with(Some("application/octet-stream"), Some(Data::Binary(vec![0, 1]))),
            r#"data == b"\x00\x01""#,
        ),
        (
            "proto data is bytes",
            with(
                Some("application/json"),
                Some(Data::Proto { type_url: "type.googleapis.com/x".into(), value: b"{}".to_vec() }),
            ),
            r#"data == b"{}""#,
        ),
        ("no data is null", with(Some("application/json"), None), "data == null"),
    ];
    for (name, e, text) in cases {
        assert_eq!(eval(text, &e), Ok(true), "{name}: {text}");
    }
}

/// What fails at run time: the caller treats it as false.
#[test]
fn runtime_errors_are_errors_not_panics() {
    let without = Event { subject: None, time: None, ..event() };
    let cases = [
        ("missing attribute", "subject == \"x\"", &without),
        ("missing time", "time > timestamp(\"2020-01-01T00:00:00Z\")", &without),
        ("missing extension", "tier == \"gold\"", &without),
        ("missing field", "data.missing == 1", &without),
        ("field of a scalar", "data.amount.value == 1", &without),
        ("index out of range", "data.items[5].sku == \"a\"", &without),
        ("wrong type", "subject > 1", &event()),
        ("wrong function", "qty.startsWith(\"4\")", &without),
        ("division by zero", "qty / 0 == 1", &without),
        ("not a bool", "data.amount", &without),
        ("bad timestamp", "timestamp(region) > time", &event()),
    ];
    for (name, text, e) in cases {
        assert!(eval(text, e).is_err(), "{name}: {text} gave {:?}", eval(text, e));
    }
    assert_eq!(eval("data.amount", &without), Err("evaluated to int, not bool".into()));
    assert_eq!(eval("data.amount > 1000", &without), Ok(false), "false is not an error");
}

#[test]
fn compile_rejects_what_is_too_large_or_unbounded() {
    let terms = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    let long = format!("true{}", " ".repeat(MAX_CONDITION_BYTES - 3));
    let cases: Vec<(&str, String, ConditionError)> = vec![
        ("too long", long, ConditionError::TooLong(MAX_CONDITION_BYTES + 1)),
        ("empty", "  ".into(), ConditionError::Empty),
        (
            "macro in a macro's body",
            "data.a.exists(x, x.b.exists(y, y))".into(),
            limit(1, 19, "a macro must not be nested in another macro"),
        ),
        (
            "macro over a macro",
            "data.a.map(x, x).exists(y, y)".into(),
            limit(1, 11, "a macro must not be nested in another macro"),
        ),
        (
            "attribute in a macro's body",
            "data.items.exists(i,\n  i.sku == subject)".into(),
            limit(2, 12, r#"a macro's body sees only its own variables and literals, not "subject""#),
        ),
        (
            "computed pattern",
            "subject.matches(data.pattern)".into(),
            limit(1, 16, "the pattern of matches() must be a string literal"),
        ),
        (
            "computed pattern, global form",
            "matches(subject, region)".into(),
            limit(1, 8, "the pattern of matches() must be a string literal"),
        ),
        (
            "too many nodes",
            terms(130, "qty == 1", " || "),
            limit(1, 1, &format!("too complex: more than {MAX_CONDITION_NODES} nodes")),
        ),
        (
            "too deep",
            format!("{} == 40", terms(40, "qty", " + ")),
            limit(1, 1, &format!("nested too deeply: more than {MAX_CONDITION_DEPTH} levels")),
        ),
    ];
    for (name, text, want) in cases {
        let got = FilterCondition::compile(&text).map(drop);
        match (&got, &want) {
            (Err(ConditionError::Limit { message, .. }), ConditionError::Limit { message: want_message, .. }) => {
                assert_eq!(message, want_message, "{name}")
            }
            _ => assert_eq!(got, Err(want), "{name}"),
        }
    }
}

fn limit(line: usize, column: usize, message: &str) -> ConditionError {
    ConditionError::Limit { line, column, message: message.into() }
}

#[test]
fn limits_name_the_position_of_the_offending_node() {
    let cases = [
        ("data.a.exists(x, x.b.exists(y, y))", (1, 28)),
        ("data.items.exists(i,\n  i.sku == subject)", (2, 12)),
        ("subject.matches(data.pattern)", (1, 16)),
    ];
    for (text, want) in cases {
        match FilterCondition::compile(text) {
            Err(ConditionError::Limit { line, column, .. }) => assert_eq!((line, column), want, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn compile_accepts_what_is_within_the_limits() {
    let terms = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    let cases = [
        format!("true{}", " ".repeat(MAX_CONDITION_BYTES - 4)),
        terms(100, "qty == 1", " || "),
        format!("{} == 30", terms(30, "qty", " + ")),
        "data.items.exists(i, i.qty > 1) && data.tags.all(t, t != \"x\")".into(),
        "data.m.exists(k, v, k == v)".into(),
        "subject.matches(\"^eu/\") && matches(region, \"eu-.*\")".into(),
    ];
    for text in cases {
        assert!(FilterCondition::compile(&text).is_ok(), "{text}: {:?}", FilterCondition::compile(&text).err());
    }
}

#[test]
fn syntax_errors_carry_the_parsers_message_and_position() {
    let cases = [("data.amount >= ", 1), ("data.amount > 1 &&\n  subject ==", 2), ("subject.startsWith('eu/'", 1)];
    for (text, want_line) in cases {
        match FilterCondition::compile(text) {
            Err(ConditionError::Syntax { line, column, message }) => {
                assert_eq!(line, want_line, "{text}");
                assert!(column >= 1, "{text}");
                assert!(message.starts_with("Syntax error: "), "{text}: {message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let err = FilterCondition::compile("data.amount >= ").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid expression at line 1, column 16: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}"
    );
}

/// Deep nesting is an error at registration, not a stack overflow: on a thread with a small
/// stack, the deepest texts that fit in the size limit compile to errors.
#[test]
fn deep_nesting_fails_without_exhausting_the_stack() {
    let half = MAX_CONDITION_BYTES / 2;
    let texts = [
        format!("{}1{}", "(".repeat(half - 1), ")".repeat(half - 1)),
        format!("{}1", "1+".repeat(half - 1)),
        format!("{}1{}", "[".repeat(half - 1), "]".repeat(half - 1)),
        format!("{}x", "x.".repeat(half - 1)),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || texts.iter().map(|t| FilterCondition::compile(t).is_err()).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(handle.join().unwrap(), [true, true, true, true]);
}

#[test]
fn content_types() {
    for json in ["application/json", "application/json; charset=utf-8", "Application/JSON", "text/json", "a/b+json"] {
        assert!(is_json(json), "{json}");
    }
    for other in ["text/plain", "application/jsonl", "application/octet-stream", "", "json"] {
        assert!(!is_json(other), "{other}");
    }
}
