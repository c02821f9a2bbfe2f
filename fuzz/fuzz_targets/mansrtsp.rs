//! MANSRTSP playback-control bodies (`appliance_gb28181::mansrtsp`, carried in INFO requests) on
//! arbitrary text: the device simulator parses what platforms send, and a platform's body must
//! read back as what it meant.
//!
//! Property: a control that parses survives `to_body`: parsing the body built from it gives the
//! same CSeq and control back.

#![no_main]

use appliance_gb28181::mansrtsp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((cseq, control)) = mansrtsp::parse(&text) {
        let body = control
            .to_body(cseq)
            .expect("a parsed control is a valid one");
        match mansrtsp::parse(&body) {
            Ok(again) => assert_eq!(again, (cseq, control), "round trip differs\n{body}"),
            Err(error) => panic!("to_body output does not parse: {error}\n{body}"),
        }
    }
});
