//! Authentication and authorization of every call: [`Auth`], a tower layer over the gRPC router,
//! checks the `authorization: Bearer <token>` metadata against the known tokens and the role the
//! method needs ([`permissions`]) before any handler runs.
//!
//! - Health and reflection are open; every other call needs a token.
//! - A missing, malformed or unknown token is UNAUTHENTICATED; a valid token used outside its
//!   grants is PERMISSION_DENIED, whether or not what was asked for exists; a method missing
//!   from the permission table is PERMISSION_DENIED for everyone.
//! - For a namespaced method the layer reads the namespace from the request message itself
//!   (field 1) and hands the handler the same bytes, unless the caller's grants cover every
//!   namespace for that role.
//! - Every refusal is logged once, with the principal, namespace, method and reason (never the
//!   secret), and counted in `eventbus_auth_failures_total{reason}`. The handler finds the
//!   caller's [`Principal`] in the request extensions.
//!
//! Tokens are `ebt_` and at least 32 characters of letters, digits, `-` and `_`; only their
//! SHA-256 is kept, and it is compared in constant time. For now the only token is the
//! bootstrap admin token of `--admin-token-file`; tokens stored in the database (issue 15's
//! TokenService) are to be verified here too.
//!
//! Hazard: a namespaced request is buffered whole before its handler runs (within the maximum
//! message size), which only a caller with a valid token can make the server do.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full, Limited};
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::body::Body;

use super::permissions::{self, Grant, Requirement, Role};
use crate::metrics::Metrics;
use crate::status::ApiError;

/// The prefix of every eventbus token.
pub const TOKEN_PREFIX: &str = "ebt_";

/// Who made a call: a token's name and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Returns whether the grants allow `role` on `namespace` (for a check inside a handler,
    /// where one RPC needs more in one of its modes).
    pub fn may(&self, role: Role, namespace: &str) -> bool {
        self.grants.iter().any(|g| g.allows(Requirement::Namespace(role), namespace))
    }

    /// Returns whether the grants allow `role` on every namespace.
    fn everywhere(&self, role: Role) -> bool {
        self.grants.iter().any(|g| g.role.includes(role) && g.namespaces == "*")
    }
}

/// Why a call was refused; [`Refusal::reason`] is the `reason` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Unknown,
    Denied,
    /// A namespaced request whose message could not be read.
    Unreadable,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Denied => "denied",
            Refusal::Unreadable => "unreadable",
        }
    }

    fn error(self) -> ApiError {
        match self {
            Refusal::Missing => ApiError::Unauthenticated("missing token: send `authorization: Bearer <token>`"),
            Refusal::Malformed => {
                ApiError::Unauthenticated("malformed token: expected `authorization: Bearer ebt_...`")
            }
            Refusal::Unknown => ApiError::Unauthenticated("invalid token"),
            Refusal::Denied => ApiError::PermissionDenied("the token does not allow this call"),
            Refusal::Unreadable => ApiError::Malformed,
        }
    }
}

/// The tokens the server accepts.
#[derive(Debug)]
pub struct Tokens {
    admin_sha256: [u8; 32],
}

impl Tokens {
    /// Reads the bootstrap admin token from `path` (surrounding whitespace ignored).
    ///
    /// Returns an error when the file cannot be read or does not hold a well-formed token.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let secret = text.trim();
        anyhow::ensure!(
            well_formed(secret),
            "{} does not hold a token: `{TOKEN_PREFIX}` and at least 32 more letters, digits, '-' or '_'",
            path.display()
        );
        Ok(Self { admin_sha256: sha256(secret) })
    }

    /// Returns the principal of the call's bearer token.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, Refusal> {
        let value = headers.get(http::header::AUTHORIZATION).ok_or(Refusal::Missing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| well_formed(t))
            .ok_or(Refusal::Malformed)?;
        if constant_time_eq(&sha256(token), &self.admin_sha256) {
            Ok(Principal { name: "admin".into(), grants: vec![Grant { role: Role::Admin, namespaces: "*".into() }] })
        } else {
            Err(Refusal::Unknown)
        }
    }
}

fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() >= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares without returning early, so the time taken says nothing of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The layer that checks every call; see the module docs.
#[derive(Debug, Clone)]
pub struct Auth {
    tokens: Arc<Tokens>,
    metrics: Arc<Metrics>,
    /// The most bytes of a request body read to find its namespace.
    max_body_bytes: usize,
}

impl Auth {
    pub fn new(tokens: Arc<Tokens>, metrics: Arc<Metrics>, max_message_bytes: usize) -> Self {
        Self { tokens, metrics, max_body_bytes: max_message_bytes.saturating_add(5) }
    }

    /// Returns the request, with the caller's [`Principal`] in its extensions, if the caller may
    /// make it; else the status to answer.
    async fn check(&self, mut req: http::Request<Body>) -> Result<http::Request<Body>, Status> {
        let method = req.uri().path().to_owned();
        let requirement = permissions::requirement(&method);
        let principal = self.tokens.authenticate(req.headers()).map_err(|r| self.refuse(r, "", &method, ""))?;
        let mut namespace = String::new();
        if let Some(Requirement::Namespace(role)) = requirement
            && !principal.everywhere(role)
        {
            (req, namespace) =
                self.with_namespace(req).await.map_err(|r| self.refuse(r, &principal.name, &method, ""))?;
        }
        let allowed = requirement.is_some_and(|r| principal.grants.iter().any(|g| g.allows(r, &namespace)));
        if !allowed {
            return Err(self.refuse(Refusal::Denied, &principal.name, &method, &namespace));
        }
        req.extensions_mut().insert(principal);
        Ok(req)
    }

    /// Reads the request message and returns the request, with the same bytes, and its
    /// namespace.
    async fn with_namespace(&self, req: http::Request<Body>) -> Result<(http::Request<Body>, String), Refusal> {
        let (parts, body) = req.into_parts();
        let collected = Limited::new(body, self.max_body_bytes).collect().await.map_err(|_| Refusal::Unreadable)?;
        let bytes = collected.to_bytes();
        let namespace = grpc_message(&bytes).and_then(|m| permissions::namespace_of(m).ok());
        let namespace = namespace.ok_or(Refusal::Unreadable)?;
        Ok((http::Request::from_parts(parts, Body::new(Full::new(bytes))), namespace))
    }

    fn refuse(&self, refusal: Refusal, principal: &str, method: &str, namespace: &str) -> Status {
        tracing::info!(principal, namespace, method, reason = refusal.reason(), "call refused");
        self.metrics.auth_refused(refusal.reason());
        Status::from(refusal.error())
    }
}

/// Returns the message of a gRPC request body: one uncompressed length-prefixed message.
fn grpc_message(body: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    (compressed == 0).then(|| rest.get(4..4 + len)).flatten()
}

impl<S> tower::Layer<S> for Auth {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorized { inner, auth: self.clone() }
    }
}

/// The service [`Auth`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    inner: S,
    auth: Auth,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Authorized<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if permissions::requirement(req.uri().path()) == Some(Requirement::Open) {
            return Box::pin(self.inner.call(req));
        }
        // The clone that was made ready is the one called, after the check.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.check(req).await {
                Ok(req) => inner.call(req).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
#[path = "auth/tests.rs"]
mod tests;
