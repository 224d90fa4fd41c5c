//! The `eventbus` binary: the server, a CLI for it, and a load generator.

// Functions fit on a screen (the threshold is in .clippy.toml), tests and benches aside.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use eventbus_server::config::Resolved;
use eventbus_server::telemetry::{self, LogFormat};
use eventbus_server::{ServeArgs, serve, shutdown_signal};

mod bench;
mod cli;

/// glibc's allocator spent a sixth of the server threads' time freeing and consolidating the
/// many short-lived buffers of gRPC calls (perf, `eventbus bench -w pipelined`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An event bus for workflow engines: producers publish CloudEvents, listeners decide which
/// workflows to start and which instances to wake, runners receive notifications.
#[derive(Debug, Parser)]
#[command(name = "eventbus", version, about, long_about = None)]
struct Cli {
    /// Log line format [default: text; for `serve`, also the `log_format` key of its file].
    #[arg(long, global = true, env = "EVENTBUS_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(flatten)]
    client: cli::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server until SIGINT or SIGTERM.
    Serve(ServeArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Measures publish latency and throughput, notification latency and listener scaling,
    /// against a server started in this process or a running one.
    ///
    /// Each workload runs in a fresh namespace of its own, so --namespace does not apply; --addr
    /// does not either (see --target). Progress goes to stderr, results to stdout.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            let args = ServeArgs { log_format: cli.log_format, ..args };
            match args.resolve() {
                Ok(resolved) => match telemetry::init(resolved.log_format, &resolved.telemetry) {
                    Ok(_guard) => run_server(resolved).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Command::Client(command) => {
            quiet_logs(cli.log_format.unwrap_or_default());
            cli::run(&cli.client, command).await
        }
        Command::Bench(args) => {
            quiet_logs(cli.log_format.unwrap_or_default());
            bench::run(args, cli.client.json).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Returns an error and its causes joined by `: `, each repeated cause said once (tonic and
/// hyper wrap errors in errors with the same text).
fn error_chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Logs only warnings and errors (or what `EVENTBUS_LOG` / `RUST_LOG` say) on stderr, so that
/// command output is not interleaved with the in-process server's info lines.
fn quiet_logs(format: LogFormat) {
    let filter = telemetry::log_filter("warn");
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn run_server(resolved: Resolved) -> anyhow::Result<()> {
    let Resolved { config, listen_addr_file: addr_file, .. } = resolved;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Before the address file: whoever sees it may signal at once.
    let server = tokio::spawn(serve(listener, config, shutdown_signal()?));
    if let Some(path) = addr_file {
        // Written once the socket is bound, so a reader that sees it can connect.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    server.await.context("server task")?
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_surface_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn client_options_are_global() {
        let cli = Cli::try_parse_from(["eventbus", "events", "list", "-n", "shop", "--json", "--addr", "h:1"]).unwrap();
        assert_eq!(cli.client.namespace, "shop");
        assert_eq!(cli.client.addr, "h:1");
        assert!(cli.client.json);
        let cli = Cli::try_parse_from(["eventbus", "--namespace", "ops", "listeners", "list"]).unwrap();
        assert_eq!(cli.client.namespace, "ops");
    }

    #[test]
    fn error_chains_say_each_cause_once() {
        let error = anyhow::anyhow!("tcp connect error").context("tcp connect error").context("connecting to x");
        assert_eq!(error_chain(&error), "connecting to x: tcp connect error");
    }
}
