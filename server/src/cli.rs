//! The client commands of the `eventbus` binary: `publish`, `listeners`, `subscribe`, `events`,
//! `dead-letters`, `health`, `groups`, `namespaces` and `tokens`. Each connects to the server named by
//! `--addr`, works in the namespace named by `--namespace`, prints text for people by default
//! and JSON with `--json` (one object per result, one per line for streams), and maps RPC
//! failures to a [`CommandError`]: one line naming the status code and the server's field
//! violations, or with `--json` an `{"error": ...}` object on stderr.
//!
//! Hazard: command output goes through [`output`], never `println!`, so that a closed pipe
//! (`eventbus listeners list | head -1`) ends the command quietly instead of panicking.

use std::fmt;
use std::future::Future;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use eventbus_client::{Certificate, Client, ClientTlsConfig, Identity};
pub use eventbus_server::status::code_name;
use serde_json::{Value, json};
use tonic::transport::Endpoint;
use tonic_types::StatusExt;

/// Prints one line of command output (see [`output::line`]): `out!("deleted {n}")`.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::line(format_args!($($arg)*)) };
}

/// Prints a note for people on stderr (see [`output::note`]).
macro_rules! note {
    ($($arg:tt)*) => { $crate::cli::output::note(format_args!($($arg)*)) };
}

pub mod dead_letters;
pub mod events;
pub mod groups;
pub mod health;
pub mod listeners;
pub mod namespaces;
pub mod output;
pub mod parse;
pub mod partials;
pub mod publish;
pub mod render;
pub mod replay;
pub mod subscribe;
pub mod tokens;

pub use output::{print_json, print_table};

/// Where client commands connect when neither `--addr` nor `EVENTBUS_ADDR` is given (over TLS
/// when a TLS flag is set).
pub const DEFAULT_ADDR: &str = "127.0.0.1:50051";

/// Options every client command shares; `main` adds them to each client command (not to
/// `serve` and `bench`, where they do not apply).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Client options")]
pub struct ClientArgs {
    /// Server to talk to; without a scheme, `https://` is assumed when a TLS flag is set and
    /// `http://` otherwise. `https://` always means TLS (with the system's roots unless
    /// --ca-cert says otherwise).
    #[arg(long, global = true, env = "EVENTBUS_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// PEM CA certificates that sign the server's certificate: TLS, trusting only them.
    #[arg(long, global = true, env = "EVENTBUS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate chain this client presents (mutual TLS); with --client-key.
    #[arg(long, global = true, env = "EVENTBUS_CLIENT_CERT")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, env = "EVENTBUS_CLIENT_KEY")]
    pub client_key: Option<PathBuf>,
    /// API token sent as `authorization: Bearer <token>` (prefer the variable: flags show in
    /// process listings).
    #[arg(long, global = true, env = "EVENTBUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Namespace of the events, listeners and consumer groups.
    #[arg(short = 'n', long, global = true, env = "EVENTBUS_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Prints JSON for machines instead of text (one object per line for streams; errors as
    /// `{"error": {"code", "message", "field_violations"}}` on stderr).
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// Connects to `--addr`, with the TLS flags and the token.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let channel = self.endpoint()?.connect().await.map_err(|e| {
            let message = format!("connecting to {}: {}", self.addr, error_chain(&anyhow::Error::new(e)));
            anyhow::Error::from(CommandError::new(tonic::Code::Unavailable, message))
        })?;
        let client = Client::from_channel(channel);
        match &self.token {
            Some(token) => Ok(client.with_token(token).context("--token")?),
            None => Ok(client),
        }
    }

    /// Returns the endpoint of `--addr` with the TLS flags, for clients of other services.
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        Client::endpoint_with_tls(self.addr.clone(), self.tls()?)
            .with_context(|| format!("connecting to {}", self.addr))
    }

    /// Returns the TLS settings of the flags; `None` when no TLS flag is set.
    fn tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(read(cert)?, read(key)?)),
            (None, None) => None,
            (Some(_), None) => bail!("--client-cert needs --client-key"),
            (None, Some(_)) => bail!("--client-key needs --client-cert"),
        };
        let tls = match &self.ca_cert {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?)),
            None if identity.is_some() => ClientTlsConfig::new().with_enabled_roots(),
            None => return Ok(None),
        };
        Ok(Some(match identity {
            Some(identity) => tls.identity(identity),
            None => tls,
        }))
    }
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Publishes one event from flags, or a batch from NDJSON (--file), and prints each
    /// sequence and whether it was a duplicate.
    Publish(publish::PublishArgs),
    /// Registers, lists, shows and deletes listeners.
    #[command(subcommand)]
    Listeners(listeners::ListenersCommand),
    /// Joins a consumer group and prints each notification it receives, then acks it (or
    /// nacks it, or leaves it unsettled).
    Subscribe(subscribe::SubscribeArgs),
    /// Lists, shows and follows stored events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Lists and redrives the dead letters of a consumer group.
    #[command(subcommand)]
    DeadLetters(dead_letters::DeadLettersCommand),
    /// Asks the server's grpc.health.v1 service; exits 0 only when it is SERVING.
    Health(health::HealthArgs),
    /// Lists, shows, changes, seeks and deletes consumer groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Lists and deletes namespaces.
    #[command(subcommand)]
    Namespaces(namespaces::NamespacesCommand),
    /// Creates, lists, shows and revokes API tokens (an admin token is needed).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
}

/// Runs a client command. A NOT_FOUND names the namespace that was searched.
pub async fn run(args: &ClientArgs, command: ClientCommand) -> anyhow::Result<()> {
    let result = match command {
        ClientCommand::Publish(cmd) => publish::run(args, cmd).await,
        ClientCommand::Listeners(cmd) => listeners::run(args, cmd).await,
        ClientCommand::Subscribe(cmd) => subscribe::run(args, cmd).await,
        ClientCommand::Events(cmd) => events::run(args, cmd).await,
        ClientCommand::DeadLetters(cmd) => dead_letters::run(args, cmd).await,
        ClientCommand::Health(cmd) => health::run(args, cmd).await,
        ClientCommand::Groups(cmd) => groups::run(args, cmd).await,
        ClientCommand::Namespaces(cmd) => namespaces::run(args, cmd).await,
        // Tokens belong to no namespace.
        ClientCommand::Tokens(cmd) => return tokens::run(args, cmd).await,
    };
    result.map_err(|e| in_namespace(e, &args.namespace))
}

/// A failed command: the status code the server answered (or the one that describes a local
/// failure), its message and the field violations it attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub code: tonic::Code,
    pub message: String,
    /// `(field path, description)`, e.g. `("events[0].source", "must not be empty")`.
    pub field_violations: Vec<(String, String)>,
}

impl CommandError {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field_violations: Vec::new() }
    }

    /// Returns the error as `{"error": {"code", "message", "field_violations"}}`.
    pub fn to_json(&self) -> Value {
        let violations: Vec<Value> =
            self.field_violations.iter().map(|(f, d)| json!({ "field": f, "description": d })).collect();
        json!({ "error": { "code": code_name(self.code), "message": self.message, "field_violations": violations } })
    }
}

impl fmt::Display for CommandError {
    /// One line naming the code, then one line per field violation the message does not
    /// already say (the server usually puts them in the message too).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, code_name(self.code))?;
        let said = self.field_violations.iter().all(|(field, d)| self.message.contains(&format!("{field}: {d}")));
        if !said {
            for (field, description) in &self.field_violations {
                write!(f, "\n  {field}: {description}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {}

/// Turns a client error into a [`CommandError`] when the server answered with a status.
pub fn rpc_error(error: eventbus_client::Error) -> anyhow::Error {
    let Some(status) = error.status() else {
        return anyhow::Error::new(error);
    };
    let field_violations = status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
        .unwrap_or_default();
    CommandError { code: status.code(), message: status.message().to_owned(), field_violations }.into()
}

/// Adds the namespace to a NOT_FOUND that does not name it: `listener x not found in namespace
/// "default"`, so that a forgotten `-n` is not mistaken for a missing object.
fn in_namespace(mut error: anyhow::Error, namespace: &str) -> anyhow::Error {
    if let Some(e) = error.downcast_mut::<CommandError>() {
        let quoted = format!("{namespace:?}");
        if e.code == tonic::Code::NotFound && !e.message.contains(&quoted) {
            e.message.push_str(&format!(" in namespace {quoted}"));
        }
    }
    error
}

/// Returns an error as JSON (see [`CommandError::to_json`]); errors that did not come from the
/// server have code `UNKNOWN`, or the one they were given.
pub fn error_json(error: &anyhow::Error) -> Value {
    match error.downcast_ref::<CommandError>() {
        Some(e) => e.to_json(),
        None => CommandError::new(tonic::Code::Unknown, error_chain(error)).to_json(),
    }
}

/// Returns an error and its causes joined by `: `, each cause said once: a cause whose text
/// the previous one already ends with is left out (engine and driver errors include their
/// source's text, and tonic and hyper wrap errors in errors with the same text).
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Collects up to `limit` items (0: all) of a paged listing, asking `fetch(page_size,
/// page_token)` for one page at a time (it returns the items and the next page token); returns
/// them and whether more follow.
pub async fn collect_pages<T, F, Fut>(limit: u64, mut fetch: F) -> anyhow::Result<(Vec<T>, bool)>
where
    F: FnMut(i32, String) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let left = if limit == 0 { 1000 } else { limit.saturating_sub(items.len() as u64) };
        let (page, next) = fetch(i32::try_from(left.min(1000)).unwrap_or(1000), token).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok((items, false));
        }
        if limit != 0 && items.len() as u64 >= limit {
            return Ok((items, true));
        }
        token = next;
    }
}

/// Returns the error of a local input problem (a flag value, a line of a file), as
/// INVALID_ARGUMENT with one field violation.
pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> anyhow::Error {
    let (field, description) = (field.into(), description.into());
    let message = format!("{field}: {description}");
    CommandError { code: tonic::Code::InvalidArgument, message, field_violations: vec![(field, description)] }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_use_grpc_spelling() {
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
    }

    fn status_error(code: tonic::Code, message: &str, violation: Option<(&str, &str)>) -> anyhow::Error {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let status = match violation {
            Some((field, d)) => {
                tonic::Status::with_error_details(code, message, ErrorDetails::with_bad_request_violation(field, d))
            }
            None => tonic::Status::new(code, message),
        };
        rpc_error(eventbus_client::Error::from(status))
    }

    #[test]
    fn rpc_errors_list_field_violations_once() {
        let cases = [
            (
                "invalid publish",
                ("events[0].source", "must not be empty"),
                "invalid publish (INVALID_ARGUMENT)\n  events[0].source: must not be empty",
            ),
            ("id: must be a UUID", ("id", "must be a UUID"), "id: must be a UUID (INVALID_ARGUMENT)"),
        ];
        for (message, violation, text) in cases {
            let error = status_error(tonic::Code::InvalidArgument, message, Some(violation));
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn errors_as_json() {
        let error = status_error(tonic::Code::InvalidArgument, "bad", Some(("events[2].id", "must not be empty")));
        assert_eq!(
            error_json(&error),
            json!({ "error": { "code": "INVALID_ARGUMENT", "message": "bad",
                "field_violations": [{ "field": "events[2].id", "description": "must not be empty" }] } })
        );
        let local = anyhow::anyhow!("reading x").context("publishing");
        assert_eq!(
            error_json(&local),
            json!({ "error": { "code": "UNKNOWN", "message": "publishing: reading x", "field_violations": [] } })
        );
    }

    #[test]
    fn not_found_names_the_namespace_searched() {
        let cases = [
            ("listener x not found", "default", "listener x not found in namespace \"default\" (NOT_FOUND)"),
            ("group g not found in namespace \"shop\"", "shop", "group g not found in namespace \"shop\" (NOT_FOUND)"),
        ];
        for (message, namespace, text) in cases {
            let error = in_namespace(status_error(tonic::Code::NotFound, message, None), namespace);
            assert_eq!(error.to_string(), text);
        }
        let other = in_namespace(status_error(tonic::Code::InvalidArgument, "bad", None), "default");
        assert_eq!(other.to_string(), "bad (INVALID_ARGUMENT)", "only NOT_FOUND names it");
    }

    #[test]
    fn error_chains_say_each_cause_once() {
        let cases = [
            (
                anyhow::anyhow!("tcp connect error").context("tcp connect error").context("connecting to x"),
                "connecting to x: tcp connect error",
            ),
            (
                anyhow::anyhow!("unable to open")
                    .context("database unavailable: unable to open")
                    .context("opening /x.db"),
                "opening /x.db: database unavailable: unable to open",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error_chain(&error), text);
        }
    }
}
