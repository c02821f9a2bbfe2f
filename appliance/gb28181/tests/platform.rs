//! The platform state machine driven message by message with a simulated clock: no sockets, no
//! sleeping. Device messages are built with the same SIP and MANSCDP crates a device would use.

use std::collections::HashMap;

use appliance_gb28181::device::{Peer, Transport};
use appliance_gb28181::mansrtsp::{self, PlaybackControl};
use appliance_gb28181::platform::{Output, Platform, PlatformConfig, PlatformError};
use appliance_gb28181::registrar::RegistrarConfig;
use appliance_gb28181::sdp::{MediaTransport, SessionKind};
use appliance_gb28181::session::{EndReason, MediaEndpoint, State};
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
    register_from(platform, camera, peer(), now)
}

/// Registers `camera` as if it spoke from `from` (its transport decides how we reach it).
fn register_from(
    platform: &mut Platform,
    camera: &mut Camera,
    from: Peer,
    now: i64,
) -> Vec<Output> {
    let challenge = platform.on_message(&camera.register(3600, None), from, now);
    let challenge = &responses(&challenge)[0];
    assert_eq!(challenge.status(), Some(401));
    let challenge = Challenge::parse(challenge.header("WWW-Authenticate").unwrap()).unwrap();
    let uri = "sip:34020000002000000001@192.0.2.1:5060";
    let credentials =
        Credentials::answer(&challenge, DEVICE, PASSWORD, "REGISTER", uri, "c0ffee", 1);
    platform.on_message(
        &camera.register(3600, Some(credentials.to_header_value())),
        from,
        now,
    )
}

#[test]
fn registration_then_silence_takes_the_device_offline_after_the_missed_keepalives() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
    register(&mut platform, &mut Camera::new(), 0);
    let persisted = platform.device(DEVICE).unwrap().clone();
    // The daemon is down for four heartbeat intervals, longer than the offline threshold.
    let restart = 4 * HEARTBEAT_MS;
    let mut platform = Platform::new(config(), [9; 32], vec![persisted], Vec::new(), restart);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
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

const CHANNEL: &str = "34020000001310000001";
const PLAYBACK: SessionKind = SessionKind::Playback {
    start: 1_700_000_000,
    end: 1_700_003_600,
};

fn media_endpoint() -> MediaEndpoint {
    MediaEndpoint {
        ip: "192.0.2.1".parse().unwrap(),
        port: 30_000,
        transport: MediaTransport::Udp,
    }
}

/// A platform with the camera registered from `from`.
fn platform_with_camera(from: Peer) -> Platform {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
    register_from(&mut platform, &mut Camera::new(), from, 0);
    platform
}

/// Starts a session of `kind` on the camera's channel at `now`: its Call-ID and INVITE.
fn start(platform: &mut Platform, kind: SessionKind, now: i64) -> (String, Message) {
    let (call_id, outputs) = platform
        .start_session(DEVICE, CHANNEL, kind, media_endpoint(), now)
        .unwrap();
    (call_id, responses(&outputs).remove(0))
}

/// The camera's answer to `request` (no body).
fn answer(platform: &mut Platform, request: &Message, status: u16, now: i64) -> Vec<Output> {
    let response = Message::response(request, status, "Whatever")
        .build()
        .unwrap();
    platform.on_message(&response.to_bytes(), peer(), now)
}

/// The camera's 200 to `invite`, with an SDP answer (the same each time: its To tag is
/// derived from the INVITE).
fn accepted(invite: &Message) -> Message {
    let sdp = "v=0\r\no=x 0 0 IN IP4 192.0.2.10\r\ns=Playback\r\nc=IN IP4 192.0.2.10\r\n\
               t=0 0\r\nm=video 15060 RTP/AVP 96\r\na=sendonly\r\ny=1200000001\r\n";
    Message::response(invite, 200, "OK")
        .body("APPLICATION/SDP", sdp)
        .build()
        .unwrap()
}

/// The camera accepts `invite`.
fn accept(platform: &mut Platform, invite: &Message, now: i64) -> Vec<Output> {
    platform.on_message(&accepted(invite).to_bytes(), peer(), now)
}

/// The SIP requests among `outputs` with this method.
fn requests(outputs: &[Output], method: &str) -> Vec<Message> {
    responses(outputs)
        .into_iter()
        .filter(|m| m.method() == Some(method))
        .collect()
}

fn session_ends(outputs: &[Output]) -> Vec<EndReason> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::SessionEnded { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_invite_is_retransmitted_over_udp_until_answered_and_never_over_tcp() {
    let mut platform = platform_with_camera(peer());
    let (call_id, invite) = start(&mut platform, SessionKind::Play, 1_000);
    let resent: Vec<i64> = (2..=6)
        .map(|s| s * 1_000)
        .filter(|&now| !requests(&platform.on_tick(now), "INVITE").is_empty())
        .collect();
    assert_eq!(resent, [2_000, 3_000, 5_000], "0.5 s, then doubling");
    answer(&mut platform, &invite, 100, 6_500);
    let later: Vec<Output> = (7..=20).flat_map(|s| platform.on_tick(s * 1_000)).collect();
    assert!(
        requests(&later, "INVITE").is_empty(),
        "a provisional answer stops them"
    );
    assert_eq!(
        platform.session(&call_id).unwrap().state(),
        State::Proceeding
    );

    let tcp = Peer {
        transport: Transport::Tcp,
        addr: "192.0.2.10:40001".parse().unwrap(),
    };
    let mut platform = platform_with_camera(tcp);
    let (call_id, _) = start(&mut platform, SessionKind::Play, 1_000);
    let outputs: Vec<Output> = (2..=33).flat_map(|s| platform.on_tick(s * 1_000)).collect();
    assert!(requests(&outputs, "INVITE").is_empty());
    assert!(outputs.contains(&Output::SessionEnded {
        call_id,
        reason: EndReason::Timeout
    }));
    // The INVITE, and the two queries of the registration nobody answered either.
    assert_eq!(platform.counters().requests_timed_out, 3);
    assert_eq!(platform.sessions().count(), 0);
}

#[test]
fn refusals_are_acked_in_the_invite_transaction_and_retransmitted_200s_acked_again() {
    let mut platform = platform_with_camera(peer());
    let (refused, invite) = start(&mut platform, PLAYBACK, 1_000);
    let outputs = answer(&mut platform, &invite, 486, 1_100);
    let ack = &requests(&outputs, "ACK")[0];
    assert_eq!(ack.via_branch(), invite.via_branch());
    assert_eq!(ack.cseq(), Some((1, "ACK".into())));
    assert_eq!(session_ends(&outputs), [EndReason::Refused(486)]);
    assert!(platform.session(&refused).is_none());

    let (accepted, invite) = start(&mut platform, PLAYBACK, 2_000);
    let first = accept(&mut platform, &invite, 2_100);
    assert_eq!(requests(&first, "ACK").len(), 1);
    let again = accept(&mut platform, &invite, 2_600);
    assert_eq!(
        requests(&again, "ACK")[0].to_bytes(),
        requests(&first, "ACK")[0].to_bytes()
    );
    assert_eq!(
        platform.session(&accepted).unwrap().state(),
        State::Established
    );
}

#[test]
fn stopping_an_unanswered_session_cancels_it_once_the_device_is_heard() {
    let mut platform = platform_with_camera(peer());
    let (call_id, invite) = start(&mut platform, SessionKind::Play, 1_000);
    assert!(platform.stop_session(&call_id, 1_200).is_empty());
    assert_eq!(
        platform.session(&call_id).unwrap().state(),
        State::Cancelling
    );
    let outputs = answer(&mut platform, &invite, 100, 1_300);
    let cancel = &requests(&outputs, "CANCEL")[0];
    assert_eq!(cancel.via_branch(), invite.via_branch());
    assert_eq!(cancel.cseq(), Some((1, "CANCEL".into())));
    answer(&mut platform, cancel, 200, 1_400);
    let outputs = answer(&mut platform, &invite, 487, 1_500);
    assert_eq!(requests(&outputs, "ACK").len(), 1);
    assert_eq!(session_ends(&outputs), [EndReason::Stopped]);

    // The device had accepted before our CANCEL reached it: ACK, then BYE.
    let (call_id, invite) = start(&mut platform, SessionKind::Play, 2_000);
    answer(&mut platform, &invite, 180, 2_100);
    assert_eq!(
        requests(&platform.stop_session(&call_id, 2_200), "CANCEL").len(),
        1
    );
    let outputs = accept(&mut platform, &invite, 2_300);
    let sent: Vec<_> = responses(&outputs)
        .iter()
        .map(|m| m.method().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["ACK", "BYE"]);
    assert_eq!(session_ends(&outputs), [EndReason::Stopped]);
    assert_eq!(platform.sessions().count(), 0);
}

#[test]
fn a_playback_is_controlled_with_info_and_a_live_stream_is_not() {
    let mut platform = platform_with_camera(peer());
    let (playback, invite) = start(&mut platform, PLAYBACK, 1_000);
    accept(&mut platform, &invite, 1_100);
    let controls = [
        PlaybackControl::Pause,
        PlaybackControl::Resume,
        PlaybackControl::Seek { position_s: 120 },
        PlaybackControl::Speed(2.0),
    ];
    for control in controls {
        let outputs = platform.control_session(&playback, control, 2_000).unwrap();
        let info = &requests(&outputs, "INFO")[0];
        assert_eq!(info.call_id(), Some(playback.as_str()));
        assert_eq!(info.content_type(), Some("Application/MANSRTSP"));
        let (cseq, sent) = mansrtsp::parse(std::str::from_utf8(info.body()).unwrap()).unwrap();
        assert_eq!(sent, control);
        assert_eq!(Some(cseq), info.cseq().map(|(n, _)| n));
        answer(&mut platform, info, 200, 2_100);
    }
    // Refused: logged and counted; the playback goes on.
    let outputs = platform
        .control_session(&playback, PlaybackControl::Speed(8.0), 3_000)
        .unwrap();
    answer(&mut platform, &requests(&outputs, "INFO")[0], 501, 3_100);
    assert_eq!(platform.counters().controls_refused, 1);
    assert_eq!(
        platform.session(&playback).unwrap().state(),
        State::Established
    );

    let (live, invite) = start(&mut platform, SessionKind::Play, 4_000);
    accept(&mut platform, &invite, 4_100);
    let refused = platform.control_session(&live, PlaybackControl::Pause, 5_000);
    assert!(
        matches!(refused, Err(PlatformError::NotControllable { .. })),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().contains("live stream"));
    assert_eq!(
        platform.control_session("no-such-call", PlaybackControl::Pause, 5_000),
        Err(PlatformError::UnknownSession("no-such-call".into()))
    );
    assert!(matches!(
        platform.control_session(&playback, PlaybackControl::Speed(3.0), 5_000),
        Err(PlatformError::InvalidControl(_))
    ));
}

/// The camera's MediaStatus 121 about `channel`, sent with `call_id`.
fn media_ended(camera: &mut Camera, call_id: &str, channel: &str) -> Vec<u8> {
    camera.cseq += 1;
    let xml = manscdp::encode(
        &manscdp::Message::new(
            Root::Notify,
            camera.cseq,
            channel,
            Body::MediaStatus { notify_type: 121 },
        ),
        Charset::Gb2312,
    );
    RequestBuilder::new("MESSAGE", &format!("sip:34020000002000000001@{REALM}"))
        .via("UDP", "192.0.2.10:5060")
        .from(&format!("sip:{DEVICE}@{REALM}"), &new_tag())
        .to(&format!("sip:34020000002000000001@{REALM}"), None)
        .call_id(call_id)
        .cseq(camera.cseq)
        .body("Application/MANSCDP+xml", xml)
        .build()
        .unwrap()
        .to_bytes()
}

#[test]
fn the_end_of_a_playback_reported_by_the_device_ends_the_session_with_bye() {
    let mut platform = Platform::new(config(), [7; 32], Vec::new(), Vec::new(), 0);
    let mut camera = Camera::new();
    register(&mut platform, &mut camera, 0);
    // In the session's dialog.
    let (call_id, invite) = start(&mut platform, PLAYBACK, 1_000);
    accept(&mut platform, &invite, 1_100);
    let outputs = platform.on_message(&media_ended(&mut camera, &call_id, CHANNEL), peer(), 9_000);
    assert_eq!(responses(&outputs)[0].status(), Some(200));
    let bye = &requests(&outputs, "BYE")[0];
    assert_eq!(bye.call_id(), Some(call_id.as_str()));
    assert_eq!(session_ends(&outputs), [EndReason::MediaEnded]);

    // Outside it: found by the channel, the one playback there.
    let (download, invite) = start(
        &mut platform,
        SessionKind::Download {
            start: 1,
            end: 2,
            speed: 4,
        },
        10_000,
    );
    accept(&mut platform, &invite, 10_100);
    let outputs = platform.on_message(
        &media_ended(&mut camera, "other-call", CHANNEL),
        peer(),
        11_000,
    );
    assert_eq!(responses(&outputs)[0].status(), Some(200));
    assert!(outputs.contains(&Output::SessionEnded {
        call_id: download,
        reason: EndReason::MediaEnded
    }));
    // For no session: answered all the same.
    let outputs = platform.on_message(
        &media_ended(&mut camera, "other-call-2", CHANNEL),
        peer(),
        12_000,
    );
    assert_eq!(responses(&outputs).len(), 1);
    assert_eq!(responses(&outputs)[0].status(), Some(200));
}

/// Every send among `outputs` goes to the camera.
fn all_to_camera(outputs: &[Output]) -> bool {
    outputs.iter().all(|o| match o {
        Output::Send { peer: to, .. } => *to == peer(),
        _ => true,
    })
}

#[test]
fn a_200_after_the_session_was_given_up_is_acked_and_hung_up() {
    let mut platform = platform_with_camera(peer());
    let (call_id, invite) = start(&mut platform, SessionKind::Play, 1_000);
    let outputs: Vec<Output> = (2..=33).flat_map(|s| platform.on_tick(s * 1_000)).collect();
    assert_eq!(session_ends(&outputs), [EndReason::Timeout]);

    // The same 200 from an address no device speaks from: nobody to hang up on.
    let ok = accepted(&invite);
    let elsewhere = Peer {
        transport: Transport::Udp,
        addr: "198.51.100.7:5060".parse().unwrap(),
    };
    assert!(
        platform
            .on_message(&ok.to_bytes(), elsewhere, 34_000)
            .is_empty()
    );

    let outputs = accept(&mut platform, &invite, 34_000);
    assert!(all_to_camera(&outputs));
    let sent = responses(&outputs);
    let methods: Vec<_> = sent.iter().map(|m| m.method().unwrap()).collect();
    assert_eq!(methods, ["ACK", "BYE"]);
    for (request, cseq) in sent.iter().zip([1, 2]) {
        assert_eq!(request.call_id(), Some(call_id.as_str()));
        assert_eq!(request.cseq().map(|(n, _)| n), Some(cseq));
        assert_eq!(request.from_tag(), invite.from_tag());
        assert_eq!(request.to_tag(), ok.to_tag());
    }
    assert!(session_ends(&outputs).is_empty());
    assert_eq!(platform.counters().stray_sessions_hung_up, 1);
    // The answer to that BYE is no stray 200.
    assert!(answer(&mut platform, &sent[1], 200, 34_100).is_empty());
    assert_eq!(platform.counters().stray_sessions_hung_up, 1);
    assert!(requests(&platform.on_tick(40_000), "BYE").is_empty());
}

/// Stores and deletes dialogs as the daemon does: JSON by Call-ID.
fn keep(store: &mut HashMap<String, Vec<u8>>, outputs: &[Output]) {
    for output in outputs {
        if let Output::PersistDialog { call_id, dialog } = output {
            match dialog {
                Some(dialog) => store.insert(call_id.clone(), serde_json::to_vec(dialog).unwrap()),
                None => store.remove(call_id),
            };
        }
    }
}

#[test]
fn sessions_cut_off_by_a_restart_are_hung_up_by_the_next_platform() {
    let mut platform = platform_with_camera(peer());
    let mut store = HashMap::new();
    // A playback paused once (its CSeq moved on), and a live stream stopped before the crash.
    let (playback, invite) = start(&mut platform, PLAYBACK, 1_000);
    keep(&mut store, &accept(&mut platform, &invite, 1_100));
    let paused = platform
        .control_session(&playback, PlaybackControl::Pause, 2_000)
        .unwrap();
    keep(&mut store, &paused);
    let info = &requests(&paused, "INFO")[0];
    let (live, live_invite) = start(&mut platform, SessionKind::Play, 3_000);
    keep(&mut store, &accept(&mut platform, &live_invite, 3_100));
    assert_eq!(store.len(), 2);
    keep(&mut store, &platform.stop_session(&live, 4_000));
    assert_eq!(store.keys().collect::<Vec<_>>(), [&playback]);

    // Killed here. The next platform starts from what was stored.
    let devices = platform.devices().cloned().collect();
    let dialogs = store
        .values()
        .map(|json| serde_json::from_slice(json).unwrap())
        .collect();
    let mut platform = Platform::new(config(), [9; 32], devices, dialogs, 60_000);
    assert_eq!(platform.sessions().count(), 0);
    let outputs = platform.on_tick(61_000);
    assert!(all_to_camera(&outputs));
    let [bye] = &requests(&outputs, "BYE")[..] else {
        panic!("one BYE: {outputs:?}")
    };
    assert_eq!(bye.call_id(), Some(playback.as_str()));
    assert_eq!(bye.request_uri(), invite.request_uri());
    assert_eq!(bye.from_tag(), invite.from_tag());
    assert_eq!(bye.to_tag(), accepted(&invite).to_tag());
    let (cseq, _) = bye.cseq().unwrap();
    assert!(cseq > invite.cseq().unwrap().0 && cseq > info.cseq().unwrap().0);
    keep(&mut store, &outputs);
    assert!(store.is_empty(), "hung up, and forgotten");
    assert!(session_ends(&outputs).is_empty());

    // Retransmitted until answered, and hung up only once.
    let again = platform.on_tick(62_000);
    assert_eq!(requests(&again, "BYE").len(), 1);
    assert!(
        !again
            .iter()
            .any(|o| matches!(o, Output::PersistDialog { .. }))
    );
    answer(&mut platform, bye, 200, 62_100);
    assert!(requests(&platform.on_tick(70_000), "BYE").is_empty());
    assert_eq!(platform.sessions().count(), 0);
}
