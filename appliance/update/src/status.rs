//! What RAUC reports, as plain types, and the mapping from its D-Bus dictionaries.
//!
//! The mapping functions take the values zbus decoded and nothing else, so they are tested
//! without a bus. A key RAUC omits is `None` (RAUC leaves out what it does not know, e.g. the
//! bundle keys of a slot never installed); a key with a type other than RAUC's documented one,
//! or a state word this crate does not know, is an error naming the key: that is a RAUC this
//! crate was not written for, and guessing would show the operator a wrong status.

use std::collections::HashMap;

use serde::Serialize;
use zbus::zvariant::{OwnedValue, Value};

/// A reply from RAUC that does not have the shape of RAUC 1.8's API.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    #[error("{key}: missing")]
    Missing { key: String },
    #[error("{key}: expected D-Bus type '{expected}', got '{found}'")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{key}: unexpected value {value:?}")]
    UnexpectedValue { key: String, value: String },
}

/// The update side of the box at one moment: RAUC's properties, the slots and the primary slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStatus {
    /// The system's `compatible` (a bundle must carry the same to be installed).
    pub compatible: String,
    /// The system's variant, if `system.conf` configures one.
    pub variant: Option<String>,
    /// RAUC's `BootSlot`: the booted slot's `bootname` (`A`), or the root device when no slot
    /// matched. The slot itself is the one whose `state` is `booted` ([`Self::booted_slot`]).
    pub boot_slot: String,
    /// The slot the bootloader boots next. `None` while RAUC installs (it refuses to ask the
    /// bootloader then) or when the bootloader could not tell (logged).
    pub primary: Option<String>,
    pub operation: Operation,
    /// The current installation's progress, or the last one's.
    pub progress: Progress,
    /// Why the last installation failed; `None` after a successful one (or none yet).
    pub last_error: Option<String>,
    /// Every configured slot, by name. `None` while RAUC installs (it refuses slot reads then)
    /// or when it could not read them (logged).
    pub slots: Option<Vec<SlotStatus>>,
}

impl UpdateStatus {
    /// The slot RAUC found booted, if the slots were read and one is.
    pub fn booted_slot(&self) -> Option<&SlotStatus> {
        self.slots
            .as_deref()?
            .iter()
            .find(|slot| slot.state == SlotState::Booted)
    }
}

/// RAUC's `Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Idle,
    Installing,
}

/// RAUC's `Progress`: where an installation is. RAUC nests steps (checking the bundle,
/// verifying the signature inside it, ...); `depth` is that nesting, `percent` the overall
/// percentage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub percent: i32,
    pub message: String,
    pub depth: i32,
}

/// One slot of `GetSlotStatus`. Fields after `boot_status` come from RAUC's slot status
/// (`status.raucs`) and exist once something was installed to or activated on the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// `class.index`, e.g. `rootfs.0`.
    pub name: String,
    /// `rootfs`, `appfs`, ...
    pub class: String,
    /// The device or file RAUC writes the slot to.
    pub device: String,
    /// The slot type from `system.conf` (`raw`, `ext4`, ...).
    pub slot_type: Option<String>,
    /// The bootloader's name for the slot; only bootable slots have one.
    pub bootname: Option<String>,
    pub state: SlotState,
    pub description: Option<String>,
    /// The parent slot (a child is installed along with its bootable parent).
    pub parent: Option<String>,
    /// Where the slot is mounted, if it is.
    pub mountpoint: Option<String>,
    /// The bootloader's verdict; only bootable slots have one.
    pub boot_status: Option<BootStatus>,
    /// The `compatible` of the bundle last installed to the slot.
    pub bundle_compatible: Option<String>,
    pub bundle_version: Option<String>,
    pub bundle_description: Option<String>,
    pub bundle_build: Option<String>,
    /// How the last installation to the slot ended (`ok`, or RAUC's failure word).
    pub installed_status: Option<String>,
    /// SHA-256 (hex) and size of the image written to the slot.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// RFC 3339 UTC, as RAUC writes it (`2024-05-01T12:00:00Z`).
    pub installed_timestamp: Option<String>,
    pub installed_count: Option<u32>,
    pub activated_timestamp: Option<String>,
    pub activated_count: Option<u32>,
}

/// A slot's `state`: RAUC's view of it in the running system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// The system runs from it.
    Booted,
    /// In use without being booted (e.g. the child of the booted slot, or mounted).
    Active,
    /// Free: where an installation goes.
    Inactive,
}

/// A bootable slot's `boot-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootStatus {
    Good,
    Bad,
}

/// RAUC's properties as `GetAll` returns them, before the slots and primary are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Properties {
    pub compatible: String,
    pub variant: Option<String>,
    pub boot_slot: String,
    pub operation: Operation,
    pub progress: Progress,
    pub last_error: Option<String>,
}

impl Properties {
    pub(crate) fn into_status(
        self,
        primary: Option<String>,
        slots: Option<Vec<SlotStatus>>,
    ) -> UpdateStatus {
        UpdateStatus {
            compatible: self.compatible,
            variant: self.variant,
            boot_slot: self.boot_slot,
            primary,
            operation: self.operation,
            progress: self.progress,
            last_error: self.last_error,
            slots,
        }
    }
}

/// Maps `GetAll("de.pengutronix.rauc.Installer")`. All six properties are required: RAUC always
/// exports them, with empty strings for "none".
pub(crate) fn properties(all: &HashMap<String, OwnedValue>) -> Result<Properties, MapError> {
    let required = |key: &str| {
        all.get(key)
            .ok_or_else(|| MapError::Missing { key: key.into() })
    };
    let string =
        |key: &str| -> Result<String, MapError> { Ok(as_str(key, required(key)?)?.to_owned()) };
    Ok(Properties {
        compatible: string("Compatible")?,
        variant: non_empty(string("Variant")?),
        boot_slot: string("BootSlot")?,
        operation: operation_of(required("Operation")?)?,
        progress: progress(required("Progress")?)?,
        last_error: non_empty(string("LastError")?),
    })
}

/// Maps an `Operation` value.
pub(crate) fn operation_of(value: &Value<'_>) -> Result<Operation, MapError> {
    match as_str("Operation", value)? {
        "idle" => Ok(Operation::Idle),
        "installing" => Ok(Operation::Installing),
        other => Err(MapError::UnexpectedValue {
            key: "Operation".into(),
            value: other.into(),
        }),
    }
}

/// Maps a `Progress` value, `(isi)`.
pub(crate) fn progress(value: &Value<'_>) -> Result<Progress, MapError> {
    let wrong = || MapError::WrongType {
        key: "Progress".into(),
        expected: "(isi)",
        found: value.value_signature().to_string(),
    };
    let Value::Structure(fields) = value else {
        return Err(wrong());
    };
    match fields.fields() {
        [Value::I32(percent), Value::Str(message), Value::I32(depth)] => Ok(Progress {
            percent: *percent,
            message: message.to_string(),
            depth: *depth,
        }),
        _ => Err(wrong()),
    }
}

/// Maps `GetSlotStatus`'s `a(sa{sv})`, sorted by slot name (RAUC's order is its hash table's).
pub(crate) fn slots(
    reply: &[(String, HashMap<String, OwnedValue>)],
) -> Result<Vec<SlotStatus>, MapError> {
    let mut slots = reply
        .iter()
        .map(|(name, dict)| slot(name, dict))
        .collect::<Result<Vec<_>, _>>()?;
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(slots)
}

/// Maps one slot's dictionary. `class`, `device` and `state` are required: RAUC sets them for
/// every configured slot.
pub(crate) fn slot(name: &str, dict: &HashMap<String, OwnedValue>) -> Result<SlotStatus, MapError> {
    let key = |key: &str| format!("slot {name}: {key}");
    let string = |k: &str| -> Result<Option<String>, MapError> {
        dict.get(k)
            .map(|v| as_str(&key(k), v).map(str::to_owned))
            .transpose()
    };
    let required = |k: &str| string(k)?.ok_or_else(|| MapError::Missing { key: key(k) });
    let u32_of = |k: &str| -> Result<Option<u32>, MapError> {
        dict.get(k)
            .map(|v| match &**v {
                Value::U32(n) => Ok(*n),
                other => Err(wrong_type(key(k), "u", other)),
            })
            .transpose()
    };
    let state = match required("state")?.as_str() {
        "booted" => SlotState::Booted,
        "active" => SlotState::Active,
        "inactive" => SlotState::Inactive,
        other => {
            return Err(MapError::UnexpectedValue {
                key: key("state"),
                value: other.into(),
            });
        }
    };
    let boot_status = match string("boot-status")?.as_deref() {
        None => None,
        Some("good") => Some(BootStatus::Good),
        Some("bad") => Some(BootStatus::Bad),
        Some(other) => {
            return Err(MapError::UnexpectedValue {
                key: key("boot-status"),
                value: other.into(),
            });
        }
    };
    let size = dict
        .get("size")
        .map(|v| match &**v {
            Value::U64(n) => Ok(*n),
            other => Err(wrong_type(key("size"), "t", other)),
        })
        .transpose()?;
    Ok(SlotStatus {
        name: name.to_owned(),
        class: required("class")?,
        device: required("device")?,
        slot_type: string("type")?,
        bootname: string("bootname")?,
        state,
        description: string("description")?,
        parent: string("parent")?,
        mountpoint: string("mountpoint")?,
        boot_status,
        bundle_compatible: string("bundle.compatible")?,
        bundle_version: string("bundle.version")?,
        bundle_description: string("bundle.description")?,
        bundle_build: string("bundle.build")?,
        installed_status: string("status")?,
        sha256: string("sha256")?,
        size,
        installed_timestamp: string("installed.timestamp")?,
        installed_count: u32_of("installed.count")?,
        activated_timestamp: string("activated.timestamp")?,
        activated_count: u32_of("activated.count")?,
    })
}

fn as_str<'v>(key: &str, value: &'v Value<'_>) -> Result<&'v str, MapError> {
    match value {
        Value::Str(s) => Ok(s.as_str()),
        other => Err(wrong_type(key.to_owned(), "s", other)),
    }
}

fn wrong_type(key: String, expected: &'static str, found: &Value<'_>) -> MapError {
    MapError::WrongType {
        key,
        expected,
        found: found.value_signature().to_string(),
    }
}

/// RAUC exports "none" as an empty string.
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use zbus::zvariant::{StructureBuilder, Value};

    use super::*;

    fn owned(v: Value<'_>) -> OwnedValue {
        OwnedValue::try_from(v).unwrap()
    }

    fn dict(entries: &[(&str, Value<'_>)]) -> HashMap<String, OwnedValue> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), owned(v.clone())))
            .collect()
    }

    fn progress_value(percent: i32, message: &str, depth: i32) -> Value<'static> {
        Value::Structure(
            StructureBuilder::new()
                .add_field(percent)
                .add_field(message.to_owned())
                .add_field(depth)
                .build()
                .unwrap(),
        )
    }

    fn rauc_properties() -> HashMap<String, OwnedValue> {
        dict(&[
            ("Operation", Value::from("idle")),
            ("LastError", Value::from("")),
            ("Progress", progress_value(100, "Installing done.", 1)),
            ("Compatible", Value::from("appliance-rk3588")),
            ("Variant", Value::from("")),
            ("BootSlot", Value::from("A")),
        ])
    }

    /// A booted slot as RAUC 1.8 reports it after an installation and an activation (the keys
    /// and types of its `convert_slot_status_to_dict`).
    fn installed_slot() -> HashMap<String, OwnedValue> {
        dict(&[
            ("class", Value::from("rootfs")),
            ("device", Value::from("/dev/mmcblk0p2")),
            ("type", Value::from("ext4")),
            ("bootname", Value::from("A")),
            ("state", Value::from("booted")),
            ("boot-status", Value::from("good")),
            ("mountpoint", Value::from("/")),
            ("bundle.compatible", Value::from("appliance-rk3588")),
            ("bundle.version", Value::from("2024.05.1")),
            ("bundle.description", Value::from("May release")),
            ("bundle.build", Value::from("20240501120000")),
            ("status", Value::from("ok")),
            ("sha256", Value::from("ab".repeat(32))),
            ("size", Value::U64(45_601_892)),
            ("installed.timestamp", Value::from("2024-05-01T12:00:00Z")),
            ("installed.count", Value::U32(3)),
            ("activated.timestamp", Value::from("2024-05-01T12:00:05Z")),
            ("activated.count", Value::U32(4)),
        ])
    }

    #[test]
    fn properties_map_with_empty_strings_as_none() {
        let p = properties(&rauc_properties()).unwrap();
        assert_eq!(p.compatible, "appliance-rk3588");
        assert_eq!(p.variant, None);
        assert_eq!(p.last_error, None);
        assert_eq!(p.boot_slot, "A");
        assert_eq!(p.operation, Operation::Idle);
        assert_eq!(
            p.progress,
            Progress {
                percent: 100,
                message: "Installing done.".into(),
                depth: 1
            }
        );
    }

    #[test]
    fn properties_keep_a_variant_and_last_error() {
        let mut all = rauc_properties();
        all.insert("Variant".into(), owned(Value::from("devkit")));
        all.insert(
            "LastError".into(),
            owned(Value::from("Compatible mismatch")),
        );
        all.insert("Operation".into(), owned(Value::from("installing")));
        let p = properties(&all).unwrap();
        assert_eq!(p.variant.as_deref(), Some("devkit"));
        assert_eq!(p.last_error.as_deref(), Some("Compatible mismatch"));
        assert_eq!(p.operation, Operation::Installing);
    }

    #[test]
    fn properties_missing_or_mistyped_are_named() {
        let mut all = rauc_properties();
        all.remove("BootSlot");
        assert_eq!(
            properties(&all),
            Err(MapError::Missing {
                key: "BootSlot".into()
            })
        );

        let mut all = rauc_properties();
        all.insert("Compatible".into(), owned(Value::U32(1)));
        assert_eq!(
            properties(&all),
            Err(MapError::WrongType {
                key: "Compatible".into(),
                expected: "s",
                found: "u".into()
            })
        );

        let mut all = rauc_properties();
        all.insert("Operation".into(), owned(Value::from("downloading")));
        assert_eq!(
            properties(&all),
            Err(MapError::UnexpectedValue {
                key: "Operation".into(),
                value: "downloading".into()
            })
        );
    }

    #[test]
    fn progress_of_another_shape_is_an_error() {
        let two_fields = Value::Structure(
            StructureBuilder::new()
                .add_field(1i32)
                .add_field("x".to_owned())
                .build()
                .unwrap(),
        );
        let reordered = Value::Structure(
            StructureBuilder::new()
                .add_field("x".to_owned())
                .add_field(1i32)
                .add_field(1i32)
                .build()
                .unwrap(),
        );
        for (value, found) in [
            (two_fields, "(is)"),
            (reordered, "(sii)"),
            (Value::I32(5), "i"),
        ] {
            assert_eq!(
                progress(&value),
                Err(MapError::WrongType {
                    key: "Progress".into(),
                    expected: "(isi)",
                    found: found.into()
                })
            );
        }
    }

    #[test]
    fn installed_slot_maps_every_key() {
        let s = slot("rootfs.0", &installed_slot()).unwrap();
        assert_eq!(
            s,
            SlotStatus {
                name: "rootfs.0".into(),
                class: "rootfs".into(),
                device: "/dev/mmcblk0p2".into(),
                slot_type: Some("ext4".into()),
                bootname: Some("A".into()),
                state: SlotState::Booted,
                description: None,
                parent: None,
                mountpoint: Some("/".into()),
                boot_status: Some(BootStatus::Good),
                bundle_compatible: Some("appliance-rk3588".into()),
                bundle_version: Some("2024.05.1".into()),
                bundle_description: Some("May release".into()),
                bundle_build: Some("20240501120000".into()),
                installed_status: Some("ok".into()),
                sha256: Some("ab".repeat(32)),
                size: Some(45_601_892),
                installed_timestamp: Some("2024-05-01T12:00:00Z".into()),
                installed_count: Some(3),
                activated_timestamp: Some("2024-05-01T12:00:05Z".into()),
                activated_count: Some(4),
            }
        );
    }

    #[test]
    fn fresh_child_slot_has_only_config_keys() {
        let s = slot(
            "appfs.1",
            &dict(&[
                ("class", Value::from("appfs")),
                ("device", Value::from("/dev/mmcblk0p5")),
                ("type", Value::from("ext4")),
                ("state", Value::from("inactive")),
                ("parent", Value::from("rootfs.1")),
            ]),
        )
        .unwrap();
        assert_eq!(s.state, SlotState::Inactive);
        assert_eq!(s.parent.as_deref(), Some("rootfs.1"));
        assert_eq!((s.bootname, s.boot_status), (None, None));
        assert_eq!(
            (s.bundle_version, s.installed_count, s.size),
            (None, None, None)
        );
    }

    #[test]
    fn slot_errors_name_the_slot_and_key() {
        let mut d = installed_slot();
        d.remove("device");
        assert_eq!(
            slot("rootfs.0", &d),
            Err(MapError::Missing {
                key: "slot rootfs.0: device".into()
            })
        );

        let mut d = installed_slot();
        d.insert("installed.count".into(), owned(Value::from("3")));
        assert_eq!(
            slot("rootfs.0", &d),
            Err(MapError::WrongType {
                key: "slot rootfs.0: installed.count".into(),
                expected: "u",
                found: "s".into()
            })
        );

        let mut d = installed_slot();
        d.insert("size".into(), owned(Value::U32(7)));
        assert_eq!(
            slot("rootfs.0", &d),
            Err(MapError::WrongType {
                key: "slot rootfs.0: size".into(),
                expected: "t",
                found: "u".into()
            })
        );

        let mut d = installed_slot();
        d.insert("state".into(), owned(Value::from("broken")));
        assert_eq!(
            slot("rootfs.0", &d),
            Err(MapError::UnexpectedValue {
                key: "slot rootfs.0: state".into(),
                value: "broken".into()
            })
        );

        let mut d = installed_slot();
        d.insert("boot-status".into(), owned(Value::Bool(true)));
        assert_eq!(
            slot("rootfs.0", &d),
            Err(MapError::WrongType {
                key: "slot rootfs.0: boot-status".into(),
                expected: "s",
                found: "b".into()
            })
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        // A later RAUC adds keys (bundle.hash, installed.transaction): not an error.
        let mut d = installed_slot();
        d.insert("bundle.hash".into(), owned(Value::from("cd".repeat(32))));
        assert!(slot("rootfs.0", &d).is_ok());
    }

    #[test]
    fn slots_are_sorted_and_booted_slot_found() {
        let mut other = installed_slot();
        other.insert("state".into(), owned(Value::from("inactive")));
        other.insert("bootname".into(), owned(Value::from("B")));
        let reply = vec![
            ("rootfs.1".to_owned(), other),
            ("rootfs.0".to_owned(), installed_slot()),
        ];
        let slots = slots(&reply).unwrap();
        assert_eq!(
            slots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["rootfs.0", "rootfs.1"]
        );

        let status = properties(&rauc_properties())
            .unwrap()
            .into_status(None, Some(slots));
        assert_eq!(
            status.booted_slot().map(|s| s.name.as_str()),
            Some("rootfs.0")
        );
        assert_eq!(
            properties(&rauc_properties())
                .unwrap()
                .into_status(None, None)
                .booted_slot(),
            None
        );
    }

    #[test]
    fn status_serialises_with_snake_case_words() {
        let reply = vec![("rootfs.0".to_owned(), installed_slot())];
        let status = properties(&rauc_properties())
            .unwrap()
            .into_status(Some("rootfs.0".into()), Some(slots(&reply).unwrap()));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["operation"], "idle");
        assert_eq!(json["primary"], "rootfs.0");
        assert_eq!(json["progress"]["percent"], 100);
        assert_eq!(json["slots"][0]["state"], "booted");
        assert_eq!(json["slots"][0]["boot_status"], "good");
        assert_eq!(json["slots"][0]["installed_count"], 3);
    }
}
