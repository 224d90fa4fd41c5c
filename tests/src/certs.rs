//! Certificates made inside the tests (rcgen): a CA, and server and client certificates it
//! signs, all in PEM.

use std::path::Path;

use eventbus_client::{Certificate, ClientTlsConfig, Identity};
use eventbus_server::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// A certificate authority of the tests.
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own certificate, in PEM.
    pub cert: String,
}

impl Ca {
    /// Returns a new CA whose subject's common name is `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap().pem();
        Self { issuer: Issuer::new(params, key), cert }
    }

    /// Returns a server certificate for `127.0.0.1` and `localhost`.
    pub fn server(&self) -> Pair {
        self.leaf("eventbus", vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Returns a client certificate whose subject's common name is `name`.
    pub fn client(&self, name: &str) -> Pair {
        self.leaf(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Pair {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap().pem();
        Pair { cert, key: key.serialize_pem() }
    }

    /// Returns client TLS settings that trust this CA only.
    pub fn trusted_by_client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.cert))
    }
}

impl Pair {
    /// Returns the client identity of this pair (mutual TLS).
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }
}

/// Writes a server's TLS files into `dir` (`cert.pem`, `key.pem`, and with `client_ca`,
/// `client-ca.pem`; written over on later calls) and returns them, read again every 50 ms.
pub fn write_server_files(dir: &Path, server: &Pair, client_ca: Option<&Ca>) -> TlsFiles {
    let mut files = TlsFiles::new(dir.join("cert.pem"), dir.join("key.pem"));
    files.reload_interval = std::time::Duration::from_millis(50);
    std::fs::write(&files.cert, &server.cert).unwrap();
    std::fs::write(&files.key, &server.key).unwrap();
    if let Some(ca) = client_ca {
        let path = dir.join("client-ca.pem");
        std::fs::write(&path, &ca.cert).unwrap();
        files.client_ca = Some(path);
    }
    files
}
