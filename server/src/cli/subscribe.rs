//! `eventbus subscribe`: joins a consumer group, prints each notification and acks it.
//!
//! Hazard: a notification is acked after it is printed, so one printed just before the process
//! dies may be delivered again (with a higher attempt). The stream reconnects on its own after
//! retryable errors; Ctrl-C ends it.

use std::time::Duration;

use clap::ValueEnum;
use eventbus_client::{StartPosition, SubscribeOptions, pb};
use futures::StreamExt;

use super::parse;
use super::render;
use super::{ClientArgs, print_json, rpc_error};

/// Notification kinds, for the group filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Start,
    Wake,
    Timeout,
}

impl From<Kind> for pb::NotificationKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Start => pb::NotificationKind::Start,
            Kind::Wake => pb::NotificationKind::Wake,
            Kind::Timeout => pb::NotificationKind::Timeout,
        }
    }
}

/// Flags of `eventbus subscribe`.
#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// Consumer group to join (created with the filters below on first use).
    #[arg(long, short = 'g')]
    pub group: String,
    /// Group filter: only these notification kinds [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub kinds: Vec<Kind>,
    /// Group filter: only START notifications of this workflow; repeatable [default: all].
    #[arg(long = "workflow", value_name = "WORKFLOW")]
    pub workflows: Vec<String>,
    /// Group setting: delivery attempts before a notification becomes a dead letter [default:
    /// server's, 10].
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Unsettled notifications this stream may hold [default: server's, 64].
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// How long this stream holds each notification before it is redelivered, e.g. 30s.
    #[arg(long, value_parser = parse::duration)]
    pub lease: Option<Duration>,
    /// Where a new group starts: earliest, latest or a notification sequence.
    #[arg(long, default_value = "earliest", value_parser = parse::start_position)]
    pub start: StartPosition,
    /// Exits after this many notifications.
    #[arg(long, short = 'c')]
    pub count: Option<u64>,
}

pub async fn run(args: &ClientArgs, cmd: SubscribeArgs) -> anyhow::Result<()> {
    let client = args.connect().await?;
    let options = SubscribeOptions {
        kinds: cmd.kinds.iter().map(|&k| k.into()).collect(),
        workflow_ids: cmd.workflows.clone(),
        max_in_flight: cmd.max_in_flight.unwrap_or(0),
        lease_duration: cmd.lease,
        start: cmd.start,
        max_attempts: cmd.max_attempts.unwrap_or(0),
        ..SubscribeOptions::new(args.namespace.clone(), cmd.group.clone())
    };
    let mut subscription = client.subscribe(options).await.map_err(rpc_error)?;
    if !args.json {
        eprintln!("subscribed to group {} in namespace {}; Ctrl-C to stop", cmd.group, args.namespace);
    }
    let mut seen = 0u64;
    if cmd.count == Some(0) {
        return Ok(());
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let delivery = tokio::select! {
            next = subscription.next() => match next {
                Some(delivery) => delivery.map_err(rpc_error)?,
                None => anyhow::bail!("the notification stream ended"),
            },
            _ = &mut ctrl_c => return Ok(()),
        };
        let n = delivery.notification();
        if args.json {
            print_json(&render::notification_json(n));
        } else {
            println!("{}", render::notification_line(n));
        }
        delivery.ack().await.map_err(rpc_error)?;
        seen += 1;
        if cmd.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
    }
}
