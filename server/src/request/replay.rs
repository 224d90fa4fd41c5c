//! ExplainListener and ReplayEvents requests: a listener, and stored events named by one key or
//! by a range whose ends are sequences or receive times (both inclusive).

use eventbus_client::pb;
use eventbus_engine::store::{EventKey, EventRange, ExplainTarget, Position, ReplayMode, ReplayQuery};
use uuid::Uuid;

use super::{Combine, FromProto, Violations, ensure, namespace, opt, page_size, timestamp, uuid};
use crate::config::Limits;

/// A checked ExplainListener.
#[derive(Debug)]
pub struct Explain {
    pub namespace: String,
    pub listener_id: Uuid,
    pub target: ExplainTarget,
    pub page_size: u32,
    pub page_token: Option<String>,
}

impl FromProto<pb::ExplainListenerRequest> for Explain {
    fn from_proto(req: pb::ExplainListenerRequest, _: &Limits) -> Result<Self, Violations> {
        use pb::explain_listener_request::Target;
        let target = match req.target {
            Some(Target::Sequence(0)) => Err(Violations::invalid("sequence", "must be at least 1")),
            Some(Target::Sequence(s)) => Ok(ExplainTarget::Event(EventKey::Sequence(s))),
            Some(Target::SourceId(k)) => super::events::source_id(k).map(ExplainTarget::Event),
            Some(Target::Range(r)) => range(r.start, r.end, "range.").map(ExplainTarget::Range),
            None => Err(Violations::invalid("target", "set sequence, source_id or range")),
        };
        let (namespace, listener_id, target, page_size) =
            (namespace(req.namespace), uuid("listener_id", &req.listener_id), target, page_size(req.page_size))
                .combine()?;
        Ok(Self { namespace, listener_id, target, page_size, page_token: opt(req.page_token) })
    }
}

/// A checked ReplayEvents.
#[derive(Debug)]
pub struct Replay {
    pub namespace: String,
    pub listener_id: Uuid,
    pub query: ReplayQuery,
}

impl FromProto<pb::ReplayEventsRequest> for Replay {
    fn from_proto(req: pb::ReplayEventsRequest, _: &Limits) -> Result<Self, Violations> {
        let mode = match pb::ReplayMode::try_from(req.mode) {
            Ok(pb::ReplayMode::DryRun) => Ok(ReplayMode::DryRun),
            Ok(pb::ReplayMode::Fire) => Ok(ReplayMode::Fire),
            _ => Err(Violations::invalid("mode", "must be DRY_RUN or FIRE")),
        };
        let (namespace, listener_id, range, mode, page_size) = (
            namespace(req.namespace),
            uuid("listener_id", &req.listener_id),
            range(req.start, req.end, ""),
            mode,
            page_size(req.page_size),
        )
            .combine()?;
        let query = ReplayQuery { range, mode, page_size, page_token: opt(req.page_token) };
        Ok(Self { namespace, listener_id, query })
    }
}

/// Checks a range; field paths start with `prefix` (`range.` or nothing).
fn range(
    start: Option<pb::EventPosition>,
    end: Option<pb::EventPosition>,
    prefix: &str,
) -> Result<EventRange, Violations> {
    let (start_field, end_field) = (format!("{prefix}start"), format!("{prefix}end"));
    let (from, to) = (position(&start_field, start), position(&end_field, end)).combine()?;
    let backwards = match (from, to) {
        (Some(Position::Sequence(a)), Some(Position::Sequence(b))) => a > b,
        (Some(Position::Time(a)), Some(Position::Time(b))) => a > b,
        _ => false,
    };
    ensure(!backwards, &end_field, || format!("must not be before {start_field}"))?;
    Ok(EventRange { from, to })
}

/// Checks an optional position: a sequence of at least 1, or a timestamp.
pub(super) fn position(field: &str, p: Option<pb::EventPosition>) -> Result<Option<Position>, Violations> {
    use pb::event_position::Position as P;
    let Some(p) = p else { return Ok(None) };
    match p.position {
        None => Err(Violations::invalid(field, "set sequence or time")),
        Some(P::Sequence(0)) => Err(Violations::invalid(format!("{field}.sequence"), "must be at least 1")),
        Some(P::Sequence(s)) => Ok(Some(Position::Sequence(s))),
        Some(P::Time(t)) => timestamp(&format!("{field}.time"), &t).map(|t| Some(Position::Time(t))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: u64) -> Option<pb::EventPosition> {
        Some(pb::EventPosition { position: Some(pb::event_position::Position::Sequence(s)) })
    }

    fn replay(start: Option<pb::EventPosition>, end: Option<pb::EventPosition>, mode: pb::ReplayMode) -> Vec<String> {
        let req = pb::ReplayEventsRequest {
            namespace: "ns".into(),
            listener_id: Uuid::nil().to_string(),
            start,
            end,
            mode: mode.into(),
            ..Default::default()
        };
        match Replay::from_proto(req, &Limits::default()) {
            Ok(_) => Vec::new(),
            Err(v) => v.fields().into_iter().map(str::to_owned).collect(),
        }
    }

    #[test]
    fn replay_fields() {
        type Case = (Option<pb::EventPosition>, Option<pb::EventPosition>, pb::ReplayMode, &'static [&'static str]);
        let empty = Some(pb::EventPosition { position: None });
        let cases: [Case; 6] = [
            (seq(1), seq(5), pb::ReplayMode::DryRun, &[]),
            (seq(5), seq(5), pb::ReplayMode::Fire, &[]),
            (seq(6), seq(5), pb::ReplayMode::DryRun, &["end"]),
            (seq(0), None, pb::ReplayMode::DryRun, &["start.sequence"]),
            (empty, None, pb::ReplayMode::DryRun, &["start"]),
            (None, None, pb::ReplayMode::Unspecified, &["mode"]),
        ];
        for (start, end, mode, want) in cases {
            assert_eq!(replay(start, end, mode), want);
        }
    }

    #[test]
    fn explain_fields() {
        use pb::explain_listener_request::Target;
        let explain = |target: Option<Target>| {
            let req = pb::ExplainListenerRequest {
                namespace: "ns".into(),
                listener_id: "x".into(),
                target,
                ..Default::default()
            };
            Explain::from_proto(req, &Limits::default()).unwrap_err().fields().join(",")
        };
        assert_eq!(explain(None), "listener_id,target");
        assert_eq!(explain(Some(Target::Sequence(0))), "listener_id,sequence");
        let backwards = pb::EventRange { start: seq(3), end: seq(2) };
        assert_eq!(explain(Some(Target::Range(backwards))), "listener_id,range.end");
    }
}
