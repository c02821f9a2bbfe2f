//! Downlink commands, cloud → box, without sockets: reading a command message, and deciding
//! whether it may run (well-formed, not expired, not already done) before the daemon runs it.
//! Every command gets exactly one result, stored by command id, so a command the cloud sends
//! again (MQTT QoS 1 redelivers) is answered with the stored result instead of running twice.
//!
//! A command: `{"schema":"appliance.cmd.v1","id":"…","type":"…","expires_at":"RFC 3339",
//! "params":{…}}` on `<prefix>/<device>/cmd/<type>`; its result:
//! `{"schema":"appliance.cmd_result.v1","id":"…","type":"…","status":"ok"|"error"|"rejected",
//! "code":…,"message":…,"result":…,"at":…}` on `…/cmd_result`.

use appliance_model::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const COMMAND_SCHEMA: &str = "appliance.cmd.v1";
pub const RESULT_SCHEMA: &str = "appliance.cmd_result.v1";
/// Longest command id kept (ids are the idempotency keys in the store).
pub const MAX_ID_LEN: usize = 128;

/// A command as the cloud sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub schema: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// After this the command is rejected unrun (a reboot queued for hours is not wanted).
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub params: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ran and succeeded.
    Ok,
    /// Ran and failed.
    Error,
    /// Not run: malformed, expired, unknown or not supported.
    Rejected,
}

/// The one answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub schema: String,
    /// `None` only when the message was too malformed to carry an id.
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub status: Status,
    /// Machine-readable reason with `error` and `rejected`, e.g. `expired`, `bad_params`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    pub at: Timestamp,
}

impl CommandResult {
    fn new(id: Option<&str>, kind: Option<&str>, status: Status, at: Timestamp) -> CommandResult {
        CommandResult {
            schema: RESULT_SCHEMA.to_owned(),
            id: id.map(str::to_owned),
            kind: kind.map(str::to_owned),
            status,
            code: None,
            message: None,
            result: None,
            at,
        }
    }

    pub fn ok(command: &Command, result: Value, at: Timestamp) -> CommandResult {
        CommandResult {
            result: Some(result),
            ..CommandResult::new(Some(&command.id), Some(&command.kind), Status::Ok, at)
        }
    }

    /// The command ran and failed (`code`, e.g. `device_offline`).
    pub fn error(command: &Command, code: &str, message: impl Into<String>, at: Timestamp) -> Self {
        CommandResult {
            code: Some(code.to_owned()),
            message: Some(message.into()),
            ..CommandResult::new(Some(&command.id), Some(&command.kind), Status::Error, at)
        }
    }

    /// The command was not run (`code`, e.g. `unsupported`, `bad_params`).
    pub fn rejected(
        command: &Command,
        code: &str,
        message: impl Into<String>,
        at: Timestamp,
    ) -> Self {
        CommandResult {
            code: Some(code.to_owned()),
            message: Some(message.into()),
            ..CommandResult::new(Some(&command.id), Some(&command.kind), Status::Rejected, at)
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a command result serialises")
    }
}

/// What to do with a received command message.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Run it, then store and send its result.
    Run(Command),
    /// Send this result without running anything (and store it when it has an id, so a repeat
    /// gets the same answer).
    Answer(CommandResult),
    /// Done before: send the stored result again, store nothing.
    Repeat(CommandResult),
}

/// Reads a command that arrived on topic suffix `cmd/<topic_type>`. `done` looks up the stored
/// result of a command id.
pub fn admit(
    payload: &[u8],
    topic_type: &str,
    now: Timestamp,
    done: impl Fn(&str) -> Option<CommandResult>,
) -> Admission {
    let malformed = |code: &str, message: String, id: Option<&str>, kind: Option<&str>| {
        Admission::Answer(CommandResult {
            code: Some(code.to_owned()),
            message: Some(message),
            ..CommandResult::new(id, kind, Status::Rejected, now)
        })
    };
    let command: Command = match serde_json::from_slice(payload) {
        Ok(command) => command,
        Err(e) => {
            // Name the id when the rest is wrong, so the cloud can match the rejection.
            let id = serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                .filter(|id| valid_id(id));
            return malformed("malformed", format!("command: {e}"), id.as_deref(), None);
        }
    };
    if !valid_id(&command.id) {
        return malformed(
            "malformed",
            format!("command: `id` must be 1 to {MAX_ID_LEN} printable characters"),
            None,
            Some(&command.kind),
        );
    }
    if let Some(result) = done(&command.id) {
        return Admission::Repeat(result);
    }
    let id = Some(command.id.as_str());
    let kind = Some(command.kind.as_str());
    if command.schema != COMMAND_SCHEMA {
        let message = format!(
            "command: schema `{}` is not {COMMAND_SCHEMA}",
            command.schema
        );
        return malformed("unsupported_schema", message, id, kind);
    }
    if command.kind != topic_type {
        let message = format!(
            "command: type `{}` does not match its topic `cmd/{topic_type}`",
            command.kind
        );
        return malformed("malformed", message, id, kind);
    }
    if command.expires_at.is_some_and(|expiry| expiry <= now) {
        let message = format!(
            "command: expired at {}",
            command.expires_at.expect("checked")
        );
        return malformed("expired", message, id, kind);
    }
    Admission::Run(command)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_795_000_000_000);

    fn admit_now(payload: &str, topic_type: &str) -> Admission {
        admit(payload.as_bytes(), topic_type, NOW, |_| None)
    }

    fn rejected_code(admission: &Admission) -> (Option<String>, Option<String>) {
        match admission {
            Admission::Answer(result) => {
                assert_eq!(result.status, Status::Rejected);
                (result.code.clone(), result.id.clone())
            }
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_command_runs() {
        let admission = admit_now(
            r#"{"schema":"appliance.cmd.v1","id":"c-1","type":"ping","expires_at":"2030-01-01T00:00:00Z","params":{}}"#,
            "ping",
        );
        let Admission::Run(command) = admission else {
            panic!("{admission:?}")
        };
        assert_eq!(
            (command.id.as_str(), command.kind.as_str()),
            ("c-1", "ping")
        );
    }

    #[test]
    fn bad_commands_are_rejected_with_a_code_and_their_id_when_there_is_one() {
        for (payload, topic, code, id) in [
            ("not json", "ping", "malformed", None),
            (
                r#"{"id":"c-2","type":"ping"}"#,
                "ping",
                "malformed",
                Some("c-2"),
            ),
            (
                r#"{"schema":"appliance.cmd.v1","id":"c-3","type":"ping","colour":1}"#,
                "ping",
                "malformed",
                Some("c-3"),
            ),
            (
                r#"{"schema":"appliance.cmd.v9","id":"c-4","type":"ping"}"#,
                "ping",
                "unsupported_schema",
                Some("c-4"),
            ),
            (
                r#"{"schema":"appliance.cmd.v1","id":"c-5","type":"reboot"}"#,
                "ping",
                "malformed",
                Some("c-5"),
            ),
            (
                r#"{"schema":"appliance.cmd.v1","id":"c-6","type":"ping","expires_at":"2020-01-01T00:00:00Z"}"#,
                "ping",
                "expired",
                Some("c-6"),
            ),
            (
                r#"{"schema":"appliance.cmd.v1","id":"","type":"ping"}"#,
                "ping",
                "malformed",
                None,
            ),
        ] {
            let (got_code, got_id) = rejected_code(&admit_now(payload, topic));
            assert_eq!(got_code.as_deref(), Some(code), "{payload}");
            assert_eq!(got_id.as_deref(), id, "{payload}");
        }
    }

    #[test]
    fn a_command_done_before_gets_its_stored_result_and_does_not_run_again() {
        let first = CommandResult {
            result: Some(serde_json::json!({"pong": true})),
            ..CommandResult::new(Some("c-7"), Some("ping"), Status::Ok, NOW)
        };
        let stored = first.clone();
        let admission = admit(
            br#"{"schema":"appliance.cmd.v1","id":"c-7","type":"ping"}"#,
            "ping",
            NOW,
            |id| (id == "c-7").then(|| stored.clone()),
        );
        assert_eq!(admission, Admission::Repeat(first));
    }

    #[test]
    fn results_round_trip_as_json() {
        let command = match admit_now(
            r#"{"schema":"appliance.cmd.v1","id":"c-8","type":"ping"}"#,
            "ping",
        ) {
            Admission::Run(command) => command,
            other => panic!("{other:?}"),
        };
        let result =
            CommandResult::error(&command, "device_offline", "device 3402… is offline", NOW);
        let json: Value = serde_json::from_slice(&result.to_json()).unwrap();
        assert_eq!(json["schema"], RESULT_SCHEMA);
        assert_eq!(json["status"], "error");
        assert_eq!(json["code"], "device_offline");
        assert!(json.get("result").is_none());
        let back: CommandResult = serde_json::from_slice(&result.to_json()).unwrap();
        assert_eq!(back, result);
    }
}
