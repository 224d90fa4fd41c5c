//! eventbus-engine: the domain of eventbus.
//!
//! [`trigger`] decides, for each published CloudEvent, which listeners fire: pure, synchronous,
//! no IO and no clock reads (callers pass `now`); [`condition`] binds an event for the CEL
//! conditions of filter sets. [`store`] persists events, listeners,
//! their state and the resulting notifications on SQLite or Postgres (sqlx; the SQLite writer
//! on rusqlite), one transaction per publish.
//!
//! The store sits behind the default cargo feature `store`; without it (`--no-default-features`)
//! the crate is the pure core, which the compiler keeps free of sqlx, rusqlite and tokio. The
//! feature `testkit` adds the module `testkit`, the test-database harness of the suites (tests only).
//!
//! This crate depends on no other workspace crate and knows nothing of gRPC, protobuf or
//! OpenTelemetry: trace contexts pass through it as opaque strings. It emits `tracing` spans
//! but never installs a subscriber, and it never reads the environment.

// Functions fit on a screen (the threshold is in .clippy.toml), tests and benches aside.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod condition;
pub mod error;
pub mod event;
pub mod explain;
pub mod listener;
#[cfg(feature = "store")]
pub mod store;
#[cfg(all(feature = "store", feature = "testkit"))]
pub mod testkit;
pub mod trigger;

pub use error::{Error, ErrorKind, FieldViolation, Result};
pub use event::{AttrValue, Data, Event, EventRef, TraceContext, valid_traceparent};
pub use explain::{Explainer, Reason, Step, Walk, WalkState};
pub use listener::{
    CompiledListener, Condition, FilterFailure, FilterSet, Listener, ListenerKind, ListenerSpec, ListenerStatus,
    Policy, SetFailure,
};
pub use trigger::{Action, ActionKind, Engine, Outcome};
