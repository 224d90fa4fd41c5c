//! API tokens: created, revoked, and their last use recorded. Tokens belong to no namespace and
//! lock none; each statement touches one row by its key.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Batch, CommandError, Handled};
use crate::error::Error;
use crate::store::conn::{Statement, Tx};
use crate::store::rows::{TOKEN_COLUMNS, from_micros, micros, secret_hash, to_json, token_row};
use crate::store::{NewToken, Token};

/// Stores a new token, with a fresh UUIDv7 id, created at the batch's time.
pub(super) async fn create(tx: &mut Tx, b: &Batch, new: &NewToken) -> Handled<Token> {
    let token = Token {
        id: Uuid::now_v7(),
        name: new.name.clone(),
        grants: new.grants.clone(),
        created_at: b.now,
        // As stored: to the microsecond.
        expires_at: new.expires_at.map(|t| from_micros(micros(t))),
        last_used_at: None,
        revoked_at: None,
    };
    let q = Statement::new(
        "INSERT INTO tokens (id, name, secret_hash, grants, created_us, expires_us) VALUES ($1, $2, $3, $4, $5, $6)",
    );
    let q = q
        .bind(token.id.to_string())
        .bind(token.name.as_str())
        .bind(secret_hash(&new.secret_sha256))
        .bind(to_json(&token.grants)?)
        .bind(micros(token.created_at))
        .bind(token.expires_at.map(micros));
    tx.execute(q).await?;
    Ok(token)
}

/// Revokes a token at the batch's time, unless it is revoked already; returns it.
pub(super) async fn revoke(tx: &mut Tx, b: &Batch, id: Uuid) -> Handled<Token> {
    let for_update = tx.backend().for_update();
    let q = Statement::new(format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1{for_update}"));
    let Some(row) = tx.fetch_optional(q.bind(id.to_string())).await? else {
        return Err(CommandError::Rejected(Error::NotFound(format!("token {id}"))));
    };
    let mut token = token_row(&row)?;
    if token.revoked_at.is_none() {
        let q = Statement::new("UPDATE tokens SET revoked_us = $1 WHERE id = $2");
        tx.execute(q.bind(micros(b.now)).bind(id.to_string())).await?;
        token.revoked_at = Some(b.now);
    }
    Ok(token)
}

/// Records a use of the token at `at`, if later than the one recorded.
pub(super) async fn touch(tx: &mut Tx, id: Uuid, at: DateTime<Utc>) -> Handled<()> {
    let q = Statement::new(
        "UPDATE tokens SET last_used_us = $1 WHERE id = $2 AND (last_used_us IS NULL OR last_used_us < $1)",
    );
    tx.execute(q.bind(micros(at)).bind(id.to_string())).await?;
    Ok(())
}
