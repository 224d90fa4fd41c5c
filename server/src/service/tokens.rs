//! The TokenService handlers: tokens created (with a secret made here and returned once),
//! listed, shown and revoked. Only an admin of every namespace reaches them (the permission
//! table); the request layer checks the messages ([`crate::request::CreateToken`]).

use eventbus_client::pb;
use eventbus_client::pb::token_service_server::TokenService;
use eventbus_engine::Error;
use eventbus_engine::store::{NewToken, TokenGrant};
use tonic::{Request, Response, Status};

use super::EventBus;
use crate::convert;
use crate::request::{CreateToken, ListTokens, TokenId};
use crate::security::auth::Principal;
use crate::security::tokens::new_secret;
use crate::status::ApiError;

impl EventBus {
    /// Fails unless this server checks tokens: tokens minted here would otherwise be trusted by
    /// the servers on the same database that do, without anyone having been checked.
    fn tokens_on(&self) -> Result<(), ApiError> {
        if self.config.admin_token_file.is_some() {
            Ok(())
        } else {
            Err(ApiError::from(Error::FailedPrecondition(
                "this server checks no tokens: start it with --admin-token-file to manage tokens".into(),
            )))
        }
    }

    async fn create_token_inner(
        &self,
        req: pb::CreateTokenRequest,
        by: &str,
    ) -> Result<pb::CreateTokenResponse, ApiError> {
        self.tokens_on()?;
        let CreateToken { name, grants, expires_at } = self.checked(req)?;
        let (secret, secret_sha256) = new_secret().map_err(|e| ApiError::Internal(format!("{e:#}")))?;
        let grants = grants.into_iter().map(|g| TokenGrant { role: g.role.to_string(), namespaces: g.namespaces });
        let new = NewToken { name, grants: grants.collect(), secret_sha256, expires_at };
        let token = self.store.create_token(new).await?;
        tracing::info!(token = %token.id, name = %token.name, by, "token created");
        Ok(pb::CreateTokenResponse { token: Some(convert::token_to(token)), secret })
    }

    async fn get_token_inner(&self, req: pb::GetTokenRequest) -> Result<pb::GetTokenResponse, ApiError> {
        self.tokens_on()?;
        let TokenId { id } = self.checked(req)?;
        Ok(pb::GetTokenResponse { token: Some(convert::token_to(self.store.get_token(id).await?)) })
    }

    async fn list_tokens_inner(&self, req: pb::ListTokensRequest) -> Result<pb::ListTokensResponse, ApiError> {
        self.tokens_on()?;
        let ListTokens { page_size, page_token } = self.checked(req)?;
        let page = self.store.list_tokens(page_size, page_token.as_deref()).await?;
        Ok(pb::ListTokensResponse {
            tokens: page.items.into_iter().map(convert::token_to).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn revoke_token_inner(
        &self,
        req: pb::RevokeTokenRequest,
        by: &str,
    ) -> Result<pb::RevokeTokenResponse, ApiError> {
        self.tokens_on()?;
        let TokenId { id } = self.checked(req)?;
        let token = self.store.revoke_token(id).await?;
        tracing::info!(token = %id, name = %token.name, by, "token revoked");
        Ok(pb::RevokeTokenResponse { token: Some(convert::token_to(token)) })
    }
}

/// Returns the name of the caller (for the logs of token changes).
fn caller<T>(req: &Request<T>) -> String {
    req.extensions().get::<Principal>().map_or_else(|| "-".to_owned(), |p| p.name.clone())
}

#[tonic::async_trait]
impl TokenService for EventBus {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let by = caller(&req);
        Ok(Response::new(self.create_token_inner(req.into_inner(), &by).await?))
    }

    async fn get_token(&self, req: Request<pb::GetTokenRequest>) -> Result<Response<pb::GetTokenResponse>, Status> {
        Ok(Response::new(self.get_token_inner(req.into_inner()).await?))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        Ok(Response::new(self.list_tokens_inner(req.into_inner()).await?))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let by = caller(&req);
        Ok(Response::new(self.revoke_token_inner(req.into_inner(), &by).await?))
    }
}
