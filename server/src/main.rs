//! The `eventbus` binary: the server, a CLI for it, and a load generator.

// Functions fit on a screen (the threshold is in .clippy.toml), tests and benches aside.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use eventbus_engine::store::Backend;
use eventbus_server::config::Resolved;
use eventbus_server::telemetry::{self, LogFormat};
use eventbus_server::{Listeners, ServeArgs, serve, shutdown_signal};

mod bench;
mod cli;

/// glibc's allocator spent a sixth of the server threads' time freeing and consolidating the
/// many short-lived buffers of gRPC calls (perf, `eventbus bench -w pipelined`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// eventbus: an event bus for workflow engines. Producers publish CloudEvents; listeners decide
/// which workflows to start and which waiting instances to wake; runners receive those
/// notifications from consumer groups, at least once.
///
/// `eventbus serve` runs the server; the other commands talk to one (--addr, --namespace).
#[derive(Debug, Parser)]
#[command(name = "eventbus", version)]
#[command(after_help = "Logs go to stderr. EVENTBUS_LOG (or RUST_LOG) sets which, e.g. `debug` or \
                        `info,eventbus_engine=debug` [default: info for serve, warn otherwise]. \
                        Colour only on a terminal, never with NO_COLOR set.")]
struct Cli {
    /// Log line format, on stderr; `EVENTBUS_LOG` (or `RUST_LOG`) filters the lines, e.g. `debug`
    /// [default: text; for `serve`, also the `log_format` key of its file].
    #[arg(long, global = true, env = "EVENTBUS_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    #[command(flatten)]
    Client(cli::ClientCommand),
    /// Measures publish latency and throughput, notification latency and listener scaling,
    /// against a server started in this process or a running one.
    ///
    /// Each workload runs in a fresh namespace of its own. Progress goes to stderr, results to
    /// stdout.
    Bench(BenchCommand),
}

/// Flags of `eventbus bench`.
#[derive(Debug, clap::Args)]
struct BenchCommand {
    /// Prints the results as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    args: bench::BenchArgs,
}

/// Returns the command line: the client options (`--addr`, `--namespace`, `--json`) go to the
/// client commands only, so that `serve --help` and `bench --help` do not list them, and the
/// help of `serve --config` lists the keys of the file.
fn command() -> clap::Command {
    // The options alone: augmenting the subcommand itself would also give it the about of
    // `ClientArgs`.
    let client_options = cli::ClientArgs::augment_args(clap::Command::new("client"));
    Cli::command()
        .mut_subcommands(|sub| match sub.get_name() {
            "serve" | "bench" => sub,
            _ => sub.args(client_options.get_arguments().cloned()),
        })
        .mut_subcommand("serve", config_keys_help)
}

fn config_keys_help(serve: clap::Command) -> clap::Command {
    let keys: Vec<String> = serve
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != "config")
        .chain(["log_format".to_owned()])
        .collect();
    serve.mut_arg("config", |a| {
        a.help(format!(
            "TOML file of settings: `key = value` lines, the keys being the flags' names with `_` for `-`: {}. \
             Flags and variables win over the file",
            keys.join(", ")
        ))
    })
}

/// Returns the parsed command line and, for a client command, its client options.
fn parse_from(argv: &[OsString]) -> Result<(Cli, Option<cli::ClientArgs>), clap::Error> {
    let matches = command().try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let client = match matches.subcommand() {
        Some(("serve" | "bench", _)) | None => None,
        Some((_, sub)) => Some(cli::ClientArgs::from_arg_matches(sub)?),
    };
    Ok((cli, client))
}

/// Whether `--json` is on the command line (before any `--`), for errors of the command line
/// itself.
fn json_requested(argv: &[OsString]) -> bool {
    argv.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json")
}

fn main() -> ExitCode {
    quiet_closed_stdout();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let (cli, client) = match parse_from(&argv) {
        Ok(parsed) => parsed,
        Err(e) => return usage_error(&e, json_requested(&argv)),
    };
    let format = cli.log_format.unwrap_or_default();
    let (result, json) = match (cli.command, client) {
        (Command::Serve(args), _) => (run_serve(ServeArgs { log_format: cli.log_format, ..*args }), false),
        (Command::Client(command), Some(client)) => {
            let json = client.json;
            let run = async move {
                telemetry::init_plain(format, "warn");
                cli::run(&client, command).await
            };
            (runtime(None).and_then(|r| r.block_on(run)), json)
        }
        (Command::Client(_), None) => (Err(anyhow::anyhow!("the client options were not parsed")), false),
        (Command::Bench(bench), _) => {
            let run = async move {
                telemetry::init_plain(format, "warn");
                bench::run(bench.args, bench.json).await
            };
            (runtime(None).and_then(|r| r.block_on(run)), bench.json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e, json),
    }
}

/// Prints a failed command's error on stderr, as JSON with `--json`, and returns status 1.
fn report(error: &anyhow::Error, json: bool) -> ExitCode {
    if json {
        cli::output::note(cli::error_json(error));
    } else {
        let prefix = if cli::output::stderr_colour() { "\x1b[1;31merror\x1b[0m" } else { "error" };
        cli::output::note(format_args!("{prefix}: {}", cli::error_chain(error)));
    }
    ExitCode::FAILURE
}

/// Prints a command line error and returns its exit status: 0 for --help and --version, else
/// 2. With `--json`, the error is an `{"error": ...}` object like the others.
fn usage_error(error: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let shows_help = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !json || shows_help {
        let _ = error.print();
        return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
    }
    let text = error.to_string();
    let message = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
    let error = cli::CommandError::new(tonic::Code::InvalidArgument, message);
    cli::output::note(error.to_json());
    ExitCode::from(2)
}

/// Ends the process quietly with status 0 when a `println!` finds stdout closed (`eventbus
/// bench | head -1`): the backstop for print paths that do not go through `cli::output`.
fn quiet_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Serves. The settings are resolved before the runtime starts: its size depends on the store.
fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let resolved = args.resolve()?;
    let workers = request_workers(&resolved.config.store.database_url, std::env::var_os("TOKIO_WORKER_THREADS"));
    runtime(workers)?.block_on(async {
        let _guard = telemetry::init(resolved.log_format, &resolved.telemetry)?;
        run_server(resolved).await
    })
}

/// The worker threads of the server's runtime, `None` for tokio's choice (`TOKIO_WORKER_THREADS`
/// when set, else one per core). On SQLite, unless `TOKIO_WORKER_THREADS` is set: one less than
/// the cores, at least one, because the store's writer is a thread of its own that a busy server
/// keeps running. Measured on 2 cores (README, Performance), one worker against two: sequential
/// publish p50 8% lower, 8% less CPU per event and a lower p99 paced at 5,000/s, PublishStream
/// throughput the same; a Publish call per event, pipelined, 5-16% fewer events per second.
fn request_workers(database_url: &str, env: Option<OsString>) -> Option<usize> {
    if env.is_some() || Backend::from_url(database_url).ok() != Some(Backend::Sqlite) {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    Some(cores.saturating_sub(1).max(1))
}

/// A multi-threaded runtime with `workers` worker threads (`None`: tokio's choice).
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.build().context("starting the runtime")
}

async fn run_server(resolved: Resolved) -> anyhow::Result<()> {
    let Resolved { config, listen_addr_file: addr_file, http_addr_file, .. } = resolved;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let http = match config.http_addr {
        Some(wanted) => Some(
            tokio::net::TcpListener::bind(wanted)
                .await
                .with_context(|| format!("binding the HTTP listener on {wanted}"))?,
        ),
        None => None,
    };
    let http_addr = http.as_ref().map(|l| l.local_addr()).transpose().context("reading the bound HTTP address")?;
    let listeners = Listeners { grpc: listener, http };
    // Before the address files, which say the server serves.
    listeners.check_exposure(&config)?;
    // Before the address files: whoever sees them may signal at once.
    let server = tokio::spawn(serve(listeners, config, shutdown_signal()?));
    // The HTTP address first: a reader that sees the gRPC one finds both.
    if let (Some(path), Some(http_addr)) = (http_addr_file, http_addr) {
        write_addr(&path, http_addr)?;
    }
    if let Some(path) = addr_file {
        write_addr(&path, addr)?;
    }
    server.await.context("server task")?
}

/// Writes a bound address to `path` (through a temporary file, so that a reader that sees the
/// file finds it whole and can connect).
fn write_addr(path: &std::path::Path, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addr.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Cli, Option<cli::ClientArgs>), clap::Error> {
        parse_from(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn sqlite_servers_leave_a_core_to_the_writer_unless_told() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(request_workers("sqlite://eb.db", None), Some(cores.saturating_sub(1).max(1)));
        assert_eq!(request_workers("sqlite://eb.db", Some("3".into())), None, "TOKIO_WORKER_THREADS wins");
        assert_eq!(request_workers("postgres://db/eventbus", None), None, "the Postgres writer is a task");
    }

    #[test]
    fn command_surface_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn client_options_belong_to_client_commands() {
        let (_, client) = parse(&["eventbus", "events", "list", "-n", "shop", "--json", "--addr", "h:1"]).unwrap();
        let client = client.unwrap();
        assert_eq!((client.namespace.as_str(), client.addr.as_str(), client.json), ("shop", "h:1", true));
        let (_, client) = parse(&["eventbus", "listeners", "--namespace", "ops", "list"]).unwrap();
        assert_eq!(client.unwrap().namespace, "ops");
        for argv in [
            &["eventbus", "serve", "--addr", "h:1"][..],
            &["eventbus", "bench", "-n", "x"],
            &["eventbus", "serve", "--json"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?}: client options do not apply");
        }
        let (_, client) = parse(&["eventbus", "bench", "--json"]).unwrap();
        assert!(client.is_none());
    }

    #[test]
    fn help_of_serve_and_bench_lists_no_client_options() {
        let mut cmd = command();
        cmd.build();
        for name in ["serve", "bench"] {
            let help = cmd.find_subcommand_mut(name).unwrap().render_long_help().to_string();
            for option in ["--addr", "--namespace", "Client options"] {
                assert!(!help.contains(option), "{name} --help lists {option}");
            }
        }
        let help = cmd.find_subcommand_mut("publish").unwrap().render_help().to_string();
        assert!(help.contains("--addr") && help.contains("--namespace") && help.contains("--json"));
        assert!(help.contains("Client options:"), "{help}");
        let publish = cmd.find_subcommand("publish").unwrap().get_about().unwrap().to_string();
        assert!(publish.starts_with("Publishes one event"), "each command keeps its own about: {publish}");
    }

    #[test]
    fn config_help_names_every_key_of_the_file() {
        let mut cmd = command();
        let serve = cmd.find_subcommand_mut("serve").unwrap();
        let help = serve.get_arguments().find(|a| a.get_id() == "config").unwrap().get_help().unwrap().to_string();
        let ids: Vec<String> = serve.get_arguments().map(|a| a.get_id().to_string()).collect();
        for key in ids.iter().filter(|id| *id != "config").map(String::as_str).chain(["log_format"]) {
            assert!(help.contains(key), "--config help lacks {key}: {help}");
        }
    }

    #[test]
    fn json_is_detected_before_a_double_dash() {
        let argv = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(json_requested(&argv(&["eventbus", "listeners", "add", "--json", "--one", "a,b"])));
        assert!(!json_requested(&argv(&["eventbus", "publish", "--", "--json"])));
    }
}
