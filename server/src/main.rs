//! The `eventbus` binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use eventbus_engine::store::{Durability, Store, StoreConfig};

/// An event bus for workflow engines: producers publish CloudEvents, listeners decide which
/// workflows to start and which instances to wake, runners receive notifications.
#[derive(Debug, Parser)]
#[command(name = "eventbus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Opens the store (applying migrations) and runs its background sweeper until SIGINT or
    /// SIGTERM. The gRPC service is not served yet.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Database URL: `sqlite://FILE` (embedded, the default) or `postgres://USER@HOST/DB` to
    /// share the work between several servers.
    #[arg(long, env = "EVENTBUS_DATABASE_URL")]
    database_url: Option<String>,
    /// SQLite file used when no database URL is given.
    #[arg(long, env = "EVENTBUS_DATA_FILE", default_value = "eventbus.db")]
    data_file: PathBuf,
    /// Acknowledge publishes once committed, before they are flushed to disk (faster; a machine
    /// crash may lose the last writes).
    #[arg(long, env = "EVENTBUS_RELAXED_DURABILITY")]
    relaxed_durability: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let url = args.database_url.unwrap_or_else(|| format!("sqlite://{}", args.data_file.display()));
    let mut config = StoreConfig::new(url);
    if args.relaxed_durability {
        config.durability = Durability::Relaxed;
    }
    let store = Store::open(config).await.context("opening the store")?;
    eprintln!("eventbus: store ready ({:?}); the gRPC service is not built yet, stop with Ctrl-C", store.backend());
    shutdown_signal().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or_default(),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}
