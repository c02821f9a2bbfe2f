//! [`Message`] → bytes, element order as in the examples of GB/T 28181-2016 annex A.

use std::fmt::Display;

use encoding_rs::GBK;

use crate::message::{
    Alarm, BasicParam, Body, CatalogItem, Charset, DeviceControl, Message, RecordItem,
};
use crate::ptz::PtzInstruction;

/// Encodes a message with its XML declaration.
///
/// [`Charset::Gb2312`] declares `GB2312` and encodes with GBK; characters GBK lacks are written as
/// XML character references (`&#128512;`), which every XML reader turns back into the character.
/// Optional fields that are `None` are left out.
pub fn encode(message: &Message, charset: Charset) -> Vec<u8> {
    let declared = match charset {
        Charset::Gb2312 => "GB2312",
        Charset::Utf8 => "UTF-8",
    };
    let mut xml = Writer(format!(
        "<?xml version=\"1.0\" encoding=\"{declared}\"?>\r\n"
    ));
    let root = message.root.as_str();
    xml.open(root);
    xml.text("CmdType", message.body.cmd_type());
    xml.value("SN", message.sn);
    xml.text("DeviceID", &message.device_id);
    body(&mut xml, &message.body);
    xml.close(root);
    match charset {
        Charset::Utf8 => xml.0.into_bytes(),
        // `encode` substitutes unmappable characters with numeric character references.
        Charset::Gb2312 => GBK.encode(&xml.0).0.into_owned(),
    }
}

/// The schema requires `Result` in DeviceStatus and ConfigDownload answers, and it says whether
/// the query itself succeeded. Those bodies do not model it (an answer that exists is one that
/// succeeded), and decoding ignores it, so it is written as `OK` for the platforms that look.
const QUERY_ANSWERED: &str = "OK";

fn body(xml: &mut Writer, body: &Body) {
    match body {
        Body::Keepalive { status } => xml.text("Status", status),
        Body::Alarm(alarm) => write_alarm(xml, alarm),
        Body::MobilePosition {
            time,
            longitude,
            latitude,
            speed,
            direction,
            altitude,
        } => {
            xml.text("Time", time);
            xml.value("Longitude", longitude);
            xml.value("Latitude", latitude);
            xml.opt_value("Speed", speed);
            xml.opt_value("Direction", direction);
            xml.opt_value("Altitude", altitude);
        }
        Body::CatalogResponse { sum_num, items } | Body::CatalogNotify { sum_num, items } => {
            xml.value("SumNum", sum_num);
            xml.open_list("DeviceList", items.len());
            for item in items {
                catalog_item(xml, item);
            }
            xml.close("DeviceList");
        }
        Body::DeviceInfoResponse {
            device_name,
            manufacturer,
            model,
            firmware,
            channel,
            result,
        } => {
            xml.opt_text("DeviceName", device_name);
            xml.text("Result", result);
            xml.opt_text("Manufacturer", manufacturer);
            xml.opt_text("Model", model);
            xml.opt_text("Firmware", firmware);
            xml.opt_value("Channel", channel);
        }
        Body::DeviceStatusResponse {
            online,
            status,
            record,
            device_time,
            alarm_status,
        } => {
            xml.text("Result", QUERY_ANSWERED);
            xml.opt_text(
                "Online",
                &online.map(|online| if online { "ONLINE" } else { "OFFLINE" }),
            );
            xml.opt_text("Status", status);
            xml.opt_text("Record", &record.map(|on| if on { "ON" } else { "OFF" }));
            xml.opt_text("DeviceTime", device_time);
            if !alarm_status.is_empty() {
                xml.open_list("Alarmstatus", alarm_status.len());
                for (device_id, duty_status) in alarm_status {
                    xml.open("Item");
                    xml.text("DeviceID", device_id);
                    xml.text("DutyStatus", duty_status);
                    xml.close("Item");
                }
                xml.close("Alarmstatus");
            }
        }
        Body::RecordInfoResponse {
            name,
            sum_num,
            items,
        } => {
            xml.opt_text("Name", name);
            xml.value("SumNum", sum_num);
            xml.open_list("RecordList", items.len());
            for item in items {
                record_item(xml, item);
            }
            xml.close("RecordList");
        }
        Body::PresetQueryResponse { sum_num, items } => {
            xml.value("SumNum", sum_num);
            xml.open_list("PresetList", items.len());
            for preset in items {
                xml.open("Item");
                xml.text("PresetID", &preset.id);
                xml.text("PresetName", &preset.name);
                xml.close("Item");
            }
            xml.close("PresetList");
        }
        Body::ConfigDownloadResponse { basic } => {
            xml.text("Result", QUERY_ANSWERED);
            if let Some(basic) = basic {
                basic_param(xml, basic);
            }
        }
        Body::MediaStatus { notify_type } => xml.value("NotifyType", notify_type),
        Body::ControlResponse { result, .. } => xml.text("Result", result),
        Body::CatalogQuery
        | Body::DeviceInfoQuery
        | Body::DeviceStatusQuery
        | Body::PresetQuery
        | Body::Other { .. } => {}
        Body::RecordInfoQuery {
            start_time,
            end_time,
            record_type,
            file_path,
            secrecy,
        } => {
            xml.text("StartTime", start_time);
            xml.text("EndTime", end_time);
            xml.opt_text("FilePath", file_path);
            xml.opt_value("Secrecy", secrecy);
            xml.opt_text("Type", record_type);
        }
        Body::ConfigDownloadQuery { config_type } => xml.text("ConfigType", config_type),
        Body::MobilePositionQuery { interval } => xml.opt_value("Interval", interval),
        Body::DeviceControl(control) => device_control(xml, control),
        Body::DeviceConfigBasic(basic) => basic_param(xml, basic),
    }
}

fn write_alarm(xml: &mut Writer, alarm: &Alarm) {
    xml.opt_value("AlarmPriority", &alarm.priority);
    xml.opt_value("AlarmMethod", &alarm.method);
    xml.opt_text("AlarmTime", &alarm.time);
    xml.opt_text("AlarmDescription", &alarm.description);
    xml.opt_value("Longitude", &alarm.longitude);
    xml.opt_value("Latitude", &alarm.latitude);
    if let Some(alarm_type) = alarm.alarm_type {
        xml.open("Info");
        xml.value("AlarmType", alarm_type);
        xml.close("Info");
    }
}

fn catalog_item(xml: &mut Writer, item: &CatalogItem) {
    xml.open("Item");
    xml.text("DeviceID", &item.device_id);
    xml.opt_text("Event", &item.event.map(|event| event.as_str()));
    xml.opt_text("Name", &item.name);
    xml.opt_text("Manufacturer", &item.manufacturer);
    xml.opt_text("Model", &item.model);
    xml.opt_text("Owner", &item.owner);
    xml.opt_text("CivilCode", &item.civil_code);
    xml.opt_text("Address", &item.address);
    xml.opt_text(
        "Parental",
        &item.parental.map(|p| if p { "1" } else { "0" }),
    );
    xml.opt_text("ParentID", &item.parent_id);
    xml.opt_value("RegisterWay", &item.register_way);
    xml.opt_value("Secrecy", &item.secrecy);
    xml.opt_text(
        "Status",
        &item.online.map(|on| if on { "ON" } else { "OFF" }),
    );
    xml.opt_value("Longitude", &item.longitude);
    xml.opt_value("Latitude", &item.latitude);
    if let Some(ptz_type) = item.ptz_type {
        xml.open("Info");
        xml.value("PTZType", ptz_type);
        xml.close("Info");
    }
    xml.close("Item");
}

fn record_item(xml: &mut Writer, item: &RecordItem) {
    xml.open("Item");
    xml.text("DeviceID", &item.device_id);
    xml.opt_text("Name", &item.name);
    xml.opt_text("FilePath", &item.file_path);
    xml.opt_text("Address", &item.address);
    xml.text("StartTime", &item.start_time);
    xml.text("EndTime", &item.end_time);
    xml.opt_value("Secrecy", &item.secrecy);
    xml.opt_text("Type", &item.record_type);
    xml.close("Item");
}

fn basic_param(xml: &mut Writer, basic: &BasicParam) {
    xml.open("BasicParam");
    xml.opt_text("Name", &basic.name);
    xml.opt_value("Expiration", &basic.expiration);
    xml.opt_value("HeartBeatInterval", &basic.heartbeat_interval);
    xml.opt_value("HeartBeatCount", &basic.heartbeat_count);
    xml.close("BasicParam");
}

fn device_control(xml: &mut Writer, control: &DeviceControl) {
    match control {
        DeviceControl::Ptz(instruction) => ptz(xml, instruction),
        DeviceControl::TeleBoot => xml.text("TeleBoot", "Boot"),
        DeviceControl::Guard { set } => {
            xml.text("GuardCmd", if *set { "SetGuard" } else { "ResetGuard" });
        }
        DeviceControl::AlarmReset { method, alarm_type } => {
            xml.text("AlarmCmd", "ResetAlarm");
            if method.is_some() || alarm_type.is_some() {
                xml.open("Info");
                xml.opt_value("AlarmMethod", method);
                xml.opt_value("AlarmType", alarm_type);
                xml.close("Info");
            }
        }
        DeviceControl::IFrame => xml.text("IFameCmd", "Send"),
        DeviceControl::Record { start } => {
            xml.text("RecordCmd", if *start { "Record" } else { "StopRecord" });
        }
    }
}

fn ptz(xml: &mut Writer, instruction: &PtzInstruction) {
    xml.text("PTZCmd", &instruction.to_hex());
    // Several devices ignore a PTZCmd without a control priority; 5 is what WVP and the
    // standard's example send.
    xml.open("Info");
    xml.value("ControlPriority", 5);
    xml.close("Info");
}

/// Builds the document as text; one element per line, like devices and the standard's examples.
struct Writer(String);

impl Writer {
    fn open(&mut self, name: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push_str(">\r\n");
    }

    /// A list element with its `Num=` attribute: the number of items in this message.
    fn open_list(&mut self, name: &str, num: usize) {
        self.0.push_str(&format!("<{name} Num=\"{num}\">\r\n"));
    }

    fn close(&mut self, name: &str) {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push_str(">\r\n");
    }

    fn text(&mut self, name: &str, value: &str) {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        escape_into(&mut self.0, value);
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push_str(">\r\n");
    }

    /// Numbers use `Display`: for `f64` that is the shortest text that parses back to the same
    /// value, never in exponent form.
    fn value(&mut self, name: &str, value: impl Display) {
        self.text(name, &value.to_string());
    }

    fn opt_text<S: AsRef<str>>(&mut self, name: &str, value: &Option<S>) {
        if let Some(value) = value {
            self.text(name, value.as_ref());
        }
    }

    fn opt_value<T: Display>(&mut self, name: &str, value: &Option<T>) {
        if let Some(value) = value {
            self.value(name, value);
        }
    }
}

/// Escapes the five XML specials. Decoding trims text, so leading and trailing whitespace does
/// not survive a round trip; nothing a device or platform sends depends on it.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
}
