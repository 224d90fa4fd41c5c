use std::path::Path;
use std::time::Duration;

use super::*;

/// A self-signed certificate for localhost and its key, in PEM.
fn pair() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

fn load_config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    Pem::read(files)?.server_config(GRPC)
}

fn write(dir: &Path, cert: &str, key: &str) -> TlsFiles {
    let files = TlsFiles::new(dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

#[test]
fn files_that_do_not_load_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let (_, other_key) = pair();
    let cases = [
        (cert.as_str(), other_key.as_str(), "the TLS key does not fit the certificate"),
        ("", key.as_str(), "the TLS certificate file: no PEM certificate in it"),
        (cert.as_str(), "", "the TLS key file has no PEM private key"),
    ];
    for (cert, key, error) in cases {
        let files = write(dir.path(), cert, key);
        let message = format!("{:#}", load_config(&files).unwrap_err());
        assert!(message.starts_with(error), "{message}");
    }
    let mut files = write(dir.path(), &cert, &key);
    files.client_ca = Some(dir.path().join("missing.pem"));
    let message = format!("{:#}", load_config(&files).unwrap_err());
    assert!(message.starts_with("reading ") && message.contains("missing.pem"), "{message}");
}

/// Runs a handshake in memory against `config` with a client that trusts `cert` and speaks only
/// `version`; returns the negotiated version and ALPN protocol.
async fn handshake(
    config: ServerConfig,
    cert: &str,
    version: &'static tokio_rustls::rustls::SupportedProtocolVersion,
) -> (Option<tokio_rustls::rustls::ProtocolVersion>, Option<Vec<u8>>) {
    use tokio_rustls::rustls::ClientConfig;
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(TlsAcceptor::from(Arc::new(config)).accept(server_io));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, client_io).await.unwrap();
    server.await.unwrap().unwrap();
    let (_, session) = stream.get_ref();
    (session.protocol_version(), session.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test]
async fn the_listener_speaks_h2_over_tls_1_2_and_1_3() {
    use tokio_rustls::rustls::ProtocolVersion;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let files = write(dir.path(), &cert, &key);
    for (version, expected) in
        [(&version::TLS12, ProtocolVersion::TLSv1_2), (&version::TLS13, ProtocolVersion::TLSv1_3)]
    {
        let negotiated = handshake(load_config(&files).unwrap(), &cert, version).await;
        assert_eq!(negotiated, (Some(expected), Some(b"h2".to_vec())));
    }
}

#[tokio::test]
async fn changed_files_replace_the_configuration_and_broken_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair();
    let mut files = write(dir.path(), &cert, &key);
    files.reload_interval = Duration::from_millis(20);
    let acceptor = Acceptor::load(&files).unwrap();
    let first = acceptor.config();
    // A certificate without its key: the previous configuration stays.
    let (new_cert, new_key) = pair();
    std::fs::write(&files.cert, &new_cert).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while acceptor.rejected_reloads() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the changed files are read within 5s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Arc::ptr_eq(&first, &acceptor.config()), "a pair that does not fit is not loaded");
    std::fs::write(&files.key, &new_key).unwrap();
    while Arc::ptr_eq(&first, &acceptor.config()) {
        assert!(tokio::time::Instant::now() < deadline, "the new pair is loaded within 5s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
