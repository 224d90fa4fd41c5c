//! `eventbus health`: the grpc.health.v1 Check of a server, for container health checks and
//! scripts (the runtime image has no shell and no grpc_health_probe).

use std::time::Duration;

use anyhow::{Context, bail};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{ClientArgs, print_json};

/// Flags of `eventbus health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Service to ask about: empty for the whole server, `eventbus.v1.EventBusService` for the
    /// event bus (NOT_SERVING while the database cannot be reached or the server drains).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Gives up after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_seconds: u64,
}

/// Prints the serving status; fails unless it is SERVING.
pub async fn run(args: &ClientArgs, cmd: HealthArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(cmd.timeout_seconds.max(1));
    let check = async {
        let channel = args.endpoint()?.timeout(timeout).connect().await?;
        let request = HealthCheckRequest { service: cmd.service.clone() };
        anyhow::Ok(HealthClient::new(channel).check(request).await?.into_inner())
    };
    let response = tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}s", timeout.as_secs()))
        .and_then(|r| r)
        .with_context(|| format!("checking the health of {}", args.addr))?;
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    let name = status.as_str_name();
    if args.json {
        print_json(&serde_json::json!({ "service": cmd.service, "status": name }));
    } else {
        out!("{name}");
    }
    if status != ServingStatus::Serving {
        bail!("{} is {name}", if cmd.service.is_empty() { "the server" } else { cmd.service.as_str() });
    }
    Ok(())
}
