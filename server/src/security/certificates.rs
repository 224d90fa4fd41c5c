//! Mutual-TLS client certificates that stand for principals: the config file maps a name (the
//! common name of a certificate's subject, or one of its DNS subject alternative names) to
//! grants, as a token would grant them.
//!
//! ```toml
//! [[certificate_principals]]
//! name = "runner-1.shop"                        # CN or DNS SAN of the client certificate
//! grants = ["subscriber:shop", "reader:shop"]   # ROLE:PATTERN, as `eventbus tokens create --grant`
//! ```
//!
//! A call that carries a bearer token is judged by its token; one without is judged by its
//! certificate, and a certificate that no entry names is UNAUTHENTICATED like a missing token.
//! Hazard: the name is trusted because the client CA signed it: give the client CA only to
//! certificates whose names you control.

use serde::{Deserialize, Serialize};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::extensions::GeneralName;

use super::auth::Principal;
use super::permissions::{Grant, Role, valid_pattern};

/// One entry of `[[certificate_principals]]` as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// The common name of the certificate's subject, or one of its DNS subject alternative names.
    pub name: String,
    /// `ROLE:PATTERN`, e.g. `reader:team-a.*`.
    pub grants: Vec<String>,
}

/// A client certificate name and what it grants, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePrincipal {
    pub name: String,
    pub grants: Vec<Grant>,
}

impl CertificateEntry {
    /// Checks the entry: a name, and grants of known roles on valid patterns.
    pub fn check(self) -> anyhow::Result<CertificatePrincipal> {
        anyhow::ensure!(!self.name.is_empty(), "a certificate principal needs a name");
        anyhow::ensure!(!self.grants.is_empty(), "certificate principal {:?} grants nothing", self.name);
        let grants = self.grants.iter().map(|g| grant(g)).collect::<Result<Vec<_>, _>>();
        let grants = grants.map_err(|e| anyhow::anyhow!("certificate principal {:?}: {e}", self.name))?;
        Ok(CertificatePrincipal { name: self.name, grants })
    }
}

/// Parses `ROLE:PATTERN`.
pub fn grant(s: &str) -> Result<Grant, String> {
    let (role, namespaces) = s.split_once(':').ok_or_else(|| format!("{s:?} is not ROLE:PATTERN"))?;
    let role: Role = role.parse()?;
    if !valid_pattern(namespaces) {
        return Err(format!("{namespaces:?} is not a namespace, `prefix.*` or `*`"));
    }
    Ok(Grant { role, namespaces: namespaces.to_owned() })
}

/// Returns the principal the call's client certificate stands for, if the call came with one
/// that an entry names.
pub fn principal(extensions: &http::Extensions, entries: &[CertificatePrincipal]) -> Option<Principal> {
    if entries.is_empty() {
        return None;
    }
    let certs = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?.peer_certs()?;
    let names = names(certs.first()?.as_ref());
    let entry = entries.iter().find(|e| names.contains(&e.name))?;
    Some(Principal { name: format!("certificate {}", entry.name), grants: entry.grants.clone() })
}

/// Returns the common names of a DER certificate's subject and its DNS subject alternative names.
fn names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut names: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_owned)).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_need_known_roles_on_valid_patterns() {
        let entry = |grants: &[&str]| CertificateEntry {
            name: "runner".into(),
            grants: grants.iter().map(|g| (*g).to_owned()).collect(),
        };
        let ok = entry(&["reader:team-a.*", "admin:*"]).check().unwrap();
        assert_eq!(ok.grants[0], Grant { role: Role::Reader, namespaces: "team-a.*".into() });
        let cases = [
            (entry(&[]), "grants nothing"),
            (entry(&["reader"]), "is not ROLE:PATTERN"),
            (entry(&["root:shop"]), "unknown role \"root\""),
            (entry(&["reader:a*"]), "is not a namespace"),
        ];
        for (entry, message) in cases {
            let error = entry.check().unwrap_err().to_string();
            assert!(error.contains(message), "{error}");
        }
    }
}
