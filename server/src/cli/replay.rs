//! `eventbus listeners explain | replay`: why events did or did not contribute to a listener,
//! and stored events walked through it again (a dry run, or firing what never fired).

use std::time::SystemTime;

use eventbus_client::{Client, pb};
use serde_json::json;

use super::parse;
use super::{ClientArgs, print_json, print_table, rpc_error};

/// One end of a range: a sequence, or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Sequence(u64),
    Time(SystemTime),
}

/// Parses an event sequence (digits), or a time: RFC 3339 or a duration ago (`10m`).
pub fn at(s: &str) -> Result<At, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("invalid sequence {s:?}: at least 1")),
            Ok(n) => Ok(At::Sequence(n)),
        };
    }
    parse::time_or_ago(s).map(At::Time)
}

/// Returns the wire form of an optional position.
pub fn position(at: Option<At>) -> Option<pb::EventPosition> {
    use pb::event_position::Position;
    at.map(|at| pb::EventPosition {
        position: Some(match at {
            At::Sequence(s) => Position::Sequence(s),
            At::Time(t) => Position::Time(t.into()),
        }),
    })
}

/// Flags of `eventbus listeners explain`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("events").args(["event"]).conflicts_with_all(["since", "until"])))]
pub struct ExplainArgs {
    /// The listener id.
    pub listener: String,
    /// Explains one event, by sequence, with the state the listener's earlier events built.
    #[arg(long, value_name = "SEQ")]
    pub event: Option<u64>,
    /// Explains the events from this sequence or time on (RFC 3339, or a duration ago: 10m).
    #[arg(long, value_name = "SEQ|TIME", value_parser = at)]
    pub since: Option<At>,
    /// ... up to this sequence or time (inclusive).
    #[arg(long, value_name = "SEQ|TIME", value_parser = at)]
    pub until: Option<At>,
}

/// Flags of `eventbus listeners replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The listener id.
    pub listener: String,
    /// The first sequence or time to replay (RFC 3339, or a duration ago: 10m); default: the
    /// first stored event.
    #[arg(long, value_name = "SEQ|TIME", value_parser = at)]
    pub from: Option<At>,
    /// The last sequence or time to replay (inclusive); default: the last stored event.
    #[arg(long, value_name = "SEQ|TIME", value_parser = at)]
    pub to: Option<At>,
    /// Fires what matches as real notifications (what fired before is not fired again).
    /// Without it, a dry run: nothing changes.
    #[arg(long)]
    pub fire: bool,
    /// Events evaluated per call (at most 1000).
    #[arg(long, default_value_t = 500)]
    pub page_size: i32,
}

/// `eventbus listeners explain`.
pub async fn explain(args: &ClientArgs, client: &Client, x: ExplainArgs) -> anyhow::Result<()> {
    use pb::explain_listener_request::Target;
    let target = match x.event {
        Some(seq) => Target::Sequence(seq),
        None => Target::Range(pb::EventRange { start: position(x.since), end: position(x.until) }),
    };
    let mut request = pb::ExplainListenerRequest {
        namespace: args.namespace.clone(),
        listener_id: x.listener,
        target: Some(target),
        page_size: 1000,
        page_token: String::new(),
    };
    let mut rows = Vec::new();
    loop {
        let page = client.raw().explain_listener(request.clone()).await.map_err(|s| rpc_error(s.into()))?.into_inner();
        for e in page.explanations {
            if args.json {
                print_json(&json!({
                    "sequence": e.sequence,
                    "type": e.r#type,
                    "source": e.source,
                    "id": e.id,
                    "contributed": e.contributed,
                    "reason": reason_name(e.reason.as_ref()),
                    "message": e.message,
                }));
            } else {
                let contributed = if e.contributed { "yes" } else { "no" };
                rows.push(vec![e.sequence.to_string(), e.r#type, contributed.to_owned(), e.message]);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if !args.json {
        if rows.is_empty() {
            note!("no events in the range");
        } else {
            print_table(&["SEQ", "TYPE", "CONTRIBUTED", "WHY"], &rows);
        }
    }
    Ok(())
}

/// The snake_case name of a reason, for JSON.
fn reason_name(reason: Option<&pb::event_explanation::Reason>) -> &'static str {
    use pb::event_explanation::Reason as R;
    match reason {
        None => "unspecified",
        Some(R::NamespaceMismatch(_)) => "namespace_mismatch",
        Some(R::TypeNotListed(_)) => "type_not_listed",
        Some(R::BeforeCreation(_)) => "before_creation",
        Some(R::Consumed(_)) => "consumed",
        Some(R::Filtered(_)) => "filtered",
        Some(R::CorrelationMissing(_)) => "correlation_missing",
        Some(R::AfterDeadline(_)) => "after_deadline",
        Some(R::AlreadyCollected(_)) => "already_collected",
        Some(R::Collected(_)) => "collected",
        Some(R::Fired(_)) => "fired",
    }
}

/// `eventbus listeners replay`: pages through the range, with a progress note per page.
pub async fn replay(args: &ClientArgs, client: &Client, r: ReplayArgs) -> anyhow::Result<()> {
    let mode = if r.fire { pb::ReplayMode::Fire } else { pb::ReplayMode::DryRun };
    let mut request = pb::ReplayEventsRequest {
        namespace: args.namespace.clone(),
        listener_id: r.listener,
        start: position(r.from),
        end: position(r.to),
        mode: mode.into(),
        page_size: r.page_size,
        page_token: String::new(),
    };
    let (mut rows, mut evaluated, mut fires, mut created) = (Vec::new(), 0u64, 0u64, 0u64);
    loop {
        let page = client.raw().replay_events(request.clone()).await.map_err(|s| rpc_error(s.into()))?.into_inner();
        evaluated += page.events_evaluated;
        for f in page.fires {
            fires += 1;
            created += u64::from(f.created);
            if args.json {
                print_json(&fire_json(&f));
            } else {
                rows.push(fire_row(&f, r.fire));
            }
        }
        note!("replayed up to sequence {}: {evaluated} events evaluated, {fires} fires", page.last_sequence);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if args.json {
        print_json(&json!({ "events_evaluated": evaluated, "fires": fires, "created": created, "fire": r.fire }));
        return Ok(());
    }
    if !rows.is_empty() {
        print_table(&["FIRE ID", "KIND", "TARGET", "EVENTS", "NEW"], &rows);
    }
    if r.fire {
        out!("{fires} fires over {evaluated} events: {created} new, {} fired before", fires - created);
    } else {
        out!("dry run: {fires} fires over {evaluated} events (nothing changed; --fire fires them)");
    }
    Ok(())
}

fn fire_json(f: &pb::ReplayedFire) -> serde_json::Value {
    json!({
        "fire_id": f.fire_id,
        "kind": super::render::notification_kind(f.kind()),
        "target": f.target,
        "correlation": f.correlation,
        "event_sequences": f.event_sequences,
        "created": f.created,
        "notification_sequence": f.notification_sequence,
    })
}

fn fire_row(f: &pb::ReplayedFire, fire: bool) -> Vec<String> {
    let events: Vec<String> = f.event_sequences.iter().map(u64::to_string).collect();
    let new = match (fire, f.created) {
        (false, _) => "dry run".to_owned(),
        (true, true) => format!("yes (notification {})", f.notification_sequence),
        (true, false) => "no (fired before)".to_owned(),
    };
    vec![
        f.fire_id.clone(),
        super::render::notification_kind(f.kind()).to_owned(),
        f.target.clone(),
        events.join(","),
        new,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(at("42"), Ok(At::Sequence(42)));
        assert!(at("0").is_err());
        assert_eq!(
            at("2026-11-22T10:00:00Z"),
            Ok(At::Time(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_341_600)))
        );
        assert!(matches!(at("10m"), Ok(At::Time(_))));
        assert!(at("soon").is_err());
    }
}
