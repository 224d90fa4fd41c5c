//! Building listener specs.

use std::time::{Duration, SystemTime};

use crate::{pb, proto_time};

/// Builds a [`pb::ListenerSpec`]: what a START or WAIT listener waits for.
///
/// Start with [`start`](Self::start) or [`wait`](Self::wait), then name the condition with
/// [`one`](Self::one), [`any`](Self::any) or [`all`](Self::all), and narrow it with glob filter
/// sets ([`filter`](Self::filter)) and CEL conditions ([`filter_where`](Self::filter_where),
/// [`where_`](Self::where_)). The builder does not validate; the server rejects an invalid spec
/// with `INVALID_ARGUMENT` naming the field (for example `lifespan`, `correlate_by` or `policy`
/// on a listener that is not ALL, `deadline` on a START listener, or a condition that does not
/// parse).
///
/// ```
/// use std::time::Duration;
/// use eventbus_client::ListenerSpecBuilder;
///
/// let spec = ListenerSpecBuilder::start("fulfilment")
///     .all(["com.example.order.placed", "com.example.payment.received"])
///     .correlate_by(["subject"])
///     .filter("com.example.order.placed", [("region", "eu-*")])
///     .lifespan(Duration::from_secs(24 * 3600))
///     .build();
/// assert_eq!(spec.types.len(), 2);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ListenerSpecBuilder {
    spec: pb::ListenerSpec,
}

impl ListenerSpecBuilder {
    /// Starts a START listener, which starts a new instance of `workflow_id` each time its
    /// condition is met.
    pub fn start(workflow_id: impl Into<String>) -> Self {
        let mut spec = pb::ListenerSpec { workflow_id: workflow_id.into(), ..Default::default() };
        spec.set_kind(pb::ListenerKind::Start);
        Self { spec }
    }

    /// Starts a WAIT listener, which wakes the waiting instance `instance_id` the first time its
    /// condition is met.
    pub fn wait(instance_id: impl Into<String>) -> Self {
        let mut spec = pb::ListenerSpec { instance_id: instance_id.into(), ..Default::default() };
        spec.set_kind(pb::ListenerKind::Wait);
        Self { spec }
    }

    /// Sets the condition ONE: each event of `event_type` meets it. Replaces earlier types.
    pub fn one(self, event_type: impl Into<String>) -> Self {
        self.condition(pb::ListenerCondition::One, [event_type.into()])
    }

    /// Sets the condition ANY: each event of one of `types` meets it. Replaces earlier types.
    pub fn any<I, S>(self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.condition(pb::ListenerCondition::Any, types)
    }

    /// Sets the condition ALL: one event of each of `types` (per correlation tuple, see
    /// [`correlate_by`](Self::correlate_by)) meets it. Replaces earlier types.
    pub fn all<I, S>(self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.condition(pb::ListenerCondition::All, types)
    }

    /// Adds a filter set for events of `event_type`: attribute name -> glob pattern, all of
    /// which must match. Several sets for one type are alternatives (any may match).
    pub fn filter<I, K, V>(self, event_type: impl Into<String>, attributes: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.filter_where(event_type, String::new(), attributes)
    }

    /// Adds a filter set for events of `event_type` with a CEL `condition` on the whole event
    /// and glob clauses as in [`filter`](Self::filter). The set matches when its clauses match
    /// and the condition is true. The condition sees every attribute and extension by name and
    /// `data` (decoded JSON, else bytes); one that fails for an event (a missing field, a wrong
    /// type) is false for it. The server parses and checks it at registration: a bad one is
    /// `INVALID_ARGUMENT` on `listener.filters[i].condition`, with the parser's position. An
    /// empty condition adds a plain filter set.
    ///
    /// ```
    /// use eventbus_client::ListenerSpecBuilder;
    ///
    /// let spec = ListenerSpecBuilder::start("review")
    ///     .one("payment.received")
    ///     .filter_where("payment.received", "data.amount >= 100", [("region", "eu-*")])
    ///     .build();
    /// assert_eq!(spec.filters[0].condition, "data.amount >= 100");
    /// ```
    pub fn filter_where<I, K, V>(
        mut self,
        event_type: impl Into<String>,
        condition: impl Into<String>,
        attributes: I,
    ) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.spec.filters.push(pb::EventFilter {
            r#type: event_type.into(),
            attributes: attributes.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            condition: condition.into(),
        });
        self
    }

    /// Adds a filter set for events of `event_type` that holds when the CEL `condition` is true,
    /// with no glob clauses: [`filter_where`](Self::filter_where) without attributes.
    ///
    /// ```
    /// use eventbus_client::ListenerSpecBuilder;
    ///
    /// let spec = ListenerSpecBuilder::start("review")
    ///     .one("order.created")
    ///     .where_("order.created", r#"data.items.size() > 10 && subject.startsWith("eu/")"#)
    ///     .build();
    /// assert!(spec.filters[0].attributes.is_empty());
    /// ```
    pub fn where_(self, event_type: impl Into<String>, condition: impl Into<String>) -> Self {
        self.filter_where(event_type, condition, std::iter::empty::<(String, String)>())
    }

    /// ALL only: sets how long a collected event stays collected, from its receive time. Zero
    /// keeps collected events forever.
    pub fn lifespan(mut self, lifespan: Duration) -> Self {
        self.spec.lifespan = proto_time::nonzero_duration(lifespan);
        self
    }

    /// ALL only: sets the attribute names whose values tie events together; replaces earlier
    /// names.
    pub fn correlate_by<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.correlate_by = names.into_iter().map(Into::into).collect();
        self
    }

    /// ALL only: sets what a second event of an already collected type does (FIRST by default).
    pub fn policy(mut self, policy: pb::ConsumptionPolicy) -> Self {
        self.spec.set_policy(policy);
        self
    }

    /// WAIT only: sets when to stop waiting; the listener then times out.
    pub fn deadline(mut self, deadline: SystemTime) -> Self {
        self.spec.deadline = Some(deadline.into());
        self
    }

    /// Returns the spec.
    pub fn build(self) -> pb::ListenerSpec {
        self.spec
    }

    fn condition<I, S>(mut self, condition: pb::ListenerCondition, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.set_condition(condition);
        self.spec.types = types.into_iter().map(Into::into).collect();
        self
    }
}

impl From<ListenerSpecBuilder> for pb::ListenerSpec {
    fn from(builder: ListenerSpecBuilder) -> Self {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        time::{Duration, UNIX_EPOCH},
    };

    use super::*;

    #[test]
    fn start_one() {
        let spec = ListenerSpecBuilder::start("wf").one("a").build();
        assert_eq!(
            spec,
            pb::ListenerSpec {
                kind: pb::ListenerKind::Start as i32,
                workflow_id: "wf".into(),
                condition: pb::ListenerCondition::One as i32,
                types: vec!["a".into()],
                ..Default::default()
            }
        );
    }

    #[test]
    fn wait_any_with_deadline() {
        let deadline = UNIX_EPOCH + Duration::from_secs(100);
        let spec = ListenerSpecBuilder::wait("inst-1").any(["a", "b"]).deadline(deadline).build();
        assert_eq!(spec.kind(), pb::ListenerKind::Wait);
        assert_eq!(spec.instance_id, "inst-1");
        assert_eq!(spec.workflow_id, "");
        assert_eq!(spec.condition(), pb::ListenerCondition::Any);
        assert_eq!(spec.types, ["a", "b"]);
        assert_eq!(spec.deadline, Some(prost_types::Timestamp { seconds: 100, nanos: 0 }));
    }

    #[test]
    fn start_all_with_every_option() {
        let spec: pb::ListenerSpec = ListenerSpecBuilder::start("wf")
            .one("dropped")
            .all(vec![String::from("a"), String::from("b")])
            .filter("a", [("subject", "inv-*"), ("region", "eu")])
            .filter("a", [("subject", "ord-*")])
            .lifespan(Duration::from_millis(1500))
            .correlate_by(["subject"])
            .policy(pb::ConsumptionPolicy::Latest)
            .into();
        assert_eq!(spec.condition(), pb::ListenerCondition::All);
        assert_eq!(spec.types, ["a", "b"]);
        assert_eq!(spec.filters.len(), 2);
        assert_eq!(spec.filters[0].r#type, "a");
        assert_eq!(
            spec.filters[0].attributes,
            HashMap::from([("subject".to_owned(), "inv-*".to_owned()), ("region".to_owned(), "eu".to_owned())])
        );
        assert_eq!(spec.lifespan, Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }));
        assert_eq!(spec.correlate_by, ["subject"]);
        assert_eq!(spec.policy(), pb::ConsumptionPolicy::Latest);
        assert_eq!(spec.deadline, None);
    }

    #[test]
    fn conditions_go_on_their_own_filter_sets() {
        let spec = ListenerSpecBuilder::start("wf")
            .any(["a", "b"])
            .filter("a", [("subject", "inv-*")])
            .filter_where("a", "data.amount >= 100", [("region", "eu-*")])
            .where_("b", r#"subject.startsWith("eu/")"#)
            .build();
        let sets: Vec<_> = spec
            .filters
            .iter()
            .map(|f| {
                let mut clauses: Vec<_> = f.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                clauses.sort();
                (f.r#type.as_str(), clauses, f.condition.as_str())
            })
            .collect();
        assert_eq!(
            sets,
            [
                ("a", vec!["subject=inv-*".to_owned()], ""),
                ("a", vec!["region=eu-*".to_owned()], "data.amount >= 100"),
                ("b", vec![], r#"subject.startsWith("eu/")"#),
            ]
        );
    }

    #[test]
    fn zero_lifespan_is_unset() {
        let spec = ListenerSpecBuilder::start("wf").all(["a"]).lifespan(Duration::ZERO).build();
        assert_eq!(spec.lifespan, None);
    }
}
