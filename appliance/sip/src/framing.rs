//! SIP over stream transports (TCP, TLS): cutting a byte stream into messages (RFC 3261 §18.3).
//!
//! A message is its header section up to and including the first blank line (`\r\n\r\n`),
//! followed by exactly `Content-Length` bytes of body (compact form `l`, names case-insensitive,
//! a missing header meaning 0). Between messages a peer may send RFC 5626 keepalives: a
//! double CRLF "ping", to be answered with a single CRLF "pong".
//!
//! The framer only finds boundaries; it does not validate the message (that is
//! [`Message::parse`](crate::Message::parse)'s job). It is a plain state machine: the connection
//! task pushes whatever it read and then calls [`StreamFramer::next_frame`] until it gets
//! `Ok(None)`.
//!
//! # Errors are fatal
//!
//! After a [`FramingError`] the position of the next message in the stream is unknown, so the
//! caller must close the connection. The framer enforces this: it drops its buffer, ignores
//! further input and returns the same error from every later call.

use crate::fields::{content_length, find, logical_lines, same_header, split_field};

/// Reassembles SIP messages from a byte stream. See the [module docs](self).
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_message: usize,
    /// How many leading bytes of `buf` are known not to contain the end of the header section,
    /// so that a header arriving in small pieces is not rescanned from its start every time.
    scanned: usize,
    failed: Option<FramingError>,
}

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message: header section, blank line and exactly `Content-Length` body bytes.
    Message(Vec<u8>),
    /// An RFC 5626 double-CRLF ping between messages; answer it with `"\r\n"`.
    ///
    /// A lone CRLF (a pong, or padding before a message) is consumed silently, so every
    /// `KeepAlive` calls for an answer.
    KeepAlive,
}

/// Why the stream cannot be framed any further; the connection must be closed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    /// The header section, or header section plus body, exceeds the configured bound.
    #[error("SIP message larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    /// Content-Length is negative, not a number, too large or given twice with different values.
    #[error("bad Content-Length: {0}")]
    BadContentLength(String),
}

impl StreamFramer {
    /// A framer that accepts messages of at most `max_message` bytes (header section including
    /// the blank line, plus body). The buffer never holds more than that plus one unread push.
    pub fn new(max_message: usize) -> Self {
        StreamFramer {
            buf: Vec::new(),
            max_message,
            scanned: 0,
            failed: None,
        }
    }

    /// Appends bytes received from the connection. Ignored once the framer has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. Call it until it returns
    /// `Ok(None)` after every [`push`](Self::push). An error is permanent: close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.step();
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.buf = Vec::new();
        }
        result
    }

    fn step(&mut self) -> Result<Option<Frame>, FramingError> {
        // Keepalives and stray CRLFs can only appear where a message would start.
        while self.buf.starts_with(b"\r\n") {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.consume(4);
                return Ok(Some(Frame::KeepAlive));
            }
            if b"\r\n\r\n".starts_with(&self.buf) {
                // "\r\n" or "\r\n\r": wait, it may still become a ping.
                return Ok(None);
            }
            self.consume(2);
        }
        if self.buf.is_empty() || b"\r\n\r\n".starts_with(&self.buf) {
            // Nothing, or a lone "\r" that may still become a ping (found by fuzzing with a
            // 1-byte limit, where it was refused as too large).
            return Ok(None);
        }

        let too_large = FramingError::TooLarge {
            limit: self.max_message,
        };
        let from = self.scanned.saturating_sub(3);
        let Some(end) = find(&self.buf[from..], b"\r\n\r\n").map(|p| p + from) else {
            self.scanned = self.buf.len();
            // The terminator is not here yet, so the header section will be longer than the
            // buffer already is.
            return if self.buf.len() >= self.max_message {
                Err(too_large)
            } else {
                Ok(None)
            };
        };
        let head_len = end + 4;
        if head_len > self.max_message {
            return Err(too_large);
        }
        let body_len = announced_body_length(&self.buf[..end])?;
        let total = match head_len.checked_add(body_len) {
            Some(total) if total <= self.max_message => total,
            _ => return Err(too_large),
        };
        if self.buf.len() < total {
            // Resume the header search at the terminator we already found.
            self.scanned = end;
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let message = std::mem::replace(&mut self.buf, rest);
        self.scanned = 0;
        Ok(Some(Frame::Message(message)))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scanned = 0;
    }
}

/// The Content-Length of a message head (start line included, final blank line excluded).
/// Lines that are not `name: value` are left for the message parser to reject.
fn announced_body_length(head: &[u8]) -> Result<usize, FramingError> {
    // The start line is never a header, whatever it looks like; Message::parse agrees.
    let section = find(head, b"\r\n").map_or(&[][..], |at| &head[at + 2..]);
    let lines = logical_lines(section);
    let values = lines.iter().filter_map(|line| {
        let (name, value) = split_field(line)?;
        let name = std::str::from_utf8(name).ok()?;
        same_header(name, "Content-Length").then_some(value)
    });
    content_length(values)
        .map(Option::unwrap_or_default)
        .map_err(FramingError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing found a lone "\r" refused as too large under a 1-byte limit, although it may
    /// still become a ping.
    #[test]
    fn a_ping_split_after_its_first_byte_is_still_a_ping_with_a_tiny_limit() {
        let mut framer = StreamFramer::new(1);
        framer.push(b"\r");
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(b"\n\r\n");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::KeepAlive)));
    }
    use proptest::prelude::*;

    const REGISTER: &[u8] = b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.168.1.64:5060;rport;branch=z9hG4bK1\r\n\
From: <sip:34020000001320000001@3402000000>;tag=1\r\n\
To: <sip:34020000001320000001@3402000000>\r\n\
Call-ID: 1@192.168.1.64\r\n\
CSeq: 1 REGISTER\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

    const MESSAGE: &[u8] = b"MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.168.1.64:5060;rport;branch=z9hG4bK2\r\n\
From: <sip:34020000001320000001@3402000000>;tag=2\r\n\
To: <sip:34020000002000000001@3402000000>\r\n\
Call-ID: 2@192.168.1.64\r\n\
CSeq: 20 MESSAGE\r\n\
Content-Type: Application/MANSCDP+xml\r\n\
l:   12\r\n\r\n\
<Notify/>\xb2\xe2\xca";

    /// Feeds `chunks` one at a time, draining frames after each, as a connection task would.
    fn frames_of<'a>(
        framer: &mut StreamFramer,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Frame>, FramingError> {
        let mut frames = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(frame) = framer.next_frame()? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    fn message(bytes: &[u8]) -> Frame {
        Frame::Message(bytes.to_vec())
    }

    #[test]
    fn two_messages_in_one_read() {
        let mut framer = StreamFramer::new(4096);
        let stream = [REGISTER, MESSAGE].concat();
        let frames = frames_of(&mut framer, [&stream[..]]).unwrap();
        assert_eq!(frames, vec![message(REGISTER), message(MESSAGE)]);
    }

    #[test]
    fn every_split_position_yields_the_same_frames() {
        let stream = [b"\r\n\r\n", REGISTER, MESSAGE, b"\r\n\r\n"].concat();
        let expected = vec![
            Frame::KeepAlive,
            message(REGISTER),
            message(MESSAGE),
            Frame::KeepAlive,
        ];
        for at in 0..=stream.len() {
            let mut framer = StreamFramer::new(4096);
            let frames = frames_of(&mut framer, [&stream[..at], &stream[at..]]).unwrap();
            assert_eq!(frames, expected, "split at byte {at}");
        }
        let mut framer = StreamFramer::new(4096);
        let frames = frames_of(&mut framer, stream.chunks(1)).unwrap();
        assert_eq!(frames, expected, "byte by byte");
    }

    #[test]
    fn content_length_forms() {
        for header in [
            "Content-Length: 3",
            "content-length:3",
            "CONTENT-LENGTH   :   3  ",
            "l: 3",
            "L:3",
            "Content-Length:\r\n 3",
        ] {
            let raw = format!("OPTIONS sip:a@b SIP/2.0\r\n{header}\r\n\r\nabcOPTIONS");
            let mut framer = StreamFramer::new(4096);
            let frames = frames_of(&mut framer, [raw.as_bytes()]).unwrap();
            let expected = raw.len() - "OPTIONS".len();
            assert_eq!(
                frames,
                vec![message(&raw.as_bytes()[..expected])],
                "{header}"
            );
        }
    }

    #[test]
    fn start_line_is_not_a_header() {
        let raw = b"l: 5 sip:a@b SIP/2.0\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\n\r\n";
        let mut framer = StreamFramer::new(4096);
        let frames = frames_of(&mut framer, [&raw[..]]).unwrap();
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn missing_content_length_means_empty_body() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\n\r\n";
        let mut framer = StreamFramer::new(4096);
        let frames = frames_of(&mut framer, [&raw[..]]).unwrap();
        assert_eq!(
            frames,
            vec![
                message(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"),
                message(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"),
            ]
        );
    }

    #[test]
    fn bad_content_lengths_are_fatal() {
        for header in [
            "Content-Length: -1",
            "Content-Length: ten",
            "Content-Length: 1 0",
            "Content-Length:",
            "Content-Length: 2\r\nl: 3",
            "Content-Length: 184467440737095516160",
        ] {
            let raw = format!("INVITE sip:a@b SIP/2.0\r\n{header}\r\n\r\nxyz");
            let mut framer = StreamFramer::new(4096);
            let result = frames_of(&mut framer, [raw.as_bytes()]);
            assert!(
                matches!(result, Err(FramingError::BadContentLength(_))),
                "{header}: {result:?}"
            );
        }
        let raw = "INVITE sip:a@b SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nxy";
        let mut framer = StreamFramer::new(4096);
        let frames = frames_of(&mut framer, [raw.as_bytes()]).unwrap();
        assert_eq!(frames, vec![message(raw.as_bytes())], "agreeing duplicates");
    }

    #[test]
    fn size_limits() {
        // Header section that never ends.
        let mut framer = StreamFramer::new(64);
        framer.push(&[b'A'; 63]);
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(b"A");
        assert_eq!(
            framer.next_frame(),
            Err(FramingError::TooLarge { limit: 64 })
        );

        // Header fits, announced body does not.
        let mut framer = StreamFramer::new(64);
        framer.push(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 40\r\n\r\n");
        assert_eq!(
            framer.next_frame(),
            Err(FramingError::TooLarge { limit: 64 })
        );

        // Exactly at the limit is fine.
        let exact = b"MESSAGE sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbody";
        let mut framer = StreamFramer::new(exact.len());
        framer.push(exact);
        assert_eq!(framer.next_frame(), Ok(Some(message(exact))));
        let mut framer = StreamFramer::new(exact.len() - 1);
        framer.push(exact);
        assert!(framer.next_frame().is_err());
    }

    #[test]
    fn errors_are_sticky_and_input_is_dropped() {
        let mut framer = StreamFramer::new(4096);
        framer.push(b"INVITE sip:a@b SIP/2.0\r\nl: x\r\n\r\n");
        let error = framer.next_frame().unwrap_err();
        framer.push(REGISTER);
        assert_eq!(framer.next_frame(), Err(error));
        assert!(framer.buf.is_empty());
    }

    #[test]
    fn keepalives() {
        let mut framer = StreamFramer::new(4096);
        // Ping, pong-like lone CRLFs before a message, then a ping after it.
        let stream = [b"\r\n\r\n\r\n", REGISTER, b"\r\n\r\n"].concat();
        let frames = frames_of(&mut framer, [&stream[..]]).unwrap();
        assert_eq!(
            frames,
            vec![Frame::KeepAlive, message(REGISTER), Frame::KeepAlive]
        );
        // A half ping waits for the rest.
        let mut framer = StreamFramer::new(4096);
        framer.push(b"\r\n");
        assert_eq!(framer.next_frame(), Ok(None));
        framer.push(b"\r\n");
        assert_eq!(framer.next_frame(), Ok(Some(Frame::KeepAlive)));
        assert_eq!(framer.next_frame(), Ok(None));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(0usize..2048, 0..16),
            limit in 0usize..600,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.push(0);
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut framer = StreamFramer::new(limit);
            for pair in cuts.windows(2) {
                framer.push(&bytes[pair[0]..pair[1]]);
                while let Ok(Some(frame)) = framer.next_frame() {
                    if let Frame::Message(m) = frame {
                        prop_assert!(m.len() <= limit);
                    }
                }
                // Whatever is left waiting is less than one message (or a partial ping).
                prop_assert!(framer.buf.len() < limit.max(4));
            }
        }

        #[test]
        fn arbitrary_chunking_of_valid_streams(
            picks in proptest::collection::vec(0usize..3, 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let parts: [&[u8]; 3] = [REGISTER, MESSAGE, b"\r\n\r\n"];
            let stream: Vec<u8> = picks.iter().flat_map(|&i| parts[i].iter().copied()).collect();
            let expected: Vec<Frame> = picks
                .iter()
                .map(|&i| if i == 2 { Frame::KeepAlive } else { message(parts[i]) })
                .collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut framer = StreamFramer::new(4096);
            let frames = frames_of(&mut framer, cuts.windows(2).map(|w| &stream[w[0]..w[1]]));
            prop_assert_eq!(frames, Ok(expected));
        }
    }
}
