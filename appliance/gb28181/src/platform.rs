//! The GB28181 platform as a state machine: feed it messages and clock ticks, it answers with what
//! to send and what to store. No sockets, no async, no wall clock of its own: the daemon drives it
//! (like quinn-proto), and tests drive it with a simulated clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use appliance_manscdp::assembly::MultiPartAssembler;
use appliance_manscdp::{self as manscdp, Body, CatalogEvent, Charset, Root};
use appliance_model::{EventSource, NewEvent, Severity, Timestamp};
use appliance_sip::message::{Message, RequestBuilder, ResponseBuilder, new_call_id, new_tag};
use serde_json::{Map, Value, json};

use crate::device::{Channel, Device, DeviceInfo, Peer, Transport};
use crate::mansrtsp::{MansrtspError, PlaybackControl};
use crate::registrar::{Decision, Registrar, RegistrarConfig};
use crate::sdp::SessionKind;
use crate::session::{
    EndReason, MediaEndpoint, Session, SessionError, SessionOutput, Sessions, StoredDialog, Target,
};
use crate::ssrc::{Ssrc, SsrcAllocator};
use crate::subscription::{self, Subscription, SubscriptionKind};
use crate::transaction::{ClientTransactions, Purpose, ServerTransactions};

/// How long a multi-message response (catalog, record list) may take to arrive completely.
const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pending multi-message assemblies kept at once.
const MAX_ASSEMBLIES: usize = 1024;
/// MediaStatus NotifyType: the playback or download reached its end.
const MEDIA_ENDED: u32 = 121;

#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// Our 20-digit platform id.
    pub platform_id: String,
    pub registrar: RegistrarConfig,
    pub heartbeat_interval_ms: i64,
    /// Keepalives missed in a row before a device is offline.
    pub heartbeat_missed: u32,
    /// `User-Agent` we send.
    pub user_agent: String,
    /// Subscriptions held on every online device (refreshed before they expire).
    pub subscriptions: Vec<SubscriptionKind>,
}

/// What the driver must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send {
        peer: Peer,
        bytes: Vec<u8>,
    },
    /// Store the device's new state and these events in one commit. When `before_reply` is
    /// set, the sends of the same input must wait until it is durable (a transition the device
    /// must not hear about before it is stored); otherwise it may complete in the background
    /// (a registration renewal: the device repeats it anyway).
    Commit {
        device: Option<Box<Device>>,
        events: Vec<NewEvent>,
        before_reply: bool,
    },
    /// A media session's device accepted: media should arrive with this SSRC.
    SessionEstablished {
        call_id: String,
        ssrc: Ssrc,
    },
    /// A media session ended (its SSRC is released): close its RTP endpoint.
    SessionEnded {
        call_id: String,
        reason: EndReason,
    },
    /// Store an established media session's dialog under its Call-ID (`Some`, again when its
    /// CSeq moves on), or delete it (`None`). What is stored comes back as
    /// [`Platform::new`]'s `restored_dialogs` after a restart, to be hung up. The sends of the
    /// same input need not wait for it: a crash in between costs at most that dialog's BYE
    /// after the restart (or a second BYE, which the device answers 481).
    PersistDialog {
        call_id: String,
        dialog: Option<Box<StoredDialog>>,
    },
    /// A device answered the request numbered `sn` (paged answers once assembled, or partial
    /// when they time out: `complete` false).
    Answer {
        device_id: String,
        sn: u32,
        body: Body,
        complete: bool,
    },
}

/// Counters the daemon exports as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams or frames that are not SIP.
    pub malformed_messages: u64,
    /// MESSAGE bodies that are not valid MANSCDP.
    pub malformed_bodies: u64,
    pub auth_failures: u64,
    /// Requests answered from the transaction cache.
    pub retransmissions_absorbed: u64,
    pub requests_timed_out: u64,
    /// Playback controls (INFO) a device answered with a failure.
    pub controls_refused: u64,
    /// 2xx answers to an INVITE whose session we no longer held, ACKed and hung up.
    pub stray_sessions_hung_up: u64,
}

pub struct Platform {
    config: PlatformConfig,
    registrar: Registrar,
    devices: HashMap<String, Device>,
    server: ServerTransactions,
    client: ClientTransactions,
    assembler: MultiPartAssembler,
    next_sn: u32,
    counters: Counters,
    /// Maps our millisecond clock onto `Instant` for the MANSCDP assembler.
    clock_origin: (Instant, i64),
    subscriptions: HashMap<(String, SubscriptionKind), Subscription>,
    /// Outstanding SUBSCRIBE requests by Via branch.
    subscribing: HashMap<String, (String, SubscriptionKind)>,
    sessions: Sessions,
}

/// Why a request to a device could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error("device {0} is offline")]
    Offline(String),
    /// An id or address that cannot go into a SIP request.
    #[error("cannot build the request: {0}")]
    Build(String),
    #[error("no media session {0}")]
    UnknownSession(String),
    /// A live stream, a download, or a playback not established yet.
    #[error("session {call_id} cannot be controlled: {reason}")]
    NotControllable {
        call_id: String,
        reason: &'static str,
    },
    #[error("invalid playback control: {0}")]
    InvalidControl(MansrtspError),
}

impl From<SessionError> for PlatformError {
    fn from(e: SessionError) -> PlatformError {
        match e {
            SessionError::NoSession(call_id) => PlatformError::UnknownSession(call_id),
            SessionError::NotControllable { call_id, reason } => {
                PlatformError::NotControllable { call_id, reason }
            }
            SessionError::Control(e) => PlatformError::InvalidControl(e),
            e @ (SessionError::Ssrc(_) | SessionError::Build(_)) => {
                PlatformError::Build(e.to_string())
            }
        }
    }
}

impl Platform {
    /// `restored` are the devices persisted before a restart: they keep their registration and
    /// online state, and get a full heartbeat window from now before they can be called offline.
    /// `restored_dialogs` are the media sessions' dialogs persisted before it
    /// ([`Output::PersistDialog`]): their sessions died with the process, so the first
    /// [`Platform::on_tick`] sends each a BYE (retransmitted over UDP) and deletes it with
    /// `PersistDialog { dialog: None }`.
    pub fn new(
        config: PlatformConfig,
        secret: [u8; 32],
        restored: Vec<Device>,
        restored_dialogs: Vec<StoredDialog>,
        now_ms: i64,
    ) -> Platform {
        let devices = restored
            .into_iter()
            .map(|mut d| {
                d.last_seen_ms = d.last_seen_ms.max(now_ms);
                (d.id.clone(), d)
            })
            .collect();
        Platform {
            registrar: Registrar::new(config.registrar.clone(), secret),
            devices,
            server: ServerTransactions::default(),
            client: ClientTransactions::default(),
            assembler: MultiPartAssembler::new(ASSEMBLY_TIMEOUT, MAX_ASSEMBLIES),
            next_sn: 1,
            counters: Counters::default(),
            clock_origin: (Instant::now(), now_ms),
            subscriptions: HashMap::new(),
            subscribing: HashMap::new(),
            sessions: Sessions::new(
                SsrcAllocator::new(&config.registrar.realm)
                    .expect("the configured SIP domain has 10 digits"),
                restored_dialogs,
            ),
            config,
        }
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.get(id)
    }

    /// The platform's counters, with those of its media sessions' requests folded in.
    pub fn counters(&self) -> Counters {
        let sessions = self.sessions.counters();
        Counters {
            requests_timed_out: self.counters.requests_timed_out + sessions.requests_timed_out,
            controls_refused: sessions.controls_refused,
            stray_sessions_hung_up: sessions.stray_sessions_hung_up,
            ..self.counters.clone()
        }
    }

    fn instant(&self, now_ms: i64) -> Instant {
        let (origin, origin_ms) = self.clock_origin;
        origin + Duration::from_millis(u64::try_from(now_ms - origin_ms).unwrap_or(0))
    }

    /// One SIP message (a UDP datagram or a framed TCP message) from `from`.
    pub fn on_message(&mut self, bytes: &[u8], from: Peer, now_ms: i64) -> Vec<Output> {
        let message = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                // Without parseable headers there is nobody to answer: drop it, count it.
                self.counters.malformed_messages += 1;
                tracing::debug!(peer = %from.addr, error = %e, "dropping a malformed SIP message");
                return Vec::new();
            }
        };
        if !message.is_request() {
            return self.on_response(&message, from, now_ms);
        }
        let method = message.method().unwrap_or_default().to_string();
        if method == "ACK" {
            return Vec::new();
        }
        let Some(branch) = message.via_branch() else {
            self.counters.malformed_messages += 1;
            return reply(Message::response(&message, 400, "Missing Via branch"))
                .map(|response| send(from, response))
                .into_iter()
                .collect();
        };
        let key = (branch, method.clone());
        if let Some(cached) = self.server.cached(&key) {
            self.counters.retransmissions_absorbed += 1;
            return vec![Output::Send {
                peer: from,
                bytes: cached.to_vec(),
            }];
        }
        let mut outputs = Vec::new();
        let response = match method.as_str() {
            "REGISTER" => self.on_register(&message, from, now_ms, &mut outputs),
            "MESSAGE" | "NOTIFY" => self.on_manscdp(&message, from, now_ms, &mut outputs),
            "OPTIONS" => Message::response(&message, 200, "OK"),
            "BYE" => {
                let ended = self.sessions.on_bye(message.call_id().unwrap_or_default());
                if ended.is_empty() {
                    Message::response(&message, 481, "Call/Transaction Does Not Exist")
                } else {
                    outputs.extend(from_sessions(ended));
                    Message::response(&message, 200, "OK")
                }
            }
            _ => Message::response(&message, 405, "Method Not Allowed")
                .header("Allow", "REGISTER, MESSAGE, NOTIFY, OPTIONS, ACK, BYE"),
        };
        if let Some(response) = reply(response) {
            // A retransmitted unauthenticated REGISTER may as well get a new challenge; caching
            // only answers that must not be recomputed keeps the bounded cache for those.
            if !response.starts_with(b"SIP/2.0 401 ") {
                self.server.remember(key, response.clone(), now_ms);
            }
            outputs.insert(0, send(from, response));
        }
        outputs
    }

    fn on_response(&mut self, response: &Message, from: Peer, now_ms: i64) -> Vec<Output> {
        let (Some(branch), Some(status)) = (response.via_branch(), response.status()) else {
            self.counters.malformed_messages += 1;
            return Vec::new();
        };
        // Only media sessions send these methods.
        if response.cseq().is_some_and(|(_, method)| {
            matches!(method.as_str(), "INVITE" | "CANCEL" | "BYE" | "INFO")
        }) {
            // A stray 200 is hung up only when it comes from where a device speaks from: a
            // forged datagram must not make us send (and retransmit) requests to anyone else.
            let device = self.devices.values().any(|d| d.peer == from);
            return from_sessions(self.sessions.on_response(
                response,
                device.then_some(from),
                now_ms,
            ));
        }
        if status >= 200
            && let Some(key) = self.subscribing.remove(&branch)
            && let Some(subscription) = self.subscriptions.get_mut(&key)
        {
            if status < 300 {
                let expires = match response.expires() {
                    Some(Ok(expires)) => expires,
                    _ => subscription::EXPIRES_SECS,
                };
                subscription.accepted(response.to_tag(), expires, now_ms);
            } else {
                subscription.failed(now_ms);
            }
        }
        if let Some(purpose) = self.client.on_response(&branch, status)
            && status >= 300
        {
            tracing::warn!(
                device = purpose.device_id,
                what = purpose.what,
                status,
                "device refused a request"
            );
        }
        Vec::new()
    }

    /// Asks a device's channel for a live stream, a playback or a download to `endpoint`.
    /// Returns the Call-ID that names the session.
    pub fn start_session(
        &mut self,
        device_id: &str,
        channel_id: &str,
        kind: SessionKind,
        endpoint: MediaEndpoint,
        now_ms: i64,
    ) -> Result<(String, Vec<Output>), PlatformError> {
        let device = self.online_device(device_id)?;
        let target = Target {
            device_id: device_id.to_string(),
            channel_id: channel_id.to_string(),
            peer: device.peer,
            platform_host: device.platform_host.clone(),
            platform_id: self.config.platform_id.clone(),
            domain: self.config.registrar.realm.clone(),
        };
        let (call_id, outputs) = self.sessions.start(target, kind, endpoint, now_ms)?;
        Ok((call_id, from_sessions(outputs)))
    }

    /// Ends a session from our side: BYE, or CANCEL while the device has not answered finally
    /// (the session then ends, and its SSRC is released, with the device's final answer or the
    /// timeout).
    pub fn stop_session(&mut self, call_id: &str, now_ms: i64) -> Vec<Output> {
        from_sessions(self.sessions.stop(call_id, now_ms))
    }

    /// The media server lost the session's stream: hang up as [`Platform::stop_session`] does.
    pub fn session_stream_gone(&mut self, call_id: &str, now_ms: i64) -> Vec<Output> {
        from_sessions(self.sessions.stream_gone(call_id, now_ms))
    }

    /// Pauses, resumes, seeks or changes the speed of an established playback (INFO with a
    /// MANSRTSP body, retransmitted over UDP until answered). A refusal by the device is logged
    /// and counted in [`Counters::controls_refused`]; the session goes on.
    pub fn control_session(
        &mut self,
        call_id: &str,
        control: PlaybackControl,
        now_ms: i64,
    ) -> Result<Vec<Output>, PlatformError> {
        Ok(from_sessions(
            self.sessions.control(call_id, control, now_ms)?,
        ))
    }

    /// The device, if it is registered and online: requests can only go to such a device.
    fn online_device(&self, device_id: &str) -> Result<&Device, PlatformError> {
        let device = self
            .devices
            .get(device_id)
            .ok_or_else(|| PlatformError::UnknownDevice(device_id.to_string()))?;
        if !device.online {
            return Err(PlatformError::Offline(device_id.to_string()));
        }
        Ok(device)
    }

    pub fn session(&self, call_id: &str) -> Option<&Session> {
        self.sessions.get(call_id)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter()
    }

    /// SSRCs the allocator holds: one per session, or a leak.
    pub fn ssrcs_in_use(&self) -> usize {
        self.sessions.ssrcs_in_use()
    }

    fn on_register(
        &mut self,
        request: &Message,
        from: Peer,
        now_ms: i64,
        outputs: &mut Vec<Output>,
    ) -> ResponseBuilder {
        match self.registrar.decide(request, from.addr.ip(), now_ms) {
            Decision::Challenge(value) => {
                Message::response(request, 401, "Unauthorized").header("WWW-Authenticate", &value)
            }
            Decision::BadRequest(reason) => Message::response(request, 400, &reason),
            Decision::Forbidden(reason) => {
                self.counters.auth_failures += 1;
                tracing::info!(peer = %from.addr, device = request.from_user().unwrap_or_default(), reason, "registration refused");
                Message::response(request, 403, "Forbidden")
            }
            Decision::TooBrief { min_expires } => {
                Message::response(request, 423, "Interval Too Brief")
                    .header("Min-Expires", &min_expires.to_string())
            }
            Decision::Unregistered { device_id } => {
                self.subscriptions.retain(|(id, _), _| *id != device_id);
                if let Some(device) = self.devices.get_mut(&device_id) {
                    device.expires_at_ms = now_ms;
                    let was_online = std::mem::replace(&mut device.online, false);
                    let events = if was_online {
                        vec![device_event(
                            &device_id,
                            "device.offline",
                            Severity::Minor,
                            json!({"reason": "unregistered"}),
                        )]
                    } else {
                        vec![]
                    };
                    outputs.push(commit(device, events));
                }
                registered_response(request, 0)
            }
            Decision::Registered { device_id, expires } => {
                let platform_host =
                    request_uri_host(request).unwrap_or_else(|| from.addr.to_string());
                let existing = self.devices.get(&device_id);
                let was_online = existing.is_some_and(|d| d.online && d.expires_at_ms > now_ms);
                let device = self
                    .devices
                    .entry(device_id.clone())
                    .or_insert_with(|| Device {
                        id: device_id.clone(),
                        peer: from,
                        platform_host: platform_host.clone(),
                        online: false,
                        registered_at_ms: now_ms,
                        expires_at_ms: now_ms,
                        last_seen_ms: now_ms,
                        gb2312: true,
                        info: DeviceInfo::default(),
                        channels: Vec::new(),
                        catalog_updated_ms: None,
                        position: None,
                    });
                device.peer = from;
                device.platform_host = platform_host;
                device.online = true;
                if !was_online {
                    device.registered_at_ms = now_ms;
                }
                device.expires_at_ms = now_ms + i64::from(expires) * 1000;
                device.last_seen_ms = now_ms;
                let events = if was_online {
                    vec![]
                } else {
                    vec![device_event(
                        &device_id,
                        "device.online",
                        Severity::Info,
                        json!({"reason": "registered", "transport": from.transport, "address": from.addr.to_string()}),
                    )]
                };
                outputs.push(commit(device, events));
                // A new registration (not a renewal): ask what the device is and what it has.
                if !was_online {
                    for body in [Body::DeviceInfoQuery, Body::CatalogQuery] {
                        if let Ok((_, sent)) = self.request(&device_id, &device_id, body, now_ms) {
                            outputs.extend(sent);
                        }
                    }
                }
                registered_response(request, expires)
            }
        }
    }

    fn on_manscdp(
        &mut self,
        request: &Message,
        from: Peer,
        now_ms: i64,
        outputs: &mut Vec<Output>,
    ) -> ResponseBuilder {
        let (body, charset) = match manscdp::decode(request.body()) {
            Ok(decoded) => decoded,
            Err(e) => {
                self.counters.malformed_bodies += 1;
                return Message::response(request, 400, &format!("Bad MANSCDP body: {e}"));
            }
        };
        let device_id = request.from_user().unwrap_or_default();
        let registered = self
            .devices
            .get(&device_id)
            .is_some_and(|d| d.expires_at_ms > now_ms);
        if !registered {
            // A device we do not know, or whose registration expired: refusing makes it register.
            return Message::response(request, 403, "Not Registered");
        }
        let device = self.devices.get_mut(&device_id).expect("registered device");
        device.peer = from;
        device.last_seen_ms = now_ms;
        device.gb2312 = charset == Charset::Gb2312;
        let mut events = Vec::new();
        let mut changed = false;
        if !device.online {
            device.online = true;
            changed = true;
            events.push(device_event(
                &device_id,
                "device.online",
                Severity::Info,
                json!({"reason": "keepalive"}),
            ));
        }
        match body.body {
            Body::Keepalive { .. } => {}
            Body::Alarm(alarm) => {
                let severity = match alarm.priority {
                    Some(1) => Severity::Critical,
                    Some(2) => Severity::Major,
                    Some(3) => Severity::Minor,
                    _ => Severity::Info,
                };
                let mut attributes = Map::new();
                attributes.insert("priority".into(), json!(alarm.priority));
                attributes.insert("method".into(), json!(alarm.method));
                attributes.insert("alarm_type".into(), json!(alarm.alarm_type));
                attributes.insert("device_time".into(), json!(alarm.time));
                attributes.insert("description".into(), json!(alarm.description));
                if let (Some(lon), Some(lat)) = (alarm.longitude, alarm.latitude) {
                    attributes.insert("position".into(), json!([lon, lat]));
                }
                let mut event =
                    device_event(&device_id, "alarm", severity, Value::Object(attributes));
                if body.device_id != device_id {
                    event.channel_id = Some(body.device_id.clone());
                }
                events.push(event);
            }
            Body::MobilePosition {
                longitude,
                latitude,
                ..
            } => {
                changed |= device.position != Some([longitude, latitude]);
                device.position = Some([longitude, latitude]);
            }
            Body::DeviceInfoResponse {
                ref device_name,
                ref manufacturer,
                ref model,
                ref firmware,
                channel,
                ..
            } => {
                device.info = DeviceInfo {
                    name: device_name.clone(),
                    manufacturer: manufacturer.clone(),
                    model: model.clone(),
                    firmware: firmware.clone(),
                    channel_count: channel,
                };
                changed = true;
                outputs.push(Output::Answer {
                    device_id: device_id.clone(),
                    sn: body.sn,
                    body: body.body.clone(),
                    complete: true,
                });
            }
            Body::CatalogNotify { items, .. } => {
                apply_catalog_changes(device, &items);
                changed = true;
            }
            Body::MediaStatus {
                notify_type: MEDIA_ENDED,
            } => {
                let ended = self.sessions.media_ended(
                    request.call_id(),
                    &device_id,
                    &body.device_id,
                    now_ms,
                );
                if ended.is_empty() {
                    tracing::debug!(
                        device = device_id,
                        channel = body.device_id,
                        "end of media for no session of ours"
                    );
                }
                outputs.extend(from_sessions(ended));
            }
            Body::CatalogResponse { .. }
            | Body::RecordInfoResponse { .. }
            | Body::PresetQueryResponse { .. } => {
                let now = self.instant(now_ms);
                if let Some(assembled) = self.assembler.add(body, now) {
                    let device = self.devices.get_mut(&device_id).expect("registered device");
                    changed |= apply_catalog(device, &assembled.message.body, now_ms);
                    outputs.push(answer(&device_id, assembled));
                }
            }
            other if body.root == Root::Response => outputs.push(Output::Answer {
                device_id: device_id.clone(),
                sn: body.sn,
                body: other,
                complete: true,
            }),
            _ => {}
        }
        let device = self.devices.get_mut(&device_id).expect("registered device");
        if changed || !events.is_empty() {
            outputs.push(commit(device, events));
        }
        Message::response(request, 200, "OK")
    }

    /// Sends a MANSCDP query or control to a device, addressed in the body to `target` (the
    /// device itself or one of its channels). Returns the SN its answer will carry.
    pub fn request(
        &mut self,
        device_id: &str,
        target: &str,
        body: Body,
        now_ms: i64,
    ) -> Result<(u32, Vec<Output>), PlatformError> {
        let sn = self.take_sn();
        let root = match body {
            Body::DeviceControl(_) | Body::DeviceConfigBasic(_) => Root::Control,
            _ => Root::Query,
        };
        let what = body.cmd_type().to_string();
        let dialog = Dialog {
            call_id: None,
            from_tag: new_tag(),
            to_tag: None,
            cseq: sn,
        };
        let (_, outputs) = self.send_request(
            device_id,
            "MESSAGE",
            &[],
            manscdp::Message::new(root, sn, target, body),
            dialog,
            what,
            now_ms,
        )?;
        Ok((sn, outputs))
    }

    fn take_sn(&mut self) -> u32 {
        let sn = self.next_sn;
        self.next_sn = self.next_sn.wrapping_add(1).max(1);
        sn
    }

    /// Builds, sends and tracks (retransmissions) one request carrying a MANSCDP body; returns
    /// its Via branch.
    #[allow(clippy::too_many_arguments)]
    fn send_request(
        &mut self,
        device_id: &str,
        method: &str,
        headers: &[(&str, String)],
        body: manscdp::Message,
        dialog: Dialog,
        what: String,
        now_ms: i64,
    ) -> Result<(String, Vec<Output>), PlatformError> {
        let device = self.online_device(device_id)?;
        let charset = if device.gb2312 {
            Charset::Gb2312
        } else {
            Charset::Utf8
        };
        let xml = manscdp::encode(&body, charset);
        let domain = &self.config.registrar.realm;
        let transport = match device.peer.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        let call_id = dialog
            .call_id
            .unwrap_or_else(|| new_call_id(&device.platform_host));
        let mut builder =
            RequestBuilder::new(method, &format!("sip:{device_id}@{}", device.peer.addr))
                .via(transport, &device.platform_host)
                .from(
                    &format!("sip:{}@{domain}", self.config.platform_id),
                    &dialog.from_tag,
                )
                .to(
                    &format!("sip:{device_id}@{domain}"),
                    dialog.to_tag.as_deref(),
                )
                .call_id(&call_id)
                .cseq(dialog.cseq)
                .header("User-Agent", &self.config.user_agent);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let message = builder
            .body("Application/MANSCDP+xml", xml)
            .build()
            .map_err(|e| PlatformError::Build(e.to_string()))?;
        let bytes = message.to_bytes();
        let branch = message.via_branch().unwrap_or_default();
        let purpose = Purpose {
            device_id: device_id.to_string(),
            what,
        };
        let peer = device.peer;
        self.client
            .start(branch.clone(), peer, bytes.clone(), purpose, now_ms);
        Ok((branch, vec![Output::Send { peer, bytes }]))
    }

    /// Sends the SUBSCRIBE requests that are due: new ones for devices that came online, and
    /// refreshes inside their dialogs before expiry.
    fn subscribe_due(&mut self, now_ms: i64) -> Vec<Output> {
        let mut outputs = Vec::new();
        let online: Vec<String> = self
            .devices
            .values()
            .filter(|d| d.online)
            .map(|d| d.id.clone())
            .collect();
        for device_id in online {
            for kind in self.config.subscriptions.clone() {
                let key = (device_id.clone(), kind);
                let subscription = self
                    .subscriptions
                    .entry(key.clone())
                    .or_insert_with(|| Subscription::new(new_call_id(&device_id), new_tag()));
                if !subscription.due(now_ms) {
                    continue;
                }
                if subscription.to_tag.is_none() {
                    // A new dialog each time one has to be set up afresh.
                    subscription.call_id = new_call_id(&device_id);
                }
                let dialog = Dialog {
                    call_id: Some(subscription.call_id.clone()),
                    from_tag: subscription.from_tag.clone(),
                    to_tag: subscription.to_tag.clone(),
                    cseq: subscription.sending(),
                };
                let sn = self.take_sn();
                let headers = [
                    ("Event", kind.event().to_string()),
                    ("Expires", subscription::EXPIRES_SECS.to_string()),
                    (
                        "Contact",
                        format!(
                            "<sip:{}@{}>",
                            self.config.platform_id, self.devices[&device_id].platform_host
                        ),
                    ),
                ];
                let body = manscdp::Message::new(Root::Query, sn, device_id.clone(), kind.query());
                let what = format!("SUBSCRIBE {}", kind.name());
                match self.send_request(
                    &device_id,
                    "SUBSCRIBE",
                    &headers,
                    body,
                    dialog,
                    what,
                    now_ms,
                ) {
                    Ok((branch, sent)) => {
                        self.subscribing.insert(branch, key);
                        outputs.extend(sent);
                    }
                    Err(e) => {
                        tracing::warn!(device = device_id, error = %e, "cannot subscribe");
                        if let Some(subscription) = self.subscriptions.get_mut(&key) {
                            subscription.failed(now_ms);
                        }
                    }
                }
            }
        }
        outputs
    }

    /// Clock tick (about once a second): offline detection, retransmissions, timeouts.
    pub fn on_tick(&mut self, now_ms: i64) -> Vec<Output> {
        let mut outputs = Vec::new();
        let silence_limit =
            self.config.heartbeat_interval_ms * i64::from(self.config.heartbeat_missed);
        for device in self.devices.values_mut() {
            if !device.online {
                continue;
            }
            let reason = if now_ms >= device.expires_at_ms {
                "registration expired"
            } else if now_ms - device.last_seen_ms > silence_limit {
                "keepalives missed"
            } else {
                continue;
            };
            device.online = false;
            let event = device_event(
                &device.id,
                "device.offline",
                Severity::Minor,
                json!({"reason": reason}),
            );
            outputs.push(commit(device, vec![event]));
        }
        let offline: Vec<String> = self
            .devices
            .values()
            .filter(|d| !d.online)
            .map(|d| d.id.clone())
            .collect();
        self.subscriptions
            .retain(|(id, _), _| !offline.contains(id));
        let (resend, timed_out) = self.client.poll(now_ms);
        outputs.extend(
            resend
                .into_iter()
                .map(|(peer, bytes)| Output::Send { peer, bytes }),
        );
        for purpose in timed_out {
            self.counters.requests_timed_out += 1;
            let unanswered = self
                .config
                .subscriptions
                .iter()
                .copied()
                .find(|kind| purpose.what == format!("SUBSCRIBE {}", kind.name()));
            if let Some(kind) = unanswered
                && let Some(subscription) = self
                    .subscriptions
                    .get_mut(&(purpose.device_id.clone(), kind))
            {
                subscription.failed(now_ms);
            }
            tracing::warn!(
                device = purpose.device_id,
                what = purpose.what,
                "device did not answer"
            );
        }
        let now = self.instant(now_ms);
        for partial in self.assembler.expire(now) {
            if let Some(device) = self.devices.get_mut(&partial.message.device_id) {
                tracing::warn!(
                    device = device.id,
                    pages = partial.pages,
                    "answer incomplete after the timeout; keeping what arrived"
                );
                if apply_catalog(device, &partial.message.body, now_ms) {
                    outputs.push(commit(device, vec![]));
                }
                let device_id = device.id.clone();
                outputs.push(answer(&device_id, partial));
            }
        }
        self.server.expire(now_ms);
        outputs.extend(from_sessions(self.sessions.on_tick(now_ms)));
        outputs.extend(self.subscribe_due(now_ms));
        outputs
    }
}

impl From<SessionOutput> for Output {
    fn from(output: SessionOutput) -> Output {
        match output {
            SessionOutput::Send { peer, bytes } => Output::Send { peer, bytes },
            SessionOutput::Established { call_id, ssrc } => {
                Output::SessionEstablished { call_id, ssrc }
            }
            SessionOutput::Ended { call_id, reason } => Output::SessionEnded { call_id, reason },
            SessionOutput::PersistDialog { call_id, dialog } => {
                Output::PersistDialog { call_id, dialog }
            }
        }
    }
}

fn from_sessions(outputs: Vec<SessionOutput>) -> Vec<Output> {
    outputs.into_iter().map(Output::from).collect()
}

/// The dialog a request belongs to; `call_id: None` starts a new one.
struct Dialog {
    call_id: Option<String>,
    from_tag: String,
    to_tag: Option<String>,
    cseq: u32,
}

fn answer(device_id: &str, assembled: manscdp::assembly::Assembled) -> Output {
    Output::Answer {
        device_id: device_id.to_string(),
        sn: assembled.message.sn,
        body: assembled.message.body,
        complete: assembled.complete,
    }
}

/// The bytes of a response; a response that cannot be built (a reason phrase with line breaks from
/// a hostile body, say) is logged and not sent.
fn reply(builder: ResponseBuilder) -> Option<Vec<u8>> {
    match builder.build() {
        Ok(message) => Some(message.to_bytes()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot build a response");
            None
        }
    }
}

fn send(peer: Peer, bytes: Vec<u8>) -> Output {
    Output::Send { peer, bytes }
}

/// A commit that the replies wait for whenever it records events.
fn commit(device: &Device, events: Vec<NewEvent>) -> Output {
    Output::Commit {
        device: Some(Box::new(device.clone())),
        before_reply: !events.is_empty(),
        events,
    }
}

fn device_event(device_id: &str, kind: &str, severity: Severity, attributes: Value) -> NewEvent {
    NewEvent {
        camera_id: device_id.to_string(),
        channel_id: None,
        source: EventSource::Device,
        kind: kind.to_string(),
        severity,
        start_time: Some(Timestamp::now()),
        end_time: None,
        attributes: match attributes {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        media: Vec::new(),
    }
}

fn channel(item: &manscdp::CatalogItem) -> Channel {
    Channel {
        id: item.device_id.clone(),
        name: item.name.clone(),
        manufacturer: item.manufacturer.clone(),
        model: item.model.clone(),
        parent_id: item.parent_id.clone(),
        online: item.online.unwrap_or(false),
        longitude: item.longitude,
        latitude: item.latitude,
        ptz_type: item.ptz_type.map(u32::from),
    }
}

/// Replaces the channel list with an assembled catalog answer; false if `body` is not one.
fn apply_catalog(device: &mut Device, body: &Body, now_ms: i64) -> bool {
    let Body::CatalogResponse { items, .. } = body else {
        return false;
    };
    device.channels = items.iter().map(channel).collect();
    device.catalog_updated_ms = Some(now_ms);
    true
}

/// Applies a catalog change notification (ADD, DEL, UPDATE, ON, OFF, …) item by item.
fn apply_catalog_changes(device: &mut Device, items: &[manscdp::CatalogItem]) {
    for item in items {
        let existing = device.channels.iter().position(|c| c.id == item.device_id);
        match (item.event, existing) {
            (Some(CatalogEvent::Del), Some(at)) => {
                device.channels.remove(at);
            }
            (Some(CatalogEvent::On | CatalogEvent::Off), Some(at)) => {
                device.channels[at].online = item.event == Some(CatalogEvent::On);
            }
            (Some(CatalogEvent::Vlost | CatalogEvent::Defect), Some(at)) => {
                device.channels[at].online = false;
            }
            (
                Some(
                    CatalogEvent::Del
                    | CatalogEvent::On
                    | CatalogEvent::Off
                    | CatalogEvent::Vlost
                    | CatalogEvent::Defect,
                ),
                None,
            ) => {}
            (_, Some(at)) => device.channels[at] = channel(item),
            (_, None) => device.channels.push(channel(item)),
        }
    }
}

/// `host:port` of a request URI such as `sip:34020000002000000001@192.168.1.10:5060`.
fn request_uri_host(request: &Message) -> Option<String> {
    let uri = request.request_uri()?;
    let rest = uri.split_once(':')?.1;
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split(';').next()?;
    (!host.is_empty()).then(|| host.to_string())
}

/// 200 to a REGISTER: echo Contact, grant `expires`, and the GB `Date` devices set their clocks from.
fn registered_response(request: &Message, expires: u32) -> ResponseBuilder {
    let mut response = Message::response(request, 200, "OK")
        .header("Expires", &expires.to_string())
        .header("Date", &gb_date(Timestamp::now()));
    if let Some(contact) = request.header("Contact") {
        response = response.header("Contact", contact);
    }
    response
}

/// `YYYY-MM-DDThh:mm:ss.SSS`, the Date format GB28181 devices parse (UTC: the box keeps UTC).
fn gb_date(now: Timestamp) -> String {
    let text = now.to_string();
    text.trim_end_matches('Z').to_string()
}
