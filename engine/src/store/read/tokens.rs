//! Reads of API tokens: one by id, one by the hash of its secret (each call's check), and all of
//! them in pages, oldest first.

use uuid::Uuid;

use super::admin::split_named;
use super::{Binding, page_size};
use crate::error::{Error, Result};
use crate::store::conn::Statement;
use crate::store::rows::{TOKEN_COLUMNS, secret_hash, token_row};
use crate::store::{Page, Store, Token};

impl Store {
    /// Returns the token whose secret has this SHA-256, revoked and expired ones included;
    /// `None` if there is none.
    pub async fn token_by_secret(&self, sha256: &[u8; 32]) -> Result<Option<Token>> {
        let q = Statement::new(format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1"));
        let rows = self.rows(q.bind(secret_hash(sha256))).await?;
        rows.first().map(token_row).transpose()
    }

    /// Returns one token; NotFound if no token has that id.
    pub async fn get_token(&self, id: Uuid) -> Result<Token> {
        let q = Statement::new(format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"));
        let rows = self.rows(q.bind(id.to_string())).await?;
        rows.first().map(token_row).transpose()?.ok_or_else(|| Error::NotFound(format!("token {id}")))
    }

    /// Lists every token, oldest first (UUIDv7 ids sort by creation).
    pub async fn list_tokens(&self, page_size_requested: u32, page_token: Option<&str>) -> Result<Page<Token>> {
        let binding = Binding::new("tokens", "");
        let after = binding.parse_name(page_token)?.unwrap_or_default();
        let size = page_size(page_size_requested);
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id > $1 ORDER BY id LIMIT {}", size + 1);
        let rows = self.rows(Statement::new(sql).bind(after)).await?;
        let keyed = rows.iter().map(|row| Ok((row.get::<String>(0)?, token_row(row)?))).collect::<Result<Vec<_>>>()?;
        let (keyed, next) = split_named(keyed, size, binding, |(id, _)| id.as_str());
        Ok(Page { items: keyed.into_iter().map(|(_, token)| token).collect(), next_page_token: next })
    }
}
