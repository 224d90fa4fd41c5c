use super::*;

fn subscribe(f: impl FnOnce(&mut pb::SubscribeRequest)) -> String {
    let mut req = pb::SubscribeRequest { namespace: "ns".into(), consumer_group: "g".into(), ..Default::default() };
    f(&mut req);
    Subscribe::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
}

fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

#[test]
fn subscribe_rules_at_and_past_each_boundary() {
    type Tweak = Box<dyn FnOnce(&mut pb::SubscribeRequest)>;
    let cases: Vec<(&str, Tweak, &str)> = vec![
        ("defaults", Box::new(|_| {}), ""),
        ("max_in_flight 1024", Box::new(|r| r.max_in_flight = 1024), ""),
        ("max_in_flight 1025", Box::new(|r| r.max_in_flight = 1025), "max_in_flight"),
        ("max_attempts 100", Box::new(|r| r.max_attempts = 100), ""),
        ("max_attempts 101", Box::new(|r| r.max_attempts = 101), "max_attempts"),
        ("lease zero", Box::new(|r| r.lease_duration = secs(0)), ""),
        ("lease 1 s", Box::new(|r| r.lease_duration = secs(1)), ""),
        ("lease 1 h", Box::new(|r| r.lease_duration = secs(3600)), ""),
        ("lease 1 h + 1 s", Box::new(|r| r.lease_duration = secs(3601)), "lease_duration"),
        ("lease negative", Box::new(|r| r.lease_duration = secs(-1)), "lease_duration"),
        (
            "lease below 1 s",
            Box::new(|r| r.lease_duration = Some(prost_types::Duration { seconds: 0, nanos: 5 })),
            "lease_duration",
        ),
        ("kind unspecified", Box::new(|r| r.kinds = vec![1, 0]), "kinds[1]"),
        ("1000 workflow ids", Box::new(|r| r.workflow_ids = vec!["w".into(); 1000]), ""),
        ("1001 workflow ids", Box::new(|r| r.workflow_ids = vec!["w".into(); 1001]), "workflow_ids"),
        ("workflow id at 256 bytes", Box::new(|r| r.workflow_ids = vec!["w".repeat(256)]), ""),
        (
            "workflow id at 257 bytes",
            Box::new(|r| r.workflow_ids = vec!["w".into(), "w".repeat(257)]),
            "workflow_ids[1]",
        ),
        ("empty workflow id", Box::new(|r| r.workflow_ids = vec![String::new()]), "workflow_ids[0]"),
        ("SEQUENCE 1", Box::new(|r| (r.start, r.start_sequence) = (3, 1)), ""),
        ("SEQUENCE 0", Box::new(|r| (r.start, r.start_sequence) = (3, 0)), "start_sequence"),
        ("EARLIEST 5", Box::new(|r| (r.start, r.start_sequence) = (1, 5)), "start_sequence"),
        ("LATEST 5", Box::new(|r| (r.start, r.start_sequence) = (2, 5)), "start_sequence"),
        ("UNSPECIFIED 5", Box::new(|r| (r.start, r.start_sequence) = (0, 5)), "start_sequence"),
        ("unknown start", Box::new(|r| r.start = 9), "start"),
        (
            "bad names",
            Box::new(|r| (r.namespace, r.consumer_group) = (String::new(), "a b".into())),
            "namespace,consumer_group",
        ),
    ];
    for (what, tweak, want) in cases {
        assert_eq!(subscribe(tweak), want, "{what}");
    }
}

#[test]
fn subscribe_defaults() {
    let req = pb::SubscribeRequest { namespace: "ns".into(), consumer_group: "g".into(), ..Default::default() };
    let s = Subscribe::from_proto(req, &Limits::default()).unwrap();
    assert_eq!(
        (s.max_in_flight, s.lease, s.group.max_attempts),
        (DEFAULT_MAX_IN_FLIGHT, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS)
    );
    assert_eq!(s.group.start, StartPosition::Earliest);
}

#[test]
fn nack_rules() {
    let nack = |sequence, retry_after, reason: String| {
        let req = pb::NackRequest { namespace: "ns".into(), consumer_group: "g".into(), sequence, retry_after, reason };
        Nack::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!(nack(1, secs(86_400), "r".repeat(1024)), "");
    assert_eq!(nack(0, None, String::new()), "sequence");
    assert_eq!(nack(1, secs(86_401), String::new()), "retry_after");
    assert_eq!(nack(1, secs(-1), String::new()), "retry_after");
    assert_eq!(nack(1, None, "r".repeat(1025)), "reason");
}

#[test]
fn sequence_lists() {
    let ack = |sequences| {
        let req = pb::AckRequest { namespace: "ns".into(), consumer_group: "g".into(), sequences };
        Ack::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    let redrive = |sequences| {
        let req = pb::RedriveDeadLettersRequest { namespace: "ns".into(), consumer_group: "g".into(), sequences };
        Redrive::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!(
        (ack(vec![1; 1000]), ack(vec![1; 1001]), ack(vec![])),
        ("".into(), "sequences".into(), "sequences".into())
    );
    assert_eq!(
        (redrive(vec![1; 1000]), redrive(vec![1; 1001]), redrive(vec![])),
        ("".into(), "sequences".into(), "".into())
    );
    let dead = |page_size| {
        let req = pb::ListDeadLettersRequest {
            namespace: "ns".into(),
            consumer_group: "g".into(),
            page_size,
            ..Default::default()
        };
        DeadLetters::from_proto(req, &Limits::default()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!((dead(0), dead(-1)), ("".into(), "page_size".into()));
}
