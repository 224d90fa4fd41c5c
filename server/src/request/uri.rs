//! URI references (RFC 3986 section 4.1), checked by the grammar: `ce_uri_ref` values and event
//! sources must be URI references, `ce_uri` values absolute URIs (a reference with a scheme).
//! ASCII only, as in the RFC (no IRIs).

use std::net::Ipv6Addr;

/// Returns whether `s` is a URI reference: a URI, or a relative reference.
pub fn is_uri_reference(s: &str) -> bool {
    parse(s).is_some()
}

/// Returns whether `s` is a URI with a scheme (`https://acme.io/a`, `urn:isbn:1`).
pub fn is_absolute_uri(s: &str) -> bool {
    parse(s) == Some(true)
}

/// Parses a URI reference; returns whether it has a scheme, or `None` when it is not one.
fn parse(s: &str) -> Option<bool> {
    let (rest, fragment) = s.split_once('#').unwrap_or((s, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !query.bytes().chain(fragment.bytes()).all(|b| is_pchar(b) || b == b'/' || b == b'?') {
        return None;
    }
    if !percent_encoding_ok(query) || !percent_encoding_ok(fragment) {
        return None;
    }
    // A colon before any slash ends a scheme; a relative path's first segment has none.
    let (scheme, hier) = match rest.find([':', '/']) {
        Some(i) if rest.as_bytes()[i] == b':' => (Some(&rest[..i]), &rest[i + 1..]),
        _ => (None, rest),
    };
    if scheme.is_some_and(|s| !is_scheme(s)) {
        return None;
    }
    let path = match hier.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            if !is_authority(&after[..end]) {
                return None;
            }
            &after[end..]
        }
        None => hier,
    };
    let path_ok = path.bytes().all(|b| is_pchar(b) || b == b'/') && percent_encoding_ok(path);
    path_ok.then_some(scheme.is_some())
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// A path character, `%` included (its two hex digits are checked by [`percent_encoding_ok`]).
fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || b":@%".contains(&b)
}

/// Returns whether every `%` is followed by two hex digits.
fn percent_encoding_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().filter(|(_, c)| **c == b'%').all(|(i, _)| {
        b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    })
}

/// `[ userinfo "@" ] host [ ":" port ]`
fn is_authority(s: &str) -> bool {
    let (userinfo, host_port) = s.rsplit_once('@').unwrap_or(("", s));
    let userinfo_ok = userinfo.bytes().all(|b| is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'%')
        && percent_encoding_ok(userinfo);
    let (host_ok, port) = match host_port.strip_prefix('[') {
        Some(literal) => match literal.split_once(']') {
            Some((ip, after)) => (is_ip_literal(ip), after),
            None => return false,
        },
        None => {
            let (host, port) = host_port.split_at(host_port.find(':').unwrap_or(host_port.len()));
            let reg_name = host.bytes().all(|b| is_unreserved(b) || is_sub_delim(b) || b == b'%');
            (reg_name && percent_encoding_ok(host), port)
        }
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    userinfo_ok && host_ok && port_ok
}

/// `IPv6address / IPvFuture` between the brackets.
fn is_ip_literal(ip: &str) -> bool {
    if let Some(future) = ip.strip_prefix(['v', 'V']) {
        return match future.split_once('.') {
            Some((version, rest)) => {
                !version.is_empty()
                    && version.bytes().all(|b| b.is_ascii_hexdigit())
                    && !rest.is_empty()
                    && rest.bytes().all(|b| is_unreserved(b) || is_sub_delim(b) || b == b':')
            }
            None => false,
        };
    }
    ip.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let cases = [
            // (value, URI reference, absolute URI)
            ("https://acme.io/a?x=1#top", true, true),
            ("urn:isbn:0451450523", true, true),
            ("http://[::1]:8080/x", true, true),
            ("http://[v1.fe80::a+en1]/", true, true),
            ("mailto:a@b.example", true, true),
            ("http://user:pw@host:80", true, true),
            ("/billing/invoices", true, false),
            ("invoices/7", true, false),
            ("../a%20b", true, false),
            ("//host/path", true, false),
            ("?q", true, false),
            ("#f", true, false),
            ("", true, false),
            ("a b", false, false),
            ("http://[::1", false, false),
            ("http://[::g]/", false, false),
            ("http://host:8a/", false, false),
            ("a%2", false, false),
            ("a%zz", false, false),
            ("1http://x", false, false),
            ("é", false, false),
            ("http://a/b c", false, false),
            ("x#a#b", false, false),
            ("http://a<b/", false, false),
        ];
        for (s, reference, absolute) in cases {
            assert_eq!((is_uri_reference(s), is_absolute_uri(s)), (reference, absolute), "{s:?}");
        }
    }
}
