//! `eventbus events list | get | tail`.
//!
//! `tail` follows new events by polling ListEvents with `after_sequence` (the last sequence it
//! printed). It starts with the events received from now on by the server's clock, so a client
//! clock ahead of the server's may miss the first events: `--since 1m` or `--after SEQ` start
//! earlier.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{ArgGroup, Subcommand};
use eventbus_client::RawClient;
use eventbus_client::pb;

use super::parse;
use super::render;
use super::{ClientArgs, collect_pages, print_json, print_table, rpc_error};

/// The event subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Lists stored events in ascending sequence.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Shows one stored event, by sequence or by source and id.
    Get(GetArgs),
    /// Prints new events as they are stored (from now on, unless --since or --after say
    /// otherwise), until Ctrl-C or --count.
    Tail(TailArgs),
}

/// Filters of `events list` and `events tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct Filters {
    /// Only events of this type.
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only events from this source.
    #[arg(long, short = 's')]
    pub source: Option<String>,
    /// Only events with this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only events with a sequence greater than this.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,
    /// Only events received at or after this time: RFC 3339, or a duration ago such as 10m.
    #[arg(long, value_name = "TIME", value_parser = parse::time_or_ago)]
    pub since: Option<SystemTime>,
}

impl Filters {
    fn request(&self, namespace: &str) -> pb::ListEventsRequest {
        pb::ListEventsRequest {
            namespace: namespace.to_owned(),
            r#type: self.event_type.clone().unwrap_or_default(),
            source: self.source.clone().unwrap_or_default(),
            subject: self.subject.clone().unwrap_or_default(),
            after_sequence: self.after,
            start_time: self.since.map(prost_types::Timestamp::from),
            ..Default::default()
        }
    }
}

/// Flags of `eventbus events list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filters: Filters,
    /// Only events received before this time: RFC 3339, or a duration ago such as 5m.
    #[arg(long, value_name = "TIME", value_parser = parse::time_or_ago)]
    pub until: Option<SystemTime>,
    /// At most this many events; 0 for all.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
}

/// Flags of `eventbus events get`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("key").required(true).args(["sequence", "source"])))]
pub struct GetArgs {
    /// The event's sequence.
    #[arg(value_name = "SEQ")]
    pub sequence: Option<u64>,
    /// The event's source (with --id).
    #[arg(long, short = 's', requires = "id")]
    pub source: Option<String>,
    /// The event's id (with --source).
    #[arg(long, requires = "source")]
    pub id: Option<String>,
}

/// Flags of `eventbus events tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    // Without --since and --after, tail starts with the events received from now on.
    #[command(flatten)]
    pub filters: Filters,
    /// Exits after printing this many events.
    #[arg(long, short = 'c')]
    pub count: Option<u64>,
    /// How often to ask for new events, e.g. 500ms, 2s.
    #[arg(long, default_value = "500ms", value_parser = parse::duration)]
    pub interval: Duration,
}

pub async fn run(args: &ClientArgs, cmd: EventsCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let mut raw = client.raw();
    match cmd {
        EventsCommand::List(list) => {
            let mut request = list.filters.request(&args.namespace);
            request.end_time = list.until.map(prost_types::Timestamp::from);
            let (events, more) = list_events(&raw, request, list.limit).await?;
            print_events(args, &events);
            if more {
                let last = events.last().map_or(0, |e| e.sequence);
                note!("(more events follow; --after {last} to continue, --limit 0 for all)");
            }
        }
        EventsCommand::Get(get) => {
            let key = match (get.sequence, get.source, get.id) {
                (Some(seq), _, _) => pb::get_event_request::Key::Sequence(seq),
                (None, Some(source), Some(id)) => pb::get_event_request::Key::SourceId(pb::EventKey { source, id }),
                _ => anyhow::bail!("name a sequence, or --source and --id"),
            };
            let request = pb::GetEventRequest { namespace: args.namespace.clone(), key: Some(key) };
            let response = raw.get_event(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            let stored = response.event.context("the server returned no event")?;
            if args.json {
                print_json(&render::stored_event_json(&stored));
            } else {
                out!("{}", render::stored_event_text(&stored));
            }
        }
        EventsCommand::Tail(tail) => follow(args, &raw, tail).await?,
    }
    Ok(())
}

/// Returns up to `limit` events (0: all) and whether more follow.
async fn list_events(
    raw: &RawClient,
    request: pb::ListEventsRequest,
    limit: u64,
) -> anyhow::Result<(Vec<pb::StoredEvent>, bool)> {
    collect_pages(limit, |page_size, page_token| {
        let (mut raw, request) = (raw.clone(), pb::ListEventsRequest { page_size, page_token, ..request.clone() });
        async move {
            let page = raw.list_events(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            Ok((page.events, page.next_page_token))
        }
    })
    .await
}

fn print_events(args: &ClientArgs, events: &[pb::StoredEvent]) {
    if args.json {
        for e in events {
            print_json(&render::stored_event_json(e));
        }
    } else if events.is_empty() {
        note!("no events");
    } else {
        print_table(&EVENT_HEADER, &events.iter().map(event_row).collect::<Vec<_>>());
    }
}

const EVENT_HEADER: [&str; 6] = ["SEQ", "RECEIVED", "TYPE", "SOURCE", "ID", "SUBJECT"];

fn event_row(stored: &pb::StoredEvent) -> Vec<String> {
    let e = stored.event.clone().unwrap_or_default();
    let subject = e.attributes.get("subject").map(render::attribute_text).unwrap_or_default();
    vec![
        stored.sequence.to_string(),
        stored.receive_time.as_ref().map(render::time).unwrap_or_default(),
        e.r#type,
        e.source,
        e.id,
        subject,
    ]
}

/// Prints new events as they come, one line each (tab-separated columns of `events list`, or
/// JSON), until Ctrl-C or `--count`.
async fn follow(args: &ClientArgs, raw: &RawClient, tail: TailArgs) -> anyhow::Result<()> {
    let mut filters = tail.filters;
    if filters.since.is_none() && filters.after == 0 {
        filters.since = Some(SystemTime::now());
    }
    if !args.json {
        note!("following events in namespace {}; Ctrl-C to stop", args.namespace);
    }
    let mut printed = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while tail.count.is_none_or(|c| printed < c) {
        let left = tail.count.map_or(0, |c| c - printed);
        let (events, _) = list_events(raw, filters.request(&args.namespace), left).await?;
        for e in &events {
            if args.json {
                print_json(&render::stored_event_json(e));
            } else {
                out!("{}", event_row(e).join("\t"));
            }
        }
        printed += events.len() as u64;
        filters.after = events.last().map_or(filters.after, |e| e.sequence);
        if tail.count.is_some_and(|c| printed >= c) {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(tail.interval) => {}
            _ = &mut ctrl_c => break,
        }
    }
    Ok(())
}
