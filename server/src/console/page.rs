//! The frame of every page (head, header, namespace tabs) and the formatting the pages share:
//! times, durations, attribute values, event data, trace links, query strings.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use eventbus_client::pb;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::Viewer;

/// The tabs of a namespace's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tab {
    Events,
    Listeners,
    Groups,
}

/// Returns a whole page: `body` under the header (with who is logged in, when tokens are on).
pub(super) fn document(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · eventbus" }
                link rel="icon" href="/ui/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { img src="/ui/assets/icon.svg" alt="" width="20" height="20"; "eventbus" }
                    @if let Some(name) = viewer.and_then(Viewer::name) {
                        form.logout method="post" action="/ui/logout" {
                            span.who { "logged in as " b { (name) } }
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Returns a page of a namespace: its name and tabs above `body`.
pub(super) fn namespaced(title: &str, viewer: &Viewer, ns: &str, tab: Tab, body: Markup) -> Markup {
    let tabs = [
        (Tab::Events, "events", "Events"),
        (Tab::Listeners, "listeners", "Listeners"),
        (Tab::Groups, "groups", "Consumer groups"),
    ];
    let inner = html! {
        nav.namespace {
            span.ns { "namespace " b #namespace { (ns) } " " a.switch href="/ui/" { "switch" } }
            ul.tabs {
                @for (t, path, label) in tabs {
                    li { a.active[t == tab] href={ "/ui/ns/" (ns) "/" (path) } { (label) } }
                }
            }
        }
        (body)
    };
    document(&format!("{title} · {ns}"), Some(viewer), inner)
}

/// The namespace picker's body.
pub(super) fn namespaces(listing: Option<&pb::ListNamespacesResponse>, granted: &[String]) -> Markup {
    html! {
        h1 { "Namespaces" }
        @if let Some(listing) = listing {
            @if listing.namespaces.is_empty() { p.empty { "No namespace yet: one appears with its first event, listener or consumer group." } }
            @else {
                table.grid #namespaces {
                    thead { tr { th { "Namespace" } th.num { "Events" } th.num { "Active listeners" } th.num { "Consumer groups" } th.num { "Last event" } th.num { "Last notification" } } }
                    tbody {
                        @for n in &listing.namespaces {
                            tr {
                                td { a href={ "/ui/ns/" (n.name) "/events" } { (n.name) } }
                                td.num { (n.event_count) } td.num { (n.active_listener_count) } td.num { (n.consumer_group_count) }
                                td.num { "#" (n.last_event_sequence) } td.num { "#" (n.last_notification_sequence) }
                            }
                        }
                    }
                }
                @if !listing.next_page_token.is_empty() {
                    p.pager { a href={ "/ui/?page_token=" (encode(&listing.next_page_token)) } { "Next page →" } }
                }
            }
        } @else if !granted.is_empty() {
            ul.granted { @for n in granted { li { a href={ "/ui/ns/" (n) "/events" } { (n) } } } }
        }
        form.open method="get" action="/ui/open" {
            label for="open-namespace" { "Open a namespace by name" }
            input #open-namespace name="namespace" required placeholder="shop";
            button type="submit" { "Open" }
        }
    }
}

/// Percent-encodes a query value.
pub(super) fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Returns `?k=v&...` of the pairs whose value is not empty ("" when none is).
pub(super) fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

pub(super) fn to_time(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
}

/// Formats a time as `2026-12-06 22:05:01.123 UTC`.
pub(super) fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(to_time).map_or_else(|| "—".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
}

/// Formats a span of seconds as `2h 03m`, `4m 05s` or `7s`.
pub(super) fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Formats an attribute value as its canonical string.
pub(super) fn attr_value(value: &pb::cloud_event::CloudEventAttributeValue) -> String {
    match &value.attr {
        Some(Attr::CeBoolean(b)) => b.to_string(),
        Some(Attr::CeInteger(n)) => n.to_string(),
        Some(Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s)) => s.clone(),
        Some(Attr::CeBytes(b)) => base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b),
        Some(Attr::CeTimestamp(t)) => time(Some(t)),
        None => String::new(),
    }
}

/// Returns an attribute of an event as a string, empty when absent.
pub(super) fn attr(event: &pb::CloudEvent, name: &str) -> String {
    event.attributes.get(name).map(attr_value).unwrap_or_default()
}

/// Returns a link to the trace of a W3C `traceparent` in the Jaeger UI, if one is configured.
pub(super) fn trace_link(jaeger: Option<&str>, traceparent: &str) -> Markup {
    let trace_id =
        traceparent.split('-').nth(1).filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    html! {
        @if let (Some(base), Some(id)) = (jaeger, trace_id) {
            a.trace href={ (base) "/trace/" (id) } target="_blank" rel="noopener noreferrer" title={ "trace " (id) } { "trace" }
        }
    }
}

/// How an event's data is shown.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Shown {
    None,
    Json(String),
    Text(String),
    /// A hex dump, and whether it was cut.
    Hex(String, bool),
}

/// The most bytes of binary data a hex dump shows.
const MAX_HEX_BYTES: usize = 64 << 10;

/// Returns how to show an event's data: JSON pretty-printed when the content type is JSON or
/// absent and it parses, else text when it is UTF-8, else a hex dump.
pub(super) fn shown(event: &pb::CloudEvent) -> Shown {
    let content_type = attr(event, "datacontenttype");
    let json_like = content_type.is_empty() || content_type.contains("json");
    let text = match &event.data {
        None => return Shown::None,
        Some(pb::cloud_event::Data::TextData(t)) => t.clone(),
        Some(pb::cloud_event::Data::BinaryData(b)) => match std::str::from_utf8(b) {
            Ok(t) => t.to_owned(),
            Err(_) => return hex(b),
        },
        Some(pb::cloud_event::Data::ProtoData(any)) => return hex(&any.value),
    };
    if json_like && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        return Shown::Json(serde_json::to_string_pretty(&value).unwrap_or(text));
    }
    Shown::Text(text)
}

fn hex(bytes: &[u8]) -> Shown {
    let mut out = String::new();
    for (i, line) in bytes[..bytes.len().min(MAX_HEX_BYTES)].chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for b in line {
            let _ = write!(out, "{b:02x} ");
        }
        out.push_str(&"   ".repeat(16 - line.len()));
        out.extend(line.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }));
        out.push('\n');
    }
    Shown::Hex(out, bytes.len() > MAX_HEX_BYTES)
}

/// Renders an event's data.
pub(super) fn data(event: &pb::CloudEvent) -> Markup {
    match shown(event) {
        Shown::None => html! { p.empty { "No data." } },
        Shown::Json(s) => html! { pre.data.json #event-data { (s) } },
        Shown::Text(s) => html! { pre.data.text #event-data { (s) } },
        Shown::Hex(s, cut) => html! {
            pre.data.hex #event-data { (s) }
            @if cut { p.note { "Only the first " (MAX_HEX_BYTES) " bytes are shown." } }
        },
    }
}

/// A notice at the top of a page, after an action.
pub(super) fn notice(text: Option<String>) -> Markup {
    html! { @if let Some(t) = text { p.notice #notice role="status" { (t) } } }
}

/// An empty fragment, for answers with no rows.
pub(super) fn nothing() -> Markup {
    PreEscaped(String::new())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn event(content_type: &str, data: pb::cloud_event::Data) -> pb::CloudEvent {
        let mut attributes = HashMap::new();
        if !content_type.is_empty() {
            let value = pb::cloud_event::CloudEventAttributeValue { attr: Some(Attr::CeString(content_type.into())) };
            attributes.insert("datacontenttype".to_owned(), value);
        }
        pb::CloudEvent { attributes, data: Some(data), ..Default::default() }
    }

    #[test]
    fn data_is_shown_as_json_text_or_hex() {
        use pb::cloud_event::Data::{BinaryData, TextData};
        let cases = [
            (event("application/json", TextData(r#"{"a":1}"#.into())), Shown::Json("{\n  \"a\": 1\n}".into())),
            (event("", BinaryData(br#"[1]"#.to_vec())), Shown::Json("[\n  1\n]".into())),
            (event("text/plain", TextData("{\"a\":1}".into())), Shown::Text("{\"a\":1}".into())),
            (event("application/json", TextData("not json".into())), Shown::Text("not json".into())),
            (
                event("application/octet-stream", BinaryData(vec![0, 0x41, 0xff])),
                Shown::Hex(format!("00000000  00 41 ff {}.A.\n", "   ".repeat(13)), false),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(shown(&e), want, "{e:?}");
        }
    }

    #[test]
    fn spans_and_queries_read_well() {
        let cases = [(0, "0s"), (59, "59s"), (65, "1m 05s"), (3 * 3600 + 120, "3h 02m"), (90000, "1d 01h")];
        for (s, want) in cases {
            assert_eq!(span(s), want);
        }
        assert_eq!(query(&[("type", "a b&c"), ("source", "")]), "?type=a+b%26c");
        assert_eq!(query(&[("type", "")]), "");
    }
}
