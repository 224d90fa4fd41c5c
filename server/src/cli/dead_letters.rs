//! `eventbus dead-letters list | redrive`: the notifications a consumer group gave up on.

use clap::{ArgGroup, Subcommand};
use eventbus_client::pb;
use serde_json::json;

use super::render;
use super::{ClientArgs, collect_pages, print_json, print_table, rpc_error};

/// The dead letter subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Lists a consumer group's dead letters in ascending notification sequence.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Puts dead letters back into delivery; their next attempt is attempt 1.
    Redrive(RedriveArgs),
}

/// Flags of `eventbus dead-letters list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The consumer group.
    #[arg(long, short = 'g')]
    pub group: String,
    /// At most this many dead letters; 0 for all.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
}

/// Flags of `eventbus dead-letters redrive`.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("which").required(true).args(["sequences", "all"])))]
pub struct RedriveArgs {
    /// The consumer group.
    #[arg(long, short = 'g')]
    pub group: String,
    /// Notification sequences of the dead letters to redrive (at most 1000).
    #[arg(value_name = "SEQ")]
    pub sequences: Vec<u64>,
    /// Redrives every dead letter of the group.
    #[arg(long)]
    pub all: bool,
}

pub async fn run(args: &ClientArgs, cmd: DeadLettersCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let mut raw = client.raw();
    match cmd {
        DeadLettersCommand::List(list) => {
            let request = pb::ListDeadLettersRequest {
                namespace: args.namespace.clone(),
                consumer_group: list.group.clone(),
                ..Default::default()
            };
            let (letters, more) = collect_pages(list.limit, |page_size, page_token| {
                let (mut raw, request) =
                    (raw.clone(), pb::ListDeadLettersRequest { page_size, page_token, ..request.clone() });
                async move {
                    let page = raw.list_dead_letters(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
                    Ok((page.dead_letters, page.next_page_token))
                }
            })
            .await?;
            print_letters(args, &list.group, &letters);
            if more {
                note!("(more dead letters follow; --limit 0 for all)");
            }
        }
        DeadLettersCommand::Redrive(redrive) => {
            let request = pb::RedriveDeadLettersRequest {
                namespace: args.namespace.clone(),
                consumer_group: redrive.group.clone(),
                sequences: redrive.sequences,
            };
            let response = raw.redrive_dead_letters(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            if args.json {
                print_json(&json!({ "group": redrive.group, "redriven": response.redriven_count }));
            } else {
                out!("redrove {} dead letters of group {}", response.redriven_count, redrive.group);
            }
        }
    }
    Ok(())
}

fn print_letters(args: &ClientArgs, group: &str, letters: &[pb::DeadLetter]) {
    if args.json {
        for letter in letters {
            print_json(&dead_letter_json(letter));
        }
        return;
    }
    if letters.is_empty() {
        note!("no dead letters in group {group}");
        return;
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|d| {
            let n = d.notification.clone().unwrap_or_default();
            let target = match n.kind() {
                pb::NotificationKind::Start => n.workflow_id.clone(),
                _ => n.instance_id.clone(),
            };
            vec![
                n.sequence.to_string(),
                d.dead_time.as_ref().map(render::time).unwrap_or_default(),
                n.attempt.to_string(),
                render::notification_kind(n.kind()).to_owned(),
                target,
                n.fire_id.clone(),
                d.last_error.clone(),
            ]
        })
        .collect();
    print_table(&["SEQ", "DEAD SINCE", "ATTEMPT", "KIND", "TARGET", "FIRE ID", "LAST ERROR"], &rows);
}

/// Returns a dead letter: its notification (as `subscribe --json` prints it), `last_error` and
/// `dead_time`.
pub fn dead_letter_json(letter: &pb::DeadLetter) -> serde_json::Value {
    json!({
        "notification": letter.notification.as_ref().map_or(serde_json::Value::Null, render::notification_json),
        "last_error": letter.last_error,
        "dead_time": letter.dead_time.as_ref().map(render::time),
    })
}
