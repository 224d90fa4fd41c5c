//! The handlers of the administration calls (namespaces, consumer groups), thin like the others:
//! check and convert the request ([`crate::request`]), call the store, convert the answer.

use chrono::Utc;
use eventbus_client::pb;
use eventbus_engine::store::PURGE_BATCH;

use super::EventBus;
use crate::convert;
use crate::request::{GroupName, ListGroups, ListNamespaces, NamespaceName, SeekGroup, UpdateGroup};
use crate::status::ApiError;

impl EventBus {
    pub(crate) async fn list_namespaces_inner(
        &self,
        req: pb::ListNamespacesRequest,
    ) -> Result<pb::ListNamespacesResponse, ApiError> {
        let ListNamespaces { page_size, page_token } = self.checked(req)?;
        let page = self.store.list_namespaces(page_size, page_token.as_deref()).await?;
        Ok(pb::ListNamespacesResponse {
            namespaces: page.items.into_iter().map(convert::namespace_to).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    pub(super) async fn delete_namespace_inner(
        &self,
        req: pb::DeleteNamespaceRequest,
    ) -> Result<pb::DeleteNamespaceResponse, ApiError> {
        let NamespaceName { namespace } = self.checked(req)?;
        let purged = self.store.delete_namespace(&namespace, PURGE_BATCH).await?;
        tracing::info!(namespace = %namespace, rows = purged.total(), "namespace deleted");
        Ok(convert::namespace_purge_to(purged))
    }

    pub(crate) async fn list_groups_inner(
        &self,
        req: pb::ListConsumerGroupsRequest,
    ) -> Result<pb::ListConsumerGroupsResponse, ApiError> {
        let ListGroups { namespace, page_size, page_token } = self.checked(req)?;
        let page = self.store.list_groups(&namespace, page_size, page_token.as_deref()).await?;
        let now = Utc::now();
        Ok(pb::ListConsumerGroupsResponse {
            consumer_groups: page.items.into_iter().map(|g| convert::group_to(g, now)).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    /// Reads a group for an answer.
    async fn group(&self, namespace: &str, group: &str) -> Result<Option<pb::ConsumerGroup>, ApiError> {
        let g = self.store.get_group(namespace, group).await?;
        Ok(Some(convert::group_to(g, Utc::now())))
    }

    pub(crate) async fn get_group_inner(
        &self,
        req: pb::GetConsumerGroupRequest,
    ) -> Result<pb::GetConsumerGroupResponse, ApiError> {
        let GroupName { namespace, group } = self.checked(req)?;
        Ok(pb::GetConsumerGroupResponse { consumer_group: self.group(&namespace, &group).await? })
    }

    pub(super) async fn update_group_inner(
        &self,
        req: pb::UpdateConsumerGroupRequest,
    ) -> Result<pb::UpdateConsumerGroupResponse, ApiError> {
        let UpdateGroup { namespace, group, update } = self.checked(req)?;
        self.store.update_group(&namespace, &group, update).await?;
        Ok(pb::UpdateConsumerGroupResponse { consumer_group: self.group(&namespace, &group).await? })
    }

    pub(crate) async fn seek_group_inner(
        &self,
        req: pb::SeekConsumerGroupRequest,
    ) -> Result<pb::SeekConsumerGroupResponse, ApiError> {
        let SeekGroup { namespace, group, position } = self.checked(req)?;
        let seeked = self.store.seek_group(&namespace, &group, position).await?;
        Ok(pb::SeekConsumerGroupResponse {
            consumer_group: self.group(&namespace, &group).await?,
            dropped_delivery_count: seeked.dropped,
            read_sequence: seeked.read_sequence,
        })
    }

    pub(super) async fn delete_group_inner(
        &self,
        req: pb::DeleteConsumerGroupRequest,
    ) -> Result<pb::DeleteConsumerGroupResponse, ApiError> {
        let GroupName { namespace, group } = self.checked(req)?;
        let deleted_delivery_count = self.store.delete_group(&namespace, &group).await?;
        Ok(pb::DeleteConsumerGroupResponse { deleted_delivery_count })
    }
}
