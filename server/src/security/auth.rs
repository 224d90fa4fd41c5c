//! Authentication and authorization of every call: [`Auth`], a tower layer over the gRPC router,
//! checks the `authorization: Bearer <token>` metadata against the known tokens and the role the
//! method needs ([`permissions`]) before any handler runs.
//!
//! - Health and reflection are open; every other call needs a token.
//! - A missing, malformed, unknown, expired or revoked token is UNAUTHENTICATED; a valid token
//!   used outside its grants is PERMISSION_DENIED, whether or not what was asked for exists; a
//!   method missing from the permission table is PERMISSION_DENIED for everyone. A token that
//!   cannot be checked because the database cannot be reached is UNAVAILABLE.
//! - A call without a token may stand on its mutual-TLS client certificate, when the config
//!   file maps the certificate's name to grants ([`super::certificates`]).
//! - For a namespaced method the layer reads the namespace from the request message itself
//!   (field 1) and hands the handler the same bytes, unless the caller's grants cover every
//!   namespace for that role. A stream of requests (PublishStream) is not read here: the layer
//!   lets through a caller with the role on some namespace, and the handler checks each message
//!   ([`Principal::may_send`]) and reports its refusals with [`refused_message`].
//! - Every refusal is logged once, with the principal, namespace, method and reason (never the
//!   secret), and counted in `eventbus_auth_failures_total{reason}`. The handler finds the
//!   caller's [`Principal`] in the request extensions.
//!
//! Which tokens exist, and what each grants, is [`Tokens`]' business: the bootstrap admin token
//! of `--admin-token-file`, then the tokens of the database (TokenService), cached.
//!
//! Hazard: a namespaced request is buffered whole before its handler runs (within the maximum
//! message size), which only a caller with a valid token can make the server do.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use eventbus_engine::Error;
use http_body_util::{BodyExt, Full, Limited};
use tonic::Status;
use tonic::body::Body;

use super::permissions::{self, Grant, Requirement, Role};
pub use super::tokens::Tokens;
use crate::metrics::Metrics;
use crate::status::ApiError;

/// Who made a call: a token's name and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Returns whether the grants allow a call of the gRPC method `method` on `namespace`
    /// (none for a method missing from the permission table).
    pub fn may(&self, method: &str, namespace: &str) -> bool {
        permissions::requirement(method).is_some_and(|r| self.grants.iter().any(|g| g.allows(r, namespace)))
    }

    /// Returns whether the grants allow `role` on `namespace` (for a check inside a handler,
    /// where one RPC needs more in one of its modes).
    pub fn may_as(&self, role: Role, namespace: &str) -> bool {
        self.grants.iter().any(|g| g.allows(Requirement::Namespace(role), namespace))
    }

    /// Returns whether the grants allow one message of the streaming method `method` on
    /// `namespace`: the role of the method's `EachMessage` line in the permission table (no
    /// message of another method).
    pub fn may_send(&self, method: &str, namespace: &str) -> bool {
        match permissions::requirement(method) {
            Some(Requirement::EachMessage(role)) => self.may_as(role, namespace),
            _ => false,
        }
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
    Expired,
    Revoked,
    Denied,
    /// The token could not be checked: the database cannot be reached.
    Unavailable,
    /// A namespaced request whose message could not be read.
    Unreadable,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::Denied => "denied",
            Refusal::Unavailable => "unavailable",
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
            Refusal::Expired => ApiError::Unauthenticated("the token has expired"),
            Refusal::Revoked => ApiError::Unauthenticated("the token has been revoked"),
            Refusal::Denied => ApiError::PermissionDenied("the token does not allow this call"),
            Refusal::Unavailable => {
                ApiError::Engine(Error::Unavailable("the database cannot be reached to check the token".into()))
            }
            Refusal::Unreadable => ApiError::Malformed,
        }
    }
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
    /// The tokens this layer checks calls against.
    pub fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    pub fn new(tokens: Arc<Tokens>, metrics: Arc<Metrics>, max_message_bytes: usize) -> Self {
        Self { tokens, metrics, max_body_bytes: max_message_bytes.saturating_add(5) }
    }

    /// Returns the request, with the caller's [`Principal`] in its extensions, if the caller may
    /// make it; else the status to answer.
    async fn check(&self, mut req: http::Request<Body>) -> Result<http::Request<Body>, Status> {
        let method = req.uri().path().to_owned();
        let requirement = permissions::requirement(&method);
        // A call without a token may stand on its client certificate.
        let principal = match self.tokens.authenticate(req.headers()).await {
            Err(Refusal::Missing) => self.tokens.certificate(req.extensions()).ok_or(Refusal::Missing),
            checked => checked,
        };
        let principal = principal.map_err(|r| self.refuse(r, "", &method, ""))?;
        let mut namespace = String::new();
        if let Some(Requirement::Namespace(role)) = requirement
            && !principal.everywhere(role)
        {
            (req, namespace) =
                self.with_namespace(req).await.map_err(|r| self.refuse(r, &principal.name, &method, ""))?;
        }
        if !principal.may(&method, &namespace) {
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

    /// Checks a request that reached the server another way than a gRPC call (the HTTP
    /// ingress) but does what the gRPC method `method` does, on `namespace`: the same tokens,
    /// grants, log line and metric as the call. Returns the caller, or the error to answer.
    pub async fn authorize(
        &self,
        headers: &http::HeaderMap,
        method: &str,
        namespace: &str,
    ) -> Result<Principal, ApiError> {
        let principal = self.tokens.authenticate(headers).await.map_err(|r| self.refused(r, "", method, namespace))?;
        if !principal.may(method, namespace) {
            return Err(self.refused(Refusal::Denied, &principal.name, method, namespace));
        }
        Ok(principal)
    }

    fn refuse(&self, refusal: Refusal, principal: &str, method: &str, namespace: &str) -> Status {
        Status::from(self.refused(refusal, principal, method, namespace))
    }

    /// Logs and counts a refusal; returns the error to answer.
    fn refused(&self, refusal: Refusal, principal: &str, method: &str, namespace: &str) -> ApiError {
        log_refusal(&self.metrics, refusal, principal, method, namespace);
        refusal.error()
    }
}

/// Logs a refusal once and counts it in `eventbus_auth_failures_total{reason}`.
fn log_refusal(metrics: &Metrics, refusal: Refusal, principal: &str, method: &str, namespace: &str) {
    tracing::info!(principal, namespace, method, reason = refusal.reason(), "call refused");
    metrics.auth_refused(refusal.reason());
}

/// Logs and counts the refusal of one message of a stream by its handler, as the layer does for
/// a call (`eventbus_auth_failures_total{reason="denied"}`); returns the error to answer it with.
pub fn refused_message(metrics: &Metrics, principal: &str, method: &str, namespace: &str) -> ApiError {
    log_refusal(metrics, Refusal::Denied, principal, method, namespace);
    ApiError::PermissionDenied("the token does not allow publishing to this message's namespace")
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
