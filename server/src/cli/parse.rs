//! Parsers for flag values that clap cannot parse by itself: durations (`10m`, `1h30m`),
//! listener filter sets (`type:attr=glob&attr=glob`), extension attributes (`name[:kind]=value`),
//! RFC 3339 times, subscribe start positions and fractions. Each returns a message that clap
//! shows after the flag name, so messages say what was expected.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use eventbus_client::{AttributeValue, StartPosition};

/// Parses a duration written as one or more `<integer><unit>` parts, largest unit first:
/// `500ms`, `30s`, `10m`, `1h30m`, `2d`. A bare `0` is zero; other bare numbers are rejected,
/// because a missing unit is more often a mistake than a number of seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration; expected for example 30s, 10m, 1h30m".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    // The unit of the previous part, to reject `10s5m` and `5m5m`.
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {s:?}: expected a number at {rest:?}"));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let n: u64 = number.parse().map_err(|_| format!("invalid duration {s:?}: {number} is too large"))?;
        // Ranks order the units from largest to smallest.
        let (rank, part) = match unit {
            "d" => (0, n.checked_mul(86_400).map(Duration::from_secs)),
            "h" => (1, n.checked_mul(3_600).map(Duration::from_secs)),
            "m" => (2, n.checked_mul(60).map(Duration::from_secs)),
            "s" => (3, Some(Duration::from_secs(n))),
            "ms" => (4, Some(Duration::from_millis(n))),
            "" => return Err(format!("invalid duration {s:?}: {number} has no unit (ms, s, m, h or d)")),
            other => return Err(format!("invalid duration {s:?}: unknown unit {other:?} (ms, s, m, h or d)")),
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(format!("invalid duration {s:?}: units must go from largest to smallest, once each"));
        }
        last_rank = rank;
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
        rest = after;
    }
    Ok(total)
}

/// Formats a duration the way [`duration`] parses it: `1h30m`, `45s`, `250ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let millis = d.subsec_millis();
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    if out.is_empty() {
        // Below a millisecond.
        out = format!("{}us", d.subsec_micros());
    }
    out
}

/// One `--filter` flag: a filter set for one event type, whose clauses must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSet {
    pub event_type: String,
    /// Attribute name -> glob pattern, in the order given.
    pub clauses: Vec<(String, String)>,
}

/// Parses `TYPE:ATTR=GLOB`, with further clauses of the same set joined by `&`:
/// `com.example.order:region=eu-*&subject=ord-*`.
///
/// The type may itself contain `:`; the attribute name is what follows the last `:` before the
/// first `=`. A `&` that belongs to a pattern is written `\&` (the glob syntax then reads it as a
/// literal `&`).
pub fn filter(s: &str) -> Result<FilterSet, String> {
    let expected = "expected TYPE:ATTR=GLOB[&ATTR=GLOB...]";
    let eq = s.find('=').ok_or_else(|| format!("invalid filter {s:?}: no '=' ({expected})"))?;
    let colon =
        s[..eq].rfind(':').ok_or_else(|| format!("invalid filter {s:?}: no ':' after the type ({expected})"))?;
    let event_type = &s[..colon];
    if event_type.is_empty() {
        return Err(format!("invalid filter {s:?}: empty event type ({expected})"));
    }
    let mut clauses = Vec::new();
    for clause in split_unescaped(&s[colon + 1..], '&') {
        let (name, pattern) =
            clause.split_once('=').ok_or_else(|| format!("invalid filter {s:?}: clause {clause:?} has no '='"))?;
        if name.is_empty() {
            return Err(format!("invalid filter {s:?}: clause {clause:?} has no attribute name"));
        }
        if pattern.is_empty() {
            return Err(format!("invalid filter {s:?}: clause {clause:?} has an empty pattern"));
        }
        clauses.push((name.to_owned(), pattern.to_owned()));
    }
    Ok(FilterSet { event_type: event_type.to_owned(), clauses })
}

/// Splits at each `sep` not preceded by a backslash; keeps the backslashes.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One `--ext` flag: an extension attribute and its typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub value: AttributeValue,
}

/// Parses `NAME=VALUE` (a string) or `NAME:KIND=VALUE` with KIND one of `string`, `int`, `bool`,
/// `uri`, `uriref`, `time` (RFC 3339) or `bytes` (standard base64). The value may contain `=`
/// and may be empty (for strings).
pub fn extension(s: &str) -> Result<Extension, String> {
    let (key, raw) = s.split_once('=').ok_or_else(|| format!("invalid extension {s:?}: expected NAME=VALUE"))?;
    let (name, kind) = key.split_once(':').unwrap_or((key, "string"));
    if name.is_empty() {
        return Err(format!("invalid extension {s:?}: empty name"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) || name.len() > 64 {
        return Err(format!("invalid extension {s:?}: names are 1 to 64 characters of [a-z0-9]"));
    }
    let bad = |what: &str| format!("invalid extension {s:?}: {raw:?} is not {what}");
    let value = match kind {
        "string" => AttributeValue::String(raw.to_owned()),
        "int" => AttributeValue::Integer(raw.parse().map_err(|_| bad("a 32-bit integer"))?),
        "bool" => AttributeValue::Boolean(raw.parse().map_err(|_| bad("true or false"))?),
        "uri" => AttributeValue::Uri(raw.to_owned()),
        "uriref" => AttributeValue::UriRef(raw.to_owned()),
        "time" => AttributeValue::from(rfc3339(raw).map_err(|_| bad("an RFC 3339 time"))?),
        "bytes" => {
            AttributeValue::Bytes(base64::engine::general_purpose::STANDARD.decode(raw).map_err(|_| bad("base64"))?)
        }
        other => {
            return Err(format!(
                "invalid extension {s:?}: unknown kind {other:?} (string, int, bool, uri, uriref, time, bytes)"
            ));
        }
    };
    Ok(Extension { name: name.to_owned(), value })
}

/// Parses an RFC 3339 time such as `2026-11-22T10:00:00Z` or `2026-11-22T12:00:00+02:00`.
pub fn rfc3339(s: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(SystemTime::from)
        .map_err(|e| format!("invalid time {s:?}: {e} (expected RFC 3339, e.g. 2026-11-22T10:00:00Z)"))
}

/// Parses a point in time: RFC 3339 (`2026-11-22T10:00:00Z`), or a duration ago (`10m`,
/// `1h30m`: that long before now).
pub fn time_or_ago(s: &str) -> Result<SystemTime, String> {
    time_or_ago_at(s, SystemTime::now())
}

fn time_or_ago_at(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if s.contains('T') || s.contains('t') {
        return rfc3339(s);
    }
    let ago = duration(s).map_err(|_| {
        format!("invalid time {s:?}: expected RFC 3339 (2026-11-22T10:00:00Z) or a duration ago (10m, 1h30m, 2d)")
    })?;
    now.checked_sub(ago).ok_or_else(|| format!("invalid time {s:?}: too long ago"))
}

/// Parses one event type for `--one`. A comma names several types, which `--one` does not
/// take: the hint names the flags that do.
pub fn one_type(s: &str) -> Result<String, String> {
    if s.contains(',') {
        return Err(format!(
            "--one takes exactly one type, and {s:?} names several: use --any {s} (any of them fires) or \
             --all {s} (all of them, per correlation), or register one listener per type"
        ));
    }
    Ok(s.to_owned())
}

/// Parses a fraction between 0 and 1, inclusive: `0`, `0.1`, `1`.
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("invalid fraction {s:?}: expected a number from 0 to 1, e.g. 0.1")),
    }
}

/// Parses `earliest`, `latest` or a notification sequence (at least 1).
pub fn start_position(s: &str) -> Result<StartPosition, String> {
    match s {
        "earliest" => Ok(StartPosition::Earliest),
        "latest" => Ok(StartPosition::Latest),
        _ => match s.parse::<u64>() {
            Ok(0) => Err("sequence must be at least 1".to_owned()),
            Ok(n) => Ok(StartPosition::Sequence(n)),
            Err(_) => Err(format!("invalid start {s:?}: expected earliest, latest or a sequence")),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn fractions() {
        let cases = [("0", Some(0.0)), ("0.1", Some(0.1)), (" 1 ", Some(1.0)), ("1.5", None), ("-0.1", None)];
        for (input, want) in cases {
            assert_eq!(fraction(input).ok(), want, "{input:?}");
        }
        for input in ["", "NaN", "10%", "inf"] {
            assert_eq!(
                fraction(input),
                Err(format!("invalid fraction {input:?}: expected a number from 0 to 1, e.g. 0.1"))
            );
        }
    }

    #[test]
    fn durations() {
        let ok = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("1h", Duration::from_secs(3600)),
            ("2d", Duration::from_secs(2 * 86_400)),
            ("250ms", Duration::from_millis(250)),
            ("1h30m", Duration::from_secs(5400)),
            ("1m30s", Duration::from_secs(90)),
            ("1d2h3m4s5ms", Duration::from_millis(93_784_005)),
            (" 45s ", Duration::from_secs(45)),
        ];
        for (input, expected) in ok {
            assert_eq!(duration(input), Ok(expected), "{input:?}");
        }
        let bad = ["", "10", "s", "10x", "-5s", "1.5h", "10s5m", "5m5m", "1h 30m", "99999999999999999999s"];
        for input in bad {
            assert!(duration(input).is_err(), "{input:?} should be rejected");
        }
        assert!(duration("10").unwrap_err().contains("no unit"));
    }

    #[test]
    fn durations_format_as_they_parse() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(45), "45s"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_millis(1250), "1s250ms"),
            (Duration::from_secs(86_400 + 1), "1d1s"),
            (Duration::from_micros(7), "7us"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
            if d >= Duration::from_millis(1) {
                assert_eq!(duration(text), Ok(d));
            }
        }
    }

    #[test]
    fn filters() {
        let set = |t: &str, clauses: &[(&str, &str)]| FilterSet {
            event_type: t.to_owned(),
            clauses: clauses.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect(),
        };
        let ok = [
            ("order.placed:region=eu-*", set("order.placed", &[("region", "eu-*")])),
            ("t:subject=inv-{1,2}", set("t", &[("subject", "inv-{1,2}")])),
            ("t:a=x&b=y*", set("t", &[("a", "x"), ("b", "y*")])),
            ("urn:example:type:customer=c-1", set("urn:example:type", &[("customer", "c-1")])),
            ("t:expr=a==b", set("t", &[("expr", "a==b")])),
            (r"t:note=fish\&chips", set("t", &[("note", r"fish\&chips")])),
            ("t:source=/a:b", set("t", &[("source", "/a:b")])),
        ];
        for (input, expected) in ok {
            assert_eq!(filter(input), Ok(expected), "{input:?}");
        }
        let bad = ["t", "t:region", "region=eu", ":region=eu", "t:=eu", "t:region=", "t:a=x&b", "t:a=x&=y"];
        for input in bad {
            assert!(filter(input).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn extensions() {
        let ok = [
            ("region=eu", "region", AttributeValue::String("eu".into())),
            ("empty=", "empty", AttributeValue::String(String::new())),
            ("q=a=b", "q", AttributeValue::String("a=b".into())),
            ("n:int=-42", "n", AttributeValue::Integer(-42)),
            ("ok:bool=true", "ok", AttributeValue::Boolean(true)),
            ("s:string=x:y", "s", AttributeValue::String("x:y".into())),
            ("home:uri=https://x.example", "home", AttributeValue::Uri("https://x.example".into())),
            ("rel:uriref=/a/b", "rel", AttributeValue::UriRef("/a/b".into())),
            ("raw:bytes=AQI=", "raw", AttributeValue::Bytes(vec![1, 2])),
            ("at:time=1970-01-01T00:00:10Z", "at", AttributeValue::from(UNIX_EPOCH + Duration::from_secs(10))),
        ];
        for (input, name, value) in ok {
            assert_eq!(extension(input), Ok(Extension { name: name.to_owned(), value }), "{input:?}");
        }
        let bad = [
            "region",
            "=eu",
            "Region=eu",
            "re-gion=eu",
            "n:int=4.5",
            "n:int=99999999999",
            "b:bool=yes",
            "t:time=yesterday",
            "r:bytes=!!",
            "x:float=1.0",
        ];
        for input in bad {
            assert!(extension(input).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn times_or_durations_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let ok = [
            ("10m", now - Duration::from_secs(600)),
            ("1h30m", now - Duration::from_secs(5400)),
            ("0s", now),
            ("1970-01-01T00:01:00Z", UNIX_EPOCH + Duration::from_secs(60)),
        ];
        for (input, expected) in ok {
            assert_eq!(time_or_ago_at(input, now), Ok(expected), "{input:?}");
        }
        for input in ["10", "yesterday", "1970-01-01", ""] {
            assert!(time_or_ago_at(input, now).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn one_type_rejects_lists_with_a_hint() {
        assert_eq!(one_type("order.created"), Ok("order.created".to_owned()));
        let hint = one_type("a,b").unwrap_err();
        assert!(hint.contains("--any a,b") && hint.contains("--all a,b"), "{hint}");
    }

    #[test]
    fn times_and_start_positions() {
        assert_eq!(rfc3339("1970-01-01T00:01:00Z"), Ok(UNIX_EPOCH + Duration::from_secs(60)));
        assert_eq!(rfc3339("1970-01-01T02:01:00+02:00"), Ok(UNIX_EPOCH + Duration::from_secs(60)));
        assert!(rfc3339("1970-01-01").is_err());
        assert_eq!(start_position("earliest"), Ok(StartPosition::Earliest));
        assert_eq!(start_position("latest"), Ok(StartPosition::Latest));
        assert_eq!(start_position("42"), Ok(StartPosition::Sequence(42)));
        assert!(start_position("0").is_err());
        assert!(start_position("first").is_err());
    }
}
