//! `eventbus events list | get`.

use anyhow::Context;
use clap::{ArgGroup, Subcommand};
use eventbus_client::pb;

use super::render::{self, print_table};
use super::{ClientArgs, print_json, rpc_error};

/// The event subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Lists stored events in ascending sequence.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Shows one stored event, by sequence or by source and id.
    Get(GetArgs),
}

/// Flags of `eventbus events list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
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

pub async fn run(args: &ClientArgs, cmd: EventsCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let mut raw = client.raw();
    match cmd {
        EventsCommand::List(list) => {
            let mut request = pb::ListEventsRequest {
                namespace: args.namespace.clone(),
                r#type: list.event_type.unwrap_or_default(),
                source: list.source.unwrap_or_default(),
                subject: list.subject.unwrap_or_default(),
                after_sequence: list.after,
                ..Default::default()
            };
            let mut events = Vec::new();
            let mut more = false;
            loop {
                let left = if list.limit == 0 { 1000 } else { list.limit - events.len() as u64 };
                request.page_size = i32::try_from(left.min(1000)).unwrap_or(1000);
                let page = raw.list_events(request.clone()).await.map_err(|s| rpc_error(s.into()))?.into_inner();
                events.extend(page.events);
                if page.next_page_token.is_empty() {
                    break;
                }
                if list.limit != 0 && events.len() as u64 >= list.limit {
                    more = true;
                    break;
                }
                request.page_token = page.next_page_token;
            }
            if args.json {
                for e in &events {
                    print_json(&render::stored_event_json(e));
                }
                return Ok(());
            }
            if events.is_empty() {
                eprintln!("no events");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|stored| {
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
                })
                .collect();
            print_table(&["SEQ", "RECEIVED", "TYPE", "SOURCE", "ID", "SUBJECT"], &rows);
            if more {
                let last = events.last().map_or(0, |e| e.sequence);
                eprintln!("(more events follow; --after {last} to continue, --limit 0 for all)");
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
                println!("{}", render::stored_event_text(&stored));
            }
        }
    }
    Ok(())
}
