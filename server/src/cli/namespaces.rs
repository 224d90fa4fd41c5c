//! `eventbus namespaces list | rm`: every namespace of the server.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use clap::Subcommand;
use eventbus_client::pb;
use serde_json::json;

use super::{ClientArgs, print_json, print_table, rpc_error};

/// The namespace subcommands.
#[derive(Debug, Subcommand)]
pub enum NamespacesCommand {
    /// Lists every namespace with counts of its events, active listeners and groups.
    #[command(alias = "ls")]
    List,
    /// Deletes a namespace and everything in it (events, listeners, notifications, groups).
    #[command(alias = "delete")]
    Rm(RmArgs),
}

/// Flags of `eventbus namespaces rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The namespace to delete (named here, never taken from --namespace).
    pub name: String,
    /// Deletes without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Goes on if `yes`, or if the user answers `y` on a terminal; fails otherwise, so that a
/// script never deletes by accident.
pub fn confirm(yes: bool, what: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to delete {what} without --yes");
    }
    eprint!("delete {what}? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") { Ok(()) } else { bail!("not deleted") }
}

pub async fn run(args: &ClientArgs, cmd: NamespacesCommand) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let mut raw = client.raw();
    match cmd {
        NamespacesCommand::List => {
            let mut request = pb::ListNamespacesRequest { page_size: 1000, ..Default::default() };
            let mut namespaces = Vec::new();
            loop {
                let page = raw.list_namespaces(request.clone()).await.map_err(|s| rpc_error(s.into()))?.into_inner();
                namespaces.extend(page.namespaces);
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            print_namespaces(args, &namespaces);
        }
        NamespacesCommand::Rm(rm) => {
            confirm(rm.yes, &format!("namespace {} and everything in it", rm.name))?;
            let request = pb::DeleteNamespaceRequest { namespace: rm.name.clone() };
            let d = raw.delete_namespace(request).await.map_err(|s| rpc_error(s.into()))?.into_inner();
            if args.json {
                print_json(&json!({
                    "deleted": rm.name,
                    "deleted_event_count": d.deleted_event_count,
                    "deleted_listener_count": d.deleted_listener_count,
                    "deleted_partial_state_count": d.deleted_partial_state_count,
                    "deleted_notification_count": d.deleted_notification_count,
                    "deleted_consumer_group_count": d.deleted_consumer_group_count,
                    "deleted_delivery_count": d.deleted_delivery_count,
                }));
            } else {
                out!(
                    "deleted namespace {}: {} events, {} listeners, {} notifications, {} groups, {} deliveries",
                    rm.name,
                    d.deleted_event_count,
                    d.deleted_listener_count,
                    d.deleted_notification_count,
                    d.deleted_consumer_group_count,
                    d.deleted_delivery_count
                );
            }
        }
    }
    Ok(())
}

fn print_namespaces(args: &ClientArgs, namespaces: &[pb::Namespace]) {
    if args.json {
        for n in namespaces {
            print_json(&json!({
                "name": n.name,
                "event_count": n.event_count,
                "active_listener_count": n.active_listener_count,
                "consumer_group_count": n.consumer_group_count,
                "last_event_sequence": n.last_event_sequence,
                "last_notification_sequence": n.last_notification_sequence,
            }));
        }
        return;
    }
    if namespaces.is_empty() {
        note!("no namespaces");
        return;
    }
    let rows: Vec<Vec<String>> = namespaces
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.event_count.to_string(),
                n.active_listener_count.to_string(),
                n.consumer_group_count.to_string(),
                n.last_event_sequence.to_string(),
                n.last_notification_sequence.to_string(),
            ]
        })
        .collect();
    print_table(&["NAME", "EVENTS", "LISTENERS", "GROUPS", "LAST EVENT", "LAST NOTIFICATION"], &rows);
}
