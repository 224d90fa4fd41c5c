//! The `eventbus` binary: the server and a CLI for it.

use anyhow::Context;
use clap::{Parser, Subcommand};
use eventbus_server::telemetry::{self, LogFormat};
use eventbus_server::{ServeArgs, serve, shutdown_signal};

/// An event bus for workflow engines: producers publish CloudEvents, listeners decide which
/// workflows to start and which instances to wake, runners receive notifications.
#[derive(Debug, Parser)]
#[command(name = "eventbus", version, about, long_about = None)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, env = "EVENTBUS_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let (config, addr_file) = args.resolve()?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding the gRPC listener on {}", config.listen))?;
            let addr = listener.local_addr().context("reading the bound address")?;
            let server = tokio::spawn(serve(listener, config, shutdown_signal()));
            if let Some(path) = addr_file {
                // Written once the socket is bound, so a reader that sees it can connect.
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, addr.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
            }
            server.await.context("server task")?
        }
    }
}
