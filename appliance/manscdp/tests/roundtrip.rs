//! Property tests: `decode(encode(m)) == m` for every body variant in both character sets, and
//! no panic on random bytes, token soup or mutated valid documents.

use appliance_manscdp::ptz::{Pan, PtzCommand, PtzInstruction, Tilt, Zoom};
use appliance_manscdp::{
    Alarm, BasicParam, Body, CatalogEvent, CatalogItem, Charset, DeviceControl, Message, Preset,
    RecordItem, Root, decode, encode,
};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::strategy::Union;

/// Printable text of any script, trimmed because decoding trims.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        "[a-zA-Z0-9 _.:-]{0,12}",
        "[大门停车场东西南北通道 ]{0,6}",
        "[&<>\"' ;#a-z0-9]{0,10}",
    ]
    .prop_map(|text| text.trim().to_owned())
}

fn non_empty() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{20}",
        text().prop_filter("non-empty", |text| !text.is_empty())
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        -180.0..180.0f64,
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ]
}

fn any_root() -> impl Strategy<Value = Root> {
    prop_oneof![
        Just(Root::Query),
        Just(Root::Control),
        Just(Root::Notify),
        Just(Root::Response),
    ]
}

fn notify_or_response() -> impl Strategy<Value = Root> {
    prop_oneof![Just(Root::Notify), Just(Root::Response)]
}

fn catalog_item() -> impl Strategy<Value = CatalogItem> {
    let event = of(prop_oneof![
        Just(CatalogEvent::Add),
        Just(CatalogEvent::Del),
        Just(CatalogEvent::Update),
        Just(CatalogEvent::On),
        Just(CatalogEvent::Off),
        Just(CatalogEvent::Vlost),
        Just(CatalogEvent::Defect),
    ]);
    (
        (
            non_empty(),
            event,
            of(text()),
            of(text()),
            of(text()),
            of(text()),
            of(text()),
            of(text()),
        ),
        (
            of(any::<bool>()),
            of(text()),
            of(any::<u8>()),
            of(any::<u8>()),
            of(any::<bool>()),
            of(float()),
            of(float()),
            of(any::<u8>()),
        ),
    )
        .prop_map(
            |(
                (device_id, event, name, manufacturer, model, owner, civil_code, address),
                (parental, parent_id, register_way, secrecy, online, longitude, latitude, ptz_type),
            )| CatalogItem {
                device_id,
                event,
                name,
                manufacturer,
                model,
                owner,
                civil_code,
                address,
                parental,
                parent_id,
                register_way,
                secrecy,
                online,
                longitude,
                latitude,
                ptz_type,
            },
        )
}

fn record_item() -> impl Strategy<Value = RecordItem> {
    (
        text(),
        of(text()),
        of(text()),
        of(text()),
        text(),
        text(),
        of(any::<u8>()),
        of(text()),
    )
        .prop_map(
            |(device_id, name, file_path, address, start_time, end_time, secrecy, record_type)| {
                RecordItem {
                    device_id,
                    name,
                    file_path,
                    address,
                    start_time,
                    end_time,
                    secrecy,
                    record_type,
                }
            },
        )
}

fn basic_param() -> impl Strategy<Value = BasicParam> {
    (
        of(text()),
        of(any::<u32>()),
        of(any::<u32>()),
        of(any::<u32>()),
    )
        .prop_map(
            |(name, expiration, heartbeat_interval, heartbeat_count)| BasicParam {
                name,
                expiration,
                heartbeat_interval,
                heartbeat_count,
            },
        )
}

fn ptz() -> impl Strategy<Value = PtzInstruction> {
    let moving = (
        of(prop_oneof![Just(Pan::Left), Just(Pan::Right)]),
        of(prop_oneof![Just(Tilt::Up), Just(Tilt::Down)]),
        of(prop_oneof![Just(Zoom::In), Just(Zoom::Out)]),
        any::<u8>(),
        any::<u8>(),
        0u8..=15,
    )
        .prop_filter("a move has a direction", |(pan, tilt, zoom, ..)| {
            pan.is_some() || tilt.is_some() || zoom.is_some()
        })
        .prop_map(|(pan, tilt, zoom, pan_speed, tilt_speed, zoom_speed)| {
            PtzInstruction::Move(PtzCommand {
                pan,
                tilt,
                zoom,
                pan_speed,
                tilt_speed,
                zoom_speed,
            })
        });
    prop_oneof![
        moving,
        Just(PtzInstruction::Stop),
        any::<u8>().prop_map(PtzInstruction::PresetSet),
        any::<u8>().prop_map(PtzInstruction::PresetGoto),
        any::<u8>().prop_map(PtzInstruction::PresetDelete),
    ]
}

fn device_control() -> impl Strategy<Value = DeviceControl> {
    prop_oneof![
        ptz().prop_map(DeviceControl::Ptz),
        Just(DeviceControl::TeleBoot),
        any::<bool>().prop_map(|set| DeviceControl::Guard { set }),
        (of(any::<u8>()), of(any::<u32>()))
            .prop_map(|(method, alarm_type)| DeviceControl::AlarmReset { method, alarm_type }),
        Just(DeviceControl::IFrame),
        any::<bool>().prop_map(|start| DeviceControl::Record { start }),
    ]
}

const KNOWN_CMD_TYPES: [&str; 12] = [
    "Keepalive",
    "Alarm",
    "MobilePosition",
    "Catalog",
    "DeviceInfo",
    "DeviceStatus",
    "RecordInfo",
    "PresetQuery",
    "ConfigDownload",
    "MediaStatus",
    "DeviceControl",
    "DeviceConfig",
];

/// A body with a root under which it decodes to the same variant.
fn rooted_body() -> impl Strategy<Value = (Root, Body)> {
    let at = |root: Root| move |body: Body| (root, body);
    let arms: Vec<BoxedStrategy<(Root, Body)>> = vec![
        (any_root(), text())
            .prop_map(|(root, status)| (root, Body::Keepalive { status }))
            .boxed(),
        (
            notify_or_response(),
            (
                of(any::<u8>()),
                of(any::<u8>()),
                of(any::<u32>()),
                of(text()),
                of(text()),
                of(float()),
                of(float()),
            ),
        )
            .prop_map(
                |(root, (priority, method, alarm_type, time, description, longitude, latitude))| {
                    (
                        root,
                        Body::Alarm(Alarm {
                            priority,
                            method,
                            alarm_type,
                            time,
                            description,
                            longitude,
                            latitude,
                        }),
                    )
                },
            )
            .boxed(),
        (
            notify_or_response(),
            (
                text(),
                float(),
                float(),
                of(float()),
                of(float()),
                of(float()),
            ),
        )
            .prop_map(
                |(root, (time, longitude, latitude, speed, direction, altitude))| {
                    (
                        root,
                        Body::MobilePosition {
                            time,
                            longitude,
                            latitude,
                            speed,
                            direction,
                            altitude,
                        },
                    )
                },
            )
            .boxed(),
        (any::<u32>(), vec(catalog_item(), 0..4))
            .prop_map(|(sum_num, items)| Body::CatalogResponse { sum_num, items })
            .prop_map(at(Root::Response))
            .boxed(),
        (any::<u32>(), vec(catalog_item(), 0..4))
            .prop_map(|(sum_num, items)| Body::CatalogNotify { sum_num, items })
            .prop_map(at(Root::Notify))
            .boxed(),
        (
            of(text()),
            of(text()),
            of(text()),
            of(text()),
            of(any::<u32>()),
            text(),
        )
            .prop_map(
                |(device_name, manufacturer, model, firmware, channel, result)| {
                    Body::DeviceInfoResponse {
                        device_name,
                        manufacturer,
                        model,
                        firmware,
                        channel,
                        result,
                    }
                },
            )
            .prop_map(at(Root::Response))
            .boxed(),
        (
            of(any::<bool>()),
            of(text()),
            of(any::<bool>()),
            of(text()),
            vec((text(), text()), 0..3),
        )
            .prop_map(|(online, status, record, device_time, alarm_status)| {
                Body::DeviceStatusResponse {
                    online,
                    status,
                    record,
                    device_time,
                    alarm_status,
                }
            })
            .prop_map(at(Root::Response))
            .boxed(),
        (of(text()), any::<u32>(), vec(record_item(), 0..4))
            .prop_map(|(name, sum_num, items)| Body::RecordInfoResponse {
                name,
                sum_num,
                items,
            })
            .prop_map(at(Root::Response))
            .boxed(),
        (
            any::<u32>(),
            vec(
                (text(), text()).prop_map(|(id, name)| Preset { id, name }),
                0..4,
            ),
        )
            .prop_map(|(sum_num, items)| Body::PresetQueryResponse { sum_num, items })
            .prop_map(at(Root::Response))
            .boxed(),
        of(basic_param())
            .prop_map(|basic| Body::ConfigDownloadResponse { basic })
            .prop_map(at(Root::Response))
            .boxed(),
        (notify_or_response(), any::<u32>())
            .prop_map(|(root, notify_type)| (root, Body::MediaStatus { notify_type }))
            .boxed(),
        (
            prop_oneof![Just("DeviceControl"), Just("DeviceConfig")],
            text(),
        )
            .prop_map(|(cmd_type, result)| Body::ControlResponse {
                cmd_type: cmd_type.into(),
                result,
            })
            .prop_map(at(Root::Response))
            .boxed(),
        prop_oneof![
            Just(Body::CatalogQuery),
            Just(Body::DeviceInfoQuery),
            Just(Body::DeviceStatusQuery),
            Just(Body::PresetQuery),
        ]
        .prop_map(at(Root::Query))
        .boxed(),
        (text(), text(), of(text()), of(text()), of(any::<u8>()))
            .prop_map(|(start_time, end_time, record_type, file_path, secrecy)| {
                Body::RecordInfoQuery {
                    start_time,
                    end_time,
                    record_type,
                    file_path,
                    secrecy,
                }
            })
            .prop_map(at(Root::Query))
            .boxed(),
        text()
            .prop_map(|config_type| Body::ConfigDownloadQuery { config_type })
            .prop_map(at(Root::Query))
            .boxed(),
        of(any::<u32>())
            .prop_map(|interval| Body::MobilePositionQuery { interval })
            .prop_map(at(Root::Query))
            .boxed(),
        device_control()
            .prop_map(Body::DeviceControl)
            .prop_map(at(Root::Control))
            .boxed(),
        basic_param()
            .prop_map(Body::DeviceConfigBasic)
            .prop_map(at(Root::Control))
            .boxed(),
        // Unknown command types, under any root.
        (any_root(), non_empty())
            .prop_filter("not a modelled CmdType", |(_, cmd_type)| {
                !KNOWN_CMD_TYPES
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(cmd_type))
            })
            .prop_map(|(root, cmd_type)| (root, Body::Other { cmd_type }))
            .boxed(),
        // Known command types under a root that gives them no typed body.
        prop_oneof![
            Just((Root::Control, "Catalog")),
            Just((Root::Query, "Alarm")),
            Just((Root::Control, "MobilePosition")),
            Just((Root::Notify, "DeviceInfo")),
            Just((Root::Control, "MediaStatus")),
            Just((Root::Query, "DeviceControl")),
            Just((Root::Control, "DeviceControl")),
            Just((Root::Control, "DeviceConfig")),
        ]
        .prop_map(|(root, cmd_type)| {
            (
                root,
                Body::Other {
                    cmd_type: cmd_type.into(),
                },
            )
        })
        .boxed(),
    ];
    Union::new(arms)
}

fn message() -> impl Strategy<Value = Message> {
    (rooted_body(), any::<u32>(), non_empty())
        .prop_map(|((root, body), sn, device_id)| Message::new(root, sn, device_id, body))
}

fn charset() -> impl Strategy<Value = Charset> {
    prop_oneof![Just(Charset::Gb2312), Just(Charset::Utf8)]
}

/// Fragments that steer random documents into the parser's interesting corners.
const TOKENS: &[&str] = &[
    "<?xml version=\"1.0\" encoding=\"GB2312\"?>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "<?xml encoding='",
    "<Notify>",
    "</Notify>",
    "<Response>",
    "</Response>",
    "<Query>",
    "<Control>",
    "<CmdType>",
    "</CmdType>",
    "Catalog",
    "Keepalive",
    "DeviceControl",
    "RecordInfo",
    "PresetQuery",
    "<SN>",
    "</SN>",
    "<DeviceID>",
    "</DeviceID>",
    "<SumNum>",
    "</SumNum>",
    "<DeviceList Num=\"2\">",
    "</DeviceList>",
    "<RecordList Num='x'>",
    "<Item>",
    "</Item>",
    "<Info>",
    "</Info>",
    "<PTZCmd>",
    "A50F0100000000B5",
    "</PTZCmd>",
    "<GuardCmd>",
    "<NotifyType>",
    "121",
    "-1",
    "4294967296",
    "1e400",
    "NaN",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "&bogus;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<a/>",
    "\u{feff}",
    "大门",
    "\0",
    " ",
    "\r\n",
    "<",
    ">",
    "\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
    Splice(prop::sample::Index, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), prop::sample::select(TOKENS))
            .prop_map(|(at, token)| Mutation::Splice(at, token)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    match mutation {
        Mutation::Flip(at, bits) if !bytes.is_empty() => {
            let at = at.index(bytes.len());
            bytes[at] ^= bits;
        }
        Mutation::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
        Mutation::Delete(at) if !bytes.is_empty() => {
            bytes.remove(at.index(bytes.len()));
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
        Mutation::Splice(at, token) => {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, token.bytes());
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn encode_then_decode_is_identity(message in message(), charset in charset()) {
        let bytes = encode(&message, charset);
        let decoded = decode(&bytes);
        prop_assert_eq!(
            decoded,
            Ok((message, charset)),
            "document:\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn token_soup_never_panics(tokens in vec(prop::sample::select(TOKENS), 0..60)) {
        let _ = decode(tokens.concat().as_bytes());
    }

    #[test]
    fn mutated_documents_never_panic(
        message in message(),
        charset in charset(),
        mutations in vec(mutation(), 1..8),
    ) {
        let mut bytes = encode(&message, charset);
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        if let Ok((decoded, _)) = decode(&bytes) {
            // Whatever decodes must encode again, and that must decode to the same thing
            // (compared as Debug text, where a NaN read from "NaN" equals itself).
            let again = decode(&encode(&decoded, Charset::Utf8)).map(|(message, _)| message);
            prop_assert_eq!(format!("{again:?}"), format!("{:?}", Ok::<_, ()>(decoded)));
        }
    }
}
