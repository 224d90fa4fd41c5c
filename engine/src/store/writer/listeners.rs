//! Listener changes: registration (idempotent by request id) and deletion, by id or by
//! workflow or instance.
//!
//! Hazards: both run in the namespace's locked transaction and give the changed listeners the
//! namespace's next generation, which is how other processes learn to reload them; a deleted
//! listener stays as a tombstone row (status `deleted`) until retention purges it, for the same
//! reason. A registration whose deadline already passed times out in the same transaction.
//! Validation and compilation happen before the first write, so a rejected registration changes
//! nothing.

use uuid::Uuid;

use super::replay::walk_back;
use super::{Batch, CommandError, Handled, Writer};
use crate::error::{Error, Result};
use crate::listener::{CompiledListener, Listener, ListenerKind, ListenerSpec, ListenerStatus};
use crate::store::conn::{Statement, Tx, Value};
use crate::store::rows::{
    LISTENER_COLUMNS, ListenerRow, STATUS_DELETED, StoredRow, StoredStatus, kind_str, micros, parse_uuid, to_json,
};
use crate::store::sql::{CHUNK, list};
use crate::store::{ListenerSelector, Registration};

impl Writer {
    /// Registers a listener, or returns the one registered with the same request id (and the
    /// same spec) before; also returns whether it was created.
    pub(super) async fn register(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        spec: &ListenerSpec,
        registration: Registration<'_>,
    ) -> Handled<(Listener, bool)> {
        let Registration { request_id, trace, look_back } = registration;
        spec.validate().map_err(CommandError::Rejected)?;
        if let Some(request_id) = request_id {
            let sql = format!(
                "SELECT {LISTENER_COLUMNS} FROM listeners WHERE namespace = $1 AND request_id = $2 AND status <> '{STATUS_DELETED}'"
            );
            if let Some(row) = tx.fetch_optional(Statement::new(sql).bind(ns).bind(request_id)).await? {
                let existing = ListenerRow::read(&row)?.into_listener()?;
                if existing.spec != *spec {
                    return Err(CommandError::Rejected(Error::AlreadyExists(format!(
                        "request_id {request_id:?} was already used to register listener {} with another spec",
                        existing.id
                    ))));
                }
                return Ok((existing, false));
            }
        }
        let order = b.ns.get(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?.next_listener_ord;
        let listener = Listener {
            id: Uuid::now_v7(),
            namespace: ns.to_owned(),
            order,
            spec: spec.clone(),
            created_at: b.now,
            trace: trace.clone(),
            request_id: request_id.map(str::to_owned),
            status: ListenerStatus::Active,
        };
        let compiled = CompiledListener::compile(listener.clone()).map_err(CommandError::Rejected)?;
        // Read and walked before anything is written: too long a look-back is rejected.
        let walked = match look_back {
            Some(from) => Some(walk_back(tx, b, ns, &compiled, from).await?),
            None => None,
        };
        let st = b.ns.get_mut(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
        st.next_listener_ord += 1;
        st.changed.insert(listener.id);
        tx.execute(
            Statement::new(
                "INSERT INTO listeners (id, namespace, ord, kind, target, spec, status, deadline_us, created_us, \
                 trace, request_id, gen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(listener.id.to_string())
            .bind(ns)
            .bind(listener.order)
            .bind(kind_str(spec.kind))
            .bind(spec.target.as_str())
            .bind(to_json(spec)?)
            .bind(StoredStatus::Active)
            .bind(spec.deadline.map(micros))
            .bind(micros(b.now))
            .bind(to_json(trace)?)
            .bind(request_id)
            .bind(st.new_gen()),
        )
        .await?;
        self.loaded.entry(ns.to_owned()).or_default().listeners.insert(listener.id);
        match walked {
            Some(walked) => self.looked_back(b, ns, compiled, walked)?,
            None => self.engine.insert(compiled, []),
        }
        // A deadline that already passed times out at once.
        if spec.deadline.is_some_and(|d| d <= b.now) {
            let outcome = self.engine.expire_namespace(ns, b.now);
            self.stage(b, ns, outcome)?;
            self.flush(b)?;
        }
        Ok((listener, true))
    }

    /// Deletes the selected listeners; returns how many. An id the namespace does not have is
    /// rejected as not found.
    pub(super) async fn delete(
        &mut self,
        tx: &mut Tx,
        b: &mut Batch,
        ns: &str,
        selector: &ListenerSelector,
    ) -> Handled<u64> {
        let live = format!("namespace = $1 AND status <> '{STATUS_DELETED}'");
        let by_target = |kind: ListenerKind, target: &str| {
            let sql = format!("SELECT id FROM listeners WHERE {live} AND kind = $2 AND target = $3");
            Statement::new(sql).bind(ns).bind(kind_str(kind)).bind(target)
        };
        let query = match selector {
            ListenerSelector::Id(id) => Statement::new(format!("SELECT id FROM listeners WHERE {live} AND id = $2"))
                .bind(ns)
                .bind(id.to_string()),
            ListenerSelector::Workflow(w) => by_target(ListenerKind::Start, w),
            ListenerSelector::Instance(i) => by_target(ListenerKind::Wait, i),
        };
        let ids: Vec<String> = tx.fetch_all(query).await?.iter().map(|r| r.get(0)).collect::<Result<_>>()?;
        if let ListenerSelector::Id(id) = selector
            && ids.is_empty()
        {
            return Err(CommandError::Rejected(Error::NotFound(format!("listener {id}"))));
        }
        Ok(self.delete_ids(tx, b, ns, &ids).await?)
    }

    /// Marks listeners deleted (a tombstone other processes sync) and drops their partial state.
    async fn delete_ids(&mut self, tx: &mut Tx, b: &mut Batch, ns: &str, ids: &[String]) -> Result<u64> {
        let st = b.ns.get_mut(ns).ok_or_else(|| Error::Internal("namespace not locked".into()))?;
        let generation = st.new_gen();
        let loaded = self.loaded.entry(ns.to_owned()).or_default();
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE listeners SET status = '{STATUS_DELETED}', finished_us = $1, gen = $2 WHERE id IN ({})",
                list(chunk.len(), 3)
            );
            let mut q = Statement::new(sql).bind(micros(b.now)).bind(generation);
            for id in chunk {
                q = q.bind(id);
            }
            tx.execute(q).await?;
            let sql = format!("DELETE FROM partials WHERE listener_id IN ({})", list(chunk.len(), 1));
            let values = chunk.iter().map(Value::from).collect();
            tx.execute(Statement::with(sql, values)).await?;
        }
        for id in ids {
            let id = parse_uuid(id)?;
            self.engine.remove(id);
            loaded.listeners.remove(&id);
            st.changed.insert(id);
        }
        Ok(ids.len() as u64)
    }
}
