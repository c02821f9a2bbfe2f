//! Runs the cloud's downlink commands (`appliance-uplink::commands` decides whether one may
//! run): each gets exactly one result, stored by command id in the `uplink.commands` state
//! namespace, so a command delivered again is answered with its first result.

use std::time::Instant;

use appliance_manscdp::Body;
use appliance_model::Timestamp;
use appliance_store::{EventStore, StateChange};
use appliance_uplink::commands::{Admission, Command, CommandResult, admit};
use serde::Deserialize;
use serde_json::json;

use crate::api::devices::device_control;
use crate::sip::SipHandle;

/// Store namespace of command results, by command id.
const RESULTS_NAMESPACE: &str = "uplink.commands";
/// How long a command's result is kept to answer repeats of it.
const KEEP_RESULTS: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub struct Commands {
    store: EventStore,
    sip: SipHandle,
    started: Instant,
}

/// Parameters of the device commands.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceParams {
    device_id: String,
    /// `device.control` only: the control's name, as in the local API.
    command: Option<String>,
    /// `device.control` only: a channel of the device; the device itself when absent.
    channel: Option<String>,
}

impl Commands {
    pub fn new(store: EventStore, sip: SipHandle, started: Instant) -> Commands {
        Commands {
            store,
            sip,
            started,
        }
    }

    /// Handles one command message from topic `cmd/<topic_type>`; returns the result to send.
    pub async fn handle(&self, topic_type: &str, payload: &[u8]) -> CommandResult {
        let now = Timestamp::now();
        let result = match admit(payload, topic_type, now, |id| self.stored(id)) {
            Admission::Repeat(result) => return result,
            // Not stored: anyone who can publish to the command topic could otherwise fill the
            // store, or make a real command's id answer with a rejection forever.
            Admission::Answer(result) => return self.log(result),
            Admission::Run(command) => self.run(&command, now).await,
        };
        if let Some(id) = &result.id {
            let change = StateChange {
                namespace: RESULTS_NAMESPACE,
                key: id.clone(),
                value: Some(result.to_json()),
            };
            if let Err(e) = self.store.commit(Vec::new(), vec![change]).await {
                // The result still goes out; a repeat of the command would run it again.
                tracing::error!(command = id, error = %e, "cannot store a command result");
            }
        }
        self.log(result)
    }

    fn log(&self, result: CommandResult) -> CommandResult {
        tracing::info!(command = ?result.id, kind = ?result.kind, status = ?result.status, "cloud command");
        result
    }

    /// Forgets results older than [`KEEP_RESULTS`]: the cloud repeats a command for minutes or
    /// hours, not weeks.
    pub async fn prune(&self) {
        let Ok(entries) = self.store.state_entries(RESULTS_NAMESPACE) else {
            return;
        };
        let horizon = Timestamp::now().as_millis() - KEEP_RESULTS.as_millis() as i64;
        let stale: Vec<StateChange> = entries
            .into_iter()
            .filter(|(_, bytes)| {
                serde_json::from_slice::<CommandResult>(bytes)
                    .map_or(true, |r| r.at.as_millis() < horizon)
            })
            .map(|(key, _)| StateChange {
                namespace: RESULTS_NAMESPACE,
                key,
                value: None,
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let count = stale.len();
        match self.store.commit(Vec::new(), stale).await {
            Ok(_) => tracing::info!(count, "forgot old command results"),
            Err(e) => tracing::warn!(error = %e, "cannot prune command results"),
        }
    }

    fn stored(&self, id: &str) -> Option<CommandResult> {
        let bytes = self.store.state(RESULTS_NAMESPACE, id).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    async fn run(&self, command: &Command, now: Timestamp) -> CommandResult {
        match command.kind.as_str() {
            "ping" => CommandResult::ok(
                command,
                json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_s": self.started.elapsed().as_secs(),
                }),
                now,
            ),
            "device.catalog" | "device.control" => self.device_command(command, now).await,
            "skill.apply" | "face.add" | "face.remove" | "plate.add" | "plate.remove" => {
                CommandResult::rejected(
                    command,
                    "unsupported",
                    "skills and face/plate libraries are not on this firmware yet",
                    now,
                )
            }
            "reboot" | "firmware.update" => CommandResult::rejected(
                command,
                "unsupported",
                "reboots and updates are not on this firmware yet",
                now,
            ),
            other => CommandResult::rejected(
                command,
                "unknown_command",
                format!("`{other}` is not a command this box knows"),
                now,
            ),
        }
    }

    /// `device.catalog` (ask a device for its catalog) and `device.control` (a DeviceControl,
    /// named as in the local API); done once the device was asked.
    async fn device_command(&self, command: &Command, now: Timestamp) -> CommandResult {
        let params: DeviceParams = match serde_json::from_value(command.params.clone()) {
            Ok(params) => params,
            Err(e) => {
                return CommandResult::rejected(command, "bad_params", format!("params: {e}"), now);
            }
        };
        let (target, body) = if command.kind == "device.control" {
            let Some(control) = params.command.as_deref().and_then(device_control) else {
                let name = params.command.unwrap_or_default();
                let message = format!("params.command: `{name}` is not a device control");
                return CommandResult::rejected(command, "bad_params", message, now);
            };
            let target = params.channel.unwrap_or_else(|| params.device_id.clone());
            (target, Body::DeviceControl(control))
        } else {
            (params.device_id.clone(), Body::CatalogQuery)
        };
        match self.sip.request(&params.device_id, &target, body).await {
            Ok(()) => CommandResult::ok(command, json!({ "requested": true }), now),
            Err(e) => CommandResult::error(command, "device", e.to_string(), now),
        }
    }
}
