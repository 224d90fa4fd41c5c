//! Requests of the administration calls: ListNamespaces, DeleteNamespace, ListConsumerGroups,
//! GetConsumerGroup, UpdateConsumerGroup, SeekConsumerGroup, DeleteConsumerGroup.

use eventbus_client::pb;
use eventbus_engine::store::{GroupUpdate, SeekPosition};

use super::delivery::{kind, workflow_ids};
use super::{Combine, FromProto, Violations, all, ensure, group, namespace, opt, page_size, timestamp};
use crate::config::Limits;
use crate::limits::MAX_MAX_ATTEMPTS;

/// A checked ListNamespaces.
#[derive(Debug)]
pub struct ListNamespaces {
    pub page_size: u32,
    pub page_token: Option<String>,
}

impl FromProto<pb::ListNamespacesRequest> for ListNamespaces {
    fn from_proto(req: pb::ListNamespacesRequest, _: &Limits) -> Result<Self, Violations> {
        Ok(Self { page_size: page_size(req.page_size)?, page_token: opt(req.page_token) })
    }
}

/// A checked DeleteNamespace.
#[derive(Debug)]
pub struct NamespaceName {
    pub namespace: String,
}

impl FromProto<pb::DeleteNamespaceRequest> for NamespaceName {
    fn from_proto(req: pb::DeleteNamespaceRequest, _: &Limits) -> Result<Self, Violations> {
        Ok(Self { namespace: namespace(req.namespace)? })
    }
}

/// A checked ListConsumerGroups.
#[derive(Debug)]
pub struct ListGroups {
    pub namespace: String,
    pub page_size: u32,
    pub page_token: Option<String>,
}

impl FromProto<pb::ListConsumerGroupsRequest> for ListGroups {
    fn from_proto(req: pb::ListConsumerGroupsRequest, _: &Limits) -> Result<Self, Violations> {
        let (namespace, page_size) = (namespace(req.namespace), page_size(req.page_size)).combine()?;
        Ok(Self { namespace, page_size, page_token: opt(req.page_token) })
    }
}

/// A checked GetConsumerGroup or DeleteConsumerGroup.
#[derive(Debug)]
pub struct GroupName {
    pub namespace: String,
    pub group: String,
}

impl GroupName {
    fn check(ns: String, consumer_group: String) -> Result<Self, Violations> {
        let (namespace, group) = (namespace(ns), group(consumer_group)).combine()?;
        Ok(Self { namespace, group })
    }
}

impl FromProto<pb::GetConsumerGroupRequest> for GroupName {
    fn from_proto(req: pb::GetConsumerGroupRequest, _: &Limits) -> Result<Self, Violations> {
        Self::check(req.namespace, req.consumer_group)
    }
}

impl FromProto<pb::DeleteConsumerGroupRequest> for GroupName {
    fn from_proto(req: pb::DeleteConsumerGroupRequest, _: &Limits) -> Result<Self, Violations> {
        Self::check(req.namespace, req.consumer_group)
    }
}

/// A checked UpdateConsumerGroup: the fields its mask names.
#[derive(Debug)]
pub struct UpdateGroup {
    pub namespace: String,
    pub group: String,
    pub update: GroupUpdate,
}

/// The paths an update mask may name.
const UPDATABLE: [&str; 3] = ["kinds", "workflow_ids", "max_attempts"];

impl FromProto<pb::UpdateConsumerGroupRequest> for UpdateGroup {
    fn from_proto(req: pb::UpdateConsumerGroupRequest, _: &Limits) -> Result<Self, Violations> {
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let mask = mask(&paths);
        let named = |field: &str| paths.iter().any(|p| p == field);
        // A value for a field the mask does not name would be silently ignored: refuse it.
        let unnamed = |field: &str, set: bool| {
            ensure(!set || named(field), field, || format!("is set but update_mask does not name {field:?}"))
        };
        let kinds = match named("kinds") {
            true => all(req.kinds.iter().enumerate().map(|(i, k)| kind(*k, i))).map(Some),
            false => unnamed("kinds", !req.kinds.is_empty()).map(|()| None),
        };
        let workflow_ids = match named("workflow_ids") {
            true => workflow_ids(req.workflow_ids).map(Some),
            false => unnamed("workflow_ids", !req.workflow_ids.is_empty()).map(|()| None),
        };
        let max_attempts = match named("max_attempts") {
            true => ensure((1..=MAX_MAX_ATTEMPTS).contains(&req.max_attempts), "max_attempts", || {
                format!("must be 1 to {MAX_MAX_ATTEMPTS}")
            })
            .map(|()| Some(req.max_attempts)),
            false => unnamed("max_attempts", req.max_attempts != 0).map(|()| None),
        };
        let (namespace, group, (), kinds, workflow_ids, max_attempts) =
            (namespace(req.namespace), group(req.consumer_group), mask, kinds, workflow_ids, max_attempts).combine()?;
        Ok(Self { namespace, group, update: GroupUpdate { kinds, workflow_ids, max_attempts } })
    }
}

/// An update mask names one or more of [`UPDATABLE`], and nothing else.
fn mask(paths: &[String]) -> Result<(), Violations> {
    ensure(!paths.is_empty(), "update_mask", || format!("must name at least one of {}", UPDATABLE.join(", ")))?;
    all(paths.iter().enumerate().map(|(i, p)| {
        ensure(UPDATABLE.contains(&p.as_str()), &format!("update_mask.paths[{i}]"), || {
            format!("must be one of {}", UPDATABLE.join(", "))
        })
    }))
    .map(drop)
}

/// A checked SeekConsumerGroup.
#[derive(Debug)]
pub struct SeekGroup {
    pub namespace: String,
    pub group: String,
    pub position: SeekPosition,
}

impl FromProto<pb::SeekConsumerGroupRequest> for SeekGroup {
    fn from_proto(req: pb::SeekConsumerGroupRequest, _: &Limits) -> Result<Self, Violations> {
        let (namespace, group, position) =
            (namespace(req.namespace), group(req.consumer_group), position(req.target, req.sequence, req.time))
                .combine()?;
        Ok(Self { namespace, group, position })
    }
}

/// `sequence` is at least 1 with SEQUENCE and 0 otherwise; `time` is set with TIME and unset
/// otherwise.
fn position(target: i32, sequence: u64, time: Option<prost_types::Timestamp>) -> Result<SeekPosition, Violations> {
    let no_sequence = |target: &str| ensure(sequence == 0, "sequence", || format!("must be 0 with target {target}"));
    let no_time = |target: &str| ensure(time.is_none(), "time", || format!("must be unset with target {target}"));
    match pb::SeekTarget::try_from(target) {
        Ok(pb::SeekTarget::Earliest) => {
            (no_sequence("EARLIEST"), no_time("EARLIEST")).combine().map(|_| SeekPosition::Earliest)
        }
        Ok(pb::SeekTarget::Latest) => {
            (no_sequence("LATEST"), no_time("LATEST")).combine().map(|_| SeekPosition::Latest)
        }
        Ok(pb::SeekTarget::Sequence) => {
            let at_least_one = ensure(sequence > 0, "sequence", || "must be at least 1 with target SEQUENCE".into());
            (at_least_one, no_time("SEQUENCE")).combine().map(|_| SeekPosition::Sequence(sequence))
        }
        Ok(pb::SeekTarget::Time) => {
            let at = match &time {
                Some(t) => timestamp("time", t),
                None => Err(Violations::invalid("time", "is required with target TIME")),
            };
            (at, no_sequence("TIME")).combine().map(|(at, ())| SeekPosition::Time(at))
        }
        Ok(pb::SeekTarget::Unspecified) | Err(_) => {
            Err(Violations::invalid("target", "must be EARLIEST, LATEST, SEQUENCE or TIME"))
        }
    }
}

#[cfg(test)]
#[path = "admin/tests.rs"]
mod tests;
