//! Who may reach the server, and how: TLS on the gRPC listener ([`tls`]), tokens ([`tokens`])
//! checked on every call ([`auth`]) against the role each RPC needs ([`permissions`]), and the
//! start-up rule that keeps an unprotected server on loopback ([`check_exposure`]).
//!
//! Hazard: without TLS and client authentication, anyone who can reach the port can read and
//! change every namespace. The server therefore refuses to listen on a non-loopback address
//! without both, unless the operator says `--insecure`, and then it says so at every start.

use std::net::SocketAddr;

use anyhow::bail;

use crate::config::ServerConfig;

pub mod auth;
pub mod certificates;
pub mod permissions;
pub mod tls;
pub mod tokens;

/// Refuses to serve on `addr` when others can reach it (not a loopback address) and the server
/// lacks TLS or client authentication, unless `config.insecure` is set: then it logs a warning
/// naming what is missing and lets the server start.
///
/// Returns an error naming the flags to set.
pub fn check_exposure(addr: SocketAddr, config: &ServerConfig) -> anyhow::Result<()> {
    check_listener_exposure("--listen", addr, config)
}

/// [`check_exposure`] of the listener that `flag` (`--listen`, `--http-addr`) sets.
pub fn check_listener_exposure(flag: &str, addr: SocketAddr, config: &ServerConfig) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    let missing = missing_protections(config);
    if missing.is_empty() {
        return Ok(());
    }
    let what = missing.iter().map(|(what, _)| *what).collect::<Vec<_>>().join(" and ");
    if config.insecure {
        tracing::warn!(
            addr = %addr,
            missing = %what,
            "serving on a non-loopback address without {what} (--insecure): anyone who can reach it can read and \
             change every namespace"
        );
        return Ok(());
    }
    let flags = missing.iter().map(|(_, flags)| *flags).collect::<Vec<_>>().join(", and ");
    bail!(
        "refusing to serve on {addr} without {what}: set {flags}; or listen on a loopback address ({flag} \
         127.0.0.1:PORT); or pass --insecure to serve unprotected anyway"
    )
}

/// Returns what protects a server that is missing from `config`, each with the flags that add it.
fn missing_protections(config: &ServerConfig) -> Vec<(&'static str, &'static str)> {
    let mut missing = Vec::new();
    if config.tls.is_none() {
        missing.push(("TLS", "--tls-cert and --tls-key"));
    }
    let mutual_tls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    if !mutual_tls && config.admin_token_file.is_none() {
        missing.push(("client authentication", "--admin-token-file (tokens) or --tls-client-ca (mutual TLS)"));
    }
    missing
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use eventbus_engine::store::StoreConfig;

    use super::*;
    use crate::config::TlsFiles;

    fn config(cert: bool, client_ca: bool, insecure: bool) -> ServerConfig {
        config_with_token(cert, client_ca, false, insecure)
    }

    fn config_with_token(cert: bool, client_ca: bool, token: bool, insecure: bool) -> ServerConfig {
        let mut config = ServerConfig::new(StoreConfig::new("sqlite://x.db"));
        config.tls = cert.then(|| {
            let mut files = TlsFiles::new(PathBuf::from("c.pem"), PathBuf::from("k.pem"));
            files.client_ca = client_ca.then(|| PathBuf::from("ca.pem"));
            files
        });
        config.insecure = insecure;
        config.admin_token_file = token.then(|| PathBuf::from("admin-token"));
        config
    }

    #[test]
    fn only_loopback_or_protected_or_insecure_servers_start() {
        let any: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let v6: SocketAddr = "[::]:50051".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let local6: SocketAddr = "[::1]:50051".parse().unwrap();
        let both = "without TLS and client authentication: set --tls-cert and --tls-key, and --admin-token-file \
                    (tokens) or --tls-client-ca (mutual TLS)";
        let cases = [
            (local, config(false, false, false), None),
            (local6, config(false, false, false), None),
            (any, config(false, false, false), Some(both)),
            (v6, config(false, false, false), Some(both)),
            (any, config(true, false, false), Some("without client authentication: set --admin-token-file")),
            (any, config(true, true, false), None),
            (any, config_with_token(true, false, true, false), None),
            (any, config_with_token(false, false, true, false), Some("without TLS: set --tls-cert and --tls-key;")),
            (any, config(false, false, true), None),
        ];
        for (addr, config, refusal) in cases {
            let result = check_exposure(addr, &config);
            match refusal {
                None => assert!(result.is_ok(), "{addr} {config:?}: {result:?}"),
                Some(words) => {
                    let message = result.unwrap_err().to_string();
                    assert!(message.contains(words), "{message}");
                    assert!(message.contains("--insecure"), "{message}");
                }
            }
        }
    }
}
