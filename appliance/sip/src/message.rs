//! SIP messages: parsing, header access and building, on top of rsip.
//!
//! [`Message`] keeps two views of one message:
//! - the raw header values exactly as received (trimmed, folded lines joined), which is what
//!   digest verification, logging and echoing into responses need;
//! - an [`rsip::SipMessage`] for typed access ([`Message::sip`]), built from a normalised copy of
//!   the header section (compact names expanded, folds joined) because rsip itself understands
//!   neither.
//!
//! Bodies are bytes: MANSCDP bodies are often GB2312/GBK, not UTF-8, and pass through untouched.
//! rsip's own serialiser would run them through a lossy UTF-8 conversion, so
//! [`Message::to_bytes`] writes the message itself.
//!
//! # What `parse` accepts
//! - Leading CRLFs are skipped (RFC 3261 §7.5). The header section ends at the first
//!   `\r\n\r\n`; lines break at CRLF only.
//! - Content-Length (or `l`) must be a non-negative decimal number, repeated only with the same
//!   value. A shorter body than announced is an error; extra bytes after it are dropped (RFC 3261
//!   §18.3). Without the header the body is the rest of the input, which is the UDP rule; over TCP
//!   the [`StreamFramer`](crate::StreamFramer) has already cut the message at length 0.
//! - Via, From, To, Call-ID and CSeq are mandatory (RFC 3261 §8.1.1) and a message missing one is
//!   rejected with an error naming it, so on a parsed message [`Message::call_id`] and
//!   [`Message::cseq`] are always `Some`. A request's CSeq method must equal its method.
//!   Max-Forwards is not required: some devices omit it.
//! - Header values that are not UTF-8 (GBK display names happen) are decoded lossily, with
//!   U+FFFD replacing the bad bytes. Values containing CR, LF or NUL are rejected, so nothing
//!   read can smuggle a line into a message built from it.
//! - The start line must be acceptable to rsip too, which means the method must be one rsip knows
//!   (ACK BYE CANCEL INFO INVITE MESSAGE NOTIFY OPTIONS PRACK PUBLISH REFER REGISTER SUBSCRIBE
//!   UPDATE); anything else is a parse error.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use crate::fields::{
    address, canonical_name, content_length, find, is_token, logical_lines, param, same_header,
    split_field, split_top_level, uri_user,
};

/// A parsed or built SIP message. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Message {
    start: StartLine,
    headers: Vec<Field>,
    /// rsip's view of the same message; it also owns the body.
    sip: rsip::SipMessage,
}

#[derive(Debug, Clone)]
enum StartLine {
    Request { method: String, uri: String },
    Response { status: u16, reason: String },
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    value: String,
}

/// Why bytes are not an acceptable SIP message. The text names the offending part.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("no blank line (CRLF CRLF) ends the header section")]
    UnterminatedHeader,
    #[error("bad start line {line:?}: {reason}")]
    StartLine { line: String, reason: &'static str },
    #[error("bad header line {0:?}: expected `name: value` with a token name")]
    HeaderLine(String),
    #[error("header {0} contains CR, LF or NUL")]
    ControlCharacter(String),
    #[error("bad Content-Length: {0}")]
    ContentLength(String),
    #[error("body has {actual} bytes but Content-Length announces {declared}")]
    BodyTooShort { declared: usize, actual: usize },
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("bad {name} header {value:?}: {reason}")]
    BadHeader {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("rsip rejected the message: {0}")]
    Rsip(String),
}

/// Why a builder could not produce a message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// A method, URI, header name or value that would not survive serialisation intact (empty,
    /// not a token, or containing CR/LF/NUL, which would inject lines).
    #[error("invalid {what}: {value:?}")]
    Invalid { what: String, value: String },
    #[error("status code {0} is outside 100..=699")]
    Status(u16),
    /// The assembled message does not parse, e.g. a mandatory header was never set.
    #[error(transparent)]
    Message(#[from] ParseError),
}

impl Message {
    /// Parses one complete message (a UDP datagram or a [`Frame::Message`](crate::Frame)).
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let mut bytes = bytes;
        while let Some(rest) = bytes.strip_prefix(b"\r\n") {
            bytes = rest;
        }
        if bytes.is_empty() {
            return Err(ParseError::Empty);
        }
        let end = find(bytes, b"\r\n\r\n").ok_or(ParseError::UnterminatedHeader)?;
        let head = &bytes[..end];
        let rest = &bytes[end + 4..];
        let (start, section) = match find(head, b"\r\n") {
            Some(at) => (&head[..at], &head[at + 2..]),
            None => (head, &[][..]),
        };
        let start = parse_start_line(start)?;

        let mut headers = Vec::new();
        for line in logical_lines(section) {
            let bad_line = || ParseError::HeaderLine(excerpt(&line));
            let (name, value) = split_field(&line).ok_or_else(bad_line)?;
            if !is_token(name) {
                return Err(bad_line());
            }
            headers.push(Field {
                name: String::from_utf8_lossy(name).into_owned(),
                value: String::from_utf8_lossy(value).into_owned(),
            });
        }

        let lengths = headers
            .iter()
            .filter(|f| same_header(&f.name, "Content-Length"))
            .map(|f| f.value.as_bytes());
        let body = match content_length(lengths).map_err(ParseError::ContentLength)? {
            Some(declared) if declared > rest.len() => {
                return Err(ParseError::BodyTooShort {
                    declared,
                    actual: rest.len(),
                });
            }
            Some(declared) => &rest[..declared],
            None => rest,
        };
        Message::from_parts(start, headers, body.to_vec())
    }

    /// Validates the parts and builds rsip's view of them.
    fn from_parts(
        start: StartLine,
        headers: Vec<Field>,
        body: Vec<u8>,
    ) -> Result<Message, ParseError> {
        if let Some(f) = headers.iter().find(|f| !valid_value(&f.value)) {
            return Err(ParseError::ControlCharacter(f.name.clone()));
        }
        let mut head = String::new();
        write_start_line(&mut head, &start);
        for f in &headers {
            let _ = write!(head, "{}: {}\r\n", canonical_name(&f.name), f.value);
        }
        head.push_str("\r\n");
        let mut sip = rsip::SipMessage::try_from(head.as_bytes())
            .map_err(|e| ParseError::Rsip(e.to_string()))?;
        *sip.body_mut() = body;
        let message = Message {
            start,
            headers,
            sip,
        };
        message.check_mandatory()?;
        Ok(message)
    }

    fn check_mandatory(&self) -> Result<(), ParseError> {
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if self.header(name).is_none() {
                return Err(ParseError::MissingHeader(name));
            }
        }
        if self.call_id().is_some_and(str::is_empty) {
            return Err(ParseError::BadHeader {
                name: "Call-ID",
                value: String::new(),
                reason: "empty",
            });
        }
        let cseq = self.header("CSeq").unwrap_or_default();
        let bad_cseq = |reason| ParseError::BadHeader {
            name: "CSeq",
            value: cseq.to_owned(),
            reason,
        };
        let (_, cseq_method) = self
            .cseq()
            .ok_or_else(|| bad_cseq("expected `<number 0..2^32> <method>`"))?;
        if let Some(method) = self.method()
            && method != cseq_method
        {
            return Err(bad_cseq("method differs from the request method"));
        }
        Ok(())
    }

    /// Whether this is a request (otherwise a response).
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request exactly as sent (`"REGISTER"`, `"MESSAGE"`...); `None` for a
    /// response.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response; `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response; `None` for a request.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI of a request, as sent.
    pub fn request_uri(&self) -> Option<String> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri.clone()),
            StartLine::Response { .. } => None,
        }
    }

    /// The first value of a header, trimmed. Names are case-insensitive and compact forms
    /// (`i f t v m l c k s e o` and the other registered ones) match their full names both ways.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|f| same_header(&f.name, name))
            .map(|f| f.value.as_str())
    }

    /// Every value of a header, in message order, one entry per header line. A line holding a
    /// comma-separated list (`Via: a, b`) is one entry: splitting is header-specific.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|f| same_header(&f.name, name))
            .map(|f| f.value.as_str())
            .collect()
    }

    /// All headers as `(name as sent, value)`, in message order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
    }

    /// rsip's typed view of the message (body included).
    pub fn sip(&self) -> &rsip::SipMessage {
        &self.sip
    }

    /// The Call-ID; always present on a parsed message.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// CSeq number and method; always present on a parsed message.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let mut parts = self.header("CSeq")?.split_ascii_whitespace();
        let number = parts.next()?.parse().ok()?;
        let method = parts.next()?;
        (parts.next().is_none() && is_token(method.as_bytes())).then(|| (number, method.to_owned()))
    }

    /// User part of the From URI: the GB28181 device id of a device's request.
    pub fn from_user(&self) -> Option<String> {
        self.address_user("From")
    }

    /// User part of the To URI.
    pub fn to_user(&self) -> Option<String> {
        self.address_user("To")
    }

    /// The `tag` parameter of From.
    pub fn from_tag(&self) -> Option<String> {
        self.address_tag("From")
    }

    /// The `tag` parameter of To.
    pub fn to_tag(&self) -> Option<String> {
        self.address_tag("To")
    }

    fn address_user(&self, name: &str) -> Option<String> {
        let (uri, _) = address(self.header(name)?);
        uri_user(uri).map(str::to_owned)
    }

    fn address_tag(&self, name: &str) -> Option<String> {
        let (_, params) = address(self.header(name)?);
        param(params, "tag")
            .filter(|tag| !tag.is_empty())
            .map(str::to_owned)
    }

    /// The `branch` parameter of the topmost Via (the first entry of the first Via line).
    pub fn via_branch(&self) -> Option<String> {
        let top = split_top_level(self.header("Via")?, ',')
            .into_iter()
            .next()?;
        let (_, params) = top.split_once(';')?;
        param(params, "branch")
            .filter(|branch| !branch.is_empty())
            .map(str::to_owned)
    }

    /// Requested lifetime in seconds: the Expires header, or if there is none the `expires`
    /// parameter of the first Contact (RFC 3261 §10.2.1.1 allows either; with several Contacts in
    /// a REGISTER, each may carry its own and only the first is read here). `None` when neither is
    /// present, `Err` with the offending text when the value is not a number in `0..=2^32-1`.
    pub fn expires(&self) -> Option<Result<u32, String>> {
        if let Some(value) = self.header("Expires") {
            return Some(parse_seconds(value));
        }
        let contact = split_top_level(self.header("Contact")?, ',')
            .into_iter()
            .next()?;
        let (_, params) = address(contact);
        param(params, "expires").map(parse_seconds)
    }

    /// The Content-Type value as sent (MANSCDP devices vary its case).
    pub fn content_type(&self) -> Option<&str> {
        self.header("Content-Type")
    }

    /// The body, exactly Content-Length bytes.
    pub fn body(&self) -> &[u8] {
        self.sip.body()
    }

    /// Serialises the message: start line, headers in order with their names as sent, and a
    /// Content-Length recomputed from the body (replacing any received one), placed last.
    pub fn to_bytes(&self) -> Vec<u8> {
        serialise(&self.start, &self.headers, self.body())
    }

    /// Starts a response to `request` (RFC 3261 §8.2.6): every Via in order, From, To, Call-ID
    /// and CSeq are copied. For `status > 100` a To without a tag gets one derived from the
    /// Call-ID and From tag, so a retransmitted request is answered with the same tag.
    pub fn response(request: &Message, status: u16, reason: &str) -> ResponseBuilder {
        let mut headers = Vec::new();
        for f in &request.headers {
            if same_header(&f.name, "Via") {
                headers.push(field("Via", &f.value));
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(value) = request.header(name) {
                let mut value = value.to_owned();
                if name == "To" && status > 100 && request.to_tag().is_none() {
                    let tag = stable_tag(
                        request.call_id().unwrap_or_default(),
                        &request.from_tag().unwrap_or_default(),
                    );
                    let _ = write!(value, ";tag={tag}");
                }
                headers.push(field(name, &value));
            }
        }
        ResponseBuilder {
            status,
            reason: reason.to_owned(),
            headers,
            body: None,
        }
    }
}

fn serialise(start: &StartLine, headers: &[Field], body: &[u8]) -> Vec<u8> {
    let mut head = String::new();
    write_start_line(&mut head, start);
    for f in headers {
        if !same_header(&f.name, "Content-Length") {
            let _ = write!(head, "{}: {}\r\n", f.name, f.value);
        }
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn write_start_line(out: &mut String, start: &StartLine) {
    let _ = match start {
        StartLine::Request { method, uri } => write!(out, "{method} {uri} SIP/2.0\r\n"),
        StartLine::Response { status, reason } => write!(out, "SIP/2.0 {status} {reason}\r\n"),
    };
}

fn field(name: &str, value: &str) -> Field {
    Field {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    let bad = |reason| ParseError::StartLine {
        line: excerpt(line),
        reason,
    };
    // Lossy, for GBK reason phrases; a mangled method or URI is rejected below or by rsip.
    let text = String::from_utf8_lossy(line);
    if let Some(rest) = text.strip_prefix("SIP/") {
        let mut parts = rest.splitn(3, ' ');
        if parts.next() != Some("2.0") {
            return Err(bad("only SIP/2.0 is supported"));
        }
        let code = parts.next().unwrap_or_default();
        let status = code
            .parse()
            .ok()
            .filter(|s| (100..=699).contains(s) && code.len() == 3)
            .ok_or_else(|| bad("status code must be 100..=699"))?;
        let reason = parts.next().unwrap_or_default().to_owned();
        if reason.contains(['\0', '\r', '\n']) {
            return Err(bad("control character in reason phrase"));
        }
        return Ok(StartLine::Response { status, reason });
    }
    let parts: Vec<&str> = text.split(' ').collect();
    let [method, uri, version] = parts[..] else {
        return Err(bad("expected `METHOD uri SIP/2.0`"));
    };
    if !is_token(method.as_bytes()) {
        return Err(bad("method is not a token"));
    }
    if uri.is_empty() || uri.chars().any(char::is_control) {
        return Err(bad("empty or malformed Request-URI"));
    }
    if version != "SIP/2.0" {
        return Err(bad("only SIP/2.0 is supported"));
    }
    Ok(StartLine::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
    })
}

/// The start of an offending line for an error message: enough to recognise it in a log, not a
/// 64 KiB copy of whatever a peer sent.
fn excerpt(bytes: &[u8]) -> String {
    const MAX_CHARS: usize = 100;
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// A header value that can be written on one line without changing the message structure.
fn valid_value(value: &str) -> bool {
    !value.contains(['\r', '\n', '\0'])
}

fn parse_seconds(value: &str) -> Result<u32, String> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{value:?} is not a number of seconds"));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} exceeds 4294967295 seconds"))
}

/// A To tag that depends only on the request's Call-ID and From tag: retransmissions of a request
/// (and the requests of one dialog) are answered with the same tag without keeping state.
fn stable_tag(call_id: &str, from_tag: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"appliance-sip to-tag\0")
        .chain_update(call_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(from_tag.as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

/// A random tag for From/To (64 bits, RFC 3261 §19.3 asks for at least 32).
pub fn new_tag() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A random Call-ID, `<128 random bits in hex>@host` (just the random part if `host` is empty).
pub fn new_call_id(host: &str) -> String {
    let random = hex::encode(rand::random::<[u8; 16]>());
    if host.is_empty() {
        random
    } else {
        format!("{random}@{host}")
    }
}

/// A random Via branch with the RFC 3261 magic cookie `z9hG4bK`.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// Checks builder input and turns it into a header field.
fn checked_field(name: &str, value: &str) -> Result<Field, BuildError> {
    if !is_token(name.as_bytes()) {
        return Err(BuildError::Invalid {
            what: "header name".into(),
            value: name.into(),
        });
    }
    if !valid_value(value) {
        return Err(BuildError::Invalid {
            what: format!("value of header {name}"),
            value: value.into(),
        });
    }
    Ok(field(name, value.trim()))
}

/// Serialises checked parts and parses them back, so that a built message is exactly what a peer
/// will parse.
fn assemble(
    start: StartLine,
    headers: Vec<Field>,
    body: Option<(String, Vec<u8>)>,
) -> Result<Message, BuildError> {
    let mut headers = headers;
    let body = match body {
        Some((content_type, bytes)) => {
            headers.push(checked_field("Content-Type", &content_type)?);
            bytes
        }
        None => Vec::new(),
    };
    // serialise() drops any Content-Length given and writes the computed one.
    Ok(Message::parse(&serialise(&start, &headers, &body))?)
}

/// `via` with `received=<ip>` set and a valueless `rport` filled in on its first entry.
fn with_received(via: &str, source_ip: &str, source_port: u16) -> String {
    let mut entries = split_top_level(via, ',').into_iter();
    let mut params = split_top_level(entries.next().unwrap_or_default(), ';').into_iter();
    let mut top = params.next().unwrap_or_default().to_owned();
    for param in params {
        let key = param.split('=').next().unwrap_or_default().trim();
        if key.eq_ignore_ascii_case("rport") {
            let _ = write!(top, ";rport={source_port}");
        } else if !key.eq_ignore_ascii_case("received") {
            let _ = write!(top, ";{param}");
        }
    }
    let _ = write!(top, ";received={source_ip}");
    std::iter::once(top.as_str())
        .chain(entries)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A response under construction; see [`Message::response`].
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    status: u16,
    reason: String,
    headers: Vec<Field>,
    body: Option<(String, Vec<u8>)>,
}

impl ResponseBuilder {
    /// Appends a header (Contact, Expires, Date, WWW-Authenticate...). Content-Length is always
    /// computed, a given one is ignored.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(field(name, value));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// Records where the request really came from in the top Via (RFC 3261 §18.2.1 `received`,
    /// RFC 3581 `rport` when the client asked for it), so that the response, and later requests,
    /// reach a device behind NAT.
    pub fn received(mut self, source_ip: &str, source_port: u16) -> Self {
        if let Some(via) = self.headers.iter_mut().find(|f| f.name == "Via") {
            via.value = with_received(&via.value, source_ip, source_port);
        }
        self
    }

    /// The response as a [`Message`]. Fails on a status outside 100..=699, a header name that is
    /// not a token, or any value that contains CR, LF or NUL.
    pub fn build(self) -> Result<Message, BuildError> {
        if !(100..=699).contains(&self.status) {
            return Err(BuildError::Status(self.status));
        }
        if !valid_value(&self.reason) {
            return Err(BuildError::Invalid {
                what: "reason phrase".into(),
                value: self.reason,
            });
        }
        let headers = self
            .headers
            .iter()
            .map(|f| checked_field(&f.name, &f.value))
            .collect::<Result<Vec<_>, _>>()?;
        let start = StartLine::Response {
            status: self.status,
            reason: self.reason,
        };
        assemble(start, headers, self.body)
    }
}

/// A request under construction. Header order on the wire: Via(s), Max-Forwards, From, To,
/// Call-ID, CSeq, Contact, the extra headers in the order given, Content-Type, Content-Length.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    uri: String,
    vias: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<u32>,
    contact: Option<String>,
    extra: Vec<Field>,
    body: Option<(String, Vec<u8>)>,
}

/// `<uri>` unless the caller already gave a name-addr (`"Name" <sip:...>` or `<sip:...>`).
fn name_addr(uri: &str) -> String {
    if uri.contains('<') {
        uri.to_owned()
    } else {
        format!("<{uri}>")
    }
}

impl RequestBuilder {
    /// A request for `method` (`"MESSAGE"`, `"INVITE"`...) to `request_uri`.
    pub fn new(method: &str, request_uri: &str) -> Self {
        RequestBuilder {
            method: method.to_owned(),
            uri: request_uri.to_owned(),
            vias: Vec::new(),
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            contact: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// Adds a Via `SIP/2.0/<transport> <sent_by>;rport;branch=z9hG4bK<random>`. The first Via
    /// added is the top one.
    pub fn via(self, transport: &str, sent_by: &str) -> Self {
        self.via_with_branch(transport, sent_by, &new_branch())
    }

    /// Like [`via`](Self::via) with a given branch: a CANCEL, and the ACK of a non-2xx final
    /// response, reuse the branch of the INVITE they refer to.
    pub fn via_with_branch(mut self, transport: &str, sent_by: &str, branch: &str) -> Self {
        self.vias.push(format!(
            "SIP/2.0/{} {sent_by};rport;branch={branch}",
            transport.to_ascii_uppercase()
        ));
        self
    }

    /// Sets From to `<uri>;tag=<tag>`.
    pub fn from(mut self, uri: &str, tag: &str) -> Self {
        self.from = Some(format!("{};tag={tag}", name_addr(uri)));
        self
    }

    /// Sets To to `<uri>`, with `;tag=` for a request inside a dialog.
    pub fn to(mut self, uri: &str, tag: Option<&str>) -> Self {
        let mut value = name_addr(uri);
        if let Some(tag) = tag {
            let _ = write!(value, ";tag={tag}");
        }
        self.to = Some(value);
        self
    }

    /// Sets the Call-ID (see [`new_call_id`]).
    pub fn call_id(mut self, call_id: &str) -> Self {
        self.call_id = Some(call_id.to_owned());
        self
    }

    /// Sets the CSeq number; the CSeq method is the request's method.
    pub fn cseq(mut self, number: u32) -> Self {
        self.cseq = Some(number);
        self
    }

    /// Sets Contact to `<uri>`.
    pub fn contact(mut self, uri: &str) -> Self {
        self.contact = Some(name_addr(uri));
        self
    }

    /// Appends any other header (Subject, Expires, Event, Authorization, Date, User-Agent...).
    /// A Max-Forwards given here replaces the default 70; Content-Length is always computed.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push(field(name, value));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// The request as a [`Message`]. Fails when Via, From, To, Call-ID or CSeq is missing (error
    /// naming it), or on a method, URI, header name or value that would not serialise intact.
    pub fn build(self) -> Result<Message, BuildError> {
        if !is_token(self.method.as_bytes()) {
            return Err(BuildError::Invalid {
                what: "method".into(),
                value: self.method,
            });
        }
        if self.uri.is_empty()
            || self
                .uri
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(BuildError::Invalid {
                what: "request URI".into(),
                value: self.uri,
            });
        }
        let mut headers = Vec::new();
        for via in &self.vias {
            headers.push(checked_field("Via", via)?);
        }
        if !self
            .extra
            .iter()
            .any(|f| same_header(&f.name, "Max-Forwards"))
        {
            headers.push(field("Max-Forwards", "70"));
        }
        let cseq = self.cseq.map(|n| format!("{n} {}", self.method));
        let slots = [
            ("From", &self.from),
            ("To", &self.to),
            ("Call-ID", &self.call_id),
            ("CSeq", &cseq),
            ("Contact", &self.contact),
        ];
        for (name, value) in slots {
            if let Some(value) = value {
                headers.push(checked_field(name, value)?);
            }
        }
        for f in &self.extra {
            headers.push(checked_field(&f.name, &f.value)?);
        }
        let start = StartLine::Request {
            method: self.method,
            uri: self.uri,
        };
        assemble(start, headers, self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REGISTER: &[u8] = b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1365409736\r\n\
From: <sip:34020000001320000001@3402000000>;tag=1930493657\r\n\
To: <sip:34020000001320000001@3402000000>\r\n\
Call-ID: 1473466417\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:34020000001320000001@192.168.1.64:5060>\r\n\
Authorization: Digest username=\"34020000001320000001\", realm=\"3402000000\", nonce=\"9bd055f2d8a54c4c\", uri=\"sip:34020000002000000001@3402000000\", response=\"7501c9ebd9e09c7c14316e1a5fa4045f\", algorithm=MD5\r\n\
Max-Forwards: 70\r\n\
User-Agent: IP Camera\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

    /// "测试" in GB2312 inside a MANSCDP body: not UTF-8.
    const GB2312_XML: &[u8] = b"<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<AlarmDescription>\xb2\xe2\xca\xd4</AlarmDescription>\r\n</Notify>\r\n";

    fn manscdp_message() -> Vec<u8> {
        let mut raw = format!(
            "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK2\r\n\
From: <sip:34020000001320000001@3402000000>;tag=2\r\n\
To: <sip:34020000002000000001@3402000000>\r\n\
Call-ID: 2@192.168.1.64\r\n\
CSeq: 20 MESSAGE\r\n\
Content-Type: Application/MANSCDP+xml\r\n\
Content-Length: {}\r\n\r\n",
            GB2312_XML.len()
        )
        .into_bytes();
        raw.extend_from_slice(GB2312_XML);
        raw
    }

    #[test]
    fn gb28181_register() {
        let m = Message::parse(REGISTER).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some("REGISTER"));
        assert_eq!(m.status(), None);
        assert_eq!(
            m.request_uri().as_deref(),
            Some("sip:34020000002000000001@3402000000")
        );
        assert_eq!(m.call_id(), Some("1473466417"));
        assert_eq!(m.cseq(), Some((2, "REGISTER".to_owned())));
        assert_eq!(m.from_user().as_deref(), Some("34020000001320000001"));
        assert_eq!(m.to_user().as_deref(), Some("34020000001320000001"));
        assert_eq!(m.from_tag().as_deref(), Some("1930493657"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.via_branch().as_deref(), Some("z9hG4bK1365409736"));
        assert_eq!(m.expires(), Some(Ok(3600)));
        assert_eq!(m.header("user-agent"), Some("IP Camera"));
        assert!(m.body().is_empty());
        let credentials = crate::Credentials::parse(m.header("Authorization").unwrap()).unwrap();
        assert!(credentials.verify(m.method().unwrap(), "12345678"));
        // rsip's typed view sees the same message.
        assert!(m.sip().is_request());
        // Re-serialising changes nothing here: same headers, same Content-Length.
        assert_eq!(m.to_bytes(), REGISTER);
    }

    #[test]
    fn gb2312_body_passes_through_untouched() {
        let raw = manscdp_message();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.body(), GB2312_XML);
        assert!(std::str::from_utf8(m.body()).is_err());
        assert_eq!(m.content_type(), Some("Application/MANSCDP+xml"));
        assert_eq!(m.to_bytes(), raw);
        assert_eq!(Message::parse(&m.to_bytes()).unwrap().body(), GB2312_XML);
    }

    #[test]
    fn compact_headers() {
        let raw = b"MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n\
v: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKc1\r\n\
f: <sip:34020000001320000001@3402000000>;tag=a\r\n\
t: <sip:34020000002000000001@3402000000>;tag=b\r\n\
i: compact@10.0.0.2\r\n\
CSeq: 7 MESSAGE\r\n\
m: <sip:34020000001320000001@10.0.0.2:5060>;expires=60\r\n\
c: Application/MANSCDP+xml\r\n\
l: 4\r\n\r\n<a/>";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.call_id(), Some("compact@10.0.0.2"));
        assert_eq!(m.header("CALL-ID"), Some("compact@10.0.0.2"));
        assert_eq!(m.header("i"), Some("compact@10.0.0.2"));
        assert_eq!(m.from_tag().as_deref(), Some("a"));
        assert_eq!(m.to_tag().as_deref(), Some("b"));
        assert_eq!(m.via_branch().as_deref(), Some("z9hG4bKc1"));
        assert_eq!(m.content_type(), Some("Application/MANSCDP+xml"));
        assert_eq!(m.body(), b"<a/>");
        // No Expires header: the Contact parameter counts.
        assert_eq!(m.expires(), Some(Ok(60)));
    }

    #[test]
    fn missing_mandatory_headers_are_named() {
        let without = |name: &str| -> Vec<u8> {
            let text = std::str::from_utf8(REGISTER).unwrap();
            text.split("\r\n")
                .filter(|line| !line.starts_with(&format!("{name}:")))
                .collect::<Vec<_>>()
                .join("\r\n")
                .into_bytes()
        };
        for name in ["Call-ID", "CSeq", "From", "To", "Via"] {
            let error = Message::parse(&without(name)).unwrap_err();
            assert_eq!(error, ParseError::MissingHeader(name));
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn content_length_mismatches() {
        let raw = manscdp_message();
        // Body shorter than announced.
        let error = Message::parse(&raw[..raw.len() - 1]).unwrap_err();
        assert_eq!(
            error,
            ParseError::BodyTooShort {
                declared: GB2312_XML.len(),
                actual: GB2312_XML.len() - 1
            }
        );
        // Extra bytes after the body are dropped.
        let mut longer = raw.clone();
        longer.extend_from_slice(b"garbage");
        assert_eq!(Message::parse(&longer).unwrap().body(), GB2312_XML);
        // Bad values.
        let bad =
            String::from_utf8_lossy(REGISTER).replace("Content-Length: 0", "Content-Length: -0");
        assert!(matches!(
            Message::parse(bad.as_bytes()),
            Err(ParseError::ContentLength(_))
        ));
        // Without Content-Length the body runs to the end (UDP).
        let text = String::from_utf8_lossy(REGISTER).replace("Content-Length: 0\r\n", "");
        let m = Message::parse(format!("{text}xyz").as_bytes()).unwrap();
        assert_eq!(m.body(), b"xyz");
        assert!(m.to_bytes().ends_with(b"Content-Length: 3\r\n\r\nxyz"));
    }

    #[test]
    fn start_line_and_header_errors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "empty"),
            (b"REGISTER sip:a@b SIP/2.0\r\nVia: x\r\n", "blank line"),
            (b"REGISTER sip:a@b SIP/1.0\r\n\r\n", "SIP/2.0"),
            (b"REGISTER  sip:a@b SIP/2.0\r\n\r\n", "METHOD uri"),
            (b"SIP/2.0 99 Odd\r\n\r\n", "100..=699"),
            (
                b"REGISTER sip:a@b SIP/2.0\r\nno colon here\r\n\r\n",
                "no colon here",
            ),
            (
                b"REGISTER sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
                "Bad Name",
            ),
        ];
        for (raw, needle) in cases {
            let error = Message::parse(raw).unwrap_err().to_string();
            assert!(
                error.contains(needle),
                "{error:?} should mention {needle:?}"
            );
        }
        // Long lines are cut in the message.
        let long = format!("REGISTER sip:a@b SIP/2.0\r\n{}\r\n\r\n", "x".repeat(10_000));
        let error = Message::parse(long.as_bytes()).unwrap_err().to_string();
        assert!(error.len() < 300 && error.contains("xxx…"), "{error}");
        // An extension method rsip does not know is reported as rsip's refusal.
        let raw = String::from_utf8_lossy(REGISTER).replace("REGISTER", "FOO");
        let error = Message::parse(raw.as_bytes()).unwrap_err();
        assert!(matches!(error, ParseError::Rsip(_)), "{error}");
        // CSeq must match the method.
        let raw = String::from_utf8_lossy(REGISTER).replace("CSeq: 2 REGISTER", "CSeq: 2 INVITE");
        let error = Message::parse(raw.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("CSeq"), "{error}");
    }

    #[test]
    fn tolerated_oddities() {
        // Leading CRLFs, folded header, spaces around the colon, GBK in a display name.
        let mut raw = b"\r\n\r\nOPTIONS sip:34020000001320000001@192.168.1.64 SIP/2.0\r\n\
Via : SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\n\
From: \"\xc9\xe3\xcf\xf1\xbb\xfa\" <sip:34020000002000000001@3402000000>;tag=p\r\n\
To: <sip:34020000001320000001@3402000000>\r\n\
Call-ID: folded\r\n\
CSeq: 1 OPTIONS\r\n\
Subject: first\r\n  second\r\n\r\n"
            .to_vec();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.via_branch().as_deref(), Some("z9hG4bKx"));
        assert_eq!(m.header("Subject"), Some("first second"));
        assert_eq!(m.from_user().as_deref(), Some("34020000002000000001"));
        assert!(m.header("From").unwrap().contains('\u{fffd}'));
        // A bare CR inside a value is refused: echoing it could inject a line.
        raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\rInjected: 1\r\nCSeq: 1 OPTIONS\r\n\r\n".to_vec();
        assert_eq!(
            Message::parse(&raw).unwrap_err(),
            ParseError::ControlCharacter("Call-ID".into())
        );
    }

    #[test]
    fn responses_parse() {
        let raw = b"SIP/2.0 200\r\n\
Via: SIP/2.0/UDP 192.168.1.10:5060;rport=5060;branch=z9hG4bKr\r\n\
From: <sip:34020000002000000001@3402000000>;tag=p\r\n\
To: <sip:34020000001320000001@3402000000>;tag=d\r\n\
Call-ID: r@192.168.1.10\r\n\
CSeq: 5 MESSAGE\r\n\r\n";
        let m = Message::parse(raw).unwrap();
        assert!(!m.is_request());
        assert_eq!(
            (m.status(), m.reason(), m.method()),
            (Some(200), Some(""), None)
        );
        assert_eq!(m.request_uri(), None);
        // A response's CSeq names the request's method, not its own.
        assert_eq!(m.cseq(), Some((5, "MESSAGE".into())));
        assert_eq!(m.via_branch().as_deref(), Some("z9hG4bKr"));
        assert_eq!(Message::parse(&m.to_bytes()).unwrap().status(), Some(200));
    }

    #[test]
    fn expires_forms() {
        let with = |expires: &str| {
            let text = String::from_utf8_lossy(REGISTER).replace("Expires: 3600", expires);
            Message::parse(text.as_bytes()).unwrap().expires()
        };
        assert_eq!(with("Expires: 0"), Some(Ok(0)));
        assert!(matches!(with("Expires: soon"), Some(Err(e)) if e.contains("soon")));
        assert!(matches!(with("Expires: 4294967296"), Some(Err(_))));
        assert_eq!(with("X-Nothing: 1"), None);
    }

    #[test]
    fn response_echoes_vias_and_adds_a_stable_to_tag() {
        let raw = String::from_utf8_lossy(REGISTER).replace(
            "Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1365409736\r\n",
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy\r\n\
v: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1365409736, SIP/2.0/TCP 192.168.1.65;branch=z9hG4bKthird\r\n",
        );
        let request = Message::parse(raw.as_bytes()).unwrap();
        let response = Message::response(&request, 200, "OK")
            .header("Date", "2024-01-02T03:04:05.678")
            .header("Expires", "3600")
            .build()
            .unwrap();
        assert_eq!(response.status(), Some(200));
        assert_eq!(response.reason(), Some("OK"));
        assert_eq!(response.headers_all("Via"), request.headers_all("Via"));
        assert_eq!(response.headers_all("Via").len(), 2);
        assert_eq!(response.call_id(), request.call_id());
        assert_eq!(response.cseq(), request.cseq());
        assert_eq!(response.header("From"), request.header("From"));
        assert_eq!(response.header("Date"), Some("2024-01-02T03:04:05.678"));
        let tag = response.to_tag().unwrap();
        assert_eq!(tag.len(), 16);

        // The retransmitted request gets the same tag; another call gets another.
        let again = Message::response(
            &Message::parse(raw.as_bytes()).unwrap(),
            401,
            "Unauthorized",
        )
        .build()
        .unwrap();
        assert_eq!(again.to_tag(), Some(tag.clone()));
        let other = Message::parse(raw.replace("1473466417", "other-call").as_bytes()).unwrap();
        let other = Message::response(&other, 200, "OK").build().unwrap();
        assert_ne!(other.to_tag(), Some(tag));

        // 100 Trying gets no tag; an existing tag is kept.
        let trying = Message::response(&request, 100, "Trying").build().unwrap();
        assert_eq!(trying.to_tag(), None);
        let tagged = Message::parse(
            raw.replace(
                "To: <sip:34020000001320000001@3402000000>",
                "To: <sip:34020000001320000001@3402000000>;tag=mine",
            )
            .as_bytes(),
        )
        .unwrap();
        let response = Message::response(&tagged, 200, "OK").build().unwrap();
        assert_eq!(response.to_tag().as_deref(), Some("mine"));
    }

    #[test]
    fn response_records_the_source_address() {
        let request = Message::parse(REGISTER).unwrap();
        let response = Message::response(&request, 200, "OK")
            .received("203.0.113.7", 40123)
            .build()
            .unwrap();
        assert_eq!(
            response.header("Via"),
            Some(
                "SIP/2.0/UDP 192.168.1.64:5060;rport=40123;branch=z9hG4bK1365409736;received=203.0.113.7"
            )
        );
    }

    #[test]
    fn response_with_gb2312_body() {
        let request = Message::parse(&manscdp_message()).unwrap();
        let response = Message::response(&request, 200, "OK")
            .body("Application/MANSCDP+xml", GB2312_XML)
            .build()
            .unwrap();
        assert_eq!(response.body(), GB2312_XML);
        assert_eq!(response.content_type(), Some("Application/MANSCDP+xml"));
        let bytes = response.to_bytes();
        let head = format!("Content-Length: {}\r\n\r\n", GB2312_XML.len());
        assert!(bytes.windows(head.len()).any(|w| w == head.as_bytes()));
    }

    #[test]
    fn builders_refuse_injection_and_bad_status() {
        let request = Message::parse(REGISTER).unwrap();
        let error = Message::response(&request, 200, "OK")
            .header("Subject", "x\r\nVia: evil")
            .build()
            .unwrap_err();
        assert!(matches!(error, BuildError::Invalid { .. }), "{error}");
        assert_eq!(
            Message::response(&request, 700, "Nope")
                .build()
                .unwrap_err(),
            BuildError::Status(700)
        );
        let error = RequestBuilder::new("MESSAGE", "sip:a@b c")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("request URI"), "{error}");
    }

    #[test]
    fn request_builder_round_trip() {
        let call_id = new_call_id("192.168.1.10");
        let tag = new_tag();
        let request = RequestBuilder::new("MESSAGE", "sip:34020000001320000001@192.168.1.64:5060")
            .via("udp", "192.168.1.10:5060")
            .from("sip:34020000002000000001@3402000000", &tag)
            .to("sip:34020000001320000001@3402000000", None)
            .call_id(&call_id)
            .cseq(21)
            .contact("sip:34020000002000000001@192.168.1.10:5060")
            .header("User-Agent", "appliance")
            .body("Application/MANSCDP+xml", GB2312_XML)
            .build()
            .unwrap();
        let parsed = Message::parse(&request.to_bytes()).unwrap();
        for m in [&request, &parsed] {
            assert_eq!(m.method(), Some("MESSAGE"));
            assert_eq!(
                m.request_uri().as_deref(),
                Some("sip:34020000001320000001@192.168.1.64:5060")
            );
            assert_eq!(m.call_id(), Some(call_id.as_str()));
            assert_eq!(m.cseq(), Some((21, "MESSAGE".into())));
            assert_eq!(m.from_tag(), Some(tag.clone()));
            assert_eq!(m.from_user().as_deref(), Some("34020000002000000001"));
            assert_eq!(m.to_tag(), None);
            assert_eq!(m.header("Max-Forwards"), Some("70"));
            assert_eq!(
                m.header("Content-Length"),
                Some(GB2312_XML.len().to_string().as_str())
            );
            assert_eq!(m.body(), GB2312_XML);
            let branch = m.via_branch().unwrap();
            assert!(branch.starts_with("z9hG4bK") && branch.len() > 7 + 16);
            assert!(
                m.header("Via")
                    .unwrap()
                    .starts_with("SIP/2.0/UDP 192.168.1.10:5060;rport;branch=")
            );
        }
        assert_eq!(parsed.to_bytes(), request.to_bytes());

        // Mandatory parts left out are named.
        let error = RequestBuilder::new("OPTIONS", "sip:a@b")
            .via("UDP", "h:5060")
            .from("sip:me@b", "1")
            .to("sip:a@b", None)
            .cseq(1)
            .build()
            .unwrap_err();
        assert_eq!(
            error,
            BuildError::Message(ParseError::MissingHeader("Call-ID"))
        );
    }

    #[test]
    fn random_identifiers_differ() {
        assert_ne!(new_tag(), new_tag());
        assert_ne!(new_branch(), new_branch());
        assert!(new_call_id("h").ends_with("@h"));
        assert!(!new_call_id("").contains('@'));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = Message::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_messages(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut raw = manscdp_message();
            for (at, byte) in edits {
                let at = at.index(raw.len());
                raw[at] = byte;
            }
            let raw = &raw[..cut.map_or(raw.len(), |c| c.index(raw.len() + 1))];
            if let Ok(m) = Message::parse(raw) {
                // Whatever parses must survive its own serialisation.
                match Message::parse(&m.to_bytes()) {
                    Ok(again) => prop_assert_eq!(again.body(), m.body()),
                    Err(error) => prop_assert!(false, "re-parse failed: {}", error),
                }
            }
        }
    }
}
