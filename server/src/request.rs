//! The request layer: every request message is checked against every rule of the contract and
//! turned into what the store takes, or into the list of every violated field, in one step
//! ([`FromProto`]). Handlers see only valid, converted requests. Field paths are spelled as the
//! client wrote them: `events[3].source`, `listener.filters[0].attributes[subject]`.
//!
//! Checks return `Result<T, Violations>`; [`Combine`] joins the checks of a message's fields so
//! that every violation is reported at once, not only the first.

use std::time::Duration;

use chrono::{DateTime, Utc};
use eventbus_engine::FieldViolation;
use uuid::Uuid;

use crate::config::Limits;
use crate::limits::{MAX_NAME_BYTES, MAX_SEQUENCES, MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS};

mod admin;
mod delivery;
mod events;
mod listeners;
mod replay;
mod tokens;
mod uri;

pub use admin::{GroupName, ListGroups, ListNamespaces, NamespaceName, SeekGroup, UpdateGroup};
pub use delivery::{Ack, DeadLetters, Nack, Redrive, Subscribe};
pub use events::{GetEvent, ListEvents, Publish};
pub use listeners::{DeleteListeners, GetListener, ListListeners, ListenerId, Register};
pub use replay::{Explain, Replay};
pub use tokens::{CreateToken, ListTokens, TokenId};

/// Converts a request message into its checked domain form.
pub trait FromProto<P>: Sized {
    /// Checks `proto` against the contract and the server's configured `limits`; returns every
    /// violation when it breaks a rule.
    fn from_proto(proto: P, limits: &Limits) -> Result<Self, Violations>;
}

/// The fields of a request that break a rule. A field that is merely over a configurable server
/// limit (attributes, data size) is `exceeded`, answered RESOURCE_EXHAUSTED when nothing is
/// invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    pub invalid: Vec<FieldViolation>,
    pub exceeded: Vec<FieldViolation>,
}

impl Violations {
    /// Returns one invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { invalid: vec![FieldViolation::new(field, description)], exceeded: Vec::new() }
    }

    /// Returns one field over a server limit.
    pub fn exceeded(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { invalid: Vec::new(), exceeded: vec![FieldViolation::new(field, description)] }
    }

    /// Returns the violations with `prefix` put before each field path (`prefix.x`, `prefix[k]`).
    pub fn prefixed(self, prefix: &str) -> Self {
        let prefix_all = |v: Vec<FieldViolation>| v.into_iter().map(|f| f.prefixed(prefix)).collect();
        Self { invalid: prefix_all(self.invalid), exceeded: prefix_all(self.exceeded) }
    }

    /// Adds the violations of `other`.
    pub fn extend(&mut self, other: Self) {
        self.invalid.extend(other.invalid);
        self.exceeded.extend(other.exceeded);
    }

    /// Returns the field paths, invalid ones first (for tests and logs).
    pub fn fields(&self) -> Vec<&str> {
        self.invalid.iter().chain(&self.exceeded).map(|v| v.field.as_str()).collect()
    }
}

impl From<Vec<FieldViolation>> for Violations {
    fn from(invalid: Vec<FieldViolation>) -> Self {
        Self { invalid, exceeded: Vec::new() }
    }
}

/// Joins independent checks: all their values, or all their violations.
pub trait Combine {
    type Output;
    fn combine(self) -> Result<Self::Output, Violations>;
}

macro_rules! combine_tuple {
    ($($t:ident $v:ident),+) => {
        impl<$($t),+> Combine for ($(Result<$t, Violations>,)+) {
            type Output = ($($t,)+);
            fn combine(self) -> Result<Self::Output, Violations> {
                let ($($v,)+) = self;
                match ($($v,)+) {
                    ($(Ok($v),)+) => Ok(($($v,)+)),
                    ($($v,)+) => {
                        let mut all = Violations::default();
                        $(if let Err(e) = $v { all.extend(e); })+
                        Err(all)
                    }
                }
            }
        }
    };
}

combine_tuple!(A a, B b);
combine_tuple!(A a, B b, C c);
combine_tuple!(A a, B b, C c, D d);
combine_tuple!(A a, B b, C c, D d, E e);
combine_tuple!(A a, B b, C c, D d, E e, F f);
combine_tuple!(A a, B b, C c, D d, E e, F f, G g);
combine_tuple!(A a, B b, C c, D d, E e, F f, G g, H h);
combine_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i);
combine_tuple!(A a, B b, C c, D d, E e, F f, G g, H h, I i, J j);

/// Joins the checks of a list: every value in order, or every violation.
pub fn all<T>(checks: impl IntoIterator<Item = Result<T, Violations>>) -> Result<Vec<T>, Violations> {
    let mut values = Vec::new();
    let mut violations = None::<Violations>;
    for check in checks {
        match (check, &mut violations) {
            (Ok(value), None) => values.push(value),
            (Ok(_), Some(_)) => {}
            (Err(e), Some(all)) => all.extend(e),
            (Err(e), None) => violations = Some(e),
        }
    }
    violations.map_or(Ok(values), Err)
}

/// Fails with `description` on `field` unless `ok`.
pub fn ensure(ok: bool, field: &str, description: impl FnOnce() -> String) -> Result<(), Violations> {
    if ok { Ok(()) } else { Err(Violations::invalid(field, description())) }
}

/// Checks a namespace: 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.`.
pub fn namespace(ns: String) -> Result<String, Violations> {
    name("namespace", ns)
}

/// Checks a consumer group name (the rules of a namespace).
pub fn group(consumer_group: String) -> Result<String, Violations> {
    name("consumer_group", consumer_group)
}

fn name(field: &str, s: String) -> Result<String, Violations> {
    if s.is_empty() {
        Err(Violations::invalid(field, "must not be empty"))
    } else if s.len() > MAX_NAME_BYTES {
        Err(Violations::invalid(field, format!("must be at most {MAX_NAME_BYTES} bytes")))
    } else if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        Err(Violations::invalid(field, "may hold only ASCII letters, digits, '-', '_' and '.'"))
    } else {
        Ok(s)
    }
}

/// Checks a required string of at most `max` bytes.
pub fn required(field: &str, s: String, max: usize) -> Result<String, Violations> {
    if s.is_empty() { Err(Violations::invalid(field, "is required")) } else { at_most(field, s, max) }
}

/// Checks an optional string of at most `max` bytes.
pub fn at_most(field: &str, s: String, max: usize) -> Result<String, Violations> {
    ensure(s.len() <= max, field, || format!("must be at most {max} bytes"))?;
    Ok(s)
}

/// Returns `None` for the empty string (an unset proto3 string).
pub fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Checks a listener id: a UUID.
pub fn uuid(field: &str, s: &str) -> Result<Uuid, Violations> {
    Uuid::parse_str(s).map_err(|_| Violations::invalid(field, "must be a UUID"))
}

/// Checks a page size: 0 (the default) or more.
pub fn page_size(n: i32) -> Result<u32, Violations> {
    u32::try_from(n).map_err(|_| Violations::invalid("page_size", "must not be negative"))
}

/// Checks a list of notification sequences: at most 1000, and at least one unless `may_be_empty`.
pub fn sequences(seqs: Vec<u64>, may_be_empty: bool) -> Result<Vec<u64>, Violations> {
    ensure(may_be_empty || !seqs.is_empty(), "sequences", || "must name at least one sequence".into())?;
    ensure(seqs.len() <= MAX_SEQUENCES, "sequences", || format!("at most {MAX_SEQUENCES} sequences"))?;
    Ok(seqs)
}

/// Checks a timestamp: within 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z, nanos
/// 0 to 999,999,999 (the range of `google.protobuf.Timestamp`).
pub fn timestamp(field: &str, ts: &prost_types::Timestamp) -> Result<DateTime<Utc>, Violations> {
    let out_of_range = || Violations::invalid(field, "must be a timestamp from year 1 to year 9999");
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds) {
        return Err(out_of_range());
    }
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000);
    nanos.and_then(|n| DateTime::from_timestamp(ts.seconds, n)).ok_or_else(out_of_range)
}

/// Checks a duration: not negative, nanos below one second.
pub fn duration(field: &str, d: &prost_types::Duration) -> Result<Duration, Violations> {
    let seconds = u64::try_from(d.seconds).ok();
    let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000);
    match (seconds, nanos) {
        (Some(s), Some(n)) => Ok(Duration::new(s, n)),
        _ => Err(Violations::invalid(field, "must not be negative")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_reports_every_violation_in_order() {
        let ok: Result<u8, Violations> = Ok(1);
        assert_eq!((ok.clone(), ok.clone()).combine(), Ok((1, 1)));
        let a: Result<u8, _> = Err(Violations::invalid("a", "x"));
        let b: Result<u8, _> = Err(Violations::exceeded("b", "y"));
        let joined = (a, ok, b).combine().unwrap_err();
        assert_eq!(joined.fields(), ["a", "b"]);
        assert_eq!(
            all([Ok(1), Err(Violations::invalid("x[1]", "")), Err(Violations::invalid("x[2]", ""))])
                .unwrap_err()
                .fields(),
            ["x[1]", "x[2]"]
        );
        assert_eq!(all([Ok::<_, Violations>(1), Ok(2)]), Ok(vec![1, 2]));
    }

    #[test]
    fn names() {
        let max = "n".repeat(MAX_NAME_BYTES);
        let cases: [(&str, bool); 6] = [
            (&max, true),
            ("a-b_c.D9", true),
            ("", false),
            (&"n".repeat(MAX_NAME_BYTES + 1), false),
            ("a b", false),
            ("é", false),
        ];
        for (ns, ok) in cases {
            let got = namespace(ns.to_owned());
            assert_eq!(got.is_ok(), ok, "{ns:?}");
            if !ok {
                assert_eq!(got.unwrap_err().fields(), ["namespace"]);
                assert_eq!(group(ns.to_owned()).unwrap_err().fields(), ["consumer_group"]);
            }
        }
    }

    #[test]
    fn timestamps() {
        let ts = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        let cases = [
            (ts(MIN_TIMESTAMP_SECONDS, 0), Some("0001-01-01T00:00:00+00:00")),
            (ts(MIN_TIMESTAMP_SECONDS - 1, 999_999_999), None),
            (ts(MAX_TIMESTAMP_SECONDS, 999_999_999), Some("9999-12-31T23:59:59.999999999+00:00")),
            (ts(MAX_TIMESTAMP_SECONDS + 1, 0), None),
            (ts(0, -1), None),
            (ts(0, 1_000_000_000), None),
        ];
        for (t, want) in cases {
            let got = timestamp("t", &t);
            assert_eq!(got.as_ref().ok().map(DateTime::to_rfc3339), want.map(str::to_owned), "{t:?}");
            if want.is_none() {
                assert_eq!(got.unwrap_err().fields(), ["t"]);
            }
        }
    }

    #[test]
    fn durations_and_lists() {
        let d = |seconds, nanos| prost_types::Duration { seconds, nanos };
        assert_eq!(duration("d", &d(1, 5)), Ok(Duration::new(1, 5)));
        for bad in [d(-1, 0), d(0, -1), d(0, 1_000_000_000)] {
            assert_eq!(duration("d", &bad).unwrap_err().fields(), ["d"], "{bad:?}");
        }
        assert!(sequences(vec![1; MAX_SEQUENCES], false).is_ok());
        assert_eq!(sequences(vec![1; MAX_SEQUENCES + 1], true).unwrap_err().fields(), ["sequences"]);
        assert_eq!(sequences(vec![], false).unwrap_err().fields(), ["sequences"]);
        assert!(sequences(vec![], true).is_ok());
        assert_eq!(page_size(0), Ok(0));
        assert_eq!(page_size(-1).unwrap_err().fields(), ["page_size"]);
    }
}
