//! HTTP Digest authentication as SIP uses it (RFC 3261 §22 with RFC 2617 and RFC 7616):
//! MD5 and SHA-256, `qop=auth` or no qop.
//!
//! rsip's digest support is not used: its WWW-Authenticate parser rejects `qop="auth,auth-int"`,
//! its helper formats `nc` in decimal and hashes a re-serialised URI. Here everything works on the
//! raw header strings, and the `uri` is hashed exactly as the client sent it.
//!
//! A registrar checks a request in this order:
//! 1. [`Credentials::parse`] the Authorization header, and compare `username` and `realm` with
//!    its own records;
//! 2. [`NonceIssuer::check`] the nonce: `Invalid` → new challenge, `Stale` → challenge with
//!    `stale=true`;
//! 3. [`Credentials::verify`] the response against the stored password;
//! 4. [`NonceCounts::accept`] the nonce count, only after 3 succeeded, so that only
//!    authenticated clients can take replay-guard entries.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// Digest hash algorithm. `-sess` variants are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// `MD5`, the default when a header names no algorithm.
    #[default]
    Md5,
    /// `SHA-256` (RFC 7616; allowed by GB/T 28181-2022).
    Sha256,
}

impl Algorithm {
    /// Parses `MD5` or `SHA-256`, case-insensitively.
    pub fn parse(name: &str) -> Result<Algorithm, DigestError> {
        if name.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::UnsupportedAlgorithm(name.to_owned()))
        }
    }

    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex hash of `data`.
    fn hex_hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::parse(s)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a digest header cannot be used. The text names the parameter or value at fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("not a Digest header (scheme {0:?})")]
    NotDigest(String),
    #[error("missing {0} parameter")]
    Missing(&'static str),
    #[error("unsupported algorithm {0:?} (only MD5 and SHA-256)")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?} (only auth)")]
    UnsupportedQop(String),
    #[error("bad nc {0:?}: expected 1 to 8 hex digits")]
    BadNc(String),
    #[error("parameter {0} given twice")]
    Duplicate(String),
    #[error("malformed digest parameters: {0}")]
    Malformed(String),
}

/// A `WWW-Authenticate: Digest ...` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    /// Whether `qop=auth` is offered (and, when we issue it, required).
    pub qop_auth: bool,
    /// The previous nonce was authentic but expired: the client should retry with the new one
    /// without asking its user for a password.
    pub stale: bool,
    pub opaque: Option<String>,
}

impl Challenge {
    /// `Digest realm="…", nonce="…", qop="auth", algorithm=MD5`, then `opaque` and `stale=true`
    /// when set.
    pub fn to_header_value(&self) -> String {
        let mut value = format!(
            "Digest realm={}, nonce={}",
            quote(&self.realm),
            quote(&self.nonce)
        );
        if self.qop_auth {
            value.push_str(", qop=\"auth\"");
        }
        value.push_str(", algorithm=");
        value.push_str(self.algorithm.as_str());
        if let Some(opaque) = &self.opaque {
            value.push_str(", opaque=");
            value.push_str(&quote(opaque));
        }
        if self.stale {
            value.push_str(", stale=true");
        }
        value
    }

    /// Parses a WWW-Authenticate / Proxy-Authenticate value. Tolerant of any qop list containing
    /// `auth` (`"auth,auth-int"` → auth); a list without `auth` is an error, as answering without
    /// qop would not satisfy such a server.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let params = Params::parse(value)?;
        let qop_auth = match params.get("qop") {
            None => false,
            Some(list)
                if list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth")) =>
            {
                true
            }
            Some(list) => return Err(DigestError::UnsupportedQop(list.to_owned())),
        };
        Ok(Challenge {
            realm: params.required("realm")?,
            nonce: params.required("nonce")?,
            algorithm: params.algorithm()?,
            qop_auth,
            stale: params
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            opaque: params.get("opaque").map(str::to_owned),
        })
    }
}

/// The parameters of an `Authorization: Digest ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The digest-uri exactly as the client sent it; it is what the client hashed.
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses a raw Authorization / Proxy-Authorization value: scheme `Digest` (any case),
    /// comma-separated `key=value` in any order, values quoted (with `\` escapes) or bare
    /// tokens, key names case-insensitive, unknown keys ignored, duplicates rejected.
    /// `username realm nonce uri response` are required; with `qop` (which must be `auth`),
    /// `nc` (1–8 hex digits) and `cnonce` are too.
    pub fn parse(value: &str) -> Result<Credentials, DigestError> {
        let params = Params::parse(value)?;
        let username = params.required("username")?;
        let realm = params.required("realm")?;
        let nonce = params.required("nonce")?;
        let uri = params.required("uri")?;
        let response = params.required("response")?;
        let algorithm = params.algorithm()?;
        let qop = params.get("qop").map(str::to_owned);
        let mut nc = params.get("nc").map(str::to_owned);
        let mut cnonce = params.get("cnonce").map(str::to_owned);
        if let Some(qop) = &qop {
            if !qop.eq_ignore_ascii_case("auth") {
                return Err(DigestError::UnsupportedQop(qop.clone()));
            }
            let count = nc.as_deref().ok_or(DigestError::Missing("nc"))?;
            if parse_nc(count).is_none() {
                return Err(DigestError::BadNc(count.to_owned()));
            }
            if cnonce.is_none() {
                return Err(DigestError::Missing("cnonce"));
            }
        } else {
            // Without qop they take no part in the response; keeping them would only mislead.
            nc = None;
            cnonce = None;
        }
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
            nc,
            cnonce,
            opaque: params.get("opaque").map(str::to_owned),
        })
    }

    /// Whether `response` is right for `method` and `password`:
    /// `HA1 = H(username:realm:password)`, `HA2 = H(method:uri)` with the raw uri, and
    /// `H(HA1:nonce:nc:cnonce:qop:HA2)`, or `H(HA1:nonce:HA2)` without qop. The comparison takes
    /// the same time wherever the first difference is. Checks nothing else: realm, nonce
    /// freshness and nonce count are the caller's (see the [module docs](self)).
    pub fn verify(&self, method: &str, password: &str) -> bool {
        let Some(expected) = self.expected_response(method, password) else {
            return false;
        };
        constant_time_eq(
            expected.as_bytes(),
            self.response.to_ascii_lowercase().as_bytes(),
        )
    }

    /// `None` when qop is set but nc or cnonce is not (only possible for a hand-built value).
    fn expected_response(&self, method: &str, password: &str) -> Option<String> {
        let h = |data: String| self.algorithm.hex_hash(&data);
        let ha1 = h(format!("{}:{}:{password}", self.username, self.realm));
        let ha2 = h(format!("{method}:{}", self.uri));
        Some(match &self.qop {
            Some(qop) => {
                let nc = self.nc.as_deref()?;
                let cnonce = self.cnonce.as_deref()?;
                h(format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", self.nonce))
            }
            None => h(format!("{ha1}:{}:{ha2}", self.nonce)),
        })
    }

    /// The client side (device simulator): credentials answering `challenge`. With `qop=auth`
    /// offered it is used, with `nc` as 8 hex digits; `cnonce` and `nc` are then the caller's to
    /// vary per request.
    pub fn answer(
        challenge: &Challenge,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Credentials {
        let (qop, nc, cnonce) = if challenge.qop_auth {
            (
                Some("auth".to_owned()),
                Some(format!("{nc:08x}")),
                Some(cnonce.to_owned()),
            )
        } else {
            (None, None, None)
        };
        let mut credentials = Credentials {
            username: username.to_owned(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_owned(),
            response: String::new(),
            algorithm: challenge.algorithm,
            qop,
            nc,
            cnonce,
            opaque: challenge.opaque.clone(),
        };
        credentials.response = credentials
            .expected_response(method, password)
            .unwrap_or_default();
        credentials
    }

    /// `Digest username="…", realm="…", nonce="…", uri="…", response="…", algorithm=MD5`, then
    /// `cnonce="…", qop=auth, nc=00000001` and `opaque="…"` when set.
    pub fn to_header_value(&self) -> String {
        let mut value = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response),
            self.algorithm
        );
        if let Some(cnonce) = &self.cnonce {
            value.push_str(", cnonce=");
            value.push_str(&quote(cnonce));
        }
        // qop and nc are tokens and go unquoted (RFC 2617 §3.2.2).
        if let Some(qop) = &self.qop {
            value.push_str(", qop=");
            value.push_str(qop);
        }
        if let Some(nc) = &self.nc {
            value.push_str(", nc=");
            value.push_str(nc);
        }
        if let Some(opaque) = &self.opaque {
            value.push_str(", opaque=");
            value.push_str(&quote(opaque));
        }
        value
    }
}

/// A quoted-string with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An `nc` value: 1 to 8 hex digits (RFC 2617 writes exactly 8; shorter is tolerated).
fn parse_nc(nc: &str) -> Option<u32> {
    if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok()
}

/// Equality whose running time depends only on the lengths (which are public: hex digests).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `key=value` list after the `Digest` scheme, keys lower-cased.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(value: &str) -> Result<Params, DigestError> {
        let value = value.trim_start();
        let scheme_end = value
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(value.len());
        let scheme = &value[..scheme_end];
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest(scheme.to_owned()));
        }
        let mut parser = ParamParser {
            bytes: value.as_bytes(),
            at: scheme_end,
        };
        let mut params: Vec<(String, String)> = Vec::new();
        while let Some((key, value)) = parser.next_param()? {
            if params.iter().any(|(k, _)| *k == key) {
                return Err(DigestError::Duplicate(key));
            }
            params.push((key, value));
        }
        Ok(Params(params))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &'static str) -> Result<String, DigestError> {
        self.get(key)
            .map(str::to_owned)
            .ok_or(DigestError::Missing(key))
    }

    fn algorithm(&self) -> Result<Algorithm, DigestError> {
        self.get("algorithm")
            .map_or(Ok(Algorithm::Md5), Algorithm::parse)
    }
}

/// Cursor over the parameter list. Works on bytes: every delimiter is ASCII, so slicing between
/// delimiters never splits a UTF-8 sequence.
struct ParamParser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl ParamParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> String {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned()
    }

    /// The next `key=value`, skipping empty list elements; `None` at the end.
    fn next_param(&mut self) -> Result<Option<(String, String)>, DigestError> {
        while self
            .peek()
            .is_some_and(|b| b == b',' || b.is_ascii_whitespace())
        {
            self.at += 1;
        }
        if self.peek().is_none() {
            return Ok(None);
        }
        let key = self.take_while(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b));
        if key.is_empty() {
            return Err(DigestError::Malformed(format!(
                "expected a parameter name at byte {}",
                self.at
            )));
        }
        let key = key.to_ascii_lowercase();
        self.skip_whitespace();
        if self.peek() != Some(b'=') {
            return Err(DigestError::Malformed(format!("{key} has no value")));
        }
        self.at += 1;
        self.skip_whitespace();
        let value = if self.peek() == Some(b'"') {
            self.at += 1;
            self.quoted(&key)?
        } else {
            let token = self.take_while(|b| b != b',' && !b.is_ascii_whitespace());
            if token.is_empty() {
                // `key=` followed by nothing; an empty value must be written `""`.
                return Err(DigestError::Malformed(format!("{key} has no value")));
            }
            token
        };
        self.skip_whitespace();
        match self.peek() {
            None | Some(b',') => Ok(Some((key, value))),
            Some(_) => Err(DigestError::Malformed(format!(
                "unexpected text after the value of {key}"
            ))),
        }
    }

    /// The rest of a quoted string whose opening quote was consumed, unescaped.
    fn quoted(&mut self, key: &str) -> Result<String, DigestError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(DigestError::Malformed(format!(
                        "unterminated quoted value of {key}"
                    )));
                }
                Some(b'"') => {
                    self.at += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.at += 1;
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.at += 1;
                    }
                }
                Some(b) => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
    }
}

/// Whether a nonce may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Issued by us for this realm, within its lifetime.
    Fresh,
    /// Issued by us for this realm but expired (or dated in the future after the clock was set
    /// back): challenge again with `stale=true`.
    Stale,
    /// Not issued by us, for another realm, or altered.
    Invalid,
}

/// Issues and checks nonces without storing them: a nonce is
/// `hex(issued_at, 16 digits) ‖ hex(serial, 16 digits) ‖ hex(HMAC-SHA256(secret, issued_at_be ‖
/// serial_be ‖ realm)[..16])`, 64 lower-case hex digits. The serial makes every nonce unique even
/// within one second: two challenges in the same second must not share a nonce, or the second
/// answer (nc=1 again) would look like a replay of the first. Restarting with the same secret
/// keeps outstanding nonces valid.
pub struct NonceIssuer {
    /// HMAC keyed with the secret, cloned per use so that the key schedule runs once.
    mac: Hmac<Sha256>,
    ttl_secs: u64,
    serial: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("NonceIssuer")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

const MAC_BYTES: usize = 16;
const NONCE_LEN: usize = 32 + 2 * MAC_BYTES;

impl NonceIssuer {
    /// An issuer whose nonces stay fresh for `ttl_secs` seconds.
    pub fn new(secret: [u8; 32], ttl_secs: u64) -> Self {
        NonceIssuer {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(&secret)
                .expect("HMAC accepts keys of any length"),
            ttl_secs,
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn mac_for(&self, issued_at: u64, serial: u64, realm: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&issued_at.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        mac.update(realm.as_bytes());
        mac
    }

    /// A new nonce for `realm` issued at `now_secs` (Unix seconds).
    pub fn issue(&self, realm: &str, now_secs: u64) -> String {
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = self
            .mac_for(now_secs, serial, realm)
            .finalize()
            .into_bytes();
        format!(
            "{now_secs:016x}{serial:016x}{}",
            hex::encode(&tag[..MAC_BYTES])
        )
    }

    /// Whether `nonce` is one of ours for `realm` and still within its lifetime at `now_secs`.
    pub fn check(&self, nonce: &str, realm: &str, now_secs: u64) -> NonceState {
        // Only the exact form we issue: a case-changed copy must not count as another nonce.
        if nonce.len() != NONCE_LEN
            || !nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return NonceState::Invalid;
        }
        let (time, rest) = nonce.split_at(16);
        let (serial, tag) = rest.split_at(16);
        let (Ok(issued_at), Ok(serial), Ok(tag)) = (
            u64::from_str_radix(time, 16),
            u64::from_str_radix(serial, 16),
            hex::decode(tag),
        ) else {
            return NonceState::Invalid;
        };
        if self
            .mac_for(issued_at, serial, realm)
            .verify_truncated_left(&tag)
            .is_err()
        {
            return NonceState::Invalid;
        }
        match now_secs.checked_sub(issued_at) {
            Some(age) if age <= self.ttl_secs => NonceState::Fresh,
            _ => NonceState::Stale,
        }
    }
}

/// Replay guard for `qop=auth`: per nonce, each accepted `nc` must be greater than the last.
///
/// Memory is bounded: an entry lives `ttl_secs` from the nonce's first use (pass the
/// [`NonceIssuer`]'s ttl; the nonce is stale by then anyway), and there are at most `capacity`
/// entries. When full after dropping expired entries, a **new** nonce is refused (`false`): the
/// guard fails closed rather than forgetting a nonce that could then be replayed. The caller
/// answers with a fresh challenge, and the client gets in once entries expire. Size the capacity
/// above the number of clients that authenticate within one ttl, and call `accept` only after
/// the digest verified.
#[derive(Debug)]
pub struct NonceCounts {
    capacity: usize,
    ttl_secs: u64,
    entries: HashMap<String, NonceUse>,
}

#[derive(Debug)]
struct NonceUse {
    last_nc: u32,
    first_seen: u64,
}

impl NonceCounts {
    /// A guard holding at most `capacity` nonces for `ttl_secs` each.
    ///
    /// Note: takes the ttl as well as the capacity, since evicting by age needs it.
    pub fn new(capacity: usize, ttl_secs: u64) -> Self {
        NonceCounts {
            capacity,
            ttl_secs,
            entries: HashMap::new(),
        }
    }

    /// Records a use of `nonce` with count `nc` (raw hex from the header) at `now_secs`; `false`
    /// means a replay (count not above the last one seen), an unparsable or zero count, an entry
    /// already expired, or a full table. Without qop (`nc` is `None`) there is no count to check
    /// and the answer is `true`: the nonce's ttl is then the only limit on replays.
    pub fn accept(&mut self, nonce: &str, nc: Option<&str>, now_secs: u64) -> bool {
        let Some(nc) = nc else {
            return true;
        };
        let Some(nc) = parse_nc(nc).filter(|&n| n > 0) else {
            return false;
        };
        let ttl = self.ttl_secs;
        let expired = |entry: &NonceUse| now_secs.saturating_sub(entry.first_seen) > ttl;
        if let Some(entry) = self.entries.get_mut(nonce) {
            if expired(entry) {
                self.entries.remove(nonce);
                return false;
            }
            if nc <= entry.last_nc {
                return false;
            }
            entry.last_nc = nc;
            return true;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, entry| !expired(entry));
            if self.entries.len() >= self.capacity {
                return false;
            }
        }
        self.entries.insert(
            nonce.to_owned(),
            NonceUse {
                last_nc: nc,
                first_seen: now_secs,
            },
        );
        true
    }

    /// Number of nonces currently tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no nonce is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GB_USER: &str = "34020000001320000001";
    const GB_REALM: &str = "3402000000";
    const GB_URI: &str = "sip:34020000002000000001@3402000000";
    const GB_NONCE: &str = "9bd055f2d8a54c4c";
    const GB_PASSWORD: &str = "12345678";

    #[test]
    fn rfc2617_example() {
        let header = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = Credentials::parse(header).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.verify("GET", "Circle Of Life"));
        assert!(!c.verify("GET", "Circle of Life"));
        assert!(!c.verify("POST", "Circle Of Life"));
    }

    #[test]
    fn rfc7616_examples() {
        let challenge = Challenge {
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            algorithm: Algorithm::Sha256,
            qop_auth: true,
            stale: false,
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS".into()),
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let c = Credentials::answer(
            &challenge,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            cnonce,
            1,
        );
        assert_eq!(
            c.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // §3.9.1 gives the MD5 answer to the same challenge too.
        let md5 = Challenge {
            algorithm: Algorithm::Md5,
            ..challenge
        };
        let c = Credentials::answer(
            &md5,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            cnonce,
            1,
        );
        assert_eq!(c.response, "8ca523f5e9506fed4657c9700eebdbec");

        let header = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let parsed = Credentials::parse(header).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::Sha256);
        assert!(parsed.verify("GET", "Circle of Life"));
        assert!(!parsed.verify("GET", "Circle Of Life"));
    }

    fn gb_header(extra: &str, response: &str) -> String {
        format!(
            "Digest username=\"{GB_USER}\", realm=\"{GB_REALM}\", nonce=\"{GB_NONCE}\", uri=\"{GB_URI}\", response=\"{response}\"{extra}"
        )
    }

    #[test]
    fn gb28181_register_with_and_without_qop() {
        // Expected values computed independently (Python hashlib).
        let with_qop = gb_header(
            ", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001",
            "21aaebf929b90f8697cbe21a99c06358",
        );
        let c = Credentials::parse(&with_qop).unwrap();
        assert!(c.verify("REGISTER", GB_PASSWORD));
        assert!(!c.verify("REGISTER", "wrong"));
        assert!(!c.verify("MESSAGE", GB_PASSWORD));

        let without = gb_header(", algorithm=MD5", "7501c9ebd9e09c7c14316e1a5fa4045f");
        let c = Credentials::parse(&without).unwrap();
        assert_eq!(c.qop, None);
        assert!(c.verify("REGISTER", GB_PASSWORD));
        assert!(!c.verify("REGISTER", "wrong"));

        // Upper-case hex from a sloppy client still matches.
        let upper = gb_header("", "7501C9EBD9E09C7C14316E1A5FA4045F");
        assert!(
            Credentials::parse(&upper)
                .unwrap()
                .verify("REGISTER", GB_PASSWORD)
        );

        let sha = gb_header(
            ", algorithm=sha-256, cnonce=\"0a4f113b\", qop=auth, nc=00000001",
            "3c2b2032ac6f1b45136d58955fbe3023f759b3da3099edac5f370823d0a82dc1",
        );
        assert!(
            Credentials::parse(&sha)
                .unwrap()
                .verify("REGISTER", GB_PASSWORD)
        );
    }

    #[test]
    fn uri_is_hashed_exactly_as_sent() {
        let raw_uri = format!("{GB_URI};transport=udp");
        let header = format!(
            "Digest username=\"{GB_USER}\", realm=\"{GB_REALM}\", nonce=\"{GB_NONCE}\", uri=\"{raw_uri}\", response=\"0bbd95cedcbd4f8f3af101bc428a6c76\", cnonce=\"0a4f113b\", qop=auth, nc=00000001"
        );
        let mut c = Credentials::parse(&header).unwrap();
        assert_eq!(c.uri, raw_uri);
        assert!(c.verify("REGISTER", GB_PASSWORD));
        // Any normalisation (dropping the parameter, changing case) breaks the hash.
        c.uri = GB_URI.into();
        assert!(!c.verify("REGISTER", GB_PASSWORD));
        c.uri = raw_uri.to_uppercase();
        assert!(!c.verify("REGISTER", GB_PASSWORD));
    }

    #[test]
    fn answer_round_trips_through_the_header() {
        let challenge = Challenge::parse(&format!(
            "Digest realm=\"{GB_REALM}\", nonce=\"{GB_NONCE}\", qop=\"auth\", algorithm=MD5"
        ))
        .unwrap();
        let c = Credentials::answer(
            &challenge,
            GB_USER,
            GB_PASSWORD,
            "REGISTER",
            GB_URI,
            "0a4f113b",
            1,
        );
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.response, "21aaebf929b90f8697cbe21a99c06358");
        let header = c.to_header_value();
        assert!(
            header.contains("nc=00000001") && header.contains("qop=auth"),
            "{header}"
        );
        let parsed = Credentials::parse(&header).unwrap();
        assert_eq!(parsed, c);
        assert!(parsed.verify("REGISTER", GB_PASSWORD));

        let c = Credentials::answer(
            &challenge,
            GB_USER,
            GB_PASSWORD,
            "REGISTER",
            GB_URI,
            "x",
            0x1a,
        );
        assert_eq!(c.nc.as_deref(), Some("0000001a"));

        let plain = Challenge {
            qop_auth: false,
            ..challenge
        };
        let c = Credentials::answer(&plain, GB_USER, GB_PASSWORD, "REGISTER", GB_URI, "x", 1);
        assert_eq!((c.qop.as_deref(), c.nc.as_deref()), (None, None));
        assert_eq!(c.response, "7501c9ebd9e09c7c14316e1a5fa4045f");
        assert!(
            Credentials::parse(&c.to_header_value())
                .unwrap()
                .verify("REGISTER", GB_PASSWORD)
        );
    }

    #[test]
    fn credentials_parsing_edge_cases() {
        // Lower-case scheme and keys, odd spacing, escaped quotes, unknown keys, unquoted qop.
        let c = Credentials::parse(
            r#"digest  USERNAME = "a\"b\\c" ,realm="r",  nonce="n",uri="sip:x@y",response="00",qop=auth,nc=1,cnonce="c", foo=bar, algorithm="MD5""#,
        )
        .unwrap();
        assert_eq!(c.username, r#"a"b\c"#);
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc.as_deref(), Some("1"));
        assert_eq!(
            c.to_header_value().split(", ").next(),
            Some(r#"Digest username="a\"b\\c""#)
        );
        assert_eq!(Credentials::parse(&c.to_header_value()).unwrap(), c);

        let missing_response = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x@y\"";
        let error = Credentials::parse(missing_response).unwrap_err();
        assert_eq!(error, DigestError::Missing("response"));
        assert!(error.to_string().contains("response"));

        let cases = [
            ("Basic dXNlcjpwYXNz", "Basic"),
            (&*gb_header(", qop=auth, cnonce=\"c\"", "0"), "nc"),
            (&*gb_header(", qop=auth, nc=00000001", "0"), "cnonce"),
            (&*gb_header(", qop=auth, nc=zz, cnonce=\"c\"", "0"), "zz"),
            (
                &*gb_header(", qop=auth-int, nc=1, cnonce=\"c\"", "0"),
                "auth-int",
            ),
            (&*gb_header(", algorithm=MD5-sess", "0"), "MD5-sess"),
            (&*gb_header(", realm=\"again\"", "0"), "realm"),
            (&*gb_header(", opaque=\"open", "0"), "opaque"),
            (&*gb_header(", nc=", "0"), "nc"),
            (&*gb_header(" junk", "0"), "response"),
        ];
        for (header, needle) in cases {
            let error = Credentials::parse(header).unwrap_err().to_string();
            assert!(
                error.contains(needle),
                "{header}: {error:?} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn challenge_header_round_trip_and_tolerance() {
        let challenge = Challenge {
            realm: GB_REALM.into(),
            nonce: GB_NONCE.into(),
            algorithm: Algorithm::Md5,
            qop_auth: true,
            stale: false,
            opaque: None,
        };
        assert_eq!(
            challenge.to_header_value(),
            format!(
                "Digest realm=\"{GB_REALM}\", nonce=\"{GB_NONCE}\", qop=\"auth\", algorithm=MD5"
            )
        );
        assert_eq!(
            Challenge::parse(&challenge.to_header_value()).unwrap(),
            challenge
        );
        let stale = Challenge {
            stale: true,
            algorithm: Algorithm::Sha256,
            opaque: Some("o".into()),
            ..challenge.clone()
        };
        assert!(
            stale
                .to_header_value()
                .ends_with(", algorithm=SHA-256, opaque=\"o\", stale=true")
        );
        assert_eq!(Challenge::parse(&stale.to_header_value()).unwrap(), stale);

        let parsed =
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth,auth-int\", stale=TRUE")
                .unwrap();
        assert!(parsed.qop_auth && parsed.stale);
        assert_eq!(parsed.algorithm, Algorithm::Md5);
        let parsed = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!parsed.qop_auth);
        assert!(matches!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
            Err(DigestError::UnsupportedQop(_))
        ));
        assert_eq!(
            Challenge::parse("Digest realm=\"r\""),
            Err(DigestError::Missing("nonce"))
        );
        assert_eq!(
            Algorithm::parse("SHA-512-256"),
            Err(DigestError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
        assert_eq!("sha-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
    }

    #[test]
    fn nonces() {
        let issuer = NonceIssuer::new(std::array::from_fn(|i| i as u8), 300);
        let now = 1_700_000_000;
        let nonce = issuer.issue(GB_REALM, now);
        // Same construction computed independently (Python hmac).
        assert_eq!(
            nonce,
            "000000006553f1000000000000000000478c868337c8591e89c799ec165868b9"
        );
        // Two nonces in the same second differ (each answer starts again at nc=1).
        let second = issuer.issue(GB_REALM, now);
        assert_ne!(second, nonce);
        assert_eq!(issuer.check(&second, GB_REALM, now), NonceState::Fresh);
        assert_eq!(issuer.check(&nonce, GB_REALM, now), NonceState::Fresh);
        assert_eq!(issuer.check(&nonce, GB_REALM, now + 300), NonceState::Fresh);
        assert_eq!(issuer.check(&nonce, GB_REALM, now + 301), NonceState::Stale);
        assert_eq!(issuer.check(&nonce, GB_REALM, now - 1), NonceState::Stale);
        assert_eq!(issuer.check(&nonce, "3402000001", now), NonceState::Invalid);

        // Tampering: any changed digit, a moved timestamp, a different secret, odd forms.
        for at in [0, 15, 16, 31, 32, 63] {
            let mut bytes = nonce.clone().into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(
                issuer.check(&tampered, GB_REALM, now),
                NonceState::Invalid,
                "{tampered}"
            );
        }
        let other = NonceIssuer::new([7; 32], 300);
        assert_eq!(other.check(&nonce, GB_REALM, now), NonceState::Invalid);
        for odd in [
            "",
            "xyz",
            &nonce[..47],
            &nonce.to_uppercase(),
            &format!("{nonce}0"),
        ] {
            assert_eq!(
                issuer.check(odd, GB_REALM, now),
                NonceState::Invalid,
                "{odd:?}"
            );
        }
        assert!(!format!("{issuer:?}").contains("secret"));
    }

    #[test]
    fn nonce_counts_reject_replays() {
        let mut counts = NonceCounts::new(8, 300);
        assert!(counts.accept("n1", Some("00000001"), 0));
        assert!(
            !counts.accept("n1", Some("00000001"), 1),
            "same nc replayed"
        );
        assert!(counts.accept("n1", Some("00000003"), 2), "gaps are fine");
        assert!(!counts.accept("n1", Some("00000002"), 3), "going back");
        assert!(
            counts.accept("n2", Some("00000001"), 3),
            "nonces are independent"
        );
        assert!(!counts.accept("n3", Some("00000000"), 3), "nc starts at 1");
        assert!(!counts.accept("n3", Some("xyz"), 3));
        assert!(
            counts.accept("n3", None, 3),
            "without qop there is no count"
        );
        assert_eq!(counts.len(), 2);
        // An entry past its ttl is refused: its nonce is stale.
        assert!(!counts.accept("n1", Some("00000009"), 301));
    }

    #[test]
    fn nonce_counts_are_bounded() {
        let mut counts = NonceCounts::new(2, 10);
        assert!(counts.accept("a", Some("1"), 0));
        assert!(counts.accept("b", Some("1"), 5));
        // Full and nothing expired: a new nonce is refused, known ones still work.
        assert!(!counts.accept("c", Some("1"), 6));
        assert!(counts.accept("a", Some("2"), 6));
        // Once "a" expires it is evicted to make room.
        assert!(counts.accept("c", Some("1"), 11));
        assert_eq!(counts.len(), 2);
        assert!(
            !counts.accept("a", Some("3"), 11),
            "a was forgotten, not reset"
        );
        let mut none = NonceCounts::new(0, 10);
        assert!(!none.accept("a", Some("1"), 0));
        assert!(none.is_empty());
    }

    proptest! {
        #[test]
        fn header_parsers_never_panic(value in ".{0,200}") {
            let _ = Credentials::parse(&value);
            let _ = Challenge::parse(&value);
            let _ = Credentials::parse(&format!("Digest {value}"));
            let _ = Challenge::parse(&format!("Digest {value}"));
        }

        #[test]
        fn quoting_round_trips(username in ".{1,40}", password in ".{0,20}") {
            let challenge = Challenge {
                realm: GB_REALM.into(),
                nonce: GB_NONCE.into(),
                algorithm: Algorithm::Sha256,
                qop_auth: true,
                stale: false,
                opaque: None,
            };
            let c = Credentials::answer(&challenge, &username, &password, "REGISTER", GB_URI, "c", 1);
            let parsed = Credentials::parse(&c.to_header_value()).unwrap();
            prop_assert_eq!(&parsed, &c);
            prop_assert!(parsed.verify("REGISTER", &password));
        }
    }
}
