//! Decoding documents shaped like what devices and platforms send, and rejecting broken ones.

use appliance_manscdp::ptz::{Pan, PtzCommand, PtzInstruction, Zoom};
use appliance_manscdp::{
    Alarm, BasicParam, Body, CatalogEvent, CatalogItem, Charset, DeviceControl, ManscdpError,
    Message, Preset, RecordItem, Root, decode, encode,
};

/// What a device writes when it declares GB2312: GBK bytes (a superset).
fn gb(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable, "test text must be GBK");
    bytes.into_owned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

const DAMEN_GB2312: &[u8] = b"\xB4\xF3\xC3\xC5"; // 大门
const TINGCHECHANG_GB2312: &[u8] = b"\xCD\xA3\xB3\xB5\xB3\xA1"; // 停车场

#[test]
fn hikvision_keepalive_in_gb2312() {
    // Leading newline, standalone="yes", CRLF, a Chinese comment and an Info block the platform
    // does not model, as Hikvision IPCs send it.
    let bytes = gb(
        "\r\n<?xml version=\"1.0\" encoding=\"GB2312\" standalone=\"yes\"?>\r\n\
         <!-- 海康威视 心跳 -->\r\n\
         <Notify>\r\n\
         <CmdType>Keepalive</CmdType>\r\n\
         <SN>1093</SN>\r\n\
         <DeviceID>34020000001320000001</DeviceID>\r\n\
         <Status>OK</Status>\r\n\
         <Info>\r\n<DeviceName>大门</DeviceName>\r\n</Info>\r\n\
         </Notify>\r\n",
    );
    assert!(contains(&bytes, DAMEN_GB2312));
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "really GB bytes, not UTF-8"
    );

    let (message, charset) = decode(&bytes).unwrap();
    assert_eq!(charset, Charset::Gb2312);
    assert_eq!(
        message,
        Message::notify(
            Body::Keepalive {
                status: "OK".into()
            },
            1093,
            "34020000001320000001"
        )
    );
}

#[test]
fn gbk_without_declaration_is_recognised() {
    let bytes = gb(
        "<Response><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>34020000001110000001</DeviceID>\
         <SumNum>1</SumNum><DeviceList Num=\"1\"><Item><DeviceID>34020000001310000001</DeviceID>\
         <Name>停车场</Name></Item></DeviceList></Response>",
    );
    let (message, charset) = decode(&bytes).unwrap();
    assert_eq!(charset, Charset::Gb2312);
    let Body::CatalogResponse { items, .. } = message.body else {
        panic!("{:?}", message.body)
    };
    assert_eq!(items[0].name.as_deref(), Some("停车场"));
}

#[test]
fn encoding_labels_bom_and_quotes() {
    let body = "<Notify><CmdType>Keepalive</CmdType><SN>7</SN><DeviceID>1</DeviceID><Status>大门</Status></Notify>";
    for declaration in [
        "<?xml version=\"1.0\" encoding=\"gbk\"?>",
        "<?xml version='1.0' encoding='GB18030'?>",
        "<?xml version=\"1.0\" encoding = \"gb2312\" ?>",
    ] {
        let (message, charset) = decode(&gb(&format!("{declaration}\n{body}"))).unwrap();
        assert_eq!(charset, Charset::Gb2312, "{declaration}");
        assert_eq!(
            message.body,
            Body::Keepalive {
                status: "大门".into()
            }
        );
    }
    // UTF-8: declared, undeclared, with a byte order mark.
    for prefix in [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "",
        "\u{feff}<?xml version=\"1.0\"?>",
    ] {
        let (message, charset) = decode(format!("{prefix}{body}").as_bytes()).unwrap();
        assert_eq!(charset, Charset::Utf8, "{prefix:?}");
        assert_eq!(
            message.body,
            Body::Keepalive {
                status: "大门".into()
            }
        );
    }
    let unsupported = format!("<?xml version=\"1.0\" encoding=\"ISO-2022-JP\"?>{body}");
    assert_eq!(
        decode(unsupported.as_bytes()).unwrap_err(),
        ManscdpError::UnsupportedEncoding("ISO-2022-JP".into())
    );
}

#[test]
fn alarm_notify() {
    let bytes = gb("<?xml version=\"1.0\" encoding=\"GB2312\"?>
<Notify>
<CmdType>Alarm</CmdType>
<SN>17</SN>
<DeviceID>34020000001340000001</DeviceID>
<AlarmPriority>1</AlarmPriority>
<AlarmMethod>5</AlarmMethod>
<AlarmTime>2026-11-24T10:00:00</AlarmTime>
<AlarmDescription>停车场 区域入侵</AlarmDescription>
<Longitude>116.397128</Longitude>
<Latitude>39.916527</Latitude>
<Info>
<AlarmType>2</AlarmType>
<AlarmTypeParam><EventType>1</EventType></AlarmTypeParam>
</Info>
</Notify>
");
    let (message, _) = decode(&bytes).unwrap();
    assert_eq!(message.root, Root::Notify);
    assert_eq!(
        message.body,
        Body::Alarm(Alarm {
            priority: Some(1),
            method: Some(5),
            alarm_type: Some(2),
            time: Some("2026-11-24T10:00:00".into()),
            description: Some("停车场 区域入侵".into()),
            longitude: Some(116.397128),
            latitude: Some(39.916527),
        })
    );
}

#[test]
fn alarm_variations_devices_send() {
    // `DeviceId`, lower-case `sn`, numbers padded with spaces, AlarmType directly under the root,
    // an empty Longitude, and a trailing NUL from a C string.
    let text = "<?xml version=\"1.0\"?>
<Notify>
<CmdType>Alarm</CmdType>
<sn> 18 </sn>
<DeviceId>34020000001340000001</DeviceId>
<AlarmPriority> 2 </AlarmPriority>
<AlarmMethod>2</AlarmMethod>
<AlarmType>1</AlarmType>
<AlarmTime>2026-11-24T10:00:05</AlarmTime>
<Longitude></Longitude>
</Notify>\0";
    let (message, _) = decode(text.as_bytes()).unwrap();
    assert_eq!(message.sn, 18);
    assert_eq!(message.device_id, "34020000001340000001");
    assert_eq!(
        message.body,
        Body::Alarm(Alarm {
            priority: Some(2),
            method: Some(2),
            alarm_type: Some(1),
            time: Some("2026-11-24T10:00:05".into()),
            ..Alarm::default()
        })
    );
}

fn catalog_page(page: usize) -> Vec<u8> {
    let item = if page == 1 {
        "<Item>
<DeviceID>34020000001310000001</DeviceID>
<Name>大门</Name>
<Manufacturer>Hikvision</Manufacturer>
<Model>DS-2CD3T46</Model>
<Owner>Owner</Owner>
<CivilCode>3402000000</CivilCode>
<Address>东门岗亭</Address>
<Parental>0</Parental>
<ParentID>34020000001110000001</ParentID>
<SafetyWay>0</SafetyWay>
<RegisterWay>1</RegisterWay>
<Secrecy>0</Secrecy>
<IPAddress>192.168.1.64</IPAddress>
<Port>5060</Port>
<Status>ON</Status>
<Longitude>0.0</Longitude>
<Latitude>0.0</Latitude>
<Info>
<PTZType>1</PTZType>
</Info>
</Item>"
    } else {
        "<Item>
<DeviceID>34020000001310000002</DeviceID>
<Name>停车场</Name>
<Manufacturer>Hikvision</Manufacturer>
<Parental>0</Parental>
<ParentID>34020000001110000001</ParentID>
<Status>OFF</Status>
<Info><PTZType>3</PTZType></Info>
</Item>"
    };
    gb(&format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?>
<Response>
<CmdType>Catalog</CmdType>
<SN>4</SN>
<DeviceID>34020000001110000001</DeviceID>
<SumNum>2</SumNum>
<DeviceList Num=\"1\">
{item}
</DeviceList>
</Response>
"
    ))
}

fn damen() -> CatalogItem {
    CatalogItem {
        device_id: "34020000001310000001".into(),
        name: Some("大门".into()),
        manufacturer: Some("Hikvision".into()),
        model: Some("DS-2CD3T46".into()),
        owner: Some("Owner".into()),
        civil_code: Some("3402000000".into()),
        address: Some("东门岗亭".into()),
        parental: Some(false),
        parent_id: Some("34020000001110000001".into()),
        register_way: Some(1),
        secrecy: Some(0),
        online: Some(true),
        longitude: Some(0.0),
        latitude: Some(0.0),
        ptz_type: Some(1),
        event: None,
    }
}

fn tingchechang() -> CatalogItem {
    CatalogItem {
        device_id: "34020000001310000002".into(),
        name: Some("停车场".into()),
        manufacturer: Some("Hikvision".into()),
        parental: Some(false),
        parent_id: Some("34020000001110000001".into()),
        online: Some(false),
        ptz_type: Some(3),
        ..CatalogItem::default()
    }
}

#[test]
fn catalog_response_in_two_pages() {
    let first = catalog_page(1);
    let second = catalog_page(2);
    assert!(contains(&first, DAMEN_GB2312));
    assert!(contains(&second, TINGCHECHANG_GB2312));

    let (one, charset) = decode(&first).unwrap();
    assert_eq!(charset, Charset::Gb2312);
    assert_eq!(
        one,
        Message::response(
            Body::CatalogResponse {
                sum_num: 2,
                items: vec![damen()]
            },
            4,
            "34020000001110000001"
        )
    );
    let (two, _) = decode(&second).unwrap();
    assert_eq!(
        two.body,
        Body::CatalogResponse {
            sum_num: 2,
            items: vec![tingchechang()]
        }
    );
}

/// The pages above go through the assembler, with page 1 arriving twice.
#[test]
fn catalog_pages_assemble() {
    use appliance_manscdp::assembly::MultiPartAssembler;
    use std::time::{Duration, Instant};

    let mut assembler = MultiPartAssembler::new(Duration::from_secs(10), 64);
    let now = Instant::now();
    let page = |n| decode(&catalog_page(n)).unwrap().0;
    assert_eq!(assembler.add(page(1), now), None);
    assert_eq!(
        assembler.add(page(1), now),
        None,
        "a repeated page adds nothing"
    );
    let done = assembler.add(page(2), now).expect("complete after page 2");
    assert!(done.complete);
    assert_eq!(done.pages, 3);
    assert_eq!(
        done.message.body,
        Body::CatalogResponse {
            sum_num: 2,
            items: vec![damen(), tingchechang()]
        }
    );
    assert_eq!(assembler.pending(), 0);
}

#[test]
fn catalog_notify_with_events() {
    let text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<Notify>
<CmdType>Catalog</CmdType>
<SN>88</SN>
<DeviceID>34020000001110000001</DeviceID>
<SumNum>2</SumNum>
<DeviceList Num=\"2\">
<Item><DeviceID>34020000001310000003</DeviceID><Event>ADD</Event><Name>后门</Name><Status>ONLINE</Status></Item>
<Item><DeviceID>34020000001310000002</DeviceID><Event>vlost</Event></Item>
</DeviceList>
</Notify>";
    let (message, _) = decode(text.as_bytes()).unwrap();
    assert_eq!(
        message.body,
        Body::CatalogNotify {
            sum_num: 2,
            items: vec![
                CatalogItem {
                    device_id: "34020000001310000003".into(),
                    event: Some(CatalogEvent::Add),
                    name: Some("后门".into()),
                    online: Some(true),
                    ..CatalogItem::default()
                },
                CatalogItem {
                    device_id: "34020000001310000002".into(),
                    event: Some(CatalogEvent::Vlost),
                    ..CatalogItem::default()
                },
            ]
        }
    );
}

#[test]
fn catalog_item_without_device_id_is_an_error() {
    let text = "<Response><CmdType>Catalog</CmdType><SN>4</SN><DeviceID>1</DeviceID><SumNum>1</SumNum>\
        <DeviceList Num=\"1\"><Item><Name>x</Name></Item></DeviceList></Response>";
    assert_eq!(
        decode(text.as_bytes()).unwrap_err(),
        ManscdpError::Missing {
            element: "DeviceList/Item/DeviceID".into()
        }
    );
}

#[test]
fn device_info_response() {
    let text = "<?xml version=\"1.0\" encoding=\"GB2312\"?>
<Response>
<CmdType>DeviceInfo</CmdType>
<SN>5</SN>
<DeviceID>34020000001110000001</DeviceID>
<DeviceName>NVR 一号</DeviceName>
<Result>OK</Result>
<DeviceType>NVR</DeviceType>
<Manufacturer>Hikvision</Manufacturer>
<Model>DS-7608N-K2</Model>
<Firmware>V4.30.085 build 200916</Firmware>
<Channel>8</Channel>
</Response>";
    let (message, _) = decode(&gb(text)).unwrap();
    assert_eq!(
        message.body,
        Body::DeviceInfoResponse {
            device_name: Some("NVR 一号".into()),
            manufacturer: Some("Hikvision".into()),
            model: Some("DS-7608N-K2".into()),
            firmware: Some("V4.30.085 build 200916".into()),
            channel: Some(8),
            result: "OK".into(),
        }
    );
}

#[test]
fn device_status_response() {
    let text = "<?xml version=\"1.0\" encoding=\"GB2312\"?>
<Response>
<CmdType>DeviceStatus</CmdType>
<SN>6</SN>
<DeviceID>34020000001320000001</DeviceID>
<Result>OK</Result>
<Online>ONLINE</Online>
<Status>OK</Status>
<Encode>ON</Encode>
<Record>OFF</Record>
<DeviceTime>2026-11-24T10:00:00</DeviceTime>
<Alarmstatus Num=\"1\">
<Item><DeviceID>34020000001340000001</DeviceID><DutyStatus>OFFDUTY</DutyStatus></Item>
</Alarmstatus>
</Response>";
    let (message, _) = decode(text.as_bytes()).unwrap();
    assert_eq!(
        message.body,
        Body::DeviceStatusResponse {
            online: Some(true),
            status: Some("OK".into()),
            record: Some(false),
            device_time: Some("2026-11-24T10:00:00".into()),
            alarm_status: vec![("34020000001340000001".into(), "OFFDUTY".into())],
        }
    );
}

#[test]
fn record_info_response_with_two_items() {
    let text = "<?xml version=\"1.0\" encoding=\"GB2312\"?>
<Response>
<CmdType>RecordInfo</CmdType>
<SN>9</SN>
<DeviceID>34020000001310000001</DeviceID>
<Name>大门</Name>
<SumNum>2</SumNum>
<RecordList Num=\"2\">
<Item>
<DeviceID>34020000001310000001</DeviceID>
<Name>大门</Name>
<FilePath>ch01_00000000000000100</FilePath>
<Address>Address 1</Address>
<StartTime>2026-11-24T00:00:00</StartTime>
<EndTime>2026-11-24T01:00:00</EndTime>
<Secrecy>0</Secrecy>
<Type>time</Type>
<FileSize>1073741824</FileSize>
</Item>
<Item>
<DeviceID>34020000001310000001</DeviceID>
<Name>大门</Name>
<StartTime>2026-11-24T01:00:00</StartTime>
<EndTime>2026-11-24T01:12:30</EndTime>
<Secrecy>0</Secrecy>
<Type>alarm</Type>
</Item>
</RecordList>
</Response>";
    let bytes = gb(text);
    assert!(contains(&bytes, DAMEN_GB2312));
    let (message, _) = decode(&bytes).unwrap();
    assert_eq!(
        message.body,
        Body::RecordInfoResponse {
            name: Some("大门".into()),
            sum_num: 2,
            items: vec![
                RecordItem {
                    device_id: "34020000001310000001".into(),
                    name: Some("大门".into()),
                    file_path: Some("ch01_00000000000000100".into()),
                    address: Some("Address 1".into()),
                    start_time: "2026-11-24T00:00:00".into(),
                    end_time: "2026-11-24T01:00:00".into(),
                    secrecy: Some(0),
                    record_type: Some("time".into()),
                },
                RecordItem {
                    device_id: "34020000001310000001".into(),
                    name: Some("大门".into()),
                    start_time: "2026-11-24T01:00:00".into(),
                    end_time: "2026-11-24T01:12:30".into(),
                    secrecy: Some(0),
                    record_type: Some("alarm".into()),
                    ..RecordItem::default()
                },
            ],
        }
    );
}

#[test]
fn media_status_121() {
    let text = "<?xml version=\"1.0\" encoding=\"GB2312\"?>
<Notify>
<CmdType>MediaStatus</CmdType>
<SN>210</SN>
<DeviceID>34020000001310000001</DeviceID>
<NotifyType>121</NotifyType>
</Notify>";
    let (message, _) = decode(text.as_bytes()).unwrap();
    assert_eq!(
        message,
        Message::notify(
            Body::MediaStatus { notify_type: 121 },
            210,
            "34020000001310000001"
        )
    );
}

#[test]
fn mobile_position_and_its_query() {
    let text = "<Notify><CmdType>MobilePosition</CmdType><SN>3</SN><DeviceID>1</DeviceID>\
        <Time>2026-11-24T10:00:00</Time><Longitude>116.3</Longitude><Latitude>39.9</Latitude>\
        <Speed>0.0</Speed><Direction>90</Direction><Altitude>43</Altitude></Notify>";
    assert_eq!(
        decode(text.as_bytes()).unwrap().0.body,
        Body::MobilePosition {
            time: "2026-11-24T10:00:00".into(),
            longitude: 116.3,
            latitude: 39.9,
            speed: Some(0.0),
            direction: Some(90.0),
            altitude: Some(43.0),
        }
    );
    let no_latitude = text.replace("<Latitude>39.9</Latitude>", "");
    assert_eq!(
        decode(no_latitude.as_bytes()).unwrap_err(),
        ManscdpError::Missing {
            element: "Latitude".into()
        }
    );
    let query = "<Query><CmdType>MobilePosition</CmdType><SN>3</SN><DeviceID>1</DeviceID><Interval>5</Interval></Query>";
    assert_eq!(
        decode(query.as_bytes()).unwrap().0.body,
        Body::MobilePositionQuery { interval: Some(5) }
    );
}

#[test]
fn preset_and_config_download_responses() {
    // No SumNum: the total comes from PresetList Num=.
    let presets = "<Response><CmdType>PresetQuery</CmdType><SN>11</SN><DeviceID>1</DeviceID>\
        <PresetList Num=\"2\"><Item><PresetID>1</PresetID><PresetName>大门</PresetName></Item>\
        <Item><PresetID>2</PresetID><PresetName>停车场</PresetName></Item></PresetList></Response>";
    assert_eq!(
        decode(&gb(presets)).unwrap().0.body,
        Body::PresetQueryResponse {
            sum_num: 2,
            items: vec![
                Preset {
                    id: "1".into(),
                    name: "大门".into()
                },
                Preset {
                    id: "2".into(),
                    name: "停车场".into()
                },
            ]
        }
    );
    let config = "<Response><CmdType>ConfigDownload</CmdType><SN>12</SN><DeviceID>1</DeviceID>\
        <Result>OK</Result><BasicParam><Name>IPC</Name><Expiration>3600</Expiration>\
        <HeartBeatInterval>60</HeartBeatInterval><HeartBeatCount>3</HeartBeatCount></BasicParam></Response>";
    assert_eq!(
        decode(config.as_bytes()).unwrap().0.body,
        Body::ConfigDownloadResponse {
            basic: Some(BasicParam {
                name: Some("IPC".into()),
                expiration: Some(3600),
                heartbeat_interval: Some(60),
                heartbeat_count: Some(3),
            })
        }
    );
}

#[test]
fn queries_as_wvp_sends_them() {
    let record_query = "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Query>\r\n<CmdType>RecordInfo</CmdType>\r\n\
        <SN>700</SN>\r\n<DeviceID>34020000001310000001</DeviceID>\r\n<StartTime>2026-11-24T00:00:00</StartTime>\r\n\
        <EndTime>2026-11-24T23:59:59</EndTime>\r\n<Secrecy>0</Secrecy>\r\n<Type>all</Type>\r\n</Query>\r\n";
    assert_eq!(
        decode(record_query.as_bytes()).unwrap().0,
        Message::query(
            Body::RecordInfoQuery {
                start_time: "2026-11-24T00:00:00".into(),
                end_time: "2026-11-24T23:59:59".into(),
                record_type: Some("all".into()),
                file_path: None,
                secrecy: Some(0),
            },
            700,
            "34020000001310000001"
        )
    );
    for (cmd, body) in [
        ("Catalog", Body::CatalogQuery),
        ("DeviceInfo", Body::DeviceInfoQuery),
        ("DeviceStatus", Body::DeviceStatusQuery),
        ("PresetQuery", Body::PresetQuery),
    ] {
        let text =
            format!("<Query><CmdType>{cmd}</CmdType><SN>1</SN><DeviceID>2</DeviceID></Query>");
        assert_eq!(decode(text.as_bytes()).unwrap().0.body, body);
    }
    let config = "<Query><CmdType>ConfigDownload</CmdType><SN>1</SN><DeviceID>2</DeviceID><ConfigType>BasicParam</ConfigType></Query>";
    assert_eq!(
        decode(config.as_bytes()).unwrap().0.body,
        Body::ConfigDownloadQuery {
            config_type: "BasicParam".into()
        }
    );
}

#[test]
fn ptz_control_round_trip() {
    // The platform asks for pan right at speed 0x20 with zoom in at speed 3:
    // A5 0F 01 11 20 00 30, checksum A5+0F+01+11+20+00+30 = 0x116 → 16.
    let control = Message::control(
        Body::DeviceControl(DeviceControl::Ptz(PtzInstruction::Move(PtzCommand {
            pan: Some(Pan::Right),
            zoom: Some(Zoom::In),
            pan_speed: 0x20,
            zoom_speed: 3,
            ..PtzCommand::default()
        }))),
        31,
        "34020000001310000001",
    );
    let bytes = encode(&control, Charset::Gb2312);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Control>\r\n"));
    assert!(text.contains("<CmdType>DeviceControl</CmdType>"));
    assert!(text.contains("<PTZCmd>A50F011120003016</PTZCmd>"));
    // The device simulator decodes it back.
    assert_eq!(decode(&bytes).unwrap(), (control, Charset::Gb2312));

    // What WVP sends for "go to preset 1".
    let wvp = "<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Control>\r\n<CmdType>DeviceControl</CmdType>\r\n\
        <SN>32</SN>\r\n<DeviceID>34020000001310000001</DeviceID>\r\n<PTZCmd>A50F0182000100 38</PTZCmd>\r\n\
        <Info>\r\n<ControlPriority>5</ControlPriority>\r\n</Info>\r\n</Control>\r\n";
    // (with a stray space inside the hex: not accepted, the digits must be contiguous)
    assert!(matches!(
        decode(wvp.as_bytes()).unwrap_err(),
        ManscdpError::Invalid { element, .. } if element == "PTZCmd"
    ));
    let wvp = wvp.replace("0100 38", "010038");
    assert_eq!(
        decode(wvp.as_bytes()).unwrap().0.body,
        Body::DeviceControl(DeviceControl::Ptz(PtzInstruction::PresetGoto(1)))
    );
    let bad_checksum = wvp.replace("A50F0182000100", "A50F0182000200");
    assert!(matches!(
        decode(bad_checksum.as_bytes()).unwrap_err(),
        ManscdpError::Invalid { element, .. } if element == "PTZCmd"
    ));
}

#[test]
fn other_device_controls() {
    let control = |inner: &str| {
        let text = format!(
            "<Control><CmdType>DeviceControl</CmdType><SN>1</SN><DeviceID>2</DeviceID>{inner}</Control>"
        );
        decode(text.as_bytes()).map(|(message, _)| message.body)
    };
    let ok = |control: DeviceControl| Ok(Body::DeviceControl(control));
    assert_eq!(
        control("<TeleBoot>Boot</TeleBoot>"),
        ok(DeviceControl::TeleBoot)
    );
    assert_eq!(
        control("<GuardCmd>SetGuard</GuardCmd>"),
        ok(DeviceControl::Guard { set: true })
    );
    assert_eq!(
        control("<GuardCmd>ResetGuard</GuardCmd>"),
        ok(DeviceControl::Guard { set: false })
    );
    assert_eq!(
        control("<RecordCmd>Record</RecordCmd>"),
        ok(DeviceControl::Record { start: true })
    );
    assert_eq!(
        control("<RecordCmd>StopRecord</RecordCmd>"),
        ok(DeviceControl::Record { start: false })
    );
    assert_eq!(
        control("<IFameCmd>Send</IFameCmd>"),
        ok(DeviceControl::IFrame)
    );
    assert_eq!(
        control(
            "<AlarmCmd>ResetAlarm</AlarmCmd><Info><AlarmMethod>2</AlarmMethod><AlarmType>1</AlarmType></Info>"
        ),
        ok(DeviceControl::AlarmReset {
            method: Some(2),
            alarm_type: Some(1)
        })
    );
    assert!(matches!(
        control("<GuardCmd>Maybe</GuardCmd>"),
        Err(ManscdpError::Invalid { element, value, .. }) if element == "GuardCmd" && value == "Maybe"
    ));
    // A command not modelled here still decodes, so the simulator can answer it.
    assert_eq!(
        control("<DragZoomIn><Length>100</Length></DragZoomIn>"),
        Ok(Body::Other {
            cmd_type: "DeviceControl".into()
        })
    );
}

#[test]
fn control_responses_and_unknown_cmd_types() {
    let response = "<Response><CmdType>DeviceControl</CmdType><SN>31</SN><DeviceID>2</DeviceID><Result>OK</Result></Response>";
    assert_eq!(
        decode(response.as_bytes()).unwrap().0.body,
        Body::ControlResponse {
            cmd_type: "DeviceControl".into(),
            result: "OK".into()
        }
    );
    let broadcast = "<Notify><CmdType>Broadcast</CmdType><SN>1</SN><DeviceID>2</DeviceID>\
        <SourceID>3</SourceID><TargetID>4</TargetID></Notify>";
    assert_eq!(
        decode(broadcast.as_bytes()).unwrap().0.body,
        Body::Other {
            cmd_type: "Broadcast".into()
        }
    );
}

#[test]
fn malformed_documents_are_errors() {
    let missing_sn = "<?xml version=\"1.0\"?><Notify><CmdType>Keepalive</CmdType><DeviceID>1</DeviceID></Notify>";
    let error = decode(missing_sn.as_bytes()).unwrap_err();
    assert_eq!(
        error,
        ManscdpError::Missing {
            element: "SN".into()
        }
    );
    assert_eq!(error.to_string(), "required element <SN> is missing");

    let bad_sn = "<Notify><CmdType>Keepalive</CmdType><SN>12a</SN><DeviceID>1</DeviceID></Notify>";
    assert!(matches!(
        decode(bad_sn.as_bytes()).unwrap_err(),
        ManscdpError::Invalid { element, value, .. } if element == "SN" && value == "12a"
    ));

    for (missing, text) in [
        (
            "CmdType",
            "<Notify><SN>1</SN><DeviceID>1</DeviceID></Notify>",
        ),
        (
            "DeviceID",
            "<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>",
        ),
    ] {
        assert_eq!(
            decode(text.as_bytes()).unwrap_err(),
            ManscdpError::Missing {
                element: missing.into()
            }
        );
    }

    let truncated = &catalog_page(1)[..200];
    let error = decode(truncated).unwrap_err();
    assert!(matches!(error, ManscdpError::Xml(_)), "{error:?}");
    assert!(error.to_string().contains("ends inside"), "{error}");

    let mismatched =
        "<Notify><CmdType>Keepalive</CmdType><SN>1</Sn><DeviceID>1</DeviceID></Notify>";
    assert!(matches!(
        decode(mismatched.as_bytes()).unwrap_err(),
        ManscdpError::Xml(_)
    ));

    let wrong_root = "<?xml version=\"1.0\"?><Request><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>1</DeviceID></Request>";
    assert_eq!(
        decode(wrong_root.as_bytes()).unwrap_err(),
        ManscdpError::UnknownRoot("Request".into())
    );

    for junk in [
        &b""[..],
        b"   \r\n",
        b"<?xml version=\"1.0\"?>",
        b"not xml at all",
        b"<Notify",
        b"<Notify><SN>&bogus;</SN></Notify>",
        b"\xFF\xFE<\x00N\x00",
    ] {
        assert!(decode(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let depth = 100_000;
    let text = format!(
        "<Notify>{}{}</Notify>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    assert!(matches!(
        decode(text.as_bytes()).unwrap_err(),
        ManscdpError::Xml(message) if message.contains("deeper")
    ));
}

#[test]
fn gb2312_output() {
    let message = Message::response(
        Body::CatalogResponse {
            sum_num: 1,
            items: vec![CatalogItem {
                device_id: "34020000001310000001".into(),
                // & and < must be escaped; the emoji is not in GBK and travels as &#128247;.
                name: Some("大门 & <停车场> 📷".into()),
                ..CatalogItem::default()
            }],
        },
        4,
        "34020000001110000001",
    );
    let bytes = encode(&message, Charset::Gb2312);
    assert!(bytes.starts_with(b"<?xml version=\"1.0\" encoding=\"GB2312\"?>\r\n<Response>\r\n"));
    assert!(contains(&bytes, DAMEN_GB2312));
    assert!(contains(&bytes, b"&amp; &lt;"));
    assert!(contains(&bytes, b"&#128247;"));
    assert!(contains(&bytes, b"<DeviceList Num=\"1\">"));
    assert_eq!(decode(&bytes).unwrap(), (message.clone(), Charset::Gb2312));

    let utf8 = encode(&message, Charset::Utf8);
    assert!(utf8.starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(
        std::str::from_utf8(&utf8)
            .unwrap()
            .contains("大门 &amp; &lt;停车场&gt; 📷")
    );
    assert_eq!(decode(&utf8).unwrap(), (message, Charset::Utf8));
}

/// Not-a-number positions would never compare equal and turn into JSON `null` in the stored
/// device; required ones are refused, optional ones dropped.
#[test]
fn non_finite_numbers_are_refused_or_dropped() {
    let position = br#"<?xml version="1.0" encoding="UTF-8"?>
<Notify><CmdType>MobilePosition</CmdType><SN>1</SN><DeviceID>34020000001320000001</DeviceID>
<Time>2026-11-24T10:00:00</Time><Longitude>NaN</Longitude><Latitude>30.5</Latitude></Notify>"#;
    let error = appliance_manscdp::decode(position).unwrap_err().to_string();
    assert!(error.contains("Longitude"), "{error}");
    let alarm = br#"<?xml version="1.0" encoding="UTF-8"?>
<Notify><CmdType>Alarm</CmdType><SN>2</SN><DeviceID>34020000001320000001</DeviceID>
<AlarmPriority>1</AlarmPriority><Longitude>inf</Longitude><Latitude>30.5</Latitude></Notify>"#;
    let (message, _) = appliance_manscdp::decode(alarm).unwrap();
    let appliance_manscdp::Body::Alarm(alarm) = message.body else {
        panic!("an alarm")
    };
    assert_eq!(alarm.longitude, None);
    assert_eq!(alarm.latitude, Some(30.5));
}
