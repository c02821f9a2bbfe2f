//! Bytes → [`Message`]: character set first, then the element tree, then the typed body.

use std::borrow::Cow;
use std::fmt::Display;
use std::str::FromStr;

use encoding_rs::{Encoding, GB18030, GBK, UTF_8};

use crate::error::ManscdpError;
use crate::message::{
    Alarm, BasicParam, Body, CatalogEvent, CatalogItem, Charset, DeviceControl, Message, Preset,
    RecordItem, Root,
};
use crate::ptz::PtzInstruction;
use crate::xml::{self, Element};

/// Decodes a MANSCDP body and reports the character set it came in.
///
/// The encoding comes from the XML declaration (GB2312, GBK and GB18030 are all read with the
/// GB18030 decoder; UTF-8 or no declaration as UTF-8; a UTF-8 byte order mark wins over the
/// declaration). Bytes that claim UTF-8 but are not valid UTF-8 are read as GB18030 and reported as
/// [`Charset::Gb2312`]: devices send GBK without a declaration, and GBK text is almost never valid
/// UTF-8. Unmappable GB18030 sequences become U+FFFD rather than an error, so one broken channel
/// name does not lose the message.
pub fn decode(body: &[u8]) -> Result<(Message, Charset), ManscdpError> {
    let (text, charset) = to_text(body)?;
    let root = xml::parse(&text)?;
    let kind = [Root::Query, Root::Control, Root::Notify, Root::Response]
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(&root.name))
        .ok_or_else(|| ManscdpError::UnknownRoot(root.name.clone()))?;
    let cmd_type = required_text(&root, "CmdType", "CmdType")?;
    let sn = required_number(&root, "SN", "SN")?;
    let device_id = required_text(&root, "DeviceID", "DeviceID")?;
    let body = decode_body(kind, cmd_type, &root)?;
    Ok((
        Message {
            root: kind,
            sn,
            device_id,
            body,
        },
        charset,
    ))
}

fn to_text(body: &[u8]) -> Result<(Cow<'_, str>, Charset), ManscdpError> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if let Some(rest) = body.strip_prefix(BOM) {
        return Ok(utf8_or_gb(rest));
    }
    let Some(label) = declared_encoding(body) else {
        return Ok(utf8_or_gb(body));
    };
    // encoding_rs knows the WHATWG labels: gb2312, gbk, cp936, x-gbk, csgb2312… all map to GBK.
    match Encoding::for_label(label) {
        Some(encoding) if encoding == GBK || encoding == GB18030 => {
            Ok((GB18030.decode_without_bom_handling(body).0, Charset::Gb2312))
        }
        Some(encoding) if encoding == UTF_8 => Ok(utf8_or_gb(body)),
        _ => Err(ManscdpError::UnsupportedEncoding(
            String::from_utf8_lossy(label).into_owned(),
        )),
    }
}

fn utf8_or_gb(body: &[u8]) -> (Cow<'_, str>, Charset) {
    match std::str::from_utf8(body) {
        Ok(text) => (Cow::Borrowed(text), Charset::Utf8),
        Err(_) => (GB18030.decode_without_bom_handling(body).0, Charset::Gb2312),
    }
}

/// The `encoding` pseudo-attribute of a leading `<?xml …?>`, if any. The declaration is ASCII in
/// every encoding we accept, so it is read from the raw bytes.
fn declared_encoding(body: &[u8]) -> Option<&[u8]> {
    let start = body.iter().position(|byte| !byte.is_ascii_whitespace())?;
    let rest = &body[start..];
    if !rest
        .get(..5)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"<?xml"))
    {
        return None;
    }
    let declaration = &rest[..find(rest, b"?>")?];
    let mut after = &declaration[find_ignore_case(declaration, b"encoding")? + b"encoding".len()..];
    after = after
        .trim_ascii_start()
        .strip_prefix(b"=")?
        .trim_ascii_start();
    let quote = *after
        .first()
        .filter(|quote| matches!(quote, b'"' | b'\''))?;
    let value = &after[1..];
    Some(value[..value.iter().position(|&byte| byte == quote)?].trim_ascii())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

/// Picks the body variant from (root, `CmdType`); see [`Body`] for the table.
fn decode_body(root: Root, cmd_type: String, e: &Element) -> Result<Body, ManscdpError> {
    let is = |name: &str| cmd_type.eq_ignore_ascii_case(name);
    let body = if is("Keepalive") {
        Body::Keepalive {
            status: text_or_empty(e, "Status"),
        }
    } else if is("Alarm") && matches!(root, Root::Notify | Root::Response) {
        Body::Alarm(alarm(e))
    } else if is("MobilePosition") && root == Root::Query {
        Body::MobilePositionQuery {
            interval: number(e, "Interval"),
        }
    } else if is("MobilePosition") && matches!(root, Root::Notify | Root::Response) {
        Body::MobilePosition {
            time: text_or_empty(e, "Time"),
            longitude: required_number(e, "Longitude", "Longitude")?,
            latitude: required_number(e, "Latitude", "Latitude")?,
            speed: number(e, "Speed"),
            direction: number(e, "Direction"),
            altitude: number(e, "Altitude"),
        }
    } else if is("Catalog") {
        match root {
            Root::Query => Body::CatalogQuery,
            Root::Response => {
                let (sum_num, items) = catalog(e)?;
                Body::CatalogResponse { sum_num, items }
            }
            Root::Notify => {
                let (sum_num, items) = catalog(e)?;
                Body::CatalogNotify { sum_num, items }
            }
            Root::Control => Body::Other { cmd_type },
        }
    } else if is("DeviceInfo") && root == Root::Query {
        Body::DeviceInfoQuery
    } else if is("DeviceInfo") && root == Root::Response {
        Body::DeviceInfoResponse {
            device_name: text(e, "DeviceName"),
            manufacturer: text(e, "Manufacturer"),
            model: text(e, "Model"),
            firmware: text(e, "Firmware"),
            channel: number(e, "Channel"),
            result: text_or_empty(e, "Result"),
        }
    } else if is("DeviceStatus") && root == Root::Query {
        Body::DeviceStatusQuery
    } else if is("DeviceStatus") && root == Root::Response {
        Body::DeviceStatusResponse {
            online: on_off(e, "Online"),
            status: text(e, "Status"),
            record: on_off(e, "Record"),
            device_time: text(e, "DeviceTime"),
            alarm_status: e
                .child("Alarmstatus")
                .into_iter()
                .flat_map(|list| list.children("Item"))
                .map(|item| {
                    (
                        text_or_empty(item, "DeviceID"),
                        text_or_empty(item, "DutyStatus"),
                    )
                })
                .collect(),
        }
    } else if is("RecordInfo") && root == Root::Query {
        Body::RecordInfoQuery {
            start_time: text_or_empty(e, "StartTime"),
            end_time: text_or_empty(e, "EndTime"),
            record_type: text(e, "Type"),
            file_path: text(e, "FilePath"),
            secrecy: number(e, "Secrecy"),
        }
    } else if is("RecordInfo") && root == Root::Response {
        let list = e.child("RecordList");
        let items: Vec<RecordItem> = list
            .into_iter()
            .flat_map(|list| list.children("Item"))
            .map(record_item)
            .collect();
        Body::RecordInfoResponse {
            name: text(e, "Name"),
            sum_num: total(e, list, items.len()),
            items,
        }
    } else if is("PresetQuery") && root == Root::Query {
        Body::PresetQuery
    } else if is("PresetQuery") && root == Root::Response {
        let list = e.child("PresetList");
        let items: Vec<Preset> = list
            .into_iter()
            .flat_map(|list| list.children("Item"))
            .map(|item| Preset {
                id: text_or_empty(item, "PresetID"),
                name: text_or_empty(item, "PresetName"),
            })
            .collect();
        Body::PresetQueryResponse {
            sum_num: total(e, list, items.len()),
            items,
        }
    } else if is("ConfigDownload") && root == Root::Query {
        Body::ConfigDownloadQuery {
            config_type: text_or_empty(e, "ConfigType"),
        }
    } else if is("ConfigDownload") && root == Root::Response {
        Body::ConfigDownloadResponse {
            basic: e.child("BasicParam").map(basic_param),
        }
    } else if is("MediaStatus") && matches!(root, Root::Notify | Root::Response) {
        Body::MediaStatus {
            notify_type: required_number(e, "NotifyType", "NotifyType")?,
        }
    } else if (is("DeviceControl") || is("DeviceConfig")) && root == Root::Response {
        Body::ControlResponse {
            result: text_or_empty(e, "Result"),
            cmd_type,
        }
    } else if is("DeviceControl") && root == Root::Control {
        match device_control(e)? {
            Some(control) => Body::DeviceControl(control),
            None => Body::Other { cmd_type },
        }
    } else if is("DeviceConfig") && root == Root::Control {
        match e.child("BasicParam") {
            Some(basic) => Body::DeviceConfigBasic(basic_param(basic)),
            None => Body::Other { cmd_type },
        }
    } else {
        Body::Other { cmd_type }
    };
    Ok(body)
}

fn alarm(e: &Element) -> Alarm {
    let info = e.child("Info");
    Alarm {
        priority: number(e, "AlarmPriority"),
        method: number(e, "AlarmMethod"),
        alarm_type: info
            .and_then(|info| number(info, "AlarmType"))
            .or_else(|| number(e, "AlarmType")),
        time: text(e, "AlarmTime"),
        description: text(e, "AlarmDescription"),
        longitude: number(e, "Longitude"),
        latitude: number(e, "Latitude"),
    }
}

fn catalog(e: &Element) -> Result<(u32, Vec<CatalogItem>), ManscdpError> {
    let list = e.child("DeviceList");
    let items = list
        .into_iter()
        .flat_map(|list| list.children("Item"))
        .map(catalog_item)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((total(e, list, items.len()), items))
}

fn catalog_item(item: &Element) -> Result<CatalogItem, ManscdpError> {
    let info = item.child("Info");
    Ok(CatalogItem {
        device_id: required_text(item, "DeviceID", "DeviceList/Item/DeviceID")?,
        event: item
            .child("Event")
            .and_then(|event| CatalogEvent::parse(event.text())),
        name: text(item, "Name"),
        manufacturer: text(item, "Manufacturer"),
        model: text(item, "Model"),
        owner: text(item, "Owner"),
        civil_code: text(item, "CivilCode"),
        address: text(item, "Address"),
        parental: item
            .child("Parental")
            .and_then(|parental| match parental.text() {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            }),
        parent_id: text(item, "ParentID"),
        register_way: number(item, "RegisterWay"),
        secrecy: number(item, "Secrecy"),
        online: on_off(item, "Status"),
        longitude: number(item, "Longitude"),
        latitude: number(item, "Latitude"),
        // The standard puts PTZType under Info; some devices put it in the item itself.
        ptz_type: info
            .and_then(|info| number(info, "PTZType"))
            .or_else(|| number(item, "PTZType")),
    })
}

fn record_item(item: &Element) -> RecordItem {
    RecordItem {
        device_id: text_or_empty(item, "DeviceID"),
        name: text(item, "Name"),
        file_path: text(item, "FilePath"),
        address: text(item, "Address"),
        start_time: text_or_empty(item, "StartTime"),
        end_time: text_or_empty(item, "EndTime"),
        secrecy: number(item, "Secrecy"),
        record_type: text(item, "Type"),
    }
}

fn basic_param(e: &Element) -> BasicParam {
    BasicParam {
        name: text(e, "Name"),
        expiration: number(e, "Expiration"),
        heartbeat_interval: number(e, "HeartBeatInterval"),
        heartbeat_count: number(e, "HeartBeatCount"),
    }
}

/// `Ok(None)` when the control carries no command modelled here (e.g. `DragZoomIn`).
fn device_control(e: &Element) -> Result<Option<DeviceControl>, ManscdpError> {
    if let Some(ptz) = e.child("PTZCmd") {
        return PtzInstruction::from_hex(ptz.text())
            .map(|instruction| Some(DeviceControl::Ptz(instruction)))
            .map_err(|error| ManscdpError::invalid("PTZCmd", ptz.text(), error));
    }
    if e.child("TeleBoot").is_some() {
        return Ok(Some(DeviceControl::TeleBoot));
    }
    if let Some(record) = e.child("RecordCmd") {
        return one_of(record, "RecordCmd", ["Record", "StopRecord"])
            .map(|start| Some(DeviceControl::Record { start }));
    }
    if let Some(guard) = e.child("GuardCmd") {
        return one_of(guard, "GuardCmd", ["SetGuard", "ResetGuard"])
            .map(|set| Some(DeviceControl::Guard { set }));
    }
    if let Some(alarm) = e.child("AlarmCmd") {
        if !alarm.text().eq_ignore_ascii_case("ResetAlarm") {
            return Err(ManscdpError::invalid(
                "AlarmCmd",
                alarm.text(),
                "expected ResetAlarm",
            ));
        }
        let info = e.child("Info");
        return Ok(Some(DeviceControl::AlarmReset {
            method: info.and_then(|info| number(info, "AlarmMethod")),
            alarm_type: info.and_then(|info| number(info, "AlarmType")),
        }));
    }
    // `IFameCmd` is the standard's own misspelling; accept the corrected one too.
    if e.child("IFameCmd").is_some() || e.child("IFrameCmd").is_some() {
        return Ok(Some(DeviceControl::IFrame));
    }
    Ok(None)
}

/// true for the first of two keywords, false for the second (ASCII case ignored).
fn one_of(e: &Element, path: &str, [yes, no]: [&str; 2]) -> Result<bool, ManscdpError> {
    let value = e.text();
    if value.eq_ignore_ascii_case(yes) {
        Ok(true)
    } else if value.eq_ignore_ascii_case(no) {
        Ok(false)
    } else {
        Err(ManscdpError::invalid(
            path,
            value,
            format!("expected {yes} or {no}"),
        ))
    }
}

/// `SumNum`, else the list's `Num=` (a device that does not page puts the total there), else the
/// number of items received.
fn total(e: &Element, list: Option<&Element>, count: usize) -> u32 {
    number(e, "SumNum")
        .or_else(|| list.and_then(|list| list.attribute("Num")?.trim().parse().ok()))
        .unwrap_or_else(|| u32::try_from(count).unwrap_or(u32::MAX))
}

fn required_text(e: &Element, name: &str, path: &str) -> Result<String, ManscdpError> {
    let child = e.child(name).ok_or_else(|| ManscdpError::missing(path))?;
    match child.text() {
        "" => Err(ManscdpError::invalid(path, "", "empty")),
        text => Ok(text.to_owned()),
    }
}

/// Numbers MANSCDP carries. Floats must be finite: `NaN` or `inf` would never compare equal
/// (a position would look changed on every message) and serialise to JSON `null`, which the
/// stored device could then not be read back from.
trait Number: FromStr {
    fn is_usable(&self) -> bool {
        true
    }
}

impl Number for u8 {}
impl Number for u16 {}
impl Number for u32 {}
impl Number for u64 {}
impl Number for i32 {}
impl Number for i64 {}
impl Number for f64 {
    fn is_usable(&self) -> bool {
        self.is_finite()
    }
}

fn required_number<T>(e: &Element, name: &str, path: &str) -> Result<T, ManscdpError>
where
    T: Number,
    T::Err: Display,
{
    let child = e.child(name).ok_or_else(|| ManscdpError::missing(path))?;
    let value: T = child
        .text()
        .parse()
        .map_err(|error| ManscdpError::invalid(path, child.text(), error))?;
    if !value.is_usable() {
        return Err(ManscdpError::invalid(
            path,
            child.text(),
            "not a finite number",
        ));
    }
    Ok(value)
}

/// Present → `Some(text)`, even when empty, so that `Some("")` round-trips.
fn text(e: &Element, name: &str) -> Option<String> {
    e.child(name).map(|child| child.text().to_owned())
}

fn text_or_empty(e: &Element, name: &str) -> String {
    text(e, name).unwrap_or_default()
}

/// Absent, empty, unparsable or not finite → `None` (see the crate docs on tolerance).
fn number<T: Number>(e: &Element, name: &str) -> Option<T> {
    e.child(name)?.text().parse().ok().filter(Number::is_usable)
}

/// ON/ONLINE/OK → true, OFF/OFFLINE → false, anything else → `None`.
fn on_off(e: &Element, name: &str) -> Option<bool> {
    let value = e.child(name)?.text();
    if ["ON", "ONLINE", "OK"]
        .iter()
        .any(|on| value.eq_ignore_ascii_case(on))
    {
        Some(true)
    } else if ["OFF", "OFFLINE"]
        .iter()
        .any(|off| value.eq_ignore_ascii_case(off))
    {
        Some(false)
    } else {
        None
    }
}
