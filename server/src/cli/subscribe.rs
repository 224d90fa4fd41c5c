//! `eventbus subscribe`: joins a consumer group and prints each notification it receives, then
//! settles it: acks it (the default), nacks it (`--nack REASON`), or leaves it unsettled
//! (`--no-ack`). The reason is given once, on the command line, for every notification: there
//! is no interactive prompt, so the command behaves the same in a script and on a terminal.
//!
//! Hazards: a notification is acked after it is printed, so one printed just before the
//! process dies may be delivered again (with a higher attempt). `--no-ack` is a look, not a
//! free one: the notifications stay leased to this stream until it ends, and then count a
//! failed attempt each ("stream closed"), like a nack; with few attempts left they become dead
//! letters. The stream reconnects on its own after retryable errors; Ctrl-C ends it.

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
    /// Prints without settling: each notification stays leased to this stream until it ends,
    /// then is redelivered (the lost lease counts as a failed attempt).
    #[arg(long, conflicts_with = "nack")]
    pub no_ack: bool,
    /// Nacks every notification with this reason (kept as the dead letter's last error once
    /// the group's attempts are used up).
    #[arg(long, value_name = "REASON")]
    pub nack: Option<String>,
    /// With --nack: how long the group waits before redelivering, e.g. 30s [default: at once].
    #[arg(long, requires = "nack", value_parser = parse::duration)]
    pub retry_after: Option<Duration>,
}

/// What to do with each notification once printed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settle {
    Ack,
    Nack { reason: String, retry_after: Duration },
    Leave,
}

impl SubscribeArgs {
    fn settle(&self) -> Settle {
        match (&self.nack, self.no_ack) {
            (Some(reason), _) => {
                Settle::Nack { reason: reason.clone(), retry_after: self.retry_after.unwrap_or_default() }
            }
            (None, true) => Settle::Leave,
            (None, false) => Settle::Ack,
        }
    }
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
        note!("subscribed to group {} in namespace {}; Ctrl-C to stop", cmd.group, args.namespace);
    }
    let settle = cmd.settle();
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
            out!("{}", render::notification_line(n));
        }
        match &settle {
            Settle::Ack => delivery.ack().await.map_err(rpc_error)?,
            Settle::Nack { reason, retry_after } => {
                if delivery.nack(*retry_after, reason.clone()).await.map_err(rpc_error)? {
                    note!("notification {} is now a dead letter (attempt {})", n.sequence, n.attempt);
                }
            }
            Settle::Leave => {}
        }
        seen += 1;
        if cmd.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: SubscribeArgs,
    }

    fn parse(args: &[&str]) -> Result<SubscribeArgs, clap::Error> {
        Cmd::try_parse_from(["subscribe", "-g", "g"].iter().chain(args)).map(|c| c.args)
    }

    #[test]
    fn settle_flags() {
        let nack = |reason: &str, secs| Settle::Nack { reason: reason.into(), retry_after: Duration::from_secs(secs) };
        let cases = [
            (&[][..], Settle::Ack),
            (&["--no-ack"][..], Settle::Leave),
            (&["--nack", "broken"][..], nack("broken", 0)),
            (&["--nack", "later", "--retry-after", "30s"][..], nack("later", 30)),
        ];
        for (flags, settle) in cases {
            assert_eq!(parse(flags).unwrap().settle(), settle, "{flags:?}");
        }
        assert!(parse(&["--no-ack", "--nack", "x"]).is_err(), "one way to settle");
        assert!(parse(&["--retry-after", "1s"]).is_err(), "--retry-after needs --nack");
    }
}
