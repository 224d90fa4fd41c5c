//! `eventbus listeners add | list | get | rm | explain | replay` (the last two in `replay.rs`).

use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Subcommand, ValueEnum};
use eventbus_client::{Client, ListenerQuery, ListenerSpecBuilder, pb};
use serde_json::json;

use super::parse::{self, FilterSet};
use super::render;
use super::replay::{ExplainArgs, ReplayArgs};
use super::{ClientArgs, print_json, print_table, rpc_error};

/// The listener subcommands.
#[derive(Debug, Subcommand)]
pub enum ListenersCommand {
    /// Registers a START or WAIT listener and prints it with its id.
    Add(Box<AddArgs>),
    /// Lists listeners (active ones unless --all), in registration order.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Shows one listener, active or finished.
    Get(GetArgs),
    /// Deletes one listener by id, or every listener of a workflow or of an instance.
    #[command(alias = "delete")]
    Rm(RmArgs),
    /// Says, for one event or each event of a range, why it did or did not contribute to the
    /// listener (type, filters, conditions, correlation, lifespan, collected, fired).
    Explain(ExplainArgs),
    /// Walks stored events through the listener again, from an empty state: a dry run by
    /// default, --fire to fire what never fired. Pages through the range with progress.
    Replay(ReplayArgs),
}

/// Flags of `eventbus listeners add`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("action").required(true).args(["start", "wait"])))]
#[command(group(ArgGroup::new("condition").required(true).args(["one", "any", "all"])))]
#[command(group(ArgGroup::new("until").args(["deadline", "timeout"])))]
pub struct AddArgs {
    /// START listener: starts a new instance of this workflow each time the condition is met.
    #[arg(long, value_name = "WORKFLOW")]
    pub start: Option<String>,
    /// WAIT listener: wakes this waiting instance the first time the condition is met.
    #[arg(long, value_name = "INSTANCE")]
    pub wait: Option<String>,
    /// Condition ONE: every event of this type (one type; for several, --any or --all).
    #[arg(long, value_name = "TYPE", value_parser = parse::one_type)]
    pub one: Option<String>,
    /// Condition ANY: every event of one of these types.
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub any: Vec<String>,
    /// Condition ALL: one event of each of these types (per correlation tuple).
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub all: Vec<String>,
    /// Filter set TYPE:ATTR=GLOB, more clauses of the same set joined by `&` (all must match);
    /// repeat for alternative sets (any may match). A literal `&` in a pattern is `\&`.
    #[arg(long = "filter", short = 'f', value_name = "TYPE:ATTR=GLOB", value_parser = parse::filter)]
    pub filters: Vec<FilterSet>,
    /// A CEL condition every event must also meet, whatever its type, e.g.
    /// 'data.amount >= 100 && subject.startsWith("eu/")': it sees the event's attributes and
    /// extensions by name and `data` (decoded JSON, else bytes). It joins every --filter set,
    /// and stands alone for a type without one.
    #[arg(long = "where", value_name = "EXPR")]
    pub where_expr: Option<String>,
    /// ALL only: how long a collected event stays collected, e.g. 10m, 1h30m, 7d.
    #[arg(long, value_parser = parse::duration)]
    pub lifespan: Option<Duration>,
    /// ALL only: attribute names whose values tie the events together.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub correlate_by: Vec<String>,
    /// ALL only: what a second event of an already collected type does.
    #[arg(long, value_enum)]
    pub policy: Option<Policy>,
    /// WAIT only: when to stop waiting (RFC 3339).
    #[arg(long, value_parser = parse::rfc3339)]
    pub deadline: Option<SystemTime>,
    /// WAIT only: stop waiting this long from now, e.g. 10m.
    #[arg(long, value_parser = parse::duration)]
    pub timeout: Option<Duration>,
    /// Idempotency key: a retry with the same key and spec returns the first registration.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Also walks the stored events from this sequence or time (RFC 3339, or a duration ago:
    /// 10m) through the listener, in the registration's transaction: each event is evaluated
    /// once, stored or live.
    #[arg(long, value_name = "SEQ|TIME", value_parser = super::replay::at)]
    pub look_back: Option<super::replay::At>,
}

/// Consumption policy of an ALL listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    /// Keep the first collected event of a type.
    First,
    /// A later event replaces the collected one.
    Latest,
}

/// Listener kinds, for filtering lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Start,
    Wait,
}

/// Flags of `eventbus listeners list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only listeners of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Only START listeners of this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only WAIT listeners of this instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// Also lists finished (FIRED and TIMED_OUT) listeners.
    #[arg(long)]
    pub all: bool,
}

/// Flags of `eventbus listeners get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The listener id.
    pub id: String,
}

/// Flags of `eventbus listeners rm`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "workflow", "instance"])))]
pub struct RmArgs {
    /// The listener id.
    pub id: Option<String>,
    /// Every START listener of this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Every WAIT listener of this instance.
    #[arg(long)]
    pub instance: Option<String>,
}

/// Returns the spec the flags describe. Mismatches the server would reject anyway (such as
/// `--lifespan` without `--all`) are left for it to name.
pub fn spec(args: &AddArgs, now: SystemTime) -> pb::ListenerSpec {
    let mut builder = match (&args.start, &args.wait) {
        (Some(workflow), _) => ListenerSpecBuilder::start(workflow.clone()),
        (None, Some(instance)) => ListenerSpecBuilder::wait(instance.clone()),
        (None, None) => ListenerSpecBuilder::start(String::new()),
    };
    builder = match &args.one {
        Some(t) => builder.one(t.clone()),
        None if !args.any.is_empty() => builder.any(args.any.clone()),
        None => builder.all(args.all.clone()),
    };
    for set in &args.filters {
        builder = builder.filter(set.event_type.clone(), set.clauses.clone());
    }
    if let Some(lifespan) = args.lifespan {
        builder = builder.lifespan(lifespan);
    }
    if !args.correlate_by.is_empty() {
        builder = builder.correlate_by(args.correlate_by.clone());
    }
    if let Some(policy) = args.policy {
        builder = builder.policy(match policy {
            Policy::First => pb::ConsumptionPolicy::First,
            Policy::Latest => pb::ConsumptionPolicy::Latest,
        });
    }
    if let Some(deadline) = args.deadline.or_else(|| args.timeout.map(|t| now + t)) {
        builder = builder.deadline(deadline);
    }
    let mut spec = builder.build();
    if let Some(condition) = &args.where_expr {
        add_condition(&mut spec, condition);
    }
    spec
}

/// Makes every event of the spec's types meet `condition` too: it joins each filter set, and
/// becomes the only set of a type without one.
fn add_condition(spec: &mut pb::ListenerSpec, condition: &str) {
    for set in &mut spec.filters {
        set.condition = condition.to_owned();
    }
    for t in &spec.types {
        if !spec.filters.iter().any(|set| set.r#type == *t) {
            let set = pb::EventFilter { r#type: t.clone(), condition: condition.to_owned(), ..Default::default() };
            spec.filters.push(set);
        }
    }
}

pub async fn run(args: &ClientArgs, cmd: ListenersCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let ns = args.namespace.clone();
    match cmd {
        ListenersCommand::Add(add) => {
            let request = pb::RegisterListenerRequest {
                namespace: ns,
                listener: Some(spec(add.as_ref(), SystemTime::now())),
                request_id: add.request_id.clone().unwrap_or_default(),
                look_back: super::replay::position(add.look_back),
            };
            let response = client.raw().register_listener(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            let registration = eventbus_client::Registration {
                listener: response.listener.unwrap_or_default(),
                created: response.created,
            };
            if args.json {
                let listener = render::listener_json(&registration.listener);
                print_json(&json!({ "created": registration.created, "listener": listener }));
            } else {
                let verb = if registration.created { "registered" } else { "already registered (same request id)" };
                out!("{verb} listener {}", registration.listener.id);
                out!("{}", render::listener_text(&registration.listener));
            }
        }
        ListenersCommand::List(list) => list_listeners(args, &client, ns, list).await?,
        ListenersCommand::Explain(x) => super::replay::explain(args, &client, x).await?,
        ListenersCommand::Replay(r) => super::replay::replay(args, &client, r).await?,
        ListenersCommand::Get(get) => {
            let request = pb::GetListenerRequest { namespace: ns, id: get.id, include_partial_state: true };
            let got = client.raw().get_listener(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            super::partials::print_listener(args.json, &got);
        }
        ListenersCommand::Rm(rm) => {
            let (deleted, what) = match (rm.id, rm.workflow, rm.instance) {
                (Some(id), _, _) => {
                    client.delete_listener(ns, id.clone()).await.map_err(rpc_error)?;
                    (1, format!("listener {id}"))
                }
                (None, Some(w), _) => {
                    let n = client.delete_listeners_for_workflow(ns, w.clone()).await.map_err(rpc_error)?;
                    (n, format!("START listeners of workflow {w}"))
                }
                (None, None, Some(i)) => {
                    let n = client.delete_listeners_for_instance(ns, i.clone()).await.map_err(rpc_error)?;
                    (n, format!("WAIT listeners of instance {i}"))
                }
                (None, None, None) => anyhow::bail!("name a listener id, --workflow or --instance"),
            };
            if args.json {
                print_json(&json!({ "deleted": deleted }));
            } else {
                out!("deleted {deleted} ({what})");
            }
        }
    }
    Ok(())
}

/// `eventbus listeners list`.
async fn list_listeners(args: &ClientArgs, client: &Client, ns: String, list: ListArgs) -> anyhow::Result<()> {
    let query = ListenerQuery {
        kind: list.kind.map(|k| match k {
            Kind::Start => pb::ListenerKind::Start,
            Kind::Wait => pb::ListenerKind::Wait,
        }),
        workflow_id: list.workflow,
        instance_id: list.instance,
        include_finished: list.all,
        page_size: 1000,
    };
    let listeners = client.list_listeners(ns, &query).await.map_err(rpc_error)?;
    if args.json {
        for l in &listeners {
            print_json(&render::listener_json(l));
        }
    } else if listeners.is_empty() {
        note!("no listeners");
    } else {
        let rows: Vec<Vec<String>> = listeners
            .iter()
            .map(|l| {
                let spec = l.spec.clone().unwrap_or_default();
                vec![
                    l.id.clone(),
                    render::listener_target(&spec),
                    render::listener_condition(&spec),
                    render::status(l.status()).to_owned(),
                    l.create_time.as_ref().map(render::time).unwrap_or_default(),
                    l.request_id.clone(),
                    render::filters_text(&spec.filters).join(" | "),
                ]
            })
            .collect();
        print_table(&["ID", "ACTION", "CONDITION", "STATUS", "CREATED", "REQUEST ID", "FILTERS"], &rows);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        add: AddArgs,
    }

    fn parse(args: &[&str]) -> Result<AddArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("add").chain(args.iter().copied())).map(|c| c.add)
    }

    #[test]
    fn add_flags_build_the_spec() {
        let now = SystemTime::UNIX_EPOCH;
        let args = parse(&[
            "--start",
            "wf",
            "--all",
            "a,b",
            "--filter",
            "a:region=eu-*&subject=x",
            "--filter",
            "a:region=us",
            "--lifespan",
            "10m",
            "--correlate-by",
            "subject,customer",
            "--policy",
            "latest",
        ])
        .unwrap();
        let built = spec(&args, now);
        assert_eq!(built.kind(), pb::ListenerKind::Start);
        assert_eq!(built.workflow_id, "wf");
        assert_eq!(built.condition(), pb::ListenerCondition::All);
        assert_eq!(built.types, ["a", "b"]);
        assert_eq!(built.filters.len(), 2);
        assert_eq!(built.filters[0].attributes.len(), 2);
        assert_eq!(built.filters[1].attributes["region"], "us");
        assert_eq!(built.lifespan, Some(prost_types::Duration { seconds: 600, nanos: 0 }));
        assert_eq!(built.correlate_by, ["subject", "customer"]);
        assert_eq!(built.policy(), pb::ConsumptionPolicy::Latest);

        let args = parse(&["--wait", "inst", "--one", "t", "--timeout", "1h"]).unwrap();
        let built = spec(&args, now);
        assert_eq!(built.kind(), pb::ListenerKind::Wait);
        assert_eq!(built.instance_id, "inst");
        assert_eq!(built.types, ["t"]);
        assert_eq!(built.deadline, Some(prost_types::Timestamp { seconds: 3600, nanos: 0 }));
    }

    #[test]
    fn where_joins_every_filter_set_and_covers_types_without_one() {
        let condition = r#"data.amount >= 100 && subject.startsWith("eu/")"#;
        let args =
            parse(&["--start", "wf", "--any", "a,b", "-f", "a:region=eu-*", "-f", "a:region=us", "--where", condition])
                .unwrap();
        let built = spec(&args, SystemTime::UNIX_EPOCH);
        let sets: Vec<(&str, usize, &str)> =
            built.filters.iter().map(|f| (f.r#type.as_str(), f.attributes.len(), f.condition.as_str())).collect();
        assert_eq!(sets, [("a", 1, condition), ("a", 1, condition), ("b", 0, condition)]);
        let without = spec(&parse(&["--start", "wf", "--one", "a"]).unwrap(), SystemTime::UNIX_EPOCH);
        assert!(without.filters.is_empty(), "no --where, no condition-only set");
    }

    #[test]
    fn add_requires_one_action_and_one_condition() {
        assert!(parse(&["--one", "t"]).is_err());
        assert!(parse(&["--start", "wf"]).is_err());
        assert!(parse(&["--start", "wf", "--wait", "i", "--one", "t"]).is_err());
        assert!(parse(&["--start", "wf", "--one", "t", "--any", "a,b"]).is_err());
        assert!(
            parse(&["--wait", "i", "--one", "t", "--deadline", "2030-01-01T00:00:00Z", "--timeout", "1m"]).is_err()
        );
        assert!(parse(&["--start", "wf", "--one", "t", "--filter", "bad"]).is_err());
        let error = parse(&["--start", "wf", "--one", "a,b"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(error.to_string().contains("use --any a,b"), "{error}");
    }
}
