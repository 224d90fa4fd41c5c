//! Replay against the model: stored events walked in sequence order through one listener's
//! spec by the pure replay walk ([`Explainer`] in [`Walk::Replay`], as the store's DRY_RUN and
//! FIRE modes and a look-back registration do), from an empty state, fire exactly what the
//! reference model fires for that listener given the same events one at a time at their receive
//! times, and with the fire ids the live engine gives the same firings (so a FIRE replay of
//! what fired live fires nothing new).
//!
//! Stored events are unique per (namespace, source, id) and received in sequence order, so the
//! generated sequence keeps the first of each identity and receive times never go back. The walk
//! is cut into pages, its state carried over through JSON as a page token carries it.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use eventbus_engine::{ActionKind, CompiledListener, Explainer, ListenerSpec, Reason, TraceContext, Walk, WalkState};
use proptest::prelude::*;
use proptest::sample::select;

use super::{Fired, GenEvent, NAMESPACES, Published, Run, event_strategy, spec_strategy};

/// The events as stored: the first of each identity, in sequence order, each received `gap`
/// seconds after the one before.
fn stored(events: &[(GenEvent, i64)]) -> Vec<Published> {
    let mut seen = BTreeSet::new();
    let mut received_at = super::t0();
    let mut out = Vec::new();
    for (event, gap) in events {
        if !seen.insert((event.namespace, event.source, event.id)) {
            continue;
        }
        received_at += TimeDelta::seconds(*gap);
        let sequence = out.len() as u64 + 1;
        let trace = TraceContext { traceparent: format!("00-event-{sequence}-01"), tracestate: String::new() };
        out.push(Published { event: event.clone(), sequence, received_at, trace });
    }
    out
}

fn replay_agrees(namespace: &str, spec: ListenerSpec, events: &[Published], page: usize) -> Result<(), TestCaseError> {
    let mut run = Run::new();
    let listener = CompiledListener::compile(run.register(namespace, spec)).expect("valid listener compiles");
    let mut walk = Explainer::new(listener.clone(), Walk::Replay);
    for (i, e) in events.iter().enumerate() {
        if i > 0 && i % page == 0 {
            let token = serde_json::to_vec(&walk.state()).expect("a walk state encodes");
            let state: WalkState = serde_json::from_slice(&token).expect("a walk state decodes");
            walk = Explainer::resume(listener.clone(), Walk::Replay, state);
        }
        let event = e.to_event();
        let step = walk.step(&event);
        let live = run.engine.evaluate(std::slice::from_ref(&event), e.received_at);
        let model = run.model.evaluate(std::slice::from_ref(e), e.received_at);

        // A replay fires no TIMEOUT: an event at or after the deadline only ends the walk.
        let fires = |kind: &ActionKind| !matches!(kind, ActionKind::Timeout { .. });
        let want: Vec<Fired> = model.actions.into_iter().filter(|a| fires(&a.kind)).collect();
        let got: Vec<Fired> = step.fired.iter().map(Fired::from).collect();
        prop_assert_eq!(&got, &want, "replay and model disagree on event {}", e.sequence);
        let live_ids: Vec<_> = live.actions.iter().filter(|a| fires(&a.kind)).map(|a| a.fire_id).collect();
        let ids: Vec<_> = step.fired.iter().map(|a| a.fire_id).collect();
        prop_assert_eq!(ids, live_ids, "replayed fire ids are the live ones, event {}", e.sequence);
        prop_assert_eq!(matches!(step.reason, Reason::Fired { .. }), step.fired.is_some(), "{:?}", step.reason);
        let consumed = walk.state().consumed.is_some();
        prop_assert_eq!(consumed, !run.model.listeners[0].active, "consumed after event {}", e.sequence);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn replay_fires_what_the_model_fires(
        namespace in select(&NAMESPACES[..]),
        spec in spec_strategy(),
        events in proptest::collection::vec((event_strategy(), 0..=8i64), 1..=24),
        page in 1..=8usize,
    ) {
        replay_agrees(namespace, spec, &stored(&events), page)?;
    }
}
