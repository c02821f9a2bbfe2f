//! `Message::parse` on arbitrary datagrams, and what the daemon does next with a parsed message:
//! serialise it (`to_bytes`, also the base of every response it echoes headers into) and send it
//! to a peer who parses it again.
//!
//! Properties of anything that parses:
//! - `to_bytes` parses again, and the second parse agrees on everything the platform reads:
//!   method, Request-URI, status, reason, Call-ID, CSeq, every header except Content-Length
//!   (which `to_bytes` recomputes and moves last), and the body byte for byte;
//! - serialisation is a fixpoint: `to_bytes` of the re-parsed message is the same bytes, so a
//!   message relayed twice does not drift;
//! - the accessors that must be `Some` on a parsed message are (module docs: Call-ID, CSeq);
//! - the `StreamFramer` cuts the serialised message exactly where the parser ends it: over TCP
//!   the two must agree byte for byte, or a peer could smuggle a second message into a body.

#![no_main]

use appliance_sip::framing::{Frame, StreamFramer};
use appliance_sip::message::Message;
use libfuzzer_sys::fuzz_target;

/// Everything compared between the two parses; headers as (name as sent, value).
#[derive(Debug, PartialEq, Eq)]
struct View<'a> {
    method: Option<&'a str>,
    request_uri: Option<String>,
    status: Option<u16>,
    reason: Option<&'a str>,
    call_id: Option<&'a str>,
    cseq: Option<(u32, String)>,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fn view(m: &Message) -> View<'_> {
    View {
        method: m.method(),
        request_uri: m.request_uri(),
        status: m.status(),
        reason: m.reason(),
        call_id: m.call_id(),
        cseq: m.cseq(),
        headers: m
            .headers()
            .filter(|(name, _)| !is_content_length(name))
            .collect(),
        body: m.body(),
    }
}

/// `Content-Length` or its compact form `l`, any case (the crate's own rule is private).
fn is_content_length(name: &str) -> bool {
    name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l")
}

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    assert!(message.call_id().is_some_and(|id| !id.is_empty()));
    assert!(message.cseq().is_some());
    assert_eq!(message.is_request(), message.method().is_some());
    assert_eq!(message.is_request(), message.status().is_none());

    // The accessors a handler calls on any message must not panic either.
    let _ = (message.from_user(), message.to_user(), message.from_tag());
    let _ = (message.to_tag(), message.via_branch(), message.expires());
    let _ = message.content_type();

    let bytes = message.to_bytes();
    let again = match Message::parse(&bytes) {
        Ok(again) => again,
        Err(error) => panic!(
            "to_bytes output does not parse: {error}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(view(&again), view(&message), "re-parse differs");
    assert_eq!(again.to_bytes(), bytes, "to_bytes is not a fixpoint");

    // One message alone on a TCP stream is one frame, the same bytes.
    let mut framer = StreamFramer::new(bytes.len());
    framer.push(&bytes);
    assert_eq!(
        framer.next_frame(),
        Ok(Some(Frame::Message(bytes.clone()))),
        "framer and parser disagree on where the message ends"
    );
    assert_eq!(framer.next_frame(), Ok(None));
});
