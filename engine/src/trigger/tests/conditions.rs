//! Filter sets with CEL conditions: when they run, what they count.

use super::*;
use crate::event::Data;

fn with_condition(event_type: &str, clauses: &[(&str, &str)], condition: &str) -> FilterSet {
    FilterSet { condition: Some(condition.into()), ..filter(event_type, clauses) }
}

fn with_data(e: Ev, json: &str) -> Ev {
    let mut e = e;
    e.0.data = Some(Data::Text(json.into()));
    e
}

#[test]
fn conditions_run_after_clauses_and_count_their_errors() {
    let amount = |n: i64| with_data(ev("a").ext("region", "eu"), &format!(r#"{{"amount": {n}}}"#));
    let big = "data.amount >= 100";
    let missing = "data.missing == 1";
    let cases: Vec<(&str, Vec<FilterSet>, Ev, bool, u64)> = vec![
        ("true", vec![with_condition("a", &[], big)], amount(150), true, 0),
        ("false", vec![with_condition("a", &[], big)], amount(50), false, 0),
        ("runtime error is false and counted", vec![with_condition("a", &[], missing)], amount(150), false, 1),
        ("no data is an error", vec![with_condition("a", &[], big)], ev("a"), false, 1),
        ("clause and condition", vec![with_condition("a", &[("region", "eu")], big)], amount(150), true, 0),
        (
            "a failing clause skips the condition",
            vec![with_condition("a", &[("region", "us")], missing)],
            amount(150),
            false,
            0,
        ),
        (
            "a set without a condition is tried first",
            vec![with_condition("a", &[], missing), filter("a", &[("region", "eu")])],
            amount(150),
            true,
            0,
        ),
        (
            "an error in one set leaves the next",
            vec![with_condition("a", &[], missing), with_condition("a", &[], big)],
            amount(150),
            true,
            1,
        ),
        (
            "another type's condition never runs",
            vec![with_condition("a", &[], missing)],
            with_data(ev("b"), r#"{"amount": 150}"#),
            true,
            0,
        ),
    ];
    for (name, filters, event, want, errors) in cases {
        let mut h = Harness::new();
        let mut s = spec(ListenerKind::Start, Condition::Any, &["a", "b"]);
        s.filters = filters;
        h.add(s);
        let out = h.eval_at(&[event], t0());
        assert_eq!(out.actions.len(), usize::from(want), "{name}");
        assert_eq!(out.condition_errors, errors, "{name}");
    }
}

#[test]
fn a_condition_only_set_keeps_its_type_out_of_the_exact_index() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::One, &["a"]);
    s.filters = vec![filter("a", &[("customer", "c1")]), with_condition("a", &[], "data.amount >= 100")];
    let l = h.add(s);
    let actions = h.eval(&[with_data(ev("a").ext("customer", "c2"), r#"{"amount": 150}"#)]);
    assert_eq!(fired_listeners(&actions), vec![l], "the condition-only set matches any customer");
    assert_eq!(h.eval(&[ev("a").ext("customer", "c1")]).len(), 1, "the clause-only set still matches");
}

#[test]
fn conditions_are_validated_with_the_filter_set() {
    let base = || spec(ListenerKind::Start, Condition::Any, &["a", "b"]);
    let with = |filters| ListenerSpec { filters, ..base() };
    let cases: Vec<(&str, ListenerSpec, &str)> = vec![
        ("syntax", with(vec![with_condition("a", &[], "data.amount >=")]), "filters[0].condition"),
        ("empty", with(vec![filter("a", &[("x", "y")]), with_condition("b", &[], " ")]), "filters[1].condition"),
        ("too long", with(vec![with_condition("a", &[], &"1".repeat(4097))]), "filters[0].condition"),
        ("no clause, no condition", with(vec![filter("a", &[])]), "filters[0].attributes"),
    ];
    for (name, spec, field) in cases {
        match spec.validate() {
            Err(Error::InvalidArgument(v)) => {
                assert_eq!(v.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), [field], "{name}")
            }
            other => panic!("{name}: want invalid argument, got {other:?}"),
        }
    }
    assert!(with(vec![with_condition("a", &[], "data.amount >= 100")]).validate().is_ok());
    match with(vec![with_condition("a", &[], "data.amount >=")]).validate() {
        Err(Error::InvalidArgument(v)) => {
            assert!(v[0].description.starts_with("invalid expression at line 1, column 15: Syntax error: "), "{v:?}")
        }
        other => panic!("{other:?}"),
    }
}
