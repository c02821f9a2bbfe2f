//! Settings the cloud changed (`config.set`): kept in the store's `config.cloud` state
//! namespace (key = dotted setting, value = its TOML value) and laid over the configuration file
//! at every start. The file is on the read-only root and the same on every box; these are this
//! box's own. Only [`appliance_config::CLOUD_SETTINGS`] may be set, and a change is checked
//! against the whole configuration before it is stored; it takes effect at the restart that
//! follows it.

use std::collections::BTreeMap;

use anyhow::Context as _;
use appliance_config::{Config, ConfigError};
use appliance_store::{EventStore, StateChange};

const NAMESPACE: &str = "config.cloud";

/// The stored settings. An entry that no longer parses is skipped (logged): a setting must never
/// stop the box from starting.
pub fn stored(store: &EventStore) -> anyhow::Result<BTreeMap<String, toml::Value>> {
    let mut settings = BTreeMap::new();
    for (key, bytes) in store.state_entries(NAMESPACE)? {
        let parsed = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| format!("value = {text}").parse::<toml::Table>().ok())
            .and_then(|mut table| table.remove("value"));
        match parsed {
            Some(value) => {
                settings.insert(key, value);
            }
            None => tracing::error!(key, "a stored cloud setting does not parse; skipped"),
        }
    }
    Ok(settings)
}

/// `config` with the stored settings over it; if they no longer fit (a firmware that checks a
/// value more strictly), the configuration as it is, with the reason logged.
pub fn apply_stored(config: Config, store: &EventStore) -> anyhow::Result<Config> {
    let settings = stored(store)?;
    if settings.is_empty() {
        return Ok(config);
    }
    match config.with_settings(&settings) {
        Ok(changed) => {
            tracing::info!(?settings, "settings from the cloud applied");
            Ok(changed)
        }
        Err(e) => {
            tracing::error!(error = %e, "the cloud's settings no longer fit; ignored");
            Ok(config)
        }
    }
}

/// Why a change was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Merges `changes` (a `null` value removes that setting) into the stored settings, checks the
/// result over `base` (the configuration without them) and stores it in one commit. Returns
/// every setting now in force.
pub async fn change(
    store: &EventStore,
    base: &Config,
    changes: &serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, toml::Value>, ChangeError> {
    let mut settings = stored(store)?;
    let mut writes = Vec::new();
    for (key, value) in changes {
        let value = match value {
            serde_json::Value::Null => None,
            value => Some(toml_value(key, value)?),
        };
        match &value {
            Some(value) => settings.insert(key.clone(), value.clone()),
            None => settings.remove(key),
        };
        writes.push(StateChange {
            namespace: NAMESPACE,
            key: key.clone(),
            value: value.map(|v| v.to_string().into_bytes()),
        });
    }
    base.with_settings(&settings)?;
    store
        .commit(Vec::new(), writes)
        .await
        .context("cannot store the settings")?;
    Ok(settings)
}

/// A JSON value as the TOML value of a setting: strings, integers, floats, booleans.
fn toml_value(key: &str, value: &serde_json::Value) -> Result<toml::Value, ConfigError> {
    let refuse = || ConfigError::Setting {
        key: key.to_owned(),
        message: format!("{value} is not a string, number or boolean"),
    };
    Ok(match value {
        serde_json::Value::String(s) => toml::Value::String(s.clone()),
        serde_json::Value::Bool(b) => toml::Value::Boolean(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) => toml::Value::Float(f),
            _ => return Err(refuse()),
        },
        _ => return Err(refuse()),
    })
}
