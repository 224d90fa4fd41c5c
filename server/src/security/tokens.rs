//! The tokens a server accepts, and who each one stands for: the bootstrap admin token of
//! `--admin-token-file`, then the tokens of the database (TokenService), looked up by the
//! SHA-256 of the secret through a short-lived cache.
//!
//! - A token is `ebt_` and at least 32 characters of letters, digits, `-` and `_`; new ones are
//!   `ebt_` and 32 random bytes in URL-safe base64 ([`new_secret`]). Only the SHA-256 of a
//!   secret is kept; the bootstrap token's is compared in constant time, database tokens are
//!   found by theirs (an index lookup on the hash reveals nothing about the secret).
//! - What the database said about a token (its grants, expiry and revocation, or that it is
//!   unknown) is cached for the token cache time (`--token-cache-seconds`), unknown tokens for at
//!   most [`MAX_UNKNOWN_TOKEN_CACHE`]. Expiry is checked at every call; a revocation made on any
//!   server is seen here once the cached entry ends.
//! - A use is recorded in the database at most once per [`TOKEN_USE_INTERVAL`] per token, in a
//!   task of its own: a call never waits for it, and never fails because it failed.
//!
//! Hazard: a database that cannot be reached makes every uncached token check UNAVAILABLE (the
//! call may be retried), never UNAUTHENTICATED, which would tell a client its token is bad.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use chrono::Utc;
use eventbus_engine::store::{Store, Token};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use uuid::Uuid;

use super::auth::{Principal, Refusal};
use super::certificates::CertificatePrincipal;
use super::permissions::{Grant, Role};
use crate::limits::{MAX_CACHED_TOKENS, MAX_UNKNOWN_TOKEN_CACHE, TOKEN_USE_INTERVAL};

/// The prefix of every eventbus token.
pub const TOKEN_PREFIX: &str = "ebt_";

/// Returns a new token secret (`ebt_` and 32 bytes from the operating system's CSPRNG, URL-safe
/// base64 without padding: 47 characters) and its SHA-256.
pub fn new_secret() -> anyhow::Result<(String, [u8; 32])> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
    let secret = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = sha256(&secret);
    Ok((secret, hash))
}

/// The tokens the server accepts; see the module docs.
#[derive(Debug)]
pub struct Tokens {
    /// The bootstrap admin token's hash, if there is one.
    admin_sha256: Option<[u8; 32]>,
    /// Client certificates that stand for principals.
    certificates: Vec<CertificatePrincipal>,
    /// The database tokens, once the store is open.
    stored: Option<Stored>,
}

/// The database's tokens, behind the cache.
#[derive(Debug)]
struct Stored {
    store: Store,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    /// When this server last recorded each token's use.
    recorded: Mutex<HashMap<Uuid, Instant>>,
}

/// What the database said about a secret, until when it is trusted.
#[derive(Debug, Clone)]
struct Cached {
    token: Option<Arc<Known>>,
    until: Instant,
}

/// A database token as the checks need it.
#[derive(Debug)]
struct Known {
    id: Uuid,
    principal: Principal,
    expires_at: Option<chrono::DateTime<Utc>>,
    revoked: bool,
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
        Ok(Self { admin_sha256: Some(sha256(secret)), certificates: Vec::new(), stored: None })
    }

    /// Returns the tokens a server with these settings accepts: the bootstrap admin token of
    /// `admin_token_file`, if any, and the principals of client certificates; `None` when there
    /// is neither, and no call is checked.
    pub fn configured(
        admin_token_file: Option<&Path>,
        certificates: &[CertificatePrincipal],
    ) -> anyhow::Result<Option<Self>> {
        let mut tokens = match admin_token_file {
            Some(path) => Self::load(path)?,
            None if certificates.is_empty() => return Ok(None),
            None => Self { admin_sha256: None, certificates: Vec::new(), stored: None },
        };
        tokens.certificates = certificates.to_vec();
        Ok(Some(tokens))
    }

    /// Returns the principal of the call's client certificate, when an entry names it.
    pub fn certificate(&self, extensions: &http::Extensions) -> Option<Principal> {
        super::certificates::principal(extensions, &self.certificates)
    }

    /// Returns these tokens and those of `store`, what it says about each trusted for `ttl`.
    pub fn with_store(self, store: Store, ttl: Duration) -> Self {
        let stored = Stored { store, ttl, cache: Mutex::new(HashMap::new()), recorded: Mutex::new(HashMap::new()) };
        Self { stored: Some(stored), ..self }
    }

    /// Returns the principal of the call's bearer token.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, Refusal> {
        let value = headers.get(http::header::AUTHORIZATION).ok_or(Refusal::Missing)?;
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or(Refusal::Malformed)?;
        self.verify(token).await
    }

    /// Returns the principal of `token` (a bearer token without its header, as the console's
    /// cookie holds it).
    pub async fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        if !well_formed(token) {
            return Err(Refusal::Malformed);
        }
        let hash = sha256(token);
        if self.admin_sha256.is_some_and(|admin| constant_time_eq(&hash, &admin)) {
            return Ok(Principal {
                name: "admin".into(),
                grants: vec![Grant { role: Role::Admin, namespaces: "*".into() }],
            });
        }
        let stored = self.stored.as_ref().ok_or(Refusal::Unknown)?;
        let known = stored.lookup(&hash).await?.ok_or(Refusal::Unknown)?;
        if known.revoked {
            return Err(Refusal::Revoked);
        }
        if known.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(Refusal::Expired);
        }
        stored.record_use(known.id);
        Ok(known.principal.clone())
    }
}

impl Stored {
    /// Returns what the cache or else the database knows of the secret with this hash.
    async fn lookup(&self, hash: &[u8; 32]) -> Result<Option<Arc<Known>>, Refusal> {
        let now = Instant::now();
        if let Some(cached) = lock(&self.cache).get(hash).filter(|c| c.until > now) {
            return Ok(cached.token.clone());
        }
        let token = self.store.token_by_secret(hash).await.map_err(|e| {
            tracing::warn!(error = %e, "looking up a token");
            Refusal::Unavailable
        })?;
        let token = token.map(|t| Arc::new(known(t)));
        let ttl = if token.is_some() { self.ttl } else { self.ttl.min(MAX_UNKNOWN_TOKEN_CACHE) };
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, c| c.until > now);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(*hash, Cached { token: token.clone(), until: now + ttl });
        Ok(token)
    }

    /// Records a use of the token in the database, in a task of its own, unless this server
    /// did within [`TOKEN_USE_INTERVAL`].
    fn record_use(&self, id: Uuid) {
        let now = Instant::now();
        {
            let mut recorded = lock(&self.recorded);
            if recorded.get(&id).is_some_and(|at| now.duration_since(*at) < TOKEN_USE_INTERVAL) {
                return;
            }
            recorded.insert(id, now);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(id, Utc::now()).await {
                tracing::warn!(token = %id, error = %e, "recording a token's use failed");
            }
        });
    }
}

/// Returns the principal of a database token: named by its name, or its id when it has none.
/// A grant of a role this server does not know grants nothing.
fn known(token: Token) -> Known {
    let name = if token.name.is_empty() { token.id.to_string() } else { token.name };
    let grants = token
        .grants
        .into_iter()
        .filter_map(|g| match g.role.parse::<Role>() {
            Ok(role) => Some(Grant { role, namespaces: g.namespaces }),
            Err(e) => {
                tracing::warn!(token = %token.id, error = %e, "ignoring a stored grant");
                None
            }
        })
        .collect();
    Known {
        id: token.id,
        principal: Principal { name, grants },
        expires_at: token.expires_at,
        revoked: token.revoked_at.is_some(),
    }
}

/// Locks a mutex, whether or not a panic poisoned it (its maps stay consistent either way).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Returns whether `token` has the form of an eventbus token.
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() >= 32 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Returns the SHA-256 of a secret.
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares without returning early, so the time taken says nothing of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "tokens/tests.rs"]
mod tests;
