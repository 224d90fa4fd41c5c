use super::*;

fn update(f: impl FnOnce(&mut pb::UpdateConsumerGroupRequest)) -> String {
    let mut req = pb::UpdateConsumerGroupRequest {
        namespace: "ns".into(),
        consumer_group: "g".into(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["max_attempts".into()] }),
        max_attempts: 3,
        ..Default::default()
    };
    f(&mut req);
    UpdateGroup::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
}

fn paths(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

#[test]
fn update_rules() {
    type Tweak = Box<dyn FnOnce(&mut pb::UpdateConsumerGroupRequest)>;
    let cases: Vec<(&str, Tweak, &str)> = vec![
        ("max_attempts 3", Box::new(|_| {}), ""),
        ("max_attempts 100", Box::new(|r| r.max_attempts = 100), ""),
        ("max_attempts 101", Box::new(|r| r.max_attempts = 101), "max_attempts"),
        ("max_attempts 0 named", Box::new(|r| r.max_attempts = 0), "max_attempts"),
        ("no mask", Box::new(|r| r.update_mask = None), "update_mask,max_attempts"),
        ("empty mask", Box::new(|r| (r.update_mask, r.max_attempts) = (paths(&[]), 0)), "update_mask"),
        ("unknown path", Box::new(|r| r.update_mask = paths(&["max_attempts", "name"])), "update_mask.paths[1]"),
        ("clear kinds", Box::new(|r| r.update_mask = paths(&["kinds", "max_attempts"])), ""),
        (
            "bad kind",
            Box::new(|r| (r.update_mask, r.kinds) = (paths(&["kinds", "max_attempts"]), vec![1, 0])),
            "kinds[1]",
        ),
        ("kinds not named", Box::new(|r| r.kinds = vec![1]), "kinds"),
        ("workflow ids not named", Box::new(|r| r.workflow_ids = vec!["w".into()]), "workflow_ids"),
        (
            "empty workflow id",
            Box::new(|r| (r.update_mask, r.workflow_ids) = (paths(&["workflow_ids"]), vec![String::new()])),
            "workflow_ids[0],max_attempts",
        ),
        (
            "1001 workflow ids",
            Box::new(|r| {
                (r.update_mask, r.max_attempts, r.workflow_ids) = (paths(&["workflow_ids"]), 0, vec!["w".into(); 1001])
            }),
            "workflow_ids",
        ),
        (
            "bad names",
            Box::new(|r| (r.namespace, r.consumer_group) = (String::new(), "a b".into())),
            "namespace,consumer_group",
        ),
    ];
    for (what, tweak, want) in cases {
        assert_eq!(update(tweak), want, "{what}");
    }
}

#[test]
fn update_sets_only_named_fields() {
    let req = pb::UpdateConsumerGroupRequest {
        namespace: "ns".into(),
        consumer_group: "g".into(),
        update_mask: paths(&["kinds", "workflow_ids"]),
        kinds: vec![pb::NotificationKind::Start as i32],
        ..Default::default()
    };
    let u = UpdateGroup::from_proto(req, &Limits::default()).unwrap();
    assert_eq!(
        u.update,
        GroupUpdate {
            kinds: Some(vec![eventbus_engine::store::NotificationKind::Start]),
            workflow_ids: Some(vec![]),
            max_attempts: None
        }
    );
}

fn seek(target: pb::SeekTarget, sequence: u64, time: Option<prost_types::Timestamp>) -> Result<SeekPosition, String> {
    let req = pb::SeekConsumerGroupRequest {
        namespace: "ns".into(),
        consumer_group: "g".into(),
        target: target as i32,
        sequence,
        time,
    };
    SeekGroup::from_proto(req, &Limits::default()).map(|s| s.position).map_err(|v| v.fields().join(","))
}

#[test]
fn seek_rules() {
    use pb::SeekTarget::{Earliest, Latest, Sequence, Time, Unspecified};
    let t = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let at = chrono::DateTime::from_timestamp(5, 0).unwrap();
    let cases = [
        (Earliest, 0, None, Ok(SeekPosition::Earliest)),
        (Latest, 0, None, Ok(SeekPosition::Latest)),
        (Sequence, 7, None, Ok(SeekPosition::Sequence(7))),
        (Time, 0, t(5), Ok(SeekPosition::Time(at))),
        (Unspecified, 0, None, Err("target".to_owned())),
        (Earliest, 1, t(5), Err("sequence,time".to_owned())),
        (Latest, 1, None, Err("sequence".to_owned())),
        (Sequence, 0, None, Err("sequence".to_owned())),
        (Sequence, 3, t(5), Err("time".to_owned())),
        (Time, 0, None, Err("time".to_owned())),
        (Time, 2, t(5), Err("sequence".to_owned())),
        (Time, 0, t(crate::limits::MAX_TIMESTAMP_SECONDS + 1), Err("time".to_owned())),
    ];
    for (target, sequence, time, want) in cases {
        assert_eq!(seek(target, sequence, time), want, "{target:?} {sequence} {time:?}");
    }
    let req = pb::SeekConsumerGroupRequest { target: 9, ..Default::default() };
    let err = SeekGroup::from_proto(req, &Limits::default()).unwrap_err();
    assert_eq!(err.fields(), ["namespace", "consumer_group", "target"]);
}

#[test]
fn names_and_pages() {
    let list = |page_size| {
        let req = pb::ListNamespacesRequest { page_size, page_token: String::new() };
        ListNamespaces::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!((list(0), list(-1)), (String::new(), "page_size".to_owned()));
    let groups = |namespace: &str, page_size| {
        let req = pb::ListConsumerGroupsRequest { namespace: namespace.into(), page_size, page_token: String::new() };
        ListGroups::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!((groups("ns", 5), groups("", -1)), (String::new(), "namespace,page_size".to_owned()));
    let get = pb::GetConsumerGroupRequest { namespace: "ns".into(), consumer_group: String::new() };
    assert_eq!(GroupName::from_proto(get, &Limits::default()).unwrap_err().fields(), ["consumer_group"]);
    let delete = pb::DeleteNamespaceRequest { namespace: "a b".into() };
    assert_eq!(NamespaceName::from_proto(delete, &Limits::default()).unwrap_err().fields(), ["namespace"]);
}
