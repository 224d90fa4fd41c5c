//! The handlers of ExplainListener and ReplayEvents, thin like the others: check and convert the
//! request ([`crate::request`]), call the store, convert the answer.

use eventbus_client::pb;
use eventbus_engine::store::ReplayMode;

use super::EventBus;
use crate::convert;
use crate::request::{Explain, Replay};
use crate::security::auth::Principal;
use crate::security::permissions::Role;
use crate::status::ApiError;

impl EventBus {
    pub(super) async fn explain_inner(
        &self,
        req: pb::ExplainListenerRequest,
    ) -> Result<pb::ExplainListenerResponse, ApiError> {
        let Explain { namespace, listener_id, target, page_size, page_token } = self.checked(req)?;
        let page = self.store.explain(&namespace, listener_id, target, page_size, page_token.as_deref()).await?;
        Ok(pb::ExplainListenerResponse {
            explanations: page.items.into_iter().map(convert::explained_to).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    /// Replays a page; FIRE needs the operator role when the call carries a principal (tokens
    /// on), beyond the reader role the permission table asks of every ReplayEvents.
    pub(super) async fn replay_inner(
        &self,
        req: pb::ReplayEventsRequest,
        principal: Option<Principal>,
    ) -> Result<pb::ReplayEventsResponse, ApiError> {
        let Replay { namespace, listener_id, query } = self.checked(req)?;
        if query.mode == ReplayMode::Fire
            && let Some(p) = principal
            && !p.may_as(Role::Operator, &namespace)
        {
            tracing::info!(principal = %p.name, namespace = %namespace, method = "ReplayEvents", reason = "denied", "call refused");
            self.metrics.auth_refused("denied");
            return Err(ApiError::PermissionDenied("the token does not allow this call"));
        }
        let page = self.store.replay(&namespace, listener_id, query).await?;
        Ok(pb::ReplayEventsResponse {
            fires: page.fires.into_iter().map(convert::replayed_fire_to).collect(),
            events_evaluated: page.events_evaluated,
            last_sequence: page.last_sequence,
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }
}
