//! `eventbus groups list | get | update | seek | rm`: the consumer groups of a namespace.

use std::time::SystemTime;

use clap::{ArgGroup, Subcommand, ValueEnum};
use eventbus_client::pb;
use serde_json::{Value, json};

use super::parse;
use super::render;
use super::{ClientArgs, print_json, print_table, rpc_error};

/// The consumer group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Lists the namespace's consumer groups with their backlog.
    #[command(alias = "ls")]
    List,
    /// Shows one consumer group: filters, read position, backlog, connected streams.
    Get(NameArgs),
    /// Changes a group's filters or max attempts (the flags given; the rest is kept).
    Update(UpdateArgs),
    /// Moves a group's read position; its unsettled deliveries are dropped.
    Seek(SeekArgs),
    /// Deletes a group with its deliveries and dead letters.
    #[command(alias = "delete")]
    Rm(RmArgs),
}

/// The group a command works on.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The consumer group.
    pub group: String,
}

/// Notification kinds, for group filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Start,
    Wake,
    Timeout,
}

impl Kind {
    fn to_proto(self) -> pb::NotificationKind {
        match self {
            Self::Start => pb::NotificationKind::Start,
            Self::Wake => pb::NotificationKind::Wake,
            Self::Timeout => pb::NotificationKind::Timeout,
        }
    }
}

/// Flags of `eventbus groups update`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["kinds", "all_kinds", "workflows", "all_workflows", "max_attempts"])))]
pub struct UpdateArgs {
    /// The consumer group.
    pub group: String,
    /// Only notifications of these kinds from now on.
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "all_kinds")]
    pub kinds: Vec<Kind>,
    /// Notifications of every kind from now on (clears the kinds filter).
    #[arg(long)]
    pub all_kinds: bool,
    /// Only START notifications of these workflows from now on.
    #[arg(long, value_name = "WORKFLOWS", value_delimiter = ',', conflicts_with = "all_workflows")]
    pub workflows: Vec<String>,
    /// Notifications of every workflow from now on (clears the workflow filter).
    #[arg(long)]
    pub all_workflows: bool,
    /// Delivery attempts before a notification becomes a dead letter (1 to 100).
    #[arg(long)]
    pub max_attempts: Option<u32>,
}

/// Flags of `eventbus groups seek`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("to").required(true).args(["earliest", "latest", "sequence", "time"])))]
pub struct SeekArgs {
    /// The consumer group.
    pub group: String,
    /// The oldest retained notification.
    #[arg(long)]
    pub earliest: bool,
    /// After the newest notification: only new ones.
    #[arg(long)]
    pub latest: bool,
    /// This notification sequence.
    #[arg(long, value_name = "SEQ")]
    pub sequence: Option<u64>,
    /// The first notification created at or after this time (RFC 3339).
    #[arg(long, value_parser = parse::rfc3339)]
    pub time: Option<SystemTime>,
}

/// Flags of `eventbus groups rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The consumer group.
    pub group: String,
    /// Deletes without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Returns the request `update` describes.
pub fn update_request(namespace: &str, update: UpdateArgs) -> pb::UpdateConsumerGroupRequest {
    let mut paths = Vec::new();
    if !update.kinds.is_empty() || update.all_kinds {
        paths.push("kinds".to_owned());
    }
    if !update.workflows.is_empty() || update.all_workflows {
        paths.push("workflow_ids".to_owned());
    }
    if update.max_attempts.is_some() {
        paths.push("max_attempts".to_owned());
    }
    pb::UpdateConsumerGroupRequest {
        namespace: namespace.to_owned(),
        consumer_group: update.group,
        kinds: update.kinds.into_iter().map(|k| k.to_proto() as i32).collect(),
        workflow_ids: update.workflows,
        max_attempts: update.max_attempts.unwrap_or_default(),
        update_mask: Some(prost_types::FieldMask { paths }),
    }
}

/// Returns the request `seek` describes.
pub fn seek_request(namespace: &str, seek: SeekArgs) -> pb::SeekConsumerGroupRequest {
    let (target, sequence, time) = match (seek.earliest, seek.latest, seek.sequence, seek.time) {
        (true, ..) => (pb::SeekTarget::Earliest, 0, None),
        (_, true, ..) => (pb::SeekTarget::Latest, 0, None),
        (_, _, Some(s), _) => (pb::SeekTarget::Sequence, s, None),
        (_, _, _, Some(t)) => (pb::SeekTarget::Time, 0, Some(prost_types::Timestamp::from(t))),
        _ => (pb::SeekTarget::Unspecified, 0, None),
    };
    pb::SeekConsumerGroupRequest {
        namespace: namespace.to_owned(),
        consumer_group: seek.group,
        target: target as i32,
        sequence,
        time,
    }
}

pub async fn run(args: &ClientArgs, cmd: GroupsCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let mut raw = client.raw();
    let ns = args.namespace.clone();
    match cmd {
        GroupsCommand::List => {
            let mut request = pb::ListConsumerGroupsRequest { namespace: ns, page_size: 1000, ..Default::default() };
            let mut groups = Vec::new();
            loop {
                let page =
                    raw.list_consumer_groups(request.clone()).await.map_err(|s| rpc_error(s.into()))?.into_inner();
                groups.extend(page.consumer_groups);
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            print_groups(args, &groups);
        }
        GroupsCommand::Get(get) => {
            let request = pb::GetConsumerGroupRequest { namespace: ns, consumer_group: get.group };
            let response = raw.get_consumer_group(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            print_group(args, response.consumer_group.unwrap_or_default(), None);
        }
        GroupsCommand::Update(update) => {
            let request = update_request(&ns, update);
            let response = raw.update_consumer_group(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            print_group(args, response.consumer_group.unwrap_or_default(), None);
        }
        GroupsCommand::Seek(seek) => {
            let request = seek_request(&ns, seek);
            let response = raw.seek_consumer_group(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            let group = response.consumer_group.unwrap_or_default();
            print_group(args, group, Some((response.read_sequence, response.dropped_delivery_count)));
        }
        GroupsCommand::Rm(rm) => {
            let what = format!("consumer group {} of namespace {ns} with its deliveries and dead letters", rm.group);
            super::namespaces::confirm(rm.yes, &what)?;
            let request = pb::DeleteConsumerGroupRequest { namespace: ns.clone(), consumer_group: rm.group.clone() };
            let response = raw.delete_consumer_group(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            let dropped = response.deleted_delivery_count;
            if args.json {
                print_json(&json!({ "deleted": rm.group, "namespace": ns, "deleted_delivery_count": dropped }));
            } else {
                out!("deleted consumer group {} ({dropped} deliveries)", rm.group);
            }
        }
    }
    Ok(())
}

fn print_groups(args: &ClientArgs, groups: &[pb::ConsumerGroup]) {
    if args.json {
        for g in groups {
            print_json(&group_json(g));
        }
        return;
    }
    if groups.is_empty() {
        note!("no consumer groups in namespace {}", args.namespace);
        return;
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.read_sequence.to_string(),
                g.pending_count.to_string(),
                g.leased_count.to_string(),
                g.dead_count.to_string(),
                g.oldest_pending_age.as_ref().map(age).unwrap_or_else(|| "-".into()),
                g.connected_stream_count.to_string(),
                filters_text(g),
            ]
        })
        .collect();
    print_table(&["NAME", "READ", "PENDING", "LEASED", "DEAD", "OLDEST", "STREAMS", "FILTERS"], &rows);
}

/// Prints one group; after a seek, with the position it set and the deliveries it dropped.
fn print_group(args: &ClientArgs, group: pb::ConsumerGroup, seeked: Option<(u64, u64)>) {
    if args.json {
        let mut value = group_json(&group);
        if let (Some((position, dropped)), Value::Object(obj)) = (seeked, &mut value) {
            obj.insert("seek_read_sequence".into(), json!(position));
            obj.insert("dropped_delivery_count".into(), json!(dropped));
        }
        print_json(&value);
        return;
    }
    if let Some((position, dropped)) = seeked {
        out!("moved {} to read position {position} ({dropped} deliveries dropped)", group.name);
    }
    out!("{}", group_text(&group));
}

fn kinds(g: &pb::ConsumerGroup) -> Vec<&'static str> {
    g.kinds().map(render::notification_kind).collect()
}

/// Returns a group's filters, for people: `kinds=start workflows=a,b`, or `all`.
fn filters_text(g: &pb::ConsumerGroup) -> String {
    let mut parts = Vec::new();
    if !g.kinds.is_empty() {
        parts.push(format!("kinds={}", kinds(g).join(",")));
    }
    if !g.workflow_ids.is_empty() {
        parts.push(format!("workflows={}", g.workflow_ids.join(",")));
    }
    if parts.is_empty() { "all".into() } else { parts.join(" ") }
}

/// Returns an age, for people: `1m30s`.
fn age(d: &prost_types::Duration) -> String {
    let d = std::time::Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32);
    parse::format_duration(std::time::Duration::from_millis(d.as_millis() as u64))
}

/// Returns a group as `key: value` lines.
pub fn group_text(g: &pb::ConsumerGroup) -> String {
    let mut lines = vec![
        format!("name:          {}", g.name),
        format!("namespace:     {}", g.namespace),
        format!("filters:       {}", filters_text(g)),
        format!("max attempts:  {}", g.max_attempts),
        format!("read position: {}", g.read_sequence),
        format!("pending:       {}", g.pending_count),
        format!("leased:        {}", g.leased_count),
        format!("dead:          {}", g.dead_count),
    ];
    if let Some(d) = &g.oldest_pending_age {
        lines.push(format!("oldest pending: {} ago", age(d)));
    }
    lines.push(format!("streams here:  {}", g.connected_stream_count));
    if let Some(t) = &g.create_time {
        lines.push(format!("created:       {}", render::time(t)));
    }
    lines.join("\n")
}

/// Returns a group as one JSON object.
pub fn group_json(g: &pb::ConsumerGroup) -> Value {
    json!({
        "namespace": g.namespace,
        "name": g.name,
        "kinds": kinds(g),
        "workflow_ids": g.workflow_ids,
        "max_attempts": g.max_attempts,
        "read_sequence": g.read_sequence,
        "pending_count": g.pending_count,
        "leased_count": g.leased_count,
        "dead_count": g.dead_count,
        "oldest_pending_age": g.oldest_pending_age.as_ref().map_or(Value::Null, |d| Value::String(render::duration(d))),
        "connected_stream_count": g.connected_stream_count,
        "create_time": g.create_time.as_ref().map_or(Value::Null, |t| Value::String(render::time(t))),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(subcommand)]
        groups: GroupsCommand,
    }

    fn parse(args: &[&str]) -> Result<GroupsCommand, clap::Error> {
        Cmd::try_parse_from(std::iter::once("groups").chain(args.iter().copied())).map(|c| c.groups)
    }

    #[test]
    fn update_flags_name_what_they_set() {
        let cases: [(&[&str], &[&str]); 4] = [
            (&["update", "g", "--max-attempts", "3"], &["max_attempts"]),
            (&["update", "g", "--all-kinds"], &["kinds"]),
            (&["update", "g", "--kinds", "start,wake", "--workflows", "a"], &["kinds", "workflow_ids"]),
            (&["update", "g", "--all-workflows", "--max-attempts", "2"], &["workflow_ids", "max_attempts"]),
        ];
        for (args, want) in cases {
            let Ok(GroupsCommand::Update(update)) = parse(args) else { panic!("{args:?}") };
            let request = update_request("ns", update);
            assert_eq!(request.update_mask.unwrap().paths, want, "{args:?}");
        }
        assert!(parse(&["update", "g"]).is_err(), "nothing to change");
        assert!(parse(&["update", "g", "--kinds", "start", "--all-kinds"]).is_err());
        assert!(parse(&["update", "g", "--kinds", "bogus"]).is_err());
    }

    #[test]
    fn seek_flags_pick_one_target() {
        let target = |args: &[&str]| match parse(args) {
            Ok(GroupsCommand::Seek(seek)) => {
                let r = seek_request("ns", seek);
                (r.target(), r.sequence, r.time.map(|t| t.seconds))
            }
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(target(&["seek", "g", "--earliest"]), (pb::SeekTarget::Earliest, 0, None));
        assert_eq!(target(&["seek", "g", "--latest"]), (pb::SeekTarget::Latest, 0, None));
        assert_eq!(target(&["seek", "g", "--sequence", "7"]), (pb::SeekTarget::Sequence, 7, None));
        assert_eq!(target(&["seek", "g", "--time", "1970-01-01T00:01:00Z"]), (pb::SeekTarget::Time, 0, Some(60)));
        assert!(parse(&["seek", "g"]).is_err());
        assert!(parse(&["seek", "g", "--earliest", "--latest"]).is_err());
    }
}
