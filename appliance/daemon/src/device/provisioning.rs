//! The provisioning file an installer may put on the boot partition before the first start:
//! this box's id, the admin password (as an argon2id hash, never in clear), and the upstream.
//! It comes from outside the box, so it is read as untrusted input: a size cap, no unknown keys,
//! every value checked, and a file with any problem is refused whole (the box then starts
//! unclaimed with a generated id, and the log and a counter say why).
//!
//! ```toml
//! device_id = "store-0042"
//! admin_password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…$…"
//! [uplink]          # the keys of appliance.toml's [uplink], e.g.
//! [uplink.mqtt]
//! url = "mqtts://cloud.example.com:8883"
//! ca_file = "/boot/appliance/cloud-ca.pem"
//! ```

use appliance_config::{Config, UplinkConfig};
use serde::Deserialize;

use super::admin;

/// Larger files are refused before parsing.
pub const MAX_PROVISIONING_BYTES: usize = 64 * 1024;

/// A checked provisioning file.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioning {
    pub device_id: Option<String>,
    pub admin_password_hash: Option<String>,
    /// The `[uplink]` table as written (TOML), kept in the store and read back at each start
    /// through the configuration's own checks.
    pub uplink_toml: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    device_id: Option<String>,
    admin_password_hash: Option<String>,
    uplink: Option<toml::Table>,
}

/// Parses and checks a provisioning file; `origin` names it in errors.
pub fn parse(bytes: &[u8], origin: &str) -> Result<Provisioning, String> {
    if bytes.len() > MAX_PROVISIONING_BYTES {
        return Err(format!(
            "{origin}: {} bytes, larger than the {MAX_PROVISIONING_BYTES} a provisioning file may have",
            bytes.len()
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{origin}: not UTF-8: {e}"))?;
    let raw: Raw = toml::from_str(text).map_err(|e| format!("{origin}: {}", e.message()))?;
    let device_id = raw
        .device_id
        .map(|id| {
            if id.is_empty() {
                return Err(format!("{origin}: device_id is empty"));
            }
            // The same rule as `uplink.device_id` in appliance.toml, checked by the same code.
            uplink_from_toml(&format!("device_id = {}", toml::Value::String(id.clone())))
                .map(|_| id)
                .map_err(|e| format!("{origin}: device_id: {e}"))
        })
        .transpose()?;
    if let Some(hash) = &raw.admin_password_hash {
        admin::check_password_hash(hash)
            .map_err(|e| format!("{origin}: admin_password_hash: {e}"))?;
    }
    let uplink_toml = raw
        .uplink
        .map(|table| {
            let text = toml::to_string(&table).expect("a parsed TOML table serialises");
            uplink_from_toml(&text)
                .map(|_| text)
                .map_err(|e| format!("{origin}: [uplink]: {e}"))
        })
        .transpose()?;
    Ok(Provisioning {
        device_id,
        admin_password_hash: raw.admin_password_hash,
        uplink_toml,
    })
}

/// An `[uplink]` table's body through the configuration's parser and checks.
pub fn uplink_from_toml(body: &str) -> Result<UplinkConfig, String> {
    let mut table = toml::Table::new();
    table.insert(
        "uplink".into(),
        toml::Value::Table(toml::from_str(body).map_err(|e| e.message().to_owned())?),
    );
    let text = toml::to_string(&table).expect("a TOML table serialises");
    Config::from_toml_str(&text, "provisioning")
        .map(|config| config.uplink)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> String {
        admin::hash_password("correct horse battery")
    }

    #[test]
    fn a_complete_file_is_accepted() {
        let text = format!(
            "device_id = \"store-0042\"\nadmin_password_hash = \"{}\"\n[uplink.mqtt]\nurl = \"mqtts://cloud.example.com:8883\"\nca_file = \"/boot/appliance/cloud-ca.pem\"\n",
            hash()
        );
        let p = parse(text.as_bytes(), "provision.toml").unwrap();
        assert_eq!(p.device_id.as_deref(), Some("store-0042"));
        assert!(p.admin_password_hash.unwrap().starts_with("$argon2id$"));
        let uplink = uplink_from_toml(&p.uplink_toml.unwrap()).unwrap();
        assert_eq!(uplink.mqtt.unwrap().url, "mqtts://cloud.example.com:8883");
    }

    #[test]
    fn every_key_is_optional() {
        let p = parse(b"", "p").unwrap();
        assert_eq!(
            p,
            Provisioning {
                device_id: None,
                admin_password_hash: None,
                uplink_toml: None
            }
        );
    }

    #[test]
    fn problems_are_named() {
        let cases: [(&[u8], &str); 8] = [
            (b"device_id = \"has space\"", "device_id"),
            (b"device_id = \"\"", "device_id is empty"),
            (
                b"admin_password = \"hunter22\"",
                "unknown field `admin_password`",
            ),
            (
                b"admin_password_hash = \"hunter22hunter22\"",
                "admin_password_hash",
            ),
            (b"[uplink.mqtt]\nurl = \"http://x\"", "[uplink]"),
            (b"[uplink.s3]\nendpoint = \"http://s3:9000\"", "[uplink]"),
            (b"device_id = ", "provision.toml"),
            (&[0xff, 0xfe, 0x00], "not UTF-8"),
        ];
        for (text, expected) in cases {
            let err = parse(text, "provision.toml").unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert!(err.starts_with("provision.toml"), "{err}");
        }
    }

    #[test]
    fn oversized_files_are_refused_unread() {
        let big = vec![b'#'; MAX_PROVISIONING_BYTES + 1];
        assert!(parse(&big, "p").unwrap_err().contains("larger than"));
    }
}
