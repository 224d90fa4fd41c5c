//! The client commands of the `eventbus` binary: `publish`, `listeners`, `subscribe`, `events`
//! and `health`. Each connects to the server named by `--addr`, works in the namespace named by
//! `--namespace`, prints text for people by default and JSON with `--json` (one object per
//! result, one per line for streams), and maps RPC failures to one-line errors that list the
//! server's field violations.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use eventbus_client::{Certificate, Client, ClientTlsConfig, Identity};
use tonic::transport::Endpoint;
use tonic_types::StatusExt;

pub mod events;
pub mod health;
pub mod listeners;
pub mod parse;
pub mod publish;
pub mod render;
pub mod subscribe;

/// Where client commands connect when neither `--addr` nor `EVENTBUS_ADDR` is given (over TLS
/// when a TLS flag is set).
pub const DEFAULT_ADDR: &str = "127.0.0.1:50051";

/// Options every client command shares.
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
    /// Prints JSON for machines instead of text (one object per line for streams).
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// Connects to `--addr`, with the TLS flags and the token.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let channel = self.endpoint()?.connect().await.with_context(|| format!("connecting to {}", self.addr))?;
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
    /// Publishes one event and prints its sequence and whether it was a duplicate.
    Publish(publish::PublishArgs),
    /// Registers, lists, shows and deletes listeners.
    #[command(subcommand)]
    Listeners(listeners::ListenersCommand),
    /// Joins a consumer group and prints (and acks) each notification it receives.
    Subscribe(subscribe::SubscribeArgs),
    /// Lists and shows stored events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Asks the server's grpc.health.v1 service; exits 0 only when it is SERVING.
    Health(health::HealthArgs),
}

/// Runs a client command.
pub async fn run(args: &ClientArgs, command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Publish(cmd) => publish::run(args, cmd).await,
        ClientCommand::Listeners(cmd) => listeners::run(args, cmd).await,
        ClientCommand::Subscribe(cmd) => subscribe::run(args, cmd).await,
        ClientCommand::Events(cmd) => events::run(args, cmd).await,
        ClientCommand::Health(cmd) => health::run(args, cmd).await,
    }
}

/// Turns a client error into a one-line error naming the status code, followed by one line per
/// field violation the server attached (`events[0].source: must not be empty`).
pub fn rpc_error(error: eventbus_client::Error) -> anyhow::Error {
    let Some(status) = error.status() else {
        return anyhow::Error::new(error);
    };
    let mut message = format!("{} ({})", status.message(), code_name(status.code()));
    // The server usually puts the violations in the message too; list them only when it did not.
    let violations: Vec<String> = status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| format!("{}: {}", v.field, v.description)).collect())
        .unwrap_or_default();
    if !violations.iter().all(|v| status.message().contains(v.as_str())) {
        for v in violations {
            message.push_str(&format!("\n  {v}"));
        }
    }
    anyhow!(message)
}

/// Returns a status code in the gRPC spelling: `NOT_FOUND`.
fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Prints a JSON value on one line.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
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

    #[test]
    fn rpc_errors_list_field_violations() {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let details = ErrorDetails::with_bad_request_violation("events[0].source", "must not be empty");
        let status = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "invalid publish", details);
        let error = rpc_error(eventbus_client::Error::from(status));
        assert_eq!(error.to_string(), "invalid publish (INVALID_ARGUMENT)\n  events[0].source: must not be empty");
        let details = ErrorDetails::with_bad_request_violation("id", "must be a UUID");
        let status = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "id: must be a UUID", details);
        let error = rpc_error(eventbus_client::Error::from(status));
        assert_eq!(error.to_string(), "id: must be a UUID (INVALID_ARGUMENT)");
    }
}
