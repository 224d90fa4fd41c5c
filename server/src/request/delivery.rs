//! Requests of consumer groups: Subscribe, Ack, Nack, ListDeadLetters, RedriveDeadLetters.

use std::time::Duration;

use eventbus_client::pb;
use eventbus_engine::store::{GroupSpec, NotificationKind, StartPosition};

use super::{
    Combine, FromProto, Violations, all, at_most, duration, ensure, group, namespace, opt, page_size, required,
    sequences,
};
use crate::config::Limits;
use crate::limits::{
    DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_IN_FLIGHT, MAX_LEASE, MAX_MAX_ATTEMPTS, MAX_MAX_IN_FLIGHT,
    MAX_REASON_BYTES, MAX_RETRY_AFTER, MAX_TARGET_BYTES, MAX_WORKFLOW_IDS, MIN_LEASE,
};

/// A checked Subscribe: the group as the store creates it, and the stream's own settings.
#[derive(Debug, Clone)]
pub struct Subscribe {
    pub namespace: String,
    pub group: GroupSpec,
    pub max_in_flight: u32,
    pub lease: Duration,
}

impl FromProto<pb::SubscribeRequest> for Subscribe {
    fn from_proto(req: pb::SubscribeRequest, _: &Limits) -> Result<Self, Violations> {
        let max_in_flight = match req.max_in_flight {
            0 => Ok(DEFAULT_MAX_IN_FLIGHT),
            n if n <= MAX_MAX_IN_FLIGHT => Ok(n),
            _ => Err(Violations::invalid("max_in_flight", format!("at most {MAX_MAX_IN_FLIGHT}"))),
        };
        let max_attempts = match req.max_attempts {
            0 => Ok(DEFAULT_MAX_ATTEMPTS),
            n if n <= MAX_MAX_ATTEMPTS => Ok(n),
            _ => Err(Violations::invalid("max_attempts", format!("at most {MAX_MAX_ATTEMPTS}"))),
        };
        let kinds = all(req.kinds.iter().enumerate().map(|(i, k)| kind(*k, i)));
        let workflow_ids = workflow_ids(req.workflow_ids);
        let (namespace, name, max_in_flight, lease, max_attempts, kinds, workflow_ids, start) = (
            namespace(req.namespace),
            group(req.consumer_group),
            max_in_flight,
            lease(req.lease_duration.as_ref()),
            max_attempts,
            kinds,
            workflow_ids,
            start(req.start, req.start_sequence),
        )
            .combine()?;
        let group = GroupSpec { name, kinds, workflow_ids, start, max_attempts };
        Ok(Self { namespace, group, max_in_flight, lease })
    }
}

pub(super) fn kind(k: i32, i: usize) -> Result<NotificationKind, Violations> {
    match pb::NotificationKind::try_from(k) {
        Ok(pb::NotificationKind::Start) => Ok(NotificationKind::Start),
        Ok(pb::NotificationKind::Wake) => Ok(NotificationKind::Wake),
        Ok(pb::NotificationKind::Timeout) => Ok(NotificationKind::Timeout),
        _ => Err(Violations::invalid(format!("kinds[{i}]"), "must be START, WAKE or TIMEOUT")),
    }
}

pub(super) fn workflow_ids(ids: Vec<String>) -> Result<Vec<String>, Violations> {
    let n = ids.len();
    ensure(n <= MAX_WORKFLOW_IDS, "workflow_ids", || format!("at most {MAX_WORKFLOW_IDS} entries"))?;
    all(ids.into_iter().enumerate().map(|(i, w)| required(&format!("workflow_ids[{i}]"), w, MAX_TARGET_BYTES)))
}

/// Unset or zero: the default; otherwise 1 second to 1 hour.
fn lease(d: Option<&prost_types::Duration>) -> Result<Duration, Violations> {
    let Some(d) = d else { return Ok(DEFAULT_LEASE) };
    let d = duration("lease_duration", d)?;
    if d.is_zero() {
        return Ok(DEFAULT_LEASE);
    }
    ensure((MIN_LEASE..=MAX_LEASE).contains(&d), "lease_duration", || "must be 1 second to 1 hour".into())?;
    Ok(d)
}

/// `start_sequence` is at least 1 with SEQUENCE and 0 with every other position.
fn start(start: i32, sequence: u64) -> Result<StartPosition, Violations> {
    let other = |position: StartPosition| {
        ensure(sequence == 0, "start_sequence", || "must be 0 unless start is SEQUENCE".into()).map(|()| position)
    };
    match pb::StartPosition::try_from(start) {
        Ok(pb::StartPosition::Unspecified | pb::StartPosition::Earliest) => other(StartPosition::Earliest),
        Ok(pb::StartPosition::Latest) => other(StartPosition::Latest),
        Ok(pb::StartPosition::Sequence) if sequence > 0 => Ok(StartPosition::Sequence(sequence)),
        Ok(pb::StartPosition::Sequence) => {
            Err(Violations::invalid("start_sequence", "must be at least 1 with start SEQUENCE"))
        }
        Err(_) => Err(Violations::invalid("start", "unknown start position")),
    }
}

/// A checked Ack.
#[derive(Debug)]
pub struct Ack {
    pub namespace: String,
    pub group: String,
    pub sequences: Vec<u64>,
}

impl FromProto<pb::AckRequest> for Ack {
    fn from_proto(req: pb::AckRequest, _: &Limits) -> Result<Self, Violations> {
        let (namespace, group, sequences) =
            (namespace(req.namespace), group(req.consumer_group), sequences(req.sequences, false)).combine()?;
        Ok(Self { namespace, group, sequences })
    }
}

/// A checked Nack.
#[derive(Debug)]
pub struct Nack {
    pub namespace: String,
    pub group: String,
    pub sequence: u64,
    pub retry_after: Duration,
    pub reason: String,
}

impl FromProto<pb::NackRequest> for Nack {
    fn from_proto(req: pb::NackRequest, _: &Limits) -> Result<Self, Violations> {
        let sequence = ensure(req.sequence > 0, "sequence", || "must be at least 1".into()).map(|()| req.sequence);
        let retry_after = match req.retry_after {
            None => Ok(Duration::ZERO),
            Some(d) => duration("retry_after", &d).and_then(|d| {
                ensure(d <= MAX_RETRY_AFTER, "retry_after", || "must be 0 to 24 hours".into()).map(|()| d)
            }),
        };
        let (namespace, group, sequence, retry_after, reason) = (
            namespace(req.namespace),
            group(req.consumer_group),
            sequence,
            retry_after,
            at_most("reason", req.reason, MAX_REASON_BYTES),
        )
            .combine()?;
        Ok(Self { namespace, group, sequence, retry_after, reason })
    }
}

/// A checked ListDeadLetters.
#[derive(Debug)]
pub struct DeadLetters {
    pub namespace: String,
    pub group: String,
    pub page_size: u32,
    pub page_token: Option<String>,
}

impl FromProto<pb::ListDeadLettersRequest> for DeadLetters {
    fn from_proto(req: pb::ListDeadLettersRequest, _: &Limits) -> Result<Self, Violations> {
        let (namespace, group, page_size) =
            (namespace(req.namespace), group(req.consumer_group), page_size(req.page_size)).combine()?;
        Ok(Self { namespace, group, page_size, page_token: opt(req.page_token) })
    }
}

/// A checked RedriveDeadLetters.
#[derive(Debug)]
pub struct Redrive {
    pub namespace: String,
    pub group: String,
    pub sequences: Vec<u64>,
}

impl FromProto<pb::RedriveDeadLettersRequest> for Redrive {
    fn from_proto(req: pb::RedriveDeadLettersRequest, _: &Limits) -> Result<Self, Violations> {
        let (namespace, group, sequences) =
            (namespace(req.namespace), group(req.consumer_group), sequences(req.sequences, true)).combine()?;
        Ok(Self { namespace, group, sequences })
    }
}

#[cfg(test)]
#[path = "delivery/tests.rs"]
mod tests;
