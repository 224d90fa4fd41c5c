//! The consumer group pages: the list with position, lag and backlog (ListConsumerGroups), and
//! one group (GetConsumerGroup) with its dead letters (ListDeadLetters) and the two actions:
//! redrive (RedriveDeadLetters) and seek (SeekConsumerGroup). Actions answer with a redirect
//! back to the group's page, which says what was done.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use eventbus_client::pb;
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{self, Tab};
use super::session::{Action, Viewer};
use super::{Answer, Console, Failure};
use crate::request::Violations;
use crate::status::ApiError;

const DEAD_LETTERS_PAGE: i32 = 50;

fn kind_name(kind: i32) -> &'static str {
    match pb::NotificationKind::try_from(kind) {
        Ok(pb::NotificationKind::Start) => "START",
        Ok(pb::NotificationKind::Wake) => "WAKE",
        Ok(pb::NotificationKind::Timeout) => "TIMEOUT",
        _ => "?",
    }
}

/// How far the group's read position is behind the namespace's newest notification.
fn lag(g: &pb::ConsumerGroup, last_notification: u64) -> u64 {
    last_notification.saturating_sub(g.read_sequence)
}

fn kinds(g: &pb::ConsumerGroup) -> String {
    if g.kinds.is_empty() { "all".into() } else { g.kinds.iter().map(|k| kind_name(*k)).collect::<Vec<_>>().join(", ") }
}

pub(super) async fn list(State(c): State<Console>, viewer: Viewer, Path(ns): Path<String>) -> Answer {
    viewer.require(Action::ReadGroups, &ns)?;
    let head = c.bus.store.namespace_head(&ns).await?;
    let req = pb::ListConsumerGroupsRequest { namespace: ns.clone(), page_size: 1000, page_token: String::new() };
    let listing = c.bus.list_groups_inner(req).await?;
    let body = html! {
        h1 { "Consumer groups" }
        @if listing.consumer_groups.is_empty() { p.empty { "No consumer groups: one appears with its first Subscribe." } }
        @else {
            table.grid #groups {
                thead { tr {
                    th { "Group" } th { "Kinds" } th.num { "Position" } th.num { "Lag" } th.num { "Pending" } th.num { "Leased" }
                    th.num { "Dead" } th { "Oldest pending" } th.num { "Streams" } th.num { "Max attempts" }
                } }
                tbody {
                    @for g in &listing.consumer_groups {
                        tr data-group=(g.name) {
                            td { a href={ "/ui/ns/" (ns) "/groups/" (g.name) } { (g.name) } }
                            td { (kinds(g)) }
                            td.num { "#" (g.read_sequence) }
                            td.num { (lag(g, head.last_notification_sequence)) }
                            td.num { (g.pending_count) }
                            td.num { (g.leased_count) }
                            td.num.dead[g.dead_count > 0] { (g.dead_count) }
                            td { (g.oldest_pending_age.as_ref().map_or_else(|| "—".to_owned(), |d| page::span(d.seconds))) }
                            td.num { (g.connected_stream_count) }
                            td.num { (g.max_attempts) }
                        }
                    }
                }
            }
        }
    };
    Ok(page::namespaced("Consumer groups", &viewer, &ns, Tab::Groups, body))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ShowQuery {
    page_token: String,
    /// Set by a redrive: how many were redriven.
    redriven: Option<u64>,
    /// Set by a seek: the new read position, and how many deliveries were dropped.
    sought: Option<u64>,
    dropped: Option<u64>,
}

impl ShowQuery {
    fn notice(&self) -> Option<String> {
        match (self.redriven, self.sought) {
            (Some(n), _) => Some(format!("{n} dead letter{} redriven.", if n == 1 { "" } else { "s" })),
            (None, Some(seq)) => {
                Some(format!("Read position moved to #{seq}; {} deliveries dropped.", self.dropped.unwrap_or(0)))
            }
            (None, None) => None,
        }
    }
}

pub(super) async fn show(
    State(c): State<Console>,
    viewer: Viewer,
    Path((ns, group)): Path<(String, String)>,
    Query(q): Query<ShowQuery>,
) -> Answer {
    viewer.require(Action::ReadGroups, &ns)?;
    let head = c.bus.store.namespace_head(&ns).await?;
    let req = pb::GetConsumerGroupRequest { namespace: ns.clone(), consumer_group: group.clone() };
    let g = c.bus.get_group_inner(req).await?.consumer_group.unwrap_or_default();
    let dead = if viewer.may(Action::ReadDeadLetters, &ns) {
        let req = pb::ListDeadLettersRequest {
            namespace: ns.clone(),
            consumer_group: group.clone(),
            page_size: DEAD_LETTERS_PAGE,
            page_token: q.page_token.clone(),
        };
        Some(c.bus.list_dead_letters_inner(req).await?)
    } else {
        None
    };
    let body = html! {
        p.back { a href={ "/ui/ns/" (ns) "/groups" } { "← Consumer groups" } }
        h1 { "Consumer group " span #group-name { (g.name) } }
        (page::notice(q.notice()))
        table.attrs #group {
            tr { th { "kinds" } td { (kinds(&g)) } }
            @if !g.workflow_ids.is_empty() { tr { th { "workflows" } td { (g.workflow_ids.join(", ")) } } }
            tr { th { "read position" } td #read-position { "#" (g.read_sequence) } }
            tr { th { "lag" } td { (lag(&g, head.last_notification_sequence)) " notifications" } }
            tr { th { "pending" } td #pending { (g.pending_count) } }
            tr { th { "leased" } td #leased { (g.leased_count) } }
            tr { th { "dead" } td #dead-count { (g.dead_count) } }
            tr { th { "max attempts" } td { (g.max_attempts) } }
            tr { th { "streams" } td { (g.connected_stream_count) } }
        }
        @if viewer.may(Action::Seek, &ns) { (seek_form(&ns, &g.name)) }
        @match &dead {
            Some(dead) => (dead_letters(&c, &viewer, &ns, &g.name, dead)),
            None => p.note { "Dead letters need the operator role on this namespace." },
        }
    };
    Ok(page::namespaced("Consumer group", &viewer, &ns, Tab::Groups, body))
}

fn seek_form(ns: &str, group: &str) -> Markup {
    html! {
        form.seek #seek method="post" action={ "/ui/ns/" (ns) "/groups/" (group) "/seek" } {
            label { "Seek to" select name="target" {
                option value="latest" { "latest" }
                option value="earliest" { "earliest" }
                option value="sequence" { "sequence" }
                option value="time" { "time (UTC)" }
            } }
            input name="value" placeholder="sequence or time";
            button type="submit" { "Seek" }
        }
    }
}

fn dead_letters(c: &Console, viewer: &Viewer, ns: &str, group: &str, dead: &pb::ListDeadLettersResponse) -> Markup {
    let jaeger = c.bus.config.jaeger_ui_url.as_deref();
    let redrive = viewer.may(Action::Redrive, ns);
    let action = format!("/ui/ns/{ns}/groups/{group}/redrive");
    html! {
        h2 { "Dead letters" }
        @if dead.dead_letters.is_empty() { p.empty #no-dead-letters { "No dead letters." } }
        @else {
            @if redrive {
                form.inline method="post" action=(action) { button.danger #redrive-all type="submit" { "Redrive all" } }
            }
            table.grid #dead-letters {
                thead { tr {
                    th.num { "Notification" } th { "Kind" } th { "Target" } th { "Events" } th.num { "Attempts" }
                    th { "Last error" } th { "Dead since" } th {} th {}
                } }
                tbody {
                    @for d in &dead.dead_letters {
                        @let n = d.notification.clone().unwrap_or_default();
                        tr data-sequence=(n.sequence) {
                            td.num { "#" (n.sequence) }
                            td { (kind_name(n.kind)) }
                            td { a href={ "/ui/ns/" (ns) "/listeners/" (n.listener_id) } { (if n.workflow_id.is_empty() { &n.instance_id } else { &n.workflow_id }) } }
                            td { @for s in &n.event_sequences { a href={ "/ui/ns/" (ns) "/events/" (s) } { "#" (s) } " " } }
                            td.num { (n.attempt) }
                            td.error { (d.last_error) }
                            td.time { (page::time(d.dead_time.as_ref())) }
                            td { (page::trace_link(jaeger, &n.traceparent)) }
                            td { @if redrive {
                                form.inline method="post" action=(action) {
                                    input type="hidden" name="sequence" value=(n.sequence);
                                    button.redrive type="submit" { "Redrive" }
                                }
                            } }
                        }
                    }
                }
            }
            @if !dead.next_page_token.is_empty() {
                p.pager { a href={ "/ui/ns/" (ns) "/groups/" (group) (page::query(&[("page_token", &dead.next_page_token)])) } { "Next page →" } }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RedriveForm {
    /// One dead letter's sequence; empty: all of them.
    sequence: String,
}

pub(super) async fn redrive(
    State(c): State<Console>,
    viewer: Viewer,
    Path((ns, group)): Path<(String, String)>,
    Form(form): Form<RedriveForm>,
) -> Result<Redirect, Failure> {
    viewer.require(Action::Redrive, &ns)?;
    let sequences = match form.sequence.trim() {
        "" => Vec::new(),
        s => vec![s.parse().map_err(|_| invalid("sequence", "is not a number"))?],
    };
    let req = pb::RedriveDeadLettersRequest { namespace: ns.clone(), consumer_group: group.clone(), sequences };
    let n = c.bus.redrive_inner(req).await?.redriven_count;
    tracing::info!(principal = viewer.name().unwrap_or(""), namespace = %ns, group = %group, redriven = n, "console: dead letters redriven");
    Ok(Redirect::to(&format!("/ui/ns/{ns}/groups/{group}?redriven={n}")))
}

fn invalid(field: &str, description: &str) -> Failure {
    ApiError::from(Violations::invalid(field, description)).into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SeekForm {
    target: String,
    value: String,
}

pub(super) async fn seek(
    State(c): State<Console>,
    viewer: Viewer,
    Path((ns, group)): Path<(String, String)>,
    Form(form): Form<SeekForm>,
) -> Result<Redirect, Failure> {
    viewer.require(Action::Seek, &ns)?;
    let mut req =
        pb::SeekConsumerGroupRequest { namespace: ns.clone(), consumer_group: group.clone(), ..Default::default() };
    let value = form.value.trim();
    let target = match form.target.as_str() {
        "earliest" => pb::SeekTarget::Earliest,
        "latest" => pb::SeekTarget::Latest,
        "sequence" => {
            req.sequence = value.parse().map_err(|_| invalid("value", "is not a sequence number"))?;
            pb::SeekTarget::Sequence
        }
        "time" => {
            let t = super::events::parse_time("value", value)?.ok_or_else(|| invalid("value", "is required"))?;
            req.time = Some(crate::convert::time_to(t));
            pb::SeekTarget::Time
        }
        _ => return Err(invalid("target", "is one of earliest, latest, sequence, time")),
    };
    req.target = target as i32;
    let sought = c.bus.seek_group_inner(req).await?;
    tracing::info!(principal = viewer.name().unwrap_or(""), namespace = %ns, group = %group, read_sequence = sought.read_sequence, "console: consumer group sought");
    let q = format!("?sought={}&dropped={}", sought.read_sequence, sought.dropped_delivery_count);
    Ok(Redirect::to(&format!("/ui/ns/{ns}/groups/{group}{q}")))
}
