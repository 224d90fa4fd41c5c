//! Reading one event in the CloudEvents JSON format, as `render::event_json` writes it: the
//! context attributes at the top level, the payload as `data` (a JSON value, or a string for
//! other media types) or `data_base64`.
//!
//! The server checks what the format cannot say (attribute names, sizes); this module checks
//! what the format itself requires, so a bad line is named by its line number before anything
//! is sent.

use base64::Engine as _;
use eventbus_client::pb::cloud_event::Data;
use eventbus_client::{AttributeValue, SPEC_VERSION, pb};
use serde_json::{Map, Value};

use crate::cli::parse;

/// What is wrong with an event: the attribute (or `""` for the whole line) and why.
pub type Problem = (String, String);

fn problem(field: &str, description: impl Into<String>) -> Problem {
    (field.to_owned(), description.into())
}

/// Returns the event a CloudEvents JSON object describes.
pub fn from_json(value: Value) -> Result<pb::CloudEvent, Problem> {
    let Value::Object(mut obj) = value else {
        return Err(problem("", "expected a JSON object (a CloudEvent in the JSON format)"));
    };
    let spec_version = required(&mut obj, "specversion")?;
    if spec_version != SPEC_VERSION {
        return Err(problem("specversion", format!("must be {SPEC_VERSION:?}, not {spec_version:?}")));
    }
    let mut event = pb::CloudEvent {
        spec_version,
        id: required(&mut obj, "id")?,
        source: required(&mut obj, "source")?,
        r#type: required(&mut obj, "type")?,
        ..Default::default()
    };
    let content_type = optional_string(&mut obj, "datacontenttype")?;
    event.data = data(&mut obj, content_type.as_deref())?;
    let content_type = match (&content_type, &event.data) {
        (None, Some(Data::TextData(_))) => Some("application/json".to_owned()),
        _ => content_type,
    };
    if let Some(ct) = content_type {
        event.attributes.insert("datacontenttype".into(), AttributeValue::String(ct).into());
    }
    if let Some(uri) = optional_string(&mut obj, "dataschema")? {
        event.attributes.insert("dataschema".into(), AttributeValue::Uri(uri).into());
    }
    if let Some(text) = optional_string(&mut obj, "time")? {
        let time = parse::rfc3339(&text).map_err(|e| problem("time", e))?;
        event.attributes.insert("time".into(), AttributeValue::from(time).into());
    }
    for (name, value) in obj {
        if let Some(value) = extension(&name, value)? {
            event.attributes.insert(name, value.into());
        }
    }
    Ok(event)
}

fn required(obj: &mut Map<String, Value>, name: &str) -> Result<String, Problem> {
    optional_string(obj, name)?.ok_or_else(|| problem(name, "required"))
}

fn optional_string(obj: &mut Map<String, Value>, name: &str) -> Result<Option<String>, Problem> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(problem(name, format!("must be a string, not {other}"))),
    }
}

/// Returns the payload: `data` as JSON text (JSON media types, or none) or as the string it is
/// (other media types), or `data_base64` decoded.
fn data(obj: &mut Map<String, Value>, content_type: Option<&str>) -> Result<Option<Data>, Problem> {
    let (data, base64) = (obj.remove("data"), obj.remove("data_base64"));
    match (data, base64) {
        (Some(_), Some(_)) => Err(problem("data_base64", "an event has data or data_base64, not both")),
        (None | Some(Value::Null), None) => Ok(None),
        (Some(value), None) if content_type.is_none_or(is_json) => Ok(Some(Data::TextData(value.to_string()))),
        (Some(Value::String(text)), None) => Ok(Some(Data::TextData(text))),
        (Some(_), None) => Err(problem("data", "must be a string for a datacontenttype that is not JSON")),
        (None, Some(Value::String(b64))) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|bytes| Some(Data::BinaryData(bytes)))
            .map_err(|e| problem("data_base64", format!("not base64: {e}"))),
        (None, Some(_)) => Err(problem("data_base64", "must be a base64 string")),
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Returns an extension attribute: a string, a boolean or a 32-bit integer (JSON has no
/// other CloudEvents type); `null` means absent.
fn extension(name: &str, value: Value) -> Result<Option<AttributeValue>, Problem> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::String(s) => AttributeValue::String(s),
        Value::Bool(b) => AttributeValue::Boolean(b),
        Value::Number(n) => match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) => AttributeValue::Integer(n),
            None => return Err(problem(name, format!("{n} is not a 32-bit integer"))),
        },
        other => return Err(problem(name, format!("must be a string, a boolean or an integer, not {other}"))),
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::render::event_json;

    #[test]
    fn events_round_trip_through_the_json_format() {
        let lines = [
            json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}),
            json!({"specversion": "1.0", "id": "2", "source": "/s", "type": "t", "subject": "x", "n": 7, "ok": true,
                   "datacontenttype": "application/json", "data": {"a": [1, 2]}}),
            json!({"specversion": "1.0", "id": "3", "source": "/s", "type": "t",
                   "datacontenttype": "text/plain", "data": "hi"}),
            json!({"specversion": "1.0", "id": "4", "source": "/s", "type": "t", "data_base64": "AQI="}),
            json!({"specversion": "1.0", "id": "5", "source": "/s", "type": "t", "time": "2026-11-22T10:00:00Z",
                   "dataschema": "https://example.com/s.json"}),
        ];
        for line in lines {
            let event = from_json(line.clone()).unwrap();
            assert_eq!(event_json(&event), line);
        }
    }

    #[test]
    fn data_without_a_content_type_is_json() {
        let event =
            from_json(json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": [1]})).unwrap();
        assert_eq!(event.data, Some(Data::TextData("[1]".into())));
        assert_eq!(
            AttributeValue::of(&event, "datacontenttype"),
            Some(AttributeValue::String("application/json".into()))
        );
    }

    #[test]
    fn problems_name_the_attribute() {
        let base = || json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
        let with = |key: &str, value: Value| {
            let mut line = base();
            line[key] = value;
            line
        };
        let without = |key: &str| {
            let mut line = base();
            line.as_object_mut().unwrap().remove(key);
            line
        };
        let cases = [
            (json!([1]), ""),
            (without("id"), "id"),
            (without("specversion"), "specversion"),
            (with("specversion", json!("0.3")), "specversion"),
            (with("type", json!(5)), "type"),
            (with("time", json!("yesterday")), "time"),
            (with("n", json!(1.5)), "n"),
            (with("big", json!(1_u64 << 40)), "big"),
            (with("obj", json!({})), "obj"),
            (with("data_base64", json!("!!")), "data_base64"),
            (with("data_base64", json!(1)), "data_base64"),
        ];
        for (line, field) in cases {
            let error = from_json(line.clone()).unwrap_err();
            assert_eq!(error.0, field, "{line}: {error:?}");
        }
        let mut both = with("data", json!(1));
        both["data_base64"] = json!("AQ==");
        assert_eq!(from_json(both).unwrap_err().0, "data_base64");
        let mut text = with("datacontenttype", json!("text/plain"));
        text["data"] = json!({"a": 1});
        assert_eq!(from_json(text).unwrap_err().0, "data");
    }
}
