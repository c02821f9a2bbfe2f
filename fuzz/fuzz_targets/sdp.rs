//! GB28181 SDP offers and answers (`appliance_gb28181::sdp`) on arbitrary text. INVITE bodies
//! are bytes; the daemon hands the parsers lossy UTF-8, and so does this target.
//!
//! Properties:
//! - an offer that parses survives `to_sdp`: `Offer::parse(&offer.to_sdp()) == offer`
//!   (the simulator and tests build INVITEs this way, and a relayed offer must not change);
//! - the offer's SDP read as an answer states the same media: address, port, transport, SSRC
//!   and the offered payload types 96 98 97 (one parser core serves both, so they must agree);
//! - an answer that parses survives `Answer::to_sdp` likewise.

#![no_main]

use appliance_gb28181::sdp::{Answer, Offer};
use libfuzzer_sys::fuzz_target;

/// What `Answer::to_sdp` needs besides the answer; any valid values do.
const DEVICE_ID: &str = "34020000001320000001";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(offer) = Offer::parse(&text) {
        let sdp = offer.to_sdp();
        match Offer::parse(&sdp) {
            Ok(again) => assert_eq!(again, offer, "offer round trip differs\n{sdp}"),
            Err(error) => panic!("to_sdp output does not parse as an offer: {error}\n{sdp}"),
        }
        match Answer::parse(&sdp) {
            Ok(answer) => {
                assert_eq!(answer.media_ip, offer.media_ip);
                assert_eq!(answer.media_port, offer.media_port);
                assert_eq!(answer.transport, offer.transport);
                assert_eq!(answer.ssrc, Some(offer.ssrc));
                assert_eq!(answer.payload_types, [96, 98, 97]);
                assert_eq!(answer.f_line, None);
            }
            Err(error) => panic!("an offer's SDP does not parse as an answer: {error}\n{sdp}"),
        }
    }

    if let Ok(answer) = Answer::parse(&text) {
        let sdp = answer.to_sdp(DEVICE_ID, "Play");
        match Answer::parse(&sdp) {
            Ok(again) => assert_eq!(again, answer, "answer round trip differs\n{sdp}"),
            Err(error) => panic!("to_sdp output does not parse as an answer: {error}\n{sdp}"),
        }
    }
});
