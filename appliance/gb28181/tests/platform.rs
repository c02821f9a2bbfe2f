//! The platform state machine driven message by message with a simulated clock: no sockets, no
//! sleeping. Device messages are built with the same SIP and MANSCDP crates a device would use.

use std::collections::HashMap;

use appliance_gb28181::device::{Peer, Transport};
use appliance_gb28181::platform::{Output, Platform, PlatformConfig};
use appliance_gb28181::registrar::RegistrarConfig;
use appliance_gb28181::subscription::SubscriptionKind;
use appliance_manscdp::{self as manscdp, Body, Charset, Root};
use appliance_sip::digest::{Algorithm, Challenge, Credentials};
use appliance_sip::message::{Message, RequestBuilder, new_tag};

const DEVICE: &str = "34020000001320000001";
const REALM: &str = "3402000000";
const PASSWORD: &str = "secret-1";
const HEARTBEAT_MS: i64 = 60_000;

fn config() -> PlatformConfig {
    PlatformConfig {
        platform_id: "34020000002000000001".into(),
        registrar: RegistrarConfig {
            realm: REALM.into(),
            default_password: None,
            device_passwords: HashMap::from([(DEVICE.to_string(), PASSWORD.to_string())]),
            algorithm: Algorithm::Md5,
            min_expires: 60,
            max_expires: 86_400,
        },
        heartbeat_interval_ms: HEARTBEAT_MS,
        heartbeat_missed: 3,
        user_agent: "test".into(),
        subscriptions: vec![SubscriptionKind::Catalog, SubscriptionKind::Alarm],
    }
}

fn peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "192.0.2.10:5060".parse().unwrap(),
    }
}

/// A device's side of the conversation.
struct Camera {
    cseq: u32,
    call_id: String,
    tag: String,
}

impl Camera {
    fn new() -> Camera {
        Camera {
            cseq: 0,
            call_id: format!("reg-{}", new_tag()),
            tag: new_tag(),
        }
    }

    fn register(&mut self, expires: u32, authorization: Option<String>) -> Vec<u8> {
        self.cseq += 1;
        let aor = format!("sip:{DEVICE}@{REALM}");
        let mut builder =
            RequestBuilder::new("REGISTER", "sip:34020000002000000001@192.0.2.1:5060")
                .via("UDP", "192.0.2.10:5060")
                .from(&aor, &self.tag)
                .to(&aor, None)
                .call_id(&self.call_id)
                .cseq(self.cseq)
                .contact(&format!("sip:{DEVICE}@192.0.2.10:5060"))
                .header("Expires", &expires.to_string());
        if let Some(value) = authorization {
            builder = builder.header("Authorization", &value);
        }
        builder.build().unwrap().to_bytes()
    }

    fn manscdp(&mut self, root: Root, body: Body) -> Vec<u8> {
        self.cseq += 1;
        let xml = manscdp::encode(
            &manscdp::Message::new(root, self.cseq, DEVICE, body),
            Charset::Gb2312,
        );
        RequestBuilder::new("MESSAGE", &format!("sip:34020000002000000001@{REALM}"))
            .via("UDP", "192.0.2.10:5060")
            .from(&format!("sip:{DEVICE}@{REALM}"), &new_tag())
            .to(&format!("sip:34020000002000000001@{REALM}"), None)
            .call_id(&format!("msg-{}", new_tag()))
            .cseq(self.cseq)
            .body("Application/MANSCDP+xml", xml)
            .build()
            .unwrap()
            .to_bytes()
    }
}

fn responses(outputs: &[Output]) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { bytes, .. } => Some(Message::parse(bytes).unwrap()),
            _ => None,
        })
        .collect()
}

fn event_kinds(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .flat_map(|o| match o {
            Output::Commit { events, .. } => events.iter().map(|e| e.kind.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Registers `camera` at `now`, returning the outputs of the authenticated REGISTER.
fn register(platform: &mut Platform, camera: &mut Camera, now: i64) -> Vec<Output> {
    let challenge = platform.on_message(&camera.register(3600, None), peer(), now);
    let challenge = &responses(&challenge)[0];
    assert_eq!(challenge.status(), Some(401));
    let challenge = Challenge::parse(challenge.header("WWW-Authenticate").unwrap()).unwrap();
    let uri = "sip:34020000002000000001@192.0.2.1:5060";
    let credentials =
        Credentials::answer(&challenge, DEVICE, PASSWORD, "REGISTER", uri, "c0ffee", 1);
    platform.on_message(
        &camera.register(3600, Some(credentials.to_header_value())),
        peer(),
        now,
    )
}

#[test]
fn registration_then_silence_takes_the_device_offline_after_the_missed_keepalives() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    let mut camera = Camera::new();
    let outputs = register(&mut platform, &mut camera, 0);
    let sent = responses(&outputs);
    assert_eq!(sent[0].status(), Some(200));
    assert!(sent[0].header("Date").is_some());
    // The platform asks for the device's info and catalog straight away.
    let queries: Vec<_> = sent[1..]
        .iter()
        .map(|m| manscdp::decode(m.body()).unwrap().0.body)
        .collect();
    assert_eq!(queries, [Body::DeviceInfoQuery, Body::CatalogQuery]);
    assert_eq!(event_kinds(&outputs), ["device.online"]);

    // Keepalives keep it online...
    let keepalive = camera.manscdp(
        Root::Notify,
        Body::Keepalive {
            status: "OK".into(),
        },
    );
    let outputs = platform.on_message(&keepalive, peer(), 2 * HEARTBEAT_MS);
    assert_eq!(responses(&outputs)[0].status(), Some(200));
    assert!(event_kinds(&platform.on_tick(4 * HEARTBEAT_MS)).is_empty());
    // ...until three intervals pass without one.
    assert!(event_kinds(&platform.on_tick(5 * HEARTBEAT_MS)).is_empty());
    let offline = platform.on_tick(5 * HEARTBEAT_MS + 1);
    assert_eq!(event_kinds(&offline), ["device.offline"]);
    assert!(!platform.device(DEVICE).unwrap().online);
    // Reported once, not on every tick.
    assert!(event_kinds(&platform.on_tick(6 * HEARTBEAT_MS)).is_empty());

    // The next keepalive brings it back (its registration is still valid).
    let keepalive = camera.manscdp(
        Root::Notify,
        Body::Keepalive {
            status: "OK".into(),
        },
    );
    let outputs = platform.on_message(&keepalive, peer(), 7 * HEARTBEAT_MS);
    assert_eq!(event_kinds(&outputs), ["device.online"]);
}

#[test]
fn an_expired_registration_is_offline_and_its_keepalives_are_refused() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    let mut camera = Camera::new();
    register(&mut platform, &mut camera, 0);
    let expiry = platform.device(DEVICE).unwrap().expires_at_ms;
    assert_eq!(expiry, 3_600_000);
    // Keepalives every minute do not extend a registration.
    for minute in 1..60 {
        let keepalive = camera.manscdp(
            Root::Notify,
            Body::Keepalive {
                status: "OK".into(),
            },
        );
        platform.on_message(&keepalive, peer(), minute * HEARTBEAT_MS);
    }
    let outputs = platform.on_tick(expiry);
    assert_eq!(event_kinds(&outputs), ["device.offline"]);
    let keepalive = camera.manscdp(
        Root::Notify,
        Body::Keepalive {
            status: "OK".into(),
        },
    );
    let refused = responses(&platform.on_message(&keepalive, peer(), expiry + 1));
    assert_eq!(
        refused[0].status(),
        Some(403),
        "refusing makes the device register again"
    );
}

#[test]
fn a_retransmitted_request_is_answered_from_the_transaction_not_processed_twice() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    let mut camera = Camera::new();
    register(&mut platform, &mut camera, 0);
    let alarm = camera.manscdp(
        Root::Notify,
        Body::Alarm(manscdp::Alarm {
            priority: Some(2),
            ..manscdp::Alarm::default()
        }),
    );
    let first = platform.on_message(&alarm, peer(), 1_000);
    assert_eq!(event_kinds(&first), ["alarm"]);
    let again = platform.on_message(&alarm, peer(), 1_500);
    assert!(
        event_kinds(&again).is_empty(),
        "one alarm, however often it is retransmitted"
    );
    assert_eq!(
        responses(&again)[0].to_bytes(),
        responses(&first)[0].to_bytes()
    );
    assert_eq!(platform.counters().retransmissions_absorbed, 1);
}

#[test]
fn a_restart_keeps_registrations_and_gives_a_full_heartbeat_window() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    register(&mut platform, &mut Camera::new(), 0);
    let persisted = platform.device(DEVICE).unwrap().clone();
    // The daemon is down for four heartbeat intervals, longer than the offline threshold.
    let restart = 4 * HEARTBEAT_MS;
    let mut platform = Platform::new(config(), [9; 32], vec![persisted], restart);
    assert!(
        event_kinds(&platform.on_tick(restart + 1)).is_empty(),
        "no offline flap at start"
    );
    assert!(platform.device(DEVICE).unwrap().online);
    let outputs = platform.on_tick(restart + 3 * HEARTBEAT_MS + 1);
    assert_eq!(
        event_kinds(&outputs),
        ["device.offline"],
        "unless it stays silent"
    );
}

#[test]
fn requests_to_a_device_go_to_where_it_last_spoke_from_and_are_retransmitted_over_udp() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    let mut camera = Camera::new();
    register(&mut platform, &mut camera, 0);
    // The device's NAT mapping changes: its keepalive comes from a new port.
    let moved = Peer {
        transport: Transport::Udp,
        addr: "192.0.2.10:40000".parse().unwrap(),
    };
    let keepalive = camera.manscdp(
        Root::Notify,
        Body::Keepalive {
            status: "OK".into(),
        },
    );
    platform.on_message(&keepalive, moved, 1_000);
    let (_, outputs) = platform
        .request(DEVICE, DEVICE, Body::DeviceStatusQuery, 2_000)
        .unwrap();
    let Output::Send { peer, bytes } = &outputs[0] else {
        panic!("a send")
    };
    assert_eq!(*peer, moved);
    // No answer: retransmitted at T1 and then with backoff.
    let resent_bytes = |outputs: Vec<Output>| -> Vec<Vec<u8>> {
        outputs
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { peer: to, bytes } if to == moved => Some(bytes),
                _ => None,
            })
            .collect()
    };
    assert!(resent_bytes(platform.on_tick(2_500)).contains(bytes));
    // The device answers 200: no more retransmissions.
    let request = Message::parse(bytes).unwrap();
    let ok = Message::response(&request, 200, "OK")
        .build()
        .unwrap()
        .to_bytes();
    platform.on_message(&ok, moved, 2_600);
    assert!(!resent_bytes(platform.on_tick(10_000)).contains(bytes));
}

#[test]
fn bad_credentials_and_malformed_messages_are_refused_and_counted() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    let mut camera = Camera::new();
    let challenge = responses(&platform.on_message(&camera.register(3600, None), peer(), 0));
    let challenge = Challenge::parse(challenge[0].header("WWW-Authenticate").unwrap()).unwrap();
    let uri = "sip:34020000002000000001@192.0.2.1:5060";
    let wrong = Credentials::answer(&challenge, DEVICE, "guess", "REGISTER", uri, "c0ffee", 1);
    let refused = responses(&platform.on_message(
        &camera.register(3600, Some(wrong.to_header_value())),
        peer(),
        0,
    ));
    assert_eq!(refused[0].status(), Some(403));
    assert_eq!(platform.counters().auth_failures, 1);
    // No Expires: 400.
    let mut no_expires = camera.register(3600, None);
    let text = String::from_utf8(no_expires.clone())
        .unwrap()
        .replace("Expires: 3600\r\n", "");
    no_expires = text.into_bytes();
    let bad = responses(&platform.on_message(&no_expires, peer(), 0));
    assert_eq!(bad[0].status(), Some(400));
    // Junk is dropped and counted.
    assert!(platform.on_message(b"\x00\x01junk", peer(), 0).is_empty());
    assert_eq!(platform.counters().malformed_messages, 1);
    // Ten failures from one address lock it out, even with the right password.
    while platform.counters().auth_failures < 10 {
        let challenge =
            responses(&platform.on_message(&camera.register(3600, None), peer(), 1_000));
        let challenge = Challenge::parse(challenge[0].header("WWW-Authenticate").unwrap()).unwrap();
        let wrong = Credentials::answer(&challenge, DEVICE, "guess", "REGISTER", uri, "c0ffee", 1);
        platform.on_message(
            &camera.register(3600, Some(wrong.to_header_value())),
            peer(),
            1_000,
        );
    }
    let outputs = register_or_refused(&mut platform, &mut camera, 2_000);
    assert_eq!(outputs, Some(403), "rate-limited");
    assert_eq!(
        register_or_refused(&mut platform, &mut camera, 62_000),
        Some(200),
        "after the window"
    );
}

/// The status of the first response to a REGISTER (unauthenticated attempts are refused early).
fn register_or_refused(platform: &mut Platform, camera: &mut Camera, now: i64) -> Option<u16> {
    let first = responses(&platform.on_message(&camera.register(3600, None), peer(), now));
    if first[0].status() != Some(401) {
        return first[0].status();
    }
    let challenge = Challenge::parse(first[0].header("WWW-Authenticate").unwrap()).unwrap();
    let uri = "sip:34020000002000000001@192.0.2.1:5060";
    let credentials =
        Credentials::answer(&challenge, DEVICE, PASSWORD, "REGISTER", uri, "c0ffee", 1);
    responses(&platform.on_message(
        &camera.register(3600, Some(credentials.to_header_value())),
        peer(),
        now,
    ))[0]
        .status()
}

#[test]
fn a_device_answer_is_handed_back_under_the_sn_of_the_request() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    let mut camera = Camera::new();
    register(&mut platform, &mut camera, 0);
    let (sn, _) = platform
        .request(DEVICE, DEVICE, Body::DeviceStatusQuery, 1_000)
        .unwrap();
    let status = Body::DeviceStatusResponse {
        online: Some(true),
        status: Some("OK".into()),
        record: None,
        device_time: None,
        alarm_status: Vec::new(),
    };
    let xml = manscdp::encode(
        &manscdp::Message::response(status.clone(), sn, DEVICE),
        Charset::Utf8,
    );
    camera.cseq += 1;
    let message = RequestBuilder::new("MESSAGE", &format!("sip:34020000002000000001@{REALM}"))
        .via("UDP", "192.0.2.10:5060")
        .from(&format!("sip:{DEVICE}@{REALM}"), &new_tag())
        .to(&format!("sip:34020000002000000001@{REALM}"), None)
        .call_id("answer-1")
        .cseq(camera.cseq)
        .body("Application/MANSCDP+xml", xml)
        .build()
        .unwrap()
        .to_bytes();
    let outputs = platform.on_message(&message, peer(), 1_200);
    let answers: Vec<_> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Answer {
                device_id,
                sn,
                body,
                complete,
            } => Some((device_id.clone(), *sn, body.clone(), *complete)),
            _ => None,
        })
        .collect();
    assert_eq!(answers, [(DEVICE.to_string(), sn, status, true)]);
}

/// The SUBSCRIBE requests among `outputs`, parsed.
fn subscribes(outputs: &[Output]) -> Vec<Message> {
    responses(outputs)
        .into_iter()
        .filter(|m| m.method() == Some("SUBSCRIBE"))
        .collect()
}

#[test]
fn online_devices_are_subscribed_refreshed_in_dialog_and_left_alone_after_a_refusal() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    let mut camera = Camera::new();
    register(&mut platform, &mut camera, 0);
    let sent = subscribes(&platform.on_tick(1_000));
    let events: Vec<_> = sent
        .iter()
        .map(|m| m.header("Event").unwrap().to_string())
        .collect();
    assert_eq!(events.len(), 2);
    assert!(events.contains(&"Catalog".to_string()) && events.contains(&"presence".to_string()));
    // Unanswered over UDP they are retransmitted, but no second subscription starts.
    let branches: Vec<_> = sent.iter().map(|m| m.via_branch()).collect();
    let again = subscribes(&platform.on_tick(2_000));
    assert!(
        again.iter().all(|m| branches.contains(&m.via_branch())),
        "one at a time"
    );

    // The device accepts the catalog subscription and refuses the alarm one.
    let catalog = sent
        .iter()
        .find(|m| m.header("Event") == Some("Catalog"))
        .unwrap();
    let alarm = sent
        .iter()
        .find(|m| m.header("Event") == Some("presence"))
        .unwrap();
    let ok = Message::response(catalog, 200, "OK")
        .header("Expires", "600")
        .build()
        .unwrap();
    platform.on_message(&ok.to_bytes(), peer(), 2_000);
    let refused = Message::response(alarm, 489, "Bad Event").build().unwrap();
    platform.on_message(&refused.to_bytes(), peer(), 2_000);

    // Refreshed a minute before the granted 600 s run out, in the same dialog (the device keeps
    // alive meanwhile, or it would be offline and its subscriptions dropped).
    let keepalive = camera.manscdp(
        Root::Notify,
        Body::Keepalive {
            status: "OK".into(),
        },
    );
    platform.on_message(&keepalive, peer(), 500_000);
    assert!(subscribes(&platform.on_tick(2_000 + 539_000)).is_empty());
    let refresh = subscribes(&platform.on_tick(2_000 + 540_000));
    assert_eq!(
        refresh.len(),
        1,
        "the refused alarm subscription waits an hour"
    );
    assert_eq!(refresh[0].call_id(), catalog.call_id());
    assert_eq!(refresh[0].to_tag(), ok.to_tag());
    assert!(refresh[0].cseq().unwrap().0 > catalog.cseq().unwrap().0);
}

#[test]
fn a_live_session_goes_to_the_device_and_ends_with_its_bye() {
    use appliance_gb28181::sdp::{MediaTransport, SessionKind};
    use appliance_gb28181::session::{EndReason, MediaEndpoint};

    let mut platform = Platform::new(config(), [7; 32], Vec::new(), 0);
    register(&mut platform, &mut Camera::new(), 0);
    let endpoint = MediaEndpoint {
        ip: "192.0.2.1".parse().unwrap(),
        port: 30_000,
        transport: MediaTransport::Udp,
    };
    let channel = "34020000001310000001";
    let (call_id, outputs) = platform
        .start_session(DEVICE, channel, SessionKind::Play, endpoint, 1_000)
        .unwrap();
    let Output::Send { peer: to, bytes } = &outputs[0] else {
        panic!("an INVITE")
    };
    assert_eq!(*to, peer(), "to where the device last spoke from");
    let invite = Message::parse(bytes).unwrap();
    assert_eq!(invite.method(), Some("INVITE"));
    let ssrc = platform.session(&call_id).unwrap().ssrc;

    let answer = "v=0\r\no=x 0 0 IN IP4 192.0.2.10\r\ns=Play\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                  m=video 15060 RTP/AVP 96\r\na=sendonly\r\ny=0200000001\r\n";
    let ok = Message::response(&invite, 200, "OK")
        .body("APPLICATION/SDP", answer)
        .build()
        .unwrap();
    let outputs = platform.on_message(&ok.to_bytes(), peer(), 1_100);
    assert!(
        responses(&outputs)
            .iter()
            .any(|m| m.method() == Some("ACK"))
    );
    assert!(outputs.contains(&Output::SessionEstablished {
        call_id: call_id.clone(),
        ssrc
    }));

    // The device ends it (a playback that ran out, say): 200, and the session is gone.
    let bye = RequestBuilder::new("BYE", "sip:34020000002000000001@192.0.2.1:5060")
        .via("UDP", "192.0.2.10:5060")
        .from(&format!("sip:{channel}@{REALM}"), &ok.to_tag().unwrap())
        .to(
            &format!("sip:34020000002000000001@{REALM}"),
            invite.from_tag().as_deref(),
        )
        .call_id(&call_id)
        .cseq(2)
        .build()
        .unwrap();
    let outputs = platform.on_message(&bye.to_bytes(), peer(), 5_000);
    assert_eq!(responses(&outputs)[0].status(), Some(200));
    assert!(outputs.contains(&Output::SessionEnded {
        call_id: call_id.clone(),
        reason: EndReason::ByeFromDevice
    }));
    assert!(platform.session(&call_id).is_none());
    // A BYE for no session: 481.
    let stray = String::from_utf8(bye.to_bytes())
        .unwrap()
        .replace("z9hG4bK", "z9hG4bKx")
        .replace(&call_id, "no-such-call");
    let outputs = platform.on_message(stray.as_bytes(), peer(), 6_000);
    assert_eq!(responses(&outputs)[0].status(), Some(481));
}
