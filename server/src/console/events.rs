//! The events pages: a filtered, paged list (ListEvents) that can follow new events live, and
//! one event with its attributes, extensions and data (GetEvent).

use axum::extract::{Path, Query, State};
use chrono::{DateTime, NaiveDateTime, Utc};
use eventbus_client::pb;
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{self, Tab};
use super::session::{Action, Viewer};
use super::{Answer, Console, Failure};
use crate::request::Violations;
use crate::status::ApiError;

/// Events per page.
const PAGE_SIZE: i32 = 50;
/// How many of the newest sequences a followed list starts with.
const TAIL: u64 = 50;

/// The filters of the list, as the form sends them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Filters {
    #[serde(rename = "type")]
    event_type: String,
    source: String,
    subject: String,
    /// Received at or after, RFC 3339 or `YYYY-MM-DDTHH:MM[:SS]` in UTC.
    from: String,
    /// Received before.
    to: String,
    page_token: String,
    /// `1`: start near the newest event and follow new ones.
    follow: String,
    /// The rows fragment: only events after this sequence.
    after: u64,
}

impl Filters {
    /// The query of these filters, without paging.
    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs = vec![
            ("type", self.event_type.as_str()),
            ("source", self.source.as_str()),
            ("subject", self.subject.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
        ];
        pairs.extend_from_slice(extra);
        page::query(&pairs)
    }

    fn request(&self, ns: &str, after_sequence: u64, page_token: String) -> Result<pb::ListEventsRequest, Failure> {
        Ok(pb::ListEventsRequest {
            namespace: ns.to_owned(),
            r#type: self.event_type.trim().to_owned(),
            source: self.source.trim().to_owned(),
            subject: self.subject.trim().to_owned(),
            start_time: parse_time("from", &self.from)?.map(crate::convert::time_to),
            end_time: parse_time("to", &self.to)?.map(crate::convert::time_to),
            after_sequence,
            page_size: PAGE_SIZE,
            page_token,
        })
    }
}

/// Parses a time of the filter form: RFC 3339, or a `datetime-local` value taken as UTC.
pub(super) fn parse_time(field: &str, value: &str) -> Result<Option<DateTime<Utc>>, Failure> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            let v = Violations::invalid(field, "is not a time: use RFC 3339 or YYYY-MM-DDTHH:MM[:SS] (UTC)");
            ApiError::from(v).into()
        })
}

pub(super) async fn list(
    State(c): State<Console>,
    viewer: Viewer,
    Path(ns): Path<String>,
    Query(f): Query<Filters>,
) -> Answer {
    viewer.require(Action::ReadEvents, &ns)?;
    let head = c.bus.store.namespace_head(&ns).await?;
    let follow = f.follow == "1";
    let (after, token) =
        if follow { (head.last_event_sequence.saturating_sub(TAIL), String::new()) } else { (0, f.page_token.clone()) };
    let listing = c.bus.list_events_inner(f.request(&ns, after, token)?).await?;
    let jaeger = c.bus.config.jaeger_ui_url.as_deref();
    let last = listing.events.last().map_or(after, |e| e.sequence);
    let body = html! {
        h1 { "Events" }
        (filter_form(&ns, &f))
        p.toolbar {
            @if follow {
                a.button.on #follow href={ "/ui/ns/" (ns) "/events" (f.query(&[])) } { "● Following live — stop" }
                span #follow-status role="status" { "waiting for new events" }
            } @else {
                a.button #follow href={ "/ui/ns/" (ns) "/events" (f.query(&[("follow", "1")])) } { "Follow live" }
            }
        }
        table.grid #events data-follow-url=[follow.then(|| format!("/ui/ns/{ns}/events/rows{}", f.query(&[])))] data-after=(last) {
            thead { tr { th.num { "#" } th { "Received" } th { "Type" } th { "Source" } th { "Subject" } th { "Id" } th {} } }
            tbody { @for e in &listing.events { (row(&ns, e, jaeger)) } }
        }
        @if listing.events.is_empty() && !follow { p.empty { "No events match." } }
        @if !follow && (!listing.next_page_token.is_empty() || !f.page_token.is_empty()) {
            p.pager {
                @if !f.page_token.is_empty() { a #first-page href={ "/ui/ns/" (ns) "/events" (f.query(&[])) } { "← First page" } " " }
                @if !listing.next_page_token.is_empty() {
                    a #next-page href={ "/ui/ns/" (ns) "/events" (f.query(&[("page_token", &listing.next_page_token)])) } { "Next page →" }
                }
            }
        }
    };
    Ok(page::namespaced("Events", &viewer, &ns, Tab::Events, body))
}

fn filter_form(ns: &str, f: &Filters) -> Markup {
    html! {
        form.filters #filters method="get" action={ "/ui/ns/" (ns) "/events" } {
            label { "Type" input name="type" value=(f.event_type) placeholder="order.created"; }
            label { "Source" input name="source" value=(f.source) placeholder="/shop"; }
            label { "Subject" input name="subject" value=(f.subject); }
            label { "From (UTC)" input type="datetime-local" step="1" name="from" value=(f.from); }
            label { "To (UTC)" input type="datetime-local" step="1" name="to" value=(f.to); }
            button type="submit" { "Filter" }
            a.clear href={ "/ui/ns/" (ns) "/events" } { "Clear" }
        }
    }
}

/// One event's row of the list (also what the live follow appends).
fn row(ns: &str, e: &pb::StoredEvent, jaeger: Option<&str>) -> Markup {
    let event = e.event.clone().unwrap_or_default();
    html! {
        tr data-sequence=(e.sequence) {
            td.num { a href={ "/ui/ns/" (ns) "/events/" (e.sequence) } { (e.sequence) } }
            td.time { (page::time(e.receive_time.as_ref())) }
            td.type { (event.r#type) }
            td { (event.source) }
            td { (page::attr(&event, "subject")) }
            td.id { (event.id) }
            td { (page::trace_link(jaeger, &e.traceparent)) }
        }
    }
}

/// The rows of events after `after` that match the filters: what the live follow polls.
pub(super) async fn rows(
    State(c): State<Console>,
    viewer: Viewer,
    Path(ns): Path<String>,
    Query(f): Query<Filters>,
) -> Answer {
    viewer.require(Action::ReadEvents, &ns)?;
    let listing = c.bus.list_events_inner(f.request(&ns, f.after, String::new())?).await?;
    let jaeger = c.bus.config.jaeger_ui_url.as_deref();
    if listing.events.is_empty() {
        return Ok(page::nothing());
    }
    Ok(html! { @for e in &listing.events { (row(&ns, e, jaeger)) } })
}

pub(super) async fn show(State(c): State<Console>, viewer: Viewer, Path((ns, seq)): Path<(String, String)>) -> Answer {
    viewer.require(Action::ReadEvents, &ns)?;
    let sequence =
        seq.parse::<u64>().map_err(|_| ApiError::from(Violations::invalid("sequence", "is not a number")))?;
    let req = pb::GetEventRequest { namespace: ns.clone(), key: Some(pb::get_event_request::Key::Sequence(sequence)) };
    let stored = c.bus.get_event_inner(req).await?.event.unwrap_or_default();
    let e = stored.event.clone().unwrap_or_default();
    let jaeger = c.bus.config.jaeger_ui_url.as_deref();
    let known = ["subject", "time", "datacontenttype", "dataschema"];
    let mut extensions: Vec<(&String, String)> = e
        .attributes
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k, page::attr_value(v)))
        .collect();
    extensions.sort();
    let body = html! {
        p.back { a href={ "/ui/ns/" (ns) "/events" } { "← Events" } }
        h1 { "Event #" (stored.sequence) }
        section.cols {
            div {
                h2 { "Attributes" }
                table.attrs #attributes {
                    tr { th { "type" } td { (e.r#type) } }
                    tr { th { "source" } td { (e.source) } }
                    tr { th { "id" } td { (e.id) } }
                    tr { th { "specversion" } td { (e.spec_version) } }
                    @for name in known { @if let Some(v) = e.attributes.get(name) { tr { th { (name) } td { (page::attr_value(v)) } } } }
                    tr { th { "received" } td { (page::time(stored.receive_time.as_ref())) } }
                    @if !stored.traceparent.is_empty() {
                        tr { th { "traceparent" } td { code { (stored.traceparent) } " " (page::trace_link(jaeger, &stored.traceparent)) } }
                    }
                }
            }
            div {
                h2 { "Extensions" }
                @if extensions.is_empty() { p.empty { "None." } }
                @else {
                    table.attrs #extensions { @for (k, v) in &extensions { tr { th { (k) } td { (v) } } } }
                }
            }
        }
        h2 { "Data" }
        (page::data(&e))
    };
    Ok(page::namespaced(&format!("Event #{}", stored.sequence), &viewer, &ns, Tab::Events, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_are_rfc3339_or_local_utc() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let cases = [
            ("", Some(None)),
            ("2026-12-06T10:00:00Z", Some(Some(at("2026-12-06T10:00:00Z")))),
            ("2026-12-06T11:00:00+01:00", Some(Some(at("2026-12-06T10:00:00Z")))),
            ("2026-12-06T10:00", Some(Some(at("2026-12-06T10:00:00Z")))),
            ("2026-12-06T10:00:30", Some(Some(at("2026-12-06T10:00:30Z")))),
            ("yesterday", None),
        ];
        for (text, want) in cases {
            let got = parse_time("from", text);
            match want {
                Some(t) => assert_eq!(got.unwrap(), t, "{text}"),
                None => assert_eq!(got.unwrap_err().status, axum::http::StatusCode::BAD_REQUEST, "{text}"),
            }
        }
    }
}
