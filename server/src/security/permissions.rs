//! Which role each RPC needs, and on what: one table, [`METHODS`], keyed by the gRPC method
//! path, so that a new RPC is one line. A method of an eventbus service missing from the table
//! is refused to everyone ([`requirement`] returns `None`), and a unit test fails for it, so a
//! forgotten line is a failing build, never an open door.
//!
//! Namespaced calls carry their namespace in field 1 (`namespace`) of the request message (the
//! test checks every one in the descriptor set), so the namespace can be read from the encoded
//! request before the handler runs ([`namespace_of`]), whatever the method.
//!
//! Roles (issue 15): `publisher` publishes; `reader` reads events and listeners (explains
//! them, replays in a dry run); `listener` registers and deletes listeners, and reads;
//! `subscriber` subscribes, acks and nacks; `operator` handles dead letters, fires replays
//! (ReplayEvents checks FIRE in its handler: one line per method here), and everything above; `admin` manages tokens, and
//! everything. A grant is a role on one namespace, on a pattern `prefix.*` (every namespace
//! that starts with `prefix.`), or on `*` (every namespace, and the server-wide calls).

use std::fmt;
use std::str::FromStr;

/// A role a token grants on namespaces; see the module docs for what each may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Publisher,
    Reader,
    Listener,
    Subscriber,
    Operator,
    Admin,
}

impl Role {
    /// Every role, in the order of the contract.
    pub const ALL: [Role; 6] =
        [Role::Publisher, Role::Reader, Role::Listener, Role::Subscriber, Role::Operator, Role::Admin];

    /// Returns whether this role may do what `needed` may.
    pub fn includes(self, needed: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Operator => needed != Role::Admin,
            Role::Listener => matches!(needed, Role::Listener | Role::Reader),
            role => role == needed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Reader => "reader",
            Role::Listener => "listener",
            Role::Subscriber => "subscriber",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("unknown role {s:?}: one of publisher, reader, listener, subscriber, operator, admin")
        })
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: anyone may call it, without a token (health checks, reflection).
    Open,
    /// The role on the namespace of the request (its field 1).
    Namespace(Role),
    /// The role on every namespace (`*`): calls that span the server, such as token management.
    Server(Role),
    /// A stream of requests, each needing the role on its own namespace (its field 1): the call
    /// needs the role somewhere, and its handler checks each message
    /// ([`crate::security::auth::Principal::may_send`]).
    EachMessage(Role),
}

use Requirement::{EachMessage, Namespace, Server};

/// The requirement of every method of the eventbus services, by method path.
pub const METHODS: &[(&str, Requirement)] = &[
    ("/eventbus.v1.EventBusService/Publish", Namespace(Role::Publisher)),
    ("/eventbus.v1.EventBusService/PublishStream", EachMessage(Role::Publisher)),
    ("/eventbus.v1.EventBusService/GetEvent", Namespace(Role::Reader)),
    ("/eventbus.v1.EventBusService/ListEvents", Namespace(Role::Reader)),
    ("/eventbus.v1.EventBusService/GetListener", Namespace(Role::Reader)),
    ("/eventbus.v1.EventBusService/ListListeners", Namespace(Role::Reader)),
    ("/eventbus.v1.EventBusService/RegisterListener", Namespace(Role::Listener)),
    ("/eventbus.v1.EventBusService/DeleteListener", Namespace(Role::Listener)),
    ("/eventbus.v1.EventBusService/DeleteListeners", Namespace(Role::Listener)),
    ("/eventbus.v1.EventBusService/Subscribe", Namespace(Role::Subscriber)),
    ("/eventbus.v1.EventBusService/Ack", Namespace(Role::Subscriber)),
    ("/eventbus.v1.EventBusService/Nack", Namespace(Role::Subscriber)),
    ("/eventbus.v1.EventBusService/ListDeadLetters", Namespace(Role::Operator)),
    ("/eventbus.v1.EventBusService/RedriveDeadLetters", Namespace(Role::Operator)),
    ("/eventbus.v1.EventBusService/ListConsumerGroups", Namespace(Role::Reader)),
    ("/eventbus.v1.EventBusService/GetConsumerGroup", Namespace(Role::Reader)),
    ("/eventbus.v1.EventBusService/UpdateConsumerGroup", Namespace(Role::Operator)),
    ("/eventbus.v1.EventBusService/SeekConsumerGroup", Namespace(Role::Operator)),
    ("/eventbus.v1.EventBusService/DeleteConsumerGroup", Namespace(Role::Operator)),
    ("/eventbus.v1.EventBusService/DeleteNamespace", Namespace(Role::Admin)),
    // Lists every namespace: an operator of all of them.
    ("/eventbus.v1.EventBusService/ListNamespaces", Server(Role::Operator)),
    // Tokens grant any role anywhere: only an admin of every namespace manages them.
    ("/eventbus.v1.TokenService/CreateToken", Server(Role::Admin)),
    ("/eventbus.v1.TokenService/GetToken", Server(Role::Admin)),
    ("/eventbus.v1.TokenService/ListTokens", Server(Role::Admin)),
    ("/eventbus.v1.TokenService/RevokeToken", Server(Role::Admin)),
    ("/eventbus.v1.EventBusService/ExplainListener", Namespace(Role::Reader)),
    // DRY_RUN; the handler also asks for operator when the mode is FIRE.
    ("/eventbus.v1.EventBusService/ReplayEvents", Namespace(Role::Reader)),
];

/// Services anyone may call: health checks (probes carry no token) and reflection (the schema
/// only; the `--reflection` flag turns it off).
const OPEN_SERVICES: &[&str] =
    &["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

/// Returns what a call of the method at `path` needs; `None` for a method nobody may call (not
/// in the table).
pub fn requirement(path: &str) -> Option<Requirement> {
    if OPEN_SERVICES.iter().any(|service| path.starts_with(service)) {
        return Some(Requirement::Open);
    }
    METHODS.iter().find(|(method, _)| *method == path).map(|(_, requirement)| *requirement)
}

/// A role on a namespace, a pattern `prefix.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub namespaces: String,
}

impl Grant {
    /// Returns whether this grant allows a call that needs `requirement` on `namespace` (the
    /// request's; ignored for other requirements).
    pub fn allows(&self, requirement: Requirement, namespace: &str) -> bool {
        match requirement {
            Requirement::Open => true,
            Requirement::Namespace(role) => self.role.includes(role) && self.covers(namespace),
            Requirement::Server(role) => self.role.includes(role) && self.namespaces == "*",
            // Somewhere: each message is checked against its own namespace.
            Requirement::EachMessage(role) => self.role.includes(role),
        }
    }

    /// Returns whether the grant's namespace or pattern covers `namespace`.
    fn covers(&self, namespace: &str) -> bool {
        match self.namespaces.strip_suffix('*') {
            Some("") => true,
            Some(prefix) if prefix.ends_with('.') => namespace.starts_with(prefix) && namespace.len() > prefix.len(),
            _ => self.namespaces == namespace,
        }
    }
}

/// Returns whether `pattern` is a namespace, `prefix.*` or `*`, as a grant takes: the namespace
/// or prefix is 1 to 128 bytes of ASCII letters, digits, '-', '_' and '.'.
pub fn valid_pattern(pattern: &str) -> bool {
    let name = match pattern.strip_suffix(".*") {
        Some(prefix) => prefix,
        None if pattern == "*" => return true,
        None => pattern,
    };
    !name.is_empty()
        && name.len() <= crate::limits::MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The one field every namespaced request shares.
#[derive(Clone, PartialEq, prost::Message)]
struct Namespaced {
    #[prost(string, tag = "1")]
    namespace: String,
}

/// Returns the namespace (field 1) of an encoded request message; empty when it has none.
///
/// Returns an error when the message does not decode, which the handler would refuse too.
pub fn namespace_of(message: &[u8]) -> Result<String, prost::DecodeError> {
    Ok(<Namespaced as prost::Message>::decode(message)?.namespace)
}

#[cfg(test)]
#[path = "permissions/tests.rs"]
mod tests;
