//! The writer's commands: one variant per operation, each with its reply channel, and how a
//! command's handler says it did not complete ([`CommandError`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::event::{Event, TraceContext};
use crate::listener::{Listener, ListenerSpec};
use crate::store::consume::{Leased, Slot};
use crate::store::{
    GroupSpec, GroupUpdate, ListenerSelector, NewToken, Position, Published, SeekPosition, Seeked, SweepReport, Token,
};
use crate::trigger::Action;

use super::admin::Purged;

/// A command to the writer: one variant per operation, each with the channel its own result
/// goes back on.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        namespace: String,
        events: Vec<Event>,
        reply: Reply<Vec<Published>>,
    },
    /// Replies with the listener and whether it was created (not found by its request id).
    Register {
        namespace: String,
        spec: ListenerSpec,
        request_id: Option<String>,
        trace: TraceContext,
        /// Where the listener looks back from (see `writer/replay.rs`).
        look_back: Option<Position>,
        /// Boxed: it holds a listener (which holds a spec) until the commit.
        reply: Box<Reply<(Listener, bool)>>,
    },
    DeleteListeners {
        namespace: String,
        selector: ListenerSelector,
        reply: Reply<u64>,
    },
    EnsureGroup {
        namespace: String,
        group: GroupSpec,
        reply: Reply<()>,
    },
    Claim {
        namespace: String,
        group: String,
        consumer: String,
        max: u32,
        lease: Duration,
        reply: Reply<Claimed>,
    },
    Ack {
        namespace: String,
        group: String,
        sequences: Vec<u64>,
        reply: Reply<u64>,
    },
    /// Replies whether the notification became a dead letter.
    Nack {
        namespace: String,
        group: String,
        sequence: u64,
        retry_after: Duration,
        reason: String,
        reply: Reply<bool>,
    },
    Release {
        namespace: String,
        group: String,
        consumer: String,
        reply: Reply<u64>,
    },
    /// Counts a consumer's unexpired leases once the transaction made its own, and sets the
    /// consumer's room from that count when it commits.
    Recount {
        slot: Arc<Slot>,
        reply: Reply<()>,
    },
    Redrive {
        namespace: String,
        group: String,
        sequences: Vec<u64>,
        reply: Reply<u64>,
    },
    Sweep {
        now: DateTime<Utc>,
        reply: Reply<SweepReport>,
    },
    UpdateGroup {
        namespace: String,
        group: String,
        update: GroupUpdate,
        reply: Reply<()>,
    },
    SeekGroup {
        namespace: String,
        group: String,
        position: SeekPosition,
        reply: Reply<Seeked>,
    },
    /// Replies how many deliveries went with the group.
    DeleteGroup {
        namespace: String,
        group: String,
        reply: Reply<u64>,
    },
    /// Deletes up to `limit` rows per table of the namespace.
    PurgeNamespace {
        namespace: String,
        limit: u32,
        reply: Reply<Purged>,
    },
    CreateToken {
        token: NewToken,
        reply: Reply<Token>,
    },
    RevokeToken {
        id: uuid::Uuid,
        reply: Reply<Token>,
    },
    TouchToken {
        id: uuid::Uuid,
        at: DateTime<Utc>,
        reply: Reply<()>,
    },
    /// Fires what one page of a replay found (see `writer/replay.rs`); replies, per action, the
    /// new notification's sequence or `None` (fired before).
    Replay {
        namespace: String,
        listener_id: uuid::Uuid,
        fires: Vec<Action>,
        reply: Reply<Vec<Option<u64>>>,
    },
}

impl Command {
    /// The namespace whose row the command locks (commands that evaluate or change listeners).
    pub(super) fn locked_namespace(&self) -> Option<&str> {
        match self {
            Self::Publish { namespace, .. }
            | Self::Register { namespace, .. }
            | Self::DeleteListeners { namespace, .. }
            | Self::Replay { namespace, .. } => Some(namespace),
            _ => None,
        }
    }

    /// Whether the command changes only leases (see the module docs on durability).
    pub(super) fn leases_only(&self) -> bool {
        matches!(
            self,
            Self::Claim { .. } | Self::Ack { .. } | Self::Nack { .. } | Self::Release { .. } | Self::Recount { .. }
        )
    }

    pub(super) fn weight(&self) -> usize {
        match self {
            Self::Publish { events, .. } => events.len().max(1),
            _ => 1,
        }
    }

    /// Whether the command must run in a transaction alone (a sweep locks namespaces of its own
    /// choosing; a purge drops the engine state of its namespace).
    pub(super) fn alone(&self) -> bool {
        matches!(self, Self::Sweep { .. } | Self::PurgeNamespace { .. })
    }

    /// Sends the result held for the command, once its transaction committed.
    pub(super) fn answer(self) {
        self.finish(None);
    }

    /// Sends `error` instead of a result: the command's transaction did not commit.
    pub(super) fn fail(self, error: Error) {
        self.finish(Some(error));
    }

    /// Whether the caller stopped waiting (the store's timeout, a cancelled call): nobody would
    /// learn the command's outcome.
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Self::Publish { reply, .. } => reply.is_closed(),
            Self::Register { reply, .. } => reply.is_closed(),
            Self::DeleteListeners { reply, .. }
            | Self::Ack { reply, .. }
            | Self::Release { reply, .. }
            | Self::Redrive { reply, .. }
            | Self::DeleteGroup { reply, .. } => reply.is_closed(),
            Self::EnsureGroup { reply, .. } | Self::UpdateGroup { reply, .. } | Self::Recount { reply, .. } => {
                reply.is_closed()
            }
            Self::SeekGroup { reply, .. } => reply.is_closed(),
            Self::PurgeNamespace { reply, .. } => reply.is_closed(),
            Self::Replay { reply, .. } => reply.is_closed(),
            Self::Claim { reply, .. } => reply.is_closed(),
            Self::Nack { reply, .. } => reply.is_closed(),
            Self::Sweep { reply, .. } => reply.is_closed(),
            Self::CreateToken { reply, .. } | Self::RevokeToken { reply, .. } => reply.is_closed(),
            Self::TouchToken { reply, .. } => reply.is_closed(),
        }
    }

    fn finish(self, error: Option<Error>) {
        match self {
            Self::Publish { reply, .. } => reply.send(error),
            Self::Register { reply, .. } => (*reply).send(error),
            Self::DeleteListeners { reply, .. }
            | Self::Ack { reply, .. }
            | Self::Release { reply, .. }
            | Self::Redrive { reply, .. }
            | Self::DeleteGroup { reply, .. } => reply.send(error),
            Self::EnsureGroup { reply, .. } | Self::UpdateGroup { reply, .. } | Self::Recount { reply, .. } => {
                reply.send(error)
            }
            Self::SeekGroup { reply, .. } => reply.send(error),
            Self::PurgeNamespace { reply, .. } => reply.send(error),
            Self::Replay { reply, .. } => reply.send(error),
            Self::Claim { reply, .. } => reply.send(error),
            Self::Nack { reply, .. } => reply.send(error),
            Self::Sweep { reply, .. } => reply.send(error),
            Self::CreateToken { reply, .. } | Self::RevokeToken { reply, .. } => reply.send(error),
            Self::TouchToken { reply, .. } => reply.send(error),
        }
    }
}

/// The channel a command's result goes back on, and the result of the attempt in progress,
/// held until its transaction commits (a failed batch is run again, command by command).
#[derive(Debug)]
pub(crate) struct Reply<T> {
    sender: oneshot::Sender<Result<T>>,
    held: Option<Result<T>>,
}

impl<T> Reply<T> {
    pub(crate) fn new(sender: oneshot::Sender<Result<T>>) -> Self {
        Self { sender, held: None }
    }

    /// Holds what the command's handler returned: its value or its rejection. An abort is
    /// returned, for the transaction to roll back.
    pub(super) fn hold(&mut self, handled: Handled<T>) -> Result<()> {
        self.held = Some(match handled {
            Ok(value) => Ok(value),
            Err(CommandError::Rejected(e)) => Err(e),
            Err(CommandError::Abort(e)) => return Err(e),
        });
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends `error`, or else the held result. The caller may be gone: nothing to do then.
    fn send(self, error: Option<Error>) {
        let result = match error {
            Some(e) => Err(e),
            None => self.held.unwrap_or_else(|| Err(Error::Internal("the writer held no result".into()))),
        };
        let _ = self.sender.send(result);
    }
}

/// Why a command of a batch did not complete.
///
/// A command is run inside the batch's transaction, so it can fail in two ways:
/// - [`CommandError::Rejected`]: the caller's fault (an invalid argument, a listener or group
///   that does not exist, a failed precondition). The command changed nothing before it was
///   rejected, so the batch goes on and commits; the caller gets the error.
/// - [`CommandError::Abort`]: the transaction cannot go on (a database error, a broken
///   invariant). The batch is rolled back and its commands are run again one by one, so that
///   one command's trouble does not fail the others.
///
/// `?` on a [`Result`] aborts: a handler rejects explicitly, and only before it writes anything.
/// (A rejection that aborted by mistake would still give its caller the right error, after
/// costing the batch a retry.)
#[derive(Debug)]
pub(crate) enum CommandError {
    Rejected(Error),
    Abort(Error),
}

impl From<Error> for CommandError {
    fn from(e: Error) -> Self {
        Self::Abort(e)
    }
}

/// What a command's handler returns: see [`CommandError`].
pub(crate) type Handled<T> = std::result::Result<T, CommandError>;

/// What a claim leased, and whether it took as many as it could (more may be claimable).
#[derive(Debug)]
pub(crate) struct Claimed {
    pub leased: Vec<Leased>,
    pub full: bool,
}
