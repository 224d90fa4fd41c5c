//! TLS on the gRPC and HTTP listeners, terminated here with rustls (ring) over the TCP listener and handed
//! to tonic as finished TLS streams, rather than by tonic's `ServerTlsConfig`, which cannot
//! change its certificates while it serves.
//!
//! [`Acceptor::load`] reads the PEM files and starts a task that reads them again every
//! [`TlsFiles::reload_interval`]; when their contents change and still load, the new
//! configuration serves every handshake from then on. Open connections keep the session they
//! negotiated, so streams are not dropped by a rotation.
//!
//! Hazards: files that do not load (a key that does not match its certificate, a half-written
//! file) keep the previous certificates and are logged once until they change again. The
//! handshake runs in a task of its own, so a client that stalls it holds only its own
//! connection, and only for [`TLS_HANDSHAKE_TIMEOUT`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, version};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::TlsFiles;
use crate::limits::TLS_HANDSHAKE_TIMEOUT;

/// Application protocols offered in the handshake (ALPN), most preferred first.
pub type Alpn = &'static [&'static [u8]];

/// gRPC: HTTP/2 only.
pub const GRPC: Alpn = &[b"h2"];

/// The HTTP listener: HTTP/1.1 (the ingress and the console).
pub const HTTP: Alpn = &[b"http/1.1"];

/// The TLS configuration of the listener, replaced when its files change; cheap to clone.
#[derive(Debug, Clone)]
pub struct Acceptor {
    current: Arc<Current>,
}

/// What the acceptor and its watch share.
#[derive(Debug)]
struct Current {
    config: RwLock<Arc<ServerConfig>>,
    /// How many times changed files did not load (and were kept out).
    rejected: AtomicU64,
}

impl Acceptor {
    /// Loads the files for gRPC (ALPN h2) and starts watching them; the watch ends when the
    /// last clone of the acceptor is dropped.
    ///
    /// Returns an error naming the file that does not load.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        Self::load_for(files, GRPC)
    }

    /// Like [`Self::load`], offering the application protocols `alpn` (most preferred first):
    /// [`GRPC`] or [`HTTP`].
    pub fn load_for(files: &TlsFiles, alpn: Alpn) -> anyhow::Result<Self> {
        let pem = Pem::read(files)?;
        let current =
            Arc::new(Current { config: RwLock::new(Arc::new(pem.server_config(alpn)?)), rejected: AtomicU64::new(0) });
        tokio::spawn(watch(Arc::downgrade(&current), files.clone(), pem, alpn));
        Ok(Self { current })
    }

    /// Returns the configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many times the files changed to contents that did not load.
    pub fn rejected_reloads(&self) -> u64 {
        self.current.rejected.load(Ordering::Relaxed)
    }
}

/// Accepts TCP connections on `listener` and yields those whose TLS handshake succeeds, each
/// handshake in a task of its own; a failed one is logged and its connection dropped. Accepting
/// stops when the returned stream is dropped.
pub fn incoming(listener: TcpListener, acceptor: Acceptor) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: let some connections close first.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let handshake = TlsAcceptor::from(acceptor.config()).accept(tcp);
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(peer = %peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Reads the files every `reload_interval` and swaps in a configuration of changed files that
/// load, until the acceptor is gone.
async fn watch(current: Weak<Current>, files: TlsFiles, mut loaded: Pem, alpn: Alpn) {
    let mut tick = tokio::time::interval(files.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // Files that changed but did not load, so that they are reported once.
    let mut rejected: Option<Pem> = None;
    loop {
        tick.tick().await;
        let Some(current) = current.upgrade() else { return };
        let pem = match Pem::read(&files) {
            Ok(pem) if pem == loaded || Some(&pem) == rejected.as_ref() => continue,
            Ok(pem) => pem,
            Err(e) => {
                tracing::debug!(error = format!("{e:#}"), "reading the TLS files again failed");
                continue;
            }
        };
        match pem.server_config(alpn) {
            Ok(config) => {
                *current.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                tracing::info!(cert = %files.cert.display(), "TLS certificates reloaded");
                loaded = pem;
                rejected = None;
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the TLS files changed but do not load: keeping the previous ones"
                );
                rejected = Some(pem);
                current.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The contents of the TLS files.
#[derive(Debug, PartialEq, Eq)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Pem {
    fn read(files: &TlsFiles) -> anyhow::Result<Self> {
        let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        Ok(Self {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            client_ca: files.client_ca.as_deref().map(read).transpose()?,
        })
    }

    /// Returns the rustls configuration of these files: TLS 1.2 and 1.3, the protocols `alpn`,
    /// and with a client CA, a verifier that requires a client certificate it signed.
    fn server_config(&self, alpn: Alpn) -> anyhow::Result<ServerConfig> {
        let provider = provider();
        let chain = certificates(&self.cert).context("the TLS certificate file")?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).context("the TLS key file has no PEM private key")?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .context("choosing the TLS versions")?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => builder.with_client_cert_verifier(client_verifier(pem, provider)?),
        };
        let mut config = builder.with_single_cert(chain, key).context("the TLS key does not fit the certificate")?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Returns the crypto provider: ring, the one of the client too (tonic's `tls-ring`). rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange, which needs aws-lc-rs, a C and
/// cmake build this workspace does without.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Returns the certificates of a PEM file; an error if it has none.
fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().context("invalid PEM")?;
    anyhow::ensure!(!certs.is_empty(), "no PEM certificate in it");
    Ok(certs)
}

fn client_verifier(
    pem: &[u8],
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn tokio_rustls::rustls::server::danger::ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem).context("the TLS client CA file")? {
        roots.add(cert).context("the TLS client CA file has a certificate that is not a CA")?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .context("building the client certificate verifier")
}

#[cfg(test)]
#[path = "tls/tests.rs"]
mod tests;
