//! Digest authentication headers (`appliance_sip::digest`): every REGISTER's Authorization and
//! every 401's WWW-Authenticate pass through these parsers. Header values reach them as lossy
//! UTF-8 (`Message::header`), so the input is read the same way here.
//!
//! Properties:
//! - parsed `Credentials` survive `to_header_value`: parsing it again gives equal credentials
//!   (the device simulator sends exactly that text, and the registrar must read what it sent);
//! - parsed `Challenge`s survive `to_header_value` likewise (the platform sends that text);
//! - answering a parsed challenge with `Credentials::answer` gives credentials that survive
//!   the same round trip, that `verify` accepts with the password used and rejects with
//!   another: the device side and the registrar side agree on the hash whatever the realm,
//!   nonce and opaque a peer chose.

#![no_main]

use appliance_sip::digest::{Challenge, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);

    if let Ok(credentials) = Credentials::parse(&value) {
        assert_credentials_round_trip(&credentials);
        // Verification of arbitrary credentials must not panic; its answer is irrelevant here.
        let _ = credentials.verify("REGISTER", "12345678");
    }

    if let Ok(challenge) = Challenge::parse(&value) {
        let header = challenge.to_header_value();
        match Challenge::parse(&header) {
            Ok(again) => assert_eq!(again, challenge, "challenge round trip differs: {header}"),
            Err(error) => panic!("to_header_value output does not parse: {error}: {header}"),
        }

        // The fuzzed realm/nonce/opaque also serve as user name, URI and cnonce, so those
        // fields get hostile text too.
        let answer = Credentials::answer(
            &challenge,
            &challenge.nonce,
            "12345678",
            "REGISTER",
            &challenge.realm,
            challenge.opaque.as_deref().unwrap_or("0a4f113b"),
            1,
        );
        assert_credentials_round_trip(&answer);
        assert!(answer.verify("REGISTER", "12345678"), "own answer rejected");
        assert!(
            !answer.verify("REGISTER", "12345679"),
            "wrong password accepted"
        );
        assert!(
            !answer.verify("INVITE", "12345678"),
            "answer for another method accepted"
        );
    }
});

fn assert_credentials_round_trip(credentials: &Credentials) {
    let header = credentials.to_header_value();
    match Credentials::parse(&header) {
        Ok(again) => assert_eq!(
            &again, credentials,
            "credentials round trip differs: {header}"
        ),
        Err(error) => panic!("to_header_value output does not parse: {error}: {header}"),
    }
}
