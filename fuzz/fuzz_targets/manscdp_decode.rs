//! `appliance_manscdp::decode` on arbitrary MANSCDP bodies (any bytes: GB2312/GBK/GB18030,
//! UTF-8 or neither, as devices send them).
//!
//! Property, from the crate docs (`decode(encode(m)) == m`): whatever decodes, re-encoded in
//! the charset it came in, decodes to the same message in the same charset. It is checked in
//! the other charset too, since the platform answers a device in the device's charset, which
//! need not be the one a relayed message arrived in.
//!
//! Floats: `f64` fields (longitude, latitude, speed...) are parsed with `str::parse`, which
//! accepts `NaN`, and `NaN != NaN`, so `==` alone would report every NaN as a broken round trip.
//! Messages that differ under `==` are therefore also compared by their `Debug` text, which
//! writes every NaN as `NaN` and is otherwise at least as strict as `==` (it even tells `-0.0`
//! from `0.0`). NaNs are thus still checked, just as NaNs.

#![no_main]

use appliance_manscdp::{Charset, Message, decode, encode};
use libfuzzer_sys::fuzz_target;

fn same(a: &Message, b: &Message) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

fuzz_target!(|data: &[u8]| {
    let Ok((message, charset)) = decode(data) else {
        return;
    };
    for target in [charset, other(charset)] {
        let bytes = encode(&message, target);
        match decode(&bytes) {
            Ok((again, again_charset)) => {
                assert!(
                    same(&again, &message),
                    "{target:?} round trip differs:\n  decoded  {message:?}\n  re-read  {again:?}"
                );
                assert_eq!(again_charset, target, "charset not kept");
            }
            Err(error) => panic!(
                "{target:?} encoding of a decoded message does not decode: {error}\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
});

fn other(charset: Charset) -> Charset {
    match charset {
        Charset::Gb2312 => Charset::Utf8,
        Charset::Utf8 => Charset::Gb2312,
    }
}
