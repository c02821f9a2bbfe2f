//! Low-level helpers on header sections and header values, shared by the framer and the message
//! parser so that both agree byte for byte on where a message ends.
//!
//! Everything here works on raw text and never allocates more than the input it is given. The
//! helpers are deliberately tolerant: they find what they are asked for or return `None`, and the
//! callers decide what is an error.

use std::borrow::Cow;

/// Finds the first occurrence of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a header section (the bytes after the start line, without the final blank line) into
/// logical header lines, joining folded continuation lines (RFC 3261 §7.3.1: a line starting with
/// SP or HTAB continues the previous one and the fold counts as a single SP).
///
/// A continuation line with nothing before it is returned as its own line; callers trim it, so a
/// first header line ` Via: …` is read as `Via`. The framer and the parser share this function,
/// so they still agree on where a message ends.
pub(crate) fn logical_lines(section: &[u8]) -> Vec<Cow<'_, [u8]>> {
    let mut lines: Vec<Cow<'_, [u8]>> = Vec::new();
    if section.is_empty() {
        return lines;
    }
    for line in crlf_lines(section) {
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        match lines.last_mut() {
            Some(previous) if continues => {
                let previous = previous.to_mut();
                previous.push(b' ');
                previous.extend_from_slice(trim(line));
            }
            _ => lines.push(Cow::Borrowed(line)),
        }
    }
    lines
}

/// Lines separated by CRLF only: a bare LF inside a header line is not a line break in SIP.
fn crlf_lines(bytes: &[u8]) -> CrlfLines<'_> {
    CrlfLines { rest: Some(bytes) }
}

struct CrlfLines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CrlfLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find(rest, b"\r\n") {
            Some(at) => {
                self.rest = Some(&rest[at + 2..]);
                Some(&rest[..at])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Splits one logical header line into its name and value, both trimmed of SP/HTAB
/// (`HCOLON = *( SP / HTAB ) ":" SWS`). `None` when the line has no colon.
pub(crate) fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some((trim(&line[..colon]), trim(&line[colon + 1..])))
}

/// Trims SP and HTAB on both sides.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &bytes[start..end]
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Full header name for the compact forms of RFC 3261 §7.3.3 and the IANA registry; any other
/// name is returned unchanged. Lookups compare the results case-insensitively.
pub(crate) fn canonical_name(name: &str) -> &str {
    let [letter] = name.as_bytes() else {
        return name;
    };
    match letter.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => name,
    }
}

/// Whether two header names denote the same header, compact forms included.
pub(crate) fn same_header(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

/// The body length announced by a header section, from every `Content-Length` / `l` value in it.
///
/// `Ok(None)` when there is none. Values must be plain decimal digits (no sign, no spaces inside);
/// repeated headers are tolerated only when they agree, because two different lengths would let
/// two parsers disagree on where the next message starts (request smuggling).
pub(crate) fn content_length<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<usize>, String> {
    let mut found: Option<usize> = None;
    for raw in values {
        let value = trim(raw);
        let text = String::from_utf8_lossy(value);
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(format!("{text:?} is not a non-negative decimal number"));
        }
        let length: usize = text.parse().map_err(|_| format!("{text:?} is too large"))?;
        match found {
            Some(previous) if previous != length => {
                return Err(format!(
                    "conflicting values {previous} and {length} in repeated headers"
                ));
            }
            _ => found = Some(length),
        }
    }
    Ok(found)
}

/// Splits `value` at `separator` where it is not inside a quoted string or `<...>`, trimming each
/// part. Used for comma-separated header lists (several Vias or Contacts in one header line).
pub(crate) fn split_top_level(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            c if c == separator && !in_quotes && !in_angle => {
                parts.push(value[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts
}

/// The URI and the header parameters of a `name-addr` or `addr-spec` value (From, To, Contact,
/// Route...). With angle brackets the URI is what is inside them and the parameters follow `>`;
/// without, RFC 3261 §20.10 says every `;param` belongs to the header, not to the URI.
pub(crate) fn address(value: &str) -> (&str, &str) {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => {
                let inner = &value[i + 1..];
                return match inner.find('>') {
                    Some(end) => (inner[..end].trim(), &inner[end + 1..]),
                    None => (inner.trim(), ""),
                };
            }
            _ => {}
        }
    }
    match value.find(';') {
        Some(semi) => (value[..semi].trim(), &value[semi..]),
        None => (value.trim(), ""),
    }
}

/// Looks up `;name=value` (name case-insensitive) in a parameter string such as `;tag=1;lr`.
/// A flag parameter without `=` yields `Some("")`; a quoted value is returned without its quotes.
pub(crate) fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    split_top_level(params, ';').into_iter().find_map(|p| {
        let (key, value) = match p.split_once('=') {
            Some((key, value)) => (key.trim(), value.trim()),
            None => (p.trim(), ""),
        };
        if !key.eq_ignore_ascii_case(name) {
            return None;
        }
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

/// The user part of a SIP URI (`sip:user:password@host;params`), `None` if it has none.
pub(crate) fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let (userinfo, _) = rest.split_once('@')?;
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_lines_are_joined() {
        let lines = logical_lines(b"Subject: a\r\n  b\r\n\tc\r\nTo: x");
        assert_eq!(lines.len(), 2);
        assert_eq!(&*lines[0], b"Subject: a b c");
        assert_eq!(&*lines[1], b"To: x");
    }

    #[test]
    fn address_forms() {
        assert_eq!(
            address("\"Cam <1>\" <sip:1@d;transport=udp>;tag=9"),
            ("sip:1@d;transport=udp", ";tag=9")
        );
        assert_eq!(address("sip:1@d;tag=9"), ("sip:1@d", ";tag=9"));
        assert_eq!(address("<sip:1@d"), ("sip:1@d", ""));
        assert_eq!(param(";Tag=\"x\";lr", "tag"), Some("x"));
        assert_eq!(param(";tag=x;lr", "lr"), Some(""));
        assert_eq!(param(";tag=x", "branch"), None);
        assert_eq!(
            uri_user("sip:34020000001320000001@3402000000"),
            Some("34020000001320000001")
        );
        assert_eq!(uri_user("SIPS:alice:secret@h"), Some("alice"));
        assert_eq!(uri_user("sip:h"), None);
        assert_eq!(uri_user("tel:+123"), None);
    }

    #[test]
    fn content_length_rules() {
        assert_eq!(content_length([&b" 12 "[..]]), Ok(Some(12)));
        assert_eq!(content_length([&b"3"[..], b"3"]), Ok(Some(3)));
        assert_eq!(content_length(std::iter::empty()), Ok(None));
        assert!(content_length([&b"-1"[..]]).is_err());
        assert!(content_length([&b"1 2"[..]]).is_err());
        assert!(content_length([&b""[..]]).is_err());
        assert!(content_length([&b"3"[..], b"4"]).is_err());
        assert!(content_length([&b"99999999999999999999999999"[..]]).is_err());
    }
}
