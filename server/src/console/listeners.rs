//! The listeners pages: the list (ListListeners) and one listener with its filters and, for an
//! ALL listener, what it has collected per correlation key and when that expires (GetListener
//! with partial state).

use axum::extract::{Path, Query, State};
use chrono::Utc;
use eventbus_client::pb;
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{self, Tab};
use super::session::{Action, Viewer};
use super::{Answer, Console};

const PAGE_SIZE: i32 = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ListQuery {
    /// `start`, `wait` or empty (both).
    kind: String,
    /// `1`: fired and timed-out listeners too.
    finished: String,
    page_token: String,
}

fn kind_name(kind: i32) -> &'static str {
    match pb::ListenerKind::try_from(kind) {
        Ok(pb::ListenerKind::Start) => "START",
        Ok(pb::ListenerKind::Wait) => "WAIT",
        _ => "?",
    }
}

fn condition_name(condition: i32) -> &'static str {
    match pb::ListenerCondition::try_from(condition) {
        Ok(pb::ListenerCondition::One) => "ONE",
        Ok(pb::ListenerCondition::Any) => "ANY",
        Ok(pb::ListenerCondition::All) => "ALL",
        _ => "?",
    }
}

fn status_name(status: i32) -> &'static str {
    match pb::ListenerStatus::try_from(status) {
        Ok(pb::ListenerStatus::Active) => "active",
        Ok(pb::ListenerStatus::Fired) => "fired",
        Ok(pb::ListenerStatus::TimedOut) => "timed out",
        _ => "?",
    }
}

/// The workflow a START listener starts or the instance a WAIT listener wakes.
fn target(spec: &pb::ListenerSpec) -> &str {
    if spec.workflow_id.is_empty() { &spec.instance_id } else { &spec.workflow_id }
}

/// Returns the pairs of a map in key order.
fn sorted(map: &std::collections::HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut pairs: Vec<_> = map.iter().collect();
    pairs.sort();
    pairs
}

/// The filter sets of a spec: type, attribute globs and CEL condition of each.
fn filters(spec: &pb::ListenerSpec) -> Markup {
    html! {
        @for f in &spec.filters {
            div.filter {
                @if !f.r#type.is_empty() { span.type { (f.r#type) } }
                @for (k, v) in sorted(&f.attributes) { " " code { (k) "=" (v) } }
                @if !f.condition.is_empty() { " " code.cel title="CEL condition" { (f.condition) } }
            }
        }
    }
}

pub(super) async fn list(
    State(c): State<Console>,
    viewer: Viewer,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Answer {
    viewer.require(Action::ReadListeners, &ns)?;
    c.bus.store.namespace_head(&ns).await?;
    let kind = match q.kind.as_str() {
        "start" => pb::ListenerKind::Start,
        "wait" => pb::ListenerKind::Wait,
        _ => pb::ListenerKind::Unspecified,
    };
    let req = pb::ListListenersRequest {
        namespace: ns.clone(),
        kind: kind as i32,
        include_finished: q.finished == "1",
        page_size: PAGE_SIZE,
        page_token: q.page_token.clone(),
        ..Default::default()
    };
    let listing = c.bus.list_listeners_inner(req).await?;
    let next = page::query(&[("kind", &q.kind), ("finished", &q.finished), ("page_token", &listing.next_page_token)]);
    let body = html! {
        h1 { "Listeners" }
        form.filters method="get" action={ "/ui/ns/" (ns) "/listeners" } {
            label { "Kind" select name="kind" {
                option value="" selected[q.kind.is_empty()] { "any" }
                option value="start" selected[q.kind == "start"] { "START" }
                option value="wait" selected[q.kind == "wait"] { "WAIT" }
            } }
            label.check { input type="checkbox" name="finished" value="1" checked[q.finished == "1"]; "include fired and timed out" }
            button type="submit" { "Show" }
        }
        @if listing.listeners.is_empty() { p.empty { "No listeners." } }
        @else {
            table.grid #listeners {
                thead { tr { th { "Listener" } th { "Kind" } th { "Target" } th { "Condition" } th { "Types" } th { "Filters" } th { "Status" } th { "Fire id" } th { "Created" } } }
                tbody {
                    @for l in &listing.listeners {
                        @let spec = l.spec.clone().unwrap_or_default();
                        tr data-listener=(l.id) {
                            td.id { a href={ "/ui/ns/" (ns) "/listeners/" (l.id) } { (l.id) } }
                            td { (kind_name(spec.kind)) }
                            td { (target(&spec)) }
                            td { (condition_name(spec.condition)) @if !spec.correlate_by.is_empty() { " by " (spec.correlate_by.join(", ")) } }
                            td.type { (spec.types.join(", ")) }
                            td { (filters(&spec)) }
                            td { span.status.(status_name(l.status).replace(' ', "-")) { (status_name(l.status)) } }
                            td.id { (l.fire_id) }
                            td.time { (page::time(l.create_time.as_ref())) }
                        }
                    }
                }
            }
        }
        @if !listing.next_page_token.is_empty() {
            p.pager { a href={ "/ui/ns/" (ns) "/listeners" (next) } { "Next page →" } }
        }
    };
    Ok(page::namespaced("Listeners", &viewer, &ns, Tab::Listeners, body))
}

pub(super) async fn show(State(c): State<Console>, viewer: Viewer, Path((ns, id)): Path<(String, String)>) -> Answer {
    viewer.require(Action::ReadListeners, &ns)?;
    let req = pb::GetListenerRequest { namespace: ns.clone(), id, include_partial_state: true };
    let got = c.bus.get_listener_inner(req).await?;
    let l = got.listener.clone().unwrap_or_default();
    let spec = l.spec.clone().unwrap_or_default();
    let body = html! {
        p.back { a href={ "/ui/ns/" (ns) "/listeners" } { "← Listeners" } }
        h1 { "Listener " span.id { (l.id) } }
        table.attrs #listener {
            tr { th { "kind" } td { (kind_name(spec.kind)) } }
            tr { th { (if spec.workflow_id.is_empty() { "instance" } else { "workflow" }) } td { (target(&spec)) } }
            tr { th { "condition" } td { (condition_name(spec.condition)) } }
            tr { th { "types" } td.type { (spec.types.join(", ")) } }
            @if !spec.filters.is_empty() { tr { th { "filters" } td { (filters(&spec)) } } }
            @if !spec.correlate_by.is_empty() { tr { th { "correlate by" } td { (spec.correlate_by.join(", ")) } } }
            @if let Some(d) = &spec.lifespan { tr { th { "lifespan" } td { (page::span(d.seconds)) } } }
            @if spec.deadline.is_some() { tr { th { "deadline" } td { (page::time(spec.deadline.as_ref())) } } }
            tr { th { "status" } td #listener-status { (status_name(l.status)) } }
            @if !l.fire_id.is_empty() { tr { th { "fire id" } td #fire-id { (l.fire_id) } } }
            tr { th { "created" } td { (page::time(l.create_time.as_ref())) } }
            @if l.finish_time.is_some() { tr { th { "finished" } td { (page::time(l.finish_time.as_ref())) } } }
        }
        @if spec.condition == pb::ListenerCondition::All as i32 { (partial_states(&ns, &got)) }
    };
    Ok(page::namespaced("Listener", &viewer, &ns, Tab::Listeners, body))
}

/// What an ALL listener has collected, per correlation key, with the time left before the
/// first collected event expires.
fn partial_states(ns: &str, got: &pb::GetListenerResponse) -> Markup {
    let now = Utc::now();
    html! {
        h2 { "Partial state" }
        @if got.partial_states.is_empty() { p.empty #no-partial-state { "Nothing collected." } }
        @else {
            table.grid #partial-states {
                thead { tr { th { "Correlation key" } th { "Collected" } th { "Missing" } th { "Expires in" } } }
                tbody {
                    @for p in &got.partial_states {
                        @let expiry = p.events.iter().filter_map(|e| e.expire_time.as_ref().and_then(page::to_time)).min();
                        tr {
                            td { @for (k, v) in sorted(&p.correlation) { code { (k) "=" (v) } " " } }
                            td { @for e in &p.events { a href={ "/ui/ns/" (ns) "/events/" (e.sequence) } { (e.r#type) " #" (e.sequence) } " " } }
                            td.type { (p.missing_types.join(", ")) }
                            td { @match expiry { Some(t) => { (page::span((t - now).num_seconds())) }, None => { "never" } } }
                        }
                    }
                }
            }
            @if got.partial_states_truncated { p.note { "Only the first keys are shown." } }
        }
    }
}
