//! Runs the cloud's downlink commands (`appliance-uplink::commands` decides whether one may
//! run): each gets exactly one result, stored by command id in the `uplink.commands` state
//! namespace, so a command delivered again is answered with its first result.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use appliance_config::Config;
use appliance_manscdp::Body;
use appliance_model::Timestamp;
use appliance_skills::library::face::Person;
use appliance_skills::library::plate::{PlateEntry, PlateList, PlateListKind, normalise_plate};
use appliance_store::{EventStore, StateChange};
use appliance_uplink::commands::{Admission, Command, CommandResult, admit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::devices::device_control;
use crate::lifecycle::{Exit, ExitRequests};
use crate::settings::{self, ChangeError};
use crate::sip::SipHandle;
use crate::update::{StartError, Updates, check_bundle_url};
use crate::vision::Vision;
use crate::vision::catalog::Camera;
use crate::vision::edit::EditError;

/// Store namespace of command results, by command id.
const RESULTS_NAMESPACE: &str = "uplink.commands";
/// How long a command's result is kept to answer repeats of it.
const KEEP_RESULTS: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// How long a `reboot`'s or `config.set`'s result has to leave over MQTT (QoS 0) before the daemon stops.
const RESULT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Commands {
    store: EventStore,
    sip: SipHandle,
    vision: Vision,
    updates: Updates,
    exits: ExitRequests,
    /// The configuration without the cloud's settings, to check `config.set` against.
    base_config: Arc<Config>,
    /// Set by a `reboot` or `config.set` that ran: the daemon ends once its result is on its way.
    exit_after_result: Mutex<Option<Exit>>,
    started: Instant,
}

/// Why a vision command did not run, or failed.
enum VisionCommandError {
    /// The params do not fit the command (rejected: not run at all).
    Params(String),
    /// The change was refused or failed.
    Edit(EditError),
}

impl From<EditError> for VisionCommandError {
    fn from(e: EditError) -> Self {
        VisionCommandError::Edit(e)
    }
}

/// Params that do not fit their command; the message names the field.
struct BadParams(String);

impl From<BadParams> for VisionCommandError {
    fn from(BadParams(message): BadParams) -> Self {
        VisionCommandError::Params(message)
    }
}

/// A command's params as `T`.
fn params<T: DeserializeOwned>(command: &Command) -> Result<T, BadParams> {
    serde_json::from_value(command.params.clone()).map_err(|e| BadParams(format!("params: {e}")))
}

/// `camera.set`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraSet {
    camera_id: String,
    camera: Camera,
}

/// `camera.remove`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CameraRef {
    camera_id: String,
}

/// `skill.apply`: the config as the local API takes it; a new id when none is given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkillApply {
    camera_id: String,
    #[serde(default)]
    skill_id: Option<String>,
    config: Value,
}

/// `skill.remove`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkillRef {
    camera_id: String,
    skill_id: String,
}

/// `face.add`: a person (and their library, when new), and optionally a photo to enrol.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaceAdd {
    library: String,
    person_id: String,
    name: String,
    #[serde(default)]
    note: Option<String>,
    /// A JPEG or PNG, base64.
    #[serde(default)]
    photo_base64: Option<String>,
    /// The face detector to enrol with (default centerface).
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    match_threshold: Option<f32>,
}

/// `face.remove`: a photo, a person, or the whole library.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaceRemove {
    library: String,
    #[serde(default)]
    person_id: Option<String>,
    #[serde(default)]
    photo_id: Option<String>,
}

/// `plate.add`: entries added to a list (replacing those of the same plate); `kind` makes a
/// new list or changes one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlateAdd {
    list: String,
    #[serde(default)]
    kind: Option<PlateListKind>,
    entries: Vec<PlateEntry>,
}

/// `plate.remove`: plates taken off a list, or the whole list without `plates`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlateRemove {
    list: String,
    #[serde(default)]
    plates: Option<Vec<String>>,
}

/// `config.set`: dotted setting → value (`null` removes the cloud's value for it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigSet {
    settings: serde_json::Map<String, Value>,
}

/// `firmware.update`: a bundle RAUC streams from the cloud.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FirmwareUpdate {
    /// `https://…` (or `http://…`) of a signed `verity` bundle.
    url: String,
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
    pub fn new(
        store: EventStore,
        sip: SipHandle,
        vision: Vision,
        updates: Updates,
        exits: ExitRequests,
        base_config: Arc<Config>,
        started: Instant,
    ) -> Commands {
        Commands {
            store,
            sip,
            vision,
            updates,
            exits,
            base_config,
            exit_after_result: Mutex::new(None),
            started,
        }
    }

    /// Called once a result was handed to MQTT: a `reboot` or `config.set` that ran ends the
    /// daemon now (to reboot, or to restart with the new settings), a moment later so that its
    /// result leaves first. The result is stored too: a repeat of the command afterwards gets
    /// it without running again.
    pub async fn after_result(&self) {
        let exit = self
            .exit_after_result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(exit) = exit {
            tokio::time::sleep(RESULT_GRACE).await;
            self.exits.request(exit);
        }
    }

    fn exit_after_result(&self, exit: Exit) {
        *self
            .exit_after_result
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(exit);
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
            "camera.set" | "camera.remove" | "skill.apply" | "skill.remove" | "face.add"
            | "face.remove" | "plate.add" | "plate.remove" => {
                match self.vision_command(command).await {
                    Ok(result) => CommandResult::ok(command, result, now),
                    Err(VisionCommandError::Params(message)) => {
                        CommandResult::rejected(command, "bad_params", message, now)
                    }
                    Err(VisionCommandError::Edit(error)) => {
                        let code = match &error {
                            EditError::NotFound(_) => "not_found",
                            EditError::Invalid(_) => "invalid",
                            EditError::NoFace => "no_face",
                            EditError::Unavailable(_) => "unavailable",
                            EditError::Store(_) | EditError::Task(_) => "internal",
                        };
                        CommandResult::error(command, code, error.to_string(), now)
                    }
                }
            }
            "firmware.update" => self.firmware_update(command, now).await,
            "reboot" => {
                self.exit_after_result(Exit::Reboot);
                CommandResult::ok(command, json!({ "rebooting": true }), now)
            }
            "config.set" => self.config_set(command, now).await,
            other => CommandResult::rejected(
                command,
                "unknown_command",
                format!("`{other}` is not a command this box knows"),
                now,
            ),
        }
    }

    /// `config.set`: settings from [`appliance_config::CLOUD_SETTINGS`] (a `null` removes one),
    /// checked against the whole configuration, stored, and in force after the restart that
    /// follows the result.
    async fn config_set(&self, command: &Command, now: Timestamp) -> CommandResult {
        let p: ConfigSet = match params(command) {
            Ok(p) => p,
            Err(BadParams(message)) => {
                return CommandResult::rejected(command, "bad_params", message, now);
            }
        };
        match settings::change(&self.store, &self.base_config, &p.settings).await {
            Ok(settings) => {
                self.exit_after_result(Exit::Restart);
                CommandResult::ok(
                    command,
                    json!({ "settings": settings, "restart": true }),
                    now,
                )
            }
            Err(ChangeError::Invalid(e)) => {
                CommandResult::error(command, "invalid", e.to_string(), now)
            }
            Err(ChangeError::Store(e)) => {
                CommandResult::error(command, "internal", format!("{e:#}"), now)
            }
        }
    }

    /// `firmware.update`: RAUC starts installing from the URL; the result says it started, and
    /// the outcome follows as a `system.update.installed` or `…failed` event.
    async fn firmware_update(&self, command: &Command, now: Timestamp) -> CommandResult {
        let p: FirmwareUpdate = match params(command) {
            Ok(p) => p,
            Err(BadParams(message)) => {
                return CommandResult::rejected(command, "bad_params", message, now);
            }
        };
        if let Err(e) = check_bundle_url(&p.url) {
            return CommandResult::rejected(command, "bad_params", e, now);
        }
        match self.updates.install(&p.url, &p.url).await {
            Ok(job) => CommandResult::ok(command, json!({ "job": job }), now),
            Err(e) => {
                let code = match e {
                    StartError::Off => "unsupported",
                    StartError::Busy => "busy",
                    StartError::Unreachable(_) => "unavailable",
                    StartError::Refused(_) => "refused",
                };
                CommandResult::error(command, code, e.to_string(), now)
            }
        }
    }

    /// The vision commands: the same changes as the local API (`crate::vision::edit`).
    async fn vision_command(&self, command: &Command) -> Result<Value, VisionCommandError> {
        let vision = &self.vision;
        Ok(match command.kind.as_str() {
            "camera.set" => {
                let p: CameraSet = params(command)?;
                vision.put_camera(&p.camera_id, &p.camera).await?;
                json!({ "camera_id": p.camera_id })
            }
            "camera.remove" => {
                let p: CameraRef = params(command)?;
                vision.delete_camera(&p.camera_id).await?;
                json!({ "camera_id": p.camera_id })
            }
            "skill.apply" => {
                let p: SkillApply = params(command)?;
                let skill_id = p
                    .skill_id
                    .unwrap_or_else(|| hex::encode(rand::random::<[u8; 6]>()));
                let json = serde_json::to_vec(&p.config).expect("JSON re-serialises");
                let config = vision.put_skill(&p.camera_id, &skill_id, &json).await?;
                json!({ "camera_id": p.camera_id, "skill_id": skill_id, "config": config })
            }
            "skill.remove" => {
                let p: SkillRef = params(command)?;
                vision.delete_skill(&p.camera_id, &p.skill_id).await?;
                json!({ "camera_id": p.camera_id, "skill_id": p.skill_id })
            }
            "face.add" => {
                let p: FaceAdd = params(command)?;
                let photo = p
                    .photo_base64
                    .as_deref()
                    .map(|text| BASE64.decode(text.trim()))
                    .transpose()
                    .map_err(|e| VisionCommandError::Params(format!("params.photo_base64: {e}")))?;
                let person = Person {
                    id: p.person_id.clone(),
                    name: p.name,
                    note: p.note,
                };
                vision
                    .edit_library(&p.library, true, |library| {
                        if let Some(threshold) = p.match_threshold {
                            library.match_threshold = threshold;
                        }
                        match library.people.iter_mut().find(|q| q.id == person.id) {
                            Some(existing) => *existing = person,
                            None => library.people.push(person),
                        }
                    })
                    .await?;
                let enrolled = match photo {
                    Some(photo) => Some(
                        vision
                            .enrol_photo(&p.library, &p.person_id, photo, p.model)
                            .await?,
                    ),
                    None => None,
                };
                json!({ "library": p.library, "person_id": p.person_id, "enrolled": enrolled })
            }
            "face.remove" => {
                let p: FaceRemove = params(command)?;
                match (&p.person_id, &p.photo_id) {
                    (_, Some(photo)) => vision.delete_photo(&p.library, photo).await?,
                    (Some(person), None) => vision.delete_person(&p.library, person).await?,
                    (None, None) => vision.delete_library(&p.library).await?,
                }
                json!({ "library": p.library, "person_id": p.person_id, "photo_id": p.photo_id })
            }
            "plate.add" => {
                let p: PlateAdd = params(command)?;
                let list = vision
                    .edit_plate_list(&p.list, |stored| {
                        let mut list = match (stored, p.kind) {
                            (Some(mut list), kind) => {
                                list.kind = kind.unwrap_or(list.kind);
                                list
                            }
                            (None, Some(kind)) => PlateList {
                                name: p.list.clone(),
                                kind,
                                entries: Vec::new(),
                            },
                            (None, None) => {
                                return Err(EditError::Invalid(format!(
                                    "params.kind: list {} is new; say allow, deny or watch",
                                    p.list
                                )));
                            }
                        };
                        for entry in p.entries {
                            let plate = normalise_plate(&entry.plate);
                            list.entries.retain(|e| normalise_plate(&e.plate) != plate);
                            list.entries.push(entry);
                        }
                        Ok(list)
                    })
                    .await?;
                json!({ "list": list.name, "entries": list.entries.len() })
            }
            "plate.remove" => {
                let p: PlateRemove = params(command)?;
                match p.plates {
                    None => {
                        vision.delete_plate_list(&p.list).await?;
                        json!({ "list": p.list, "removed": "list" })
                    }
                    Some(plates) => {
                        let gone: Vec<String> = plates.iter().map(|t| normalise_plate(t)).collect();
                        let list = vision
                            .edit_plate_list(&p.list, |stored| {
                                let mut list = stored.ok_or_else(|| {
                                    EditError::NotFound(format!("no plate list {}", p.list))
                                })?;
                                list.entries
                                    .retain(|e| !gone.contains(&normalise_plate(&e.plate)));
                                Ok(list)
                            })
                            .await?;
                        json!({ "list": list.name, "entries": list.entries.len() })
                    }
                }
            }
            other => unreachable!("{other} is routed here only for vision commands"),
        })
    }

    /// `device.catalog` (ask a device for its catalog) and `device.control` (a DeviceControl,
    /// named as in the local API); done once the device was asked.
    async fn device_command(&self, command: &Command, now: Timestamp) -> CommandResult {
        let params: DeviceParams = match params(command) {
            Ok(params) => params,
            Err(BadParams(message)) => {
                return CommandResult::rejected(command, "bad_params", message, now);
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
