//! How `eventbus listeners get` shows a listener with its partial state: what an ALL listener
//! has collected per correlation key, and what it still waits for.

use eventbus_client::pb;
use serde_json::{Map, Value, json};

use super::print_json;
use super::render;

/// Prints a GetListener answer: the listener, then its partial states.
pub fn print_listener(as_json: bool, got: &pb::GetListenerResponse) {
    let listener = got.listener.clone().unwrap_or_default();
    if as_json {
        let mut value = render::listener_json(&listener);
        if let Value::Object(obj) = &mut value {
            obj.insert("partial_states".into(), got.partial_states.iter().map(partial_json).collect());
            obj.insert("partial_states_truncated".into(), Value::Bool(got.partial_states_truncated));
        }
        print_json(&value);
        return;
    }
    out!("{}", render::listener_text(&listener));
    let all = listener.spec.as_ref().is_some_and(|s| s.condition() == pb::ListenerCondition::All);
    if !all {
        return;
    }
    if got.partial_states.is_empty() {
        out!("collected:   nothing");
    }
    for state in &got.partial_states {
        out!("{}", partial_text(state));
    }
    if got.partial_states_truncated {
        out!("(more correlation keys hold events than shown)");
    }
}

fn sorted_correlation(state: &pb::PartialState) -> Vec<(&String, &String)> {
    let mut pairs: Vec<(&String, &String)> = state.correlation.iter().collect();
    pairs.sort();
    pairs
}

/// Returns one partial state as lines: the key, each collected event, what is missing.
pub fn partial_text(state: &pb::PartialState) -> String {
    let key: Vec<String> = sorted_correlation(state).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let key = if key.is_empty() { "(no correlation)".to_owned() } else { key.join(",") };
    let mut lines = vec![format!("collected:   {key}")];
    for e in &state.events {
        let received = e.receive_time.as_ref().map(render::time).unwrap_or_default();
        let expires = e.expire_time.as_ref().map_or_else(|| "never".to_owned(), render::time);
        lines.push(format!(
            "  #{} {} {} {} received {received}, expires {expires}",
            e.sequence, e.r#type, e.source, e.id
        ));
    }
    lines.push(format!("  waiting for {}", state.missing_types.join(", ")));
    lines.join("\n")
}

/// Returns one partial state as a JSON object.
pub fn partial_json(state: &pb::PartialState) -> Value {
    let correlation: Map<String, Value> =
        sorted_correlation(state).into_iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let time = |t: Option<&prost_types::Timestamp>| t.map_or(Value::Null, |t| Value::String(render::time(t)));
    json!({
        "correlation": correlation,
        "events": state.events.iter().map(|e| json!({
            "type": e.r#type,
            "source": e.source,
            "id": e.id,
            "sequence": e.sequence,
            "receive_time": time(e.receive_time.as_ref()),
            "expire_time": time(e.expire_time.as_ref()),
        })).collect::<Vec<_>>(),
        "missing_types": state.missing_types,
    })
}
