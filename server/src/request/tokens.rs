//! Requests of TokenService: CreateToken, GetToken, ListTokens, RevokeToken.

use chrono::{DateTime, Utc};
use eventbus_client::pb;
use uuid::Uuid;

use super::{Combine, FromProto, Violations, all, ensure, opt, page_size, timestamp, uuid};
use crate::config::Limits;
use crate::limits::{MAX_GRANTS, MAX_NAME_BYTES};
use crate::security::permissions::{Grant, Role, valid_pattern};

/// A checked CreateToken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateToken {
    pub name: String,
    pub grants: Vec<Grant>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl FromProto<pb::CreateTokenRequest> for CreateToken {
    fn from_proto(req: pb::CreateTokenRequest, _: &Limits) -> Result<Self, Violations> {
        let expires_at = req.expire_time.as_ref().map(|t| expire_time(t, Utc::now())).transpose();
        let (name, grants, expires_at) = (token_name(req.name), grants(req.grants), expires_at).combine()?;
        Ok(Self { name, grants, expires_at })
    }
}

/// Checks a token's name: at most 128 bytes, no control characters (it goes into logs).
fn token_name(name: String) -> Result<String, Violations> {
    ensure(name.len() <= MAX_NAME_BYTES, "name", || format!("must be at most {MAX_NAME_BYTES} bytes"))?;
    ensure(!name.chars().any(char::is_control), "name", || "must not hold control characters".into())?;
    Ok(name)
}

fn grants(grants: Vec<pb::Grant>) -> Result<Vec<Grant>, Violations> {
    ensure(!grants.is_empty(), "grants", || "must hold at least one grant".into())?;
    ensure(grants.len() <= MAX_GRANTS, "grants", || format!("must hold at most {MAX_GRANTS} grants"))?;
    all(grants.into_iter().enumerate().map(|(i, g)| grant(g).map_err(|v| v.prefixed(&format!("grants[{i}]")))))
}

fn grant(g: pb::Grant) -> Result<Grant, Violations> {
    let role = role_from(g.role);
    let namespaces = ensure(valid_pattern(&g.namespaces), "namespaces", || {
        "must be a namespace, `prefix.*` or `*` (names of 1 to 128 bytes of ASCII letters, digits, '-', '_' and '.')"
            .into()
    });
    let (role, ()) = (role, namespaces).combine()?;
    Ok(Grant { role, namespaces: g.namespaces })
}

/// Returns the role of a grant's `role` field.
fn role_from(role: i32) -> Result<Role, Violations> {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Publisher) => Ok(Role::Publisher),
        Ok(pb::Role::Reader) => Ok(Role::Reader),
        Ok(pb::Role::Listener) => Ok(Role::Listener),
        Ok(pb::Role::Subscriber) => Ok(Role::Subscriber),
        Ok(pb::Role::Operator) => Ok(Role::Operator),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Unspecified) => Err(Violations::invalid("role", "is required")),
        Err(_) => Err(Violations::invalid("role", format!("unknown role {role}"))),
    }
}

/// Checks an expiry time: a valid timestamp after `now`.
fn expire_time(t: &prost_types::Timestamp, now: DateTime<Utc>) -> Result<DateTime<Utc>, Violations> {
    let t = timestamp("expire_time", t)?;
    ensure(t > now, "expire_time", || "must be in the future".into())?;
    Ok(t)
}

/// A checked GetToken or RevokeToken.
#[derive(Debug)]
pub struct TokenId {
    pub id: Uuid,
}

impl FromProto<pb::GetTokenRequest> for TokenId {
    fn from_proto(req: pb::GetTokenRequest, _: &Limits) -> Result<Self, Violations> {
        Ok(Self { id: uuid("id", &req.id)? })
    }
}

impl FromProto<pb::RevokeTokenRequest> for TokenId {
    fn from_proto(req: pb::RevokeTokenRequest, _: &Limits) -> Result<Self, Violations> {
        Ok(Self { id: uuid("id", &req.id)? })
    }
}

/// A checked ListTokens.
#[derive(Debug)]
pub struct ListTokens {
    pub page_size: u32,
    pub page_token: Option<String>,
}

impl FromProto<pb::ListTokensRequest> for ListTokens {
    fn from_proto(req: pb::ListTokensRequest, _: &Limits) -> Result<Self, Violations> {
        Ok(Self { page_size: page_size(req.page_size)?, page_token: opt(req.page_token) })
    }
}

#[cfg(test)]
#[path = "tokens/tests.rs"]
mod tests;
