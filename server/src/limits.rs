//! Every limit the contract (`proto/eventbus/v1`) states, named once. The request layer
//! ([`crate::request`]) checks requests against these; the limits an operator may change live in
//! [`crate::config::Limits`], with their defaults here. The engine's own listener limits are
//! re-exported, so this module lists them all.

use std::time::Duration;

pub use eventbus_engine::condition::{MAX_CONDITION_BYTES, MAX_CONDITION_DEPTH, MAX_CONDITION_NODES};
pub use eventbus_engine::listener::{MAX_CORRELATE_BY, MAX_FILTER_SETS_PER_TYPE, MAX_TARGET_BYTES, MAX_TYPES};
pub use eventbus_engine::store::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// Namespaces and consumer group names: 1 to this many bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// RegisterListener's `request_id`: at most this many bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// Ack, Redrive: at most this many sequences per call.
pub const MAX_SEQUENCES: usize = 1000;
/// CreateToken: 1 to this many grants per token (a token's name is at most [`MAX_NAME_BYTES`]).
pub const MAX_GRANTS: usize = 32;

/// `CloudEvent.id` and `EventKey.id`: 1 to this many bytes.
pub const MAX_EVENT_ID_BYTES: usize = 256;
/// `CloudEvent.source` and `EventKey.source`: 1 to this many bytes.
pub const MAX_SOURCE_BYTES: usize = 1024;
/// `CloudEvent.type` and each of `ListenerSpec.types`: 1 to this many bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 256;
/// The only `CloudEvent.spec_version` accepted.
pub const SPEC_VERSION: &str = "1.0";
/// Attribute names (event attributes, filter clauses, `correlate_by`): 1 to this many
/// lower-case ASCII letters and digits.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 64;

/// Clauses of one filter set: at most this many (at least one, or a condition).
pub const MAX_CLAUSES: usize = 32;
/// Glob patterns of filter clauses: 1 to this many bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// `ListenerSpec.lifespan`: at most 3650 days.
pub const MAX_LIFESPAN: Duration = Duration::from_secs(3650 * 86_400);

/// Nack's `retry_after`: at most 24 hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// Nack's `reason`: at most this many bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Subscribe's `workflow_ids`: at most this many entries, each 1 to [`MAX_TARGET_BYTES`] bytes.
pub const MAX_WORKFLOW_IDS: usize = 1000;
/// Subscribe's `max_in_flight` when 0.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 64;
/// Subscribe's `max_in_flight`: at most this.
pub const MAX_MAX_IN_FLIGHT: u32 = 1024;
/// Subscribe's `lease_duration` when unset or zero.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Subscribe's `lease_duration`: at least this, unless zero.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// Subscribe's `lease_duration`: at most this.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// Subscribe's `max_attempts` when 0.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Subscribe's `max_attempts`: at most this.
pub const MAX_MAX_ATTEMPTS: u32 = 100;

/// `google.protobuf.Timestamp` range: 0001-01-01T00:00:00Z, in seconds since the Unix epoch.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// `google.protobuf.Timestamp` range: 9999-12-31T23:59:59Z, in seconds since the Unix epoch.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Configurable: the default of the largest request or response message, bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Configurable: the default of the most events in one Publish (the contract's 1000).
pub const DEFAULT_MAX_EVENTS_PER_PUBLISH: usize = 1000;
/// Configurable: the default of the most attributes (optional and extension) per event.
pub const DEFAULT_MAX_ATTRIBUTES: usize = 64;
/// Configurable: the default of the largest event payload, bytes.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1 << 20;
/// Configurable: the default of the most concurrent HTTP/2 streams (calls) per connection.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Configurable: the default of the most open Subscribe streams in the server.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 10_000;
/// A Subscribe stream sends a keepalive after this long without a message (the contract's
/// 15 seconds; configurable for tests and operators).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// How often the TLS certificate, key and client CA files are read again to pick up a rotation.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// How long a TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server trusts what it learnt about a token from the database (`--token-cache-seconds`):
/// a revocation reaches every server within this time.
pub const DEFAULT_TOKEN_CACHE: Duration = Duration::from_secs(5);
/// The longest a server remembers that a token is unknown (at most the token cache time), so
/// that unknown tokens cost few lookups while a token just created on another server soon works.
pub const MAX_UNKNOWN_TOKEN_CACHE: Duration = Duration::from_secs(1);
/// Tokens whose verification a server remembers at most; past it, the cache starts over.
pub const MAX_CACHED_TOKENS: usize = 10_000;
/// A server records a token's use at most this often (`Token.last_use_time`).
pub const TOKEN_USE_INTERVAL: Duration = Duration::from_secs(60);
