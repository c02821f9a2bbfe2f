//! Drives the GB28181 platform state machine (`appliance-gb28181`) with real sockets: SIP over
//! UDP and TCP on one address, a one-second clock, the store for device state and events, and
//! the media endpoints (`media.rs`) that receive the streams sessions ask for.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use appliance_config::{MediaConfig, SipConfig};
use appliance_gb28181::device::{Device, Peer, Transport};
use appliance_gb28181::mansrtsp::PlaybackControl;
use appliance_gb28181::platform::{Counters, Output, Platform, PlatformConfig, PlatformError};
use appliance_gb28181::registrar::RegistrarConfig;
use appliance_gb28181::sdp::{MediaTransport, SessionKind};
use appliance_gb28181::session::{EndReason, MediaEndpoint, Session, StoredDialog};
use appliance_gb28181::subscription::SubscriptionKind;
use appliance_manscdp::Body;
use appliance_media::receive::ReceiveStats;
use appliance_model::Timestamp;
use appliance_sip::digest::Algorithm;
use appliance_sip::framing::{Frame, StreamFramer};
use appliance_store::{EventStore, StateChange};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::media::{MediaEndpoints, MediaError};

/// Store namespace of the registered devices (JSON per device id).
pub const DEVICES_NAMESPACE: &str = "gb28181.devices";
/// Store namespace of the established sessions' dialogs (JSON per Call-ID): what a restarted
/// daemon needs to hang up the sessions a crash cut off.
pub const DIALOGS_NAMESPACE: &str = "gb28181.sessions";
/// Largest SIP message accepted, over UDP or TCP.
const MAX_MESSAGE: usize = 64 * 1024;
/// Messages queued towards one TCP connection before it is considered stuck and dropped.
const TCP_QUEUE: usize = 256;
/// UDP messages whose commits may be in flight at once. The receive loop hands commits to tasks
/// so that concurrent registrations share the store's group commit instead of waiting for one
/// flush each; the bound keeps a flood from spawning without limit.
const MAX_UDP_COMMITS_IN_FLIGHT: usize = 1024;
/// How long the API waits for a session's outcome. The platform ends an unanswered INVITE after
/// 32 s (timer B), so this is only a backstop.
const SESSION_START_WAIT: Duration = Duration::from_secs(40);

#[derive(Default)]
struct SipMetrics {
    /// Platform counters by name, mirrored on each tick.
    counters: Family<Vec<(String, String)>, Counter>,
    devices_online: Gauge,
    devices_known: Gauge,
    ssrcs_in_use: Gauge,
}

/// A handle the HTTP API uses to read devices and send requests.
#[derive(Clone)]
pub struct SipHandle {
    platform: Arc<Mutex<Platform>>,
    executor: Arc<Executor>,
    pub local_addr: SocketAddr,
}

/// A media session as the API shows it: the platform's view and what has arrived.
pub struct SessionSnapshot {
    pub session: Session,
    /// The endpoint's port and its counts (absent in the instant between start and attach).
    pub received: Option<(u16, ReceiveStats)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("cannot tell which local address reaches the device; set media.rtp_ip")]
    NoRoute,
    #[error("the device refused the session with SIP status {0}")]
    Refused(u16),
    #[error("the device did not answer the INVITE in time")]
    Timeout,
    #[error("the session ended before it was established ({0:?})")]
    Ended(EndReason),
}

impl SipHandle {
    pub fn devices(&self) -> Vec<Device> {
        let mut devices: Vec<Device> = lock(&self.platform).devices().cloned().collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        devices
    }

    pub fn device(&self, id: &str) -> Option<Device> {
        lock(&self.platform).device(id).cloned()
    }

    /// Sends a MANSCDP query or control to a device (addressed to `target`: the device or one
    /// of its channels) without waiting for an answer; answers update the device state.
    pub async fn request(
        &self,
        device_id: &str,
        target: &str,
        body: Body,
    ) -> Result<(), PlatformError> {
        let (_, outputs) = lock(&self.platform).request(device_id, target, body, now_ms())?;
        self.executor.run(outputs).await;
        Ok(())
    }

    /// Sends a MANSCDP query and waits up to `timeout` for the answer (assembled when it comes in
    /// several messages; `complete` false when only part of it arrived in time).
    pub async fn query(
        &self,
        device_id: &str,
        target: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<(Body, bool), QueryError> {
        let (tx, rx) = oneshot::channel();
        let (sn, outputs) = {
            let mut platform = lock(&self.platform);
            let (sn, outputs) = platform.request(device_id, target, body, now_ms())?;
            // Registered before anything is sent: the answer may come back at once.
            lock(&self.executor.waiters).insert((device_id.to_string(), sn), tx);
            (sn, outputs)
        };
        self.executor.run(outputs).await;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                lock(&self.executor.waiters).remove(&(device_id.to_string(), sn));
                Err(QueryError::Timeout(timeout))
            }
        }
    }

    /// Opens an RTP endpoint, INVITEs the device's channel to it and waits until the device
    /// accepted (returns the Call-ID) or the session ended.
    pub async fn start_session(
        &self,
        device_id: &str,
        channel_id: &str,
        kind: SessionKind,
        transport: MediaTransport,
    ) -> Result<String, StartError> {
        let device_addr = lock(&self.platform)
            .device(device_id)
            .map(|d| d.peer.addr)
            .ok_or_else(|| PlatformError::UnknownDevice(device_id.to_string()))?;
        let reached = local_ip_towards(device_addr).ok_or(StartError::NoRoute)?;
        let opened = self.executor.media.open(transport)?;
        let endpoint = MediaEndpoint {
            ip: self.executor.media.offer_ip(reached),
            port: opened.port,
            transport,
        };
        let (tx, rx) = oneshot::channel();
        let (call_id, outputs) = {
            let mut platform = lock(&self.platform);
            let (call_id, outputs) =
                platform.start_session(device_id, channel_id, kind, endpoint, now_ms())?;
            let ssrc = platform
                .session(&call_id)
                .map(|s| s.ssrc.value())
                .expect("a session just started");
            // Receiving and waiting are set up before the INVITE leaves: the answer may be quick.
            self.executor
                .media
                .attach(&call_id, opened, ssrc, device_addr.ip());
            lock(&self.executor.starting).insert(call_id.clone(), tx);
            (call_id, outputs)
        };
        // Should the caller go away while the device rings (an HTTP client that timed out), the
        // session it asked for must not live on unwatched: hang it up.
        let mut abandoned = HangUpOnDrop {
            sip: Some(self.clone()),
            call_id: call_id.clone(),
        };
        self.executor.run(outputs).await;
        let outcome = tokio::time::timeout(SESSION_START_WAIT, rx).await;
        abandoned.sip = None;
        match outcome {
            Ok(Ok(Ok(()))) => Ok(call_id),
            Ok(Ok(Err(EndReason::Refused(status)))) => Err(StartError::Refused(status)),
            Ok(Ok(Err(EndReason::Timeout))) => Err(StartError::Timeout),
            Ok(Ok(Err(reason))) => Err(StartError::Ended(reason)),
            _ => {
                lock(&self.executor.starting).remove(&call_id);
                self.stop_session(&call_id).await;
                Err(StartError::Timeout)
            }
        }
    }

    /// Hangs a session up (BYE, or CANCEL while it is being set up); false if there is none.
    pub async fn stop_session(&self, call_id: &str) -> bool {
        let outputs = {
            let mut platform = lock(&self.platform);
            if platform.session(call_id).is_none() {
                return false;
            }
            platform.stop_session(call_id, now_ms())
        };
        self.executor.run(outputs).await;
        true
    }

    /// Pause, resume, seek or change the speed of a playback (INFO with MANSRTSP).
    pub async fn control_session(
        &self,
        call_id: &str,
        control: PlaybackControl,
    ) -> Result<(), PlatformError> {
        let outputs = lock(&self.platform).control_session(call_id, control, now_ms())?;
        self.executor.run(outputs).await;
        Ok(())
    }

    /// On shutdown, before the sockets close: BYE every session, so devices stop sending to
    /// ports about to close, and give the BYEs a moment to leave (over TCP they go through the
    /// connection's writer task).
    pub async fn hang_up_all(&self) {
        let outputs: Vec<Output> = {
            let mut platform = lock(&self.platform);
            let call_ids: Vec<String> = platform
                .sessions()
                .map(|s| s.call_id().to_string())
                .collect();
            call_ids
                .iter()
                .flat_map(|call_id| platform.stop_session(call_id, now_ms()))
                .collect()
        };
        if outputs.is_empty() {
            return;
        }
        tracing::info!("hanging up media sessions before stopping");
        self.executor.run(outputs).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// Every media session, oldest Call-ID order not guaranteed.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        let sessions: Vec<Session> = lock(&self.platform).sessions().cloned().collect();
        sessions
            .into_iter()
            .map(|session| SessionSnapshot {
                received: self.executor.media.stats(session.call_id()),
                session,
            })
            .collect()
    }
}

/// Hangs a starting session up when dropped while still armed (`sip` set).
struct HangUpOnDrop {
    sip: Option<SipHandle>,
    call_id: String,
}

impl Drop for HangUpOnDrop {
    fn drop(&mut self) {
        if let Some(sip) = self.sip.take() {
            let call_id = std::mem::take(&mut self.call_id);
            tracing::info!(call_id, "the session's requester left; hanging up");
            tokio::spawn(async move {
                lock(&sip.executor.starting).remove(&call_id);
                sip.stop_session(&call_id).await;
            });
        }
    }
}

/// The local address the kernel would use to reach `remote`: the interface facing the device,
/// which is where it can send RTP (no packet is sent).
fn local_ip_towards(remote: SocketAddr) -> Option<IpAddr> {
    let unspecified: SocketAddr = match remote {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(unspecified).ok()?;
    socket.connect(remote).ok()?;
    // An IPv4 device reached over a dual-stack socket shows as IPv4-mapped IPv6; SDP must say
    // IP4 then, which IPv4 cameras understand.
    let ip = socket.local_addr().ok()?.ip().to_canonical();
    (!ip.is_unspecified()).then_some(ip)
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("the device did not answer within {0:?}")]
    Timeout(Duration),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// Where a device's answer (and whether it is complete) goes.
type AnswerSender = oneshot::Sender<(Body, bool)>;
/// Where a starting session's outcome goes: established, or why it ended.
type OutcomeSender = oneshot::Sender<Result<(), EndReason>>;

/// Carries out what the platform asks: store first (a device hears "registered" only once that is
/// durable), then send.
struct Executor {
    udp: Arc<UdpSocket>,
    tcp: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    store: EventStore,
    /// API requests waiting for a device's answer, by (device id, SN).
    waiters: Mutex<HashMap<(String, u32), AnswerSender>>,
    /// API requests waiting for a session to be established, by Call-ID.
    starting: Mutex<HashMap<String, OutcomeSender>>,
    media: Arc<MediaEndpoints>,
    /// Read (never held across an await) for the device's media address of a TCP-active session.
    platform: Arc<Mutex<Platform>>,
}

impl Executor {
    async fn run(self: &Arc<Self>, outputs: Vec<Output>) {
        let mut sends = Vec::new();
        for output in outputs {
            match output {
                Output::Commit {
                    device,
                    events,
                    before_reply,
                } => {
                    let state = device
                        .map(|d| StateChange {
                            namespace: DEVICES_NAMESPACE,
                            key: d.id.clone(),
                            value: Some(serde_json::to_vec(&d).expect("devices serialise")),
                        })
                        .into_iter()
                        .collect();
                    let commit = self.store.commit(events, state);
                    let stored = async move {
                        if let Err(e) = commit.await {
                            tracing::error!(error = %e, "cannot store device state");
                        }
                    };
                    if before_reply {
                        stored.await;
                    } else {
                        tokio::spawn(stored);
                    }
                }
                Output::PersistDialog { call_id, dialog } => {
                    let change = StateChange {
                        namespace: DIALOGS_NAMESPACE,
                        key: call_id,
                        value: dialog.map(|d| serde_json::to_vec(&d).expect("dialogs serialise")),
                    };
                    // Not awaited: a crash before it lands costs one BYE (or a duplicate one the
                    // device answers 481), not a wrong state.
                    let commit = self.store.commit(Vec::new(), vec![change]);
                    tokio::spawn(async move {
                        if let Err(e) = commit.await {
                            tracing::error!(error = %e, "cannot store a session dialog");
                        }
                    });
                }
                Output::Send { peer, bytes } => sends.push((peer, bytes)),
                Output::SessionEstablished { call_id, ssrc } => {
                    tracing::info!(call_id, %ssrc, "media session established");
                    let device_media = lock(&self.platform)
                        .session(&call_id)
                        .and_then(|s| s.answer.as_ref())
                        .map(|a| SocketAddr::new(a.media_ip, a.media_port));
                    self.media.established(&call_id, device_media);
                    if let Some(waiter) = lock(&self.starting).remove(&call_id) {
                        let _ = waiter.send(Ok(()));
                    }
                }
                Output::SessionEnded { call_id, reason } => {
                    tracing::info!(call_id, ?reason, "media session ended");
                    self.media.close(&call_id);
                    if let Some(waiter) = lock(&self.starting).remove(&call_id) {
                        let _ = waiter.send(Err(reason));
                    }
                }
                Output::Answer {
                    device_id,
                    sn,
                    body,
                    complete,
                } => {
                    if let Some(waiter) = lock(&self.waiters).remove(&(device_id, sn)) {
                        let _ = waiter.send((body, complete));
                    }
                }
            }
        }
        for (peer, bytes) in sends {
            self.send(peer, bytes).await;
        }
    }

    async fn send(&self, peer: Peer, bytes: Vec<u8>) {
        match peer.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.send_to(&bytes, peer.addr).await {
                    tracing::debug!(peer = %peer.addr, error = %e, "UDP send failed");
                }
            }
            Transport::Tcp => {
                let sender = lock(&self.tcp).get(&peer.addr).cloned();
                match sender {
                    Some(sender) if sender.try_send(bytes).is_ok() => {}
                    // No connection (the device will reconnect and re-register) or a stuck one.
                    _ => tracing::debug!(peer = %peer.addr, "no open TCP connection to send on"),
                }
            }
        }
    }
}

/// Binds UDP and TCP on `config.listen` (with port 0, TCP takes the port UDP got), restores the
/// devices from the store and starts the receive loops and the clock.
pub async fn start(
    config: &SipConfig,
    media_config: &MediaConfig,
    store: EventStore,
    registry: &mut Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<SipHandle> {
    let (udp, tcp) = bind_udp_and_tcp(config.listen).await?;
    let local_addr = udp.local_addr()?;
    let mut restored = Vec::new();
    for (id, bytes) in store.state_entries(DEVICES_NAMESPACE)? {
        match serde_json::from_slice::<Device>(&bytes) {
            Ok(device) => restored.push(device),
            Err(e) => {
                tracing::warn!(device = id, error = %e, "skipping an unreadable stored device")
            }
        }
    }
    let mut dialogs = Vec::new();
    for (call_id, bytes) in store.state_entries(DIALOGS_NAMESPACE)? {
        match serde_json::from_slice::<StoredDialog>(&bytes) {
            Ok(dialog) => dialogs.push(dialog),
            Err(e) => {
                tracing::warn!(call_id, error = %e, "skipping an unreadable stored session")
            }
        }
    }
    tracing::info!(
        devices = restored.len(),
        sessions_to_hang_up = dialogs.len(),
        "restored GB28181 devices"
    );
    let platform_config = PlatformConfig {
        platform_id: config.platform_id.clone(),
        registrar: RegistrarConfig {
            realm: config.domain.clone(),
            default_password: (!config.password.is_empty()).then(|| config.password.clone()),
            device_passwords: config.device_passwords.clone().into_iter().collect(),
            algorithm: Algorithm::Md5,
            min_expires: config.min_register_expires,
            max_expires: config.max_register_expires,
        },
        heartbeat_interval_ms: i64::try_from(config.heartbeat_interval.get().as_millis())
            .unwrap_or(i64::MAX),
        heartbeat_missed: config.heartbeat_missed,
        user_agent: format!("applianced/{}", env!("CARGO_PKG_VERSION")),
        subscriptions: config
            .subscriptions
            .iter()
            .map(|kind| match kind.as_str() {
                "catalog" => SubscriptionKind::Catalog,
                "alarm" => SubscriptionKind::Alarm,
                // The config crate admits only the three kinds.
                _ => SubscriptionKind::MobilePosition,
            })
            .collect(),
    };
    let platform = Arc::new(Mutex::new(Platform::new(
        platform_config,
        rand::random(),
        restored,
        dialogs,
        now_ms(),
    )));
    let (media, gone) = MediaEndpoints::new(media_config.clone(), registry);
    let executor = Arc::new(Executor {
        udp: Arc::new(udp),
        tcp: Mutex::new(HashMap::new()),
        store,
        waiters: Mutex::new(HashMap::new()),
        starting: Mutex::new(HashMap::new()),
        media,
        platform: platform.clone(),
    });
    let metrics = Arc::new(SipMetrics::default());
    let sip = registry.sub_registry_with_prefix("appliance_sip");
    sip.register("events", "SIP counters by kind", metrics.counters.clone());
    sip.register(
        "devices_online",
        "GB28181 devices online",
        metrics.devices_online.clone(),
    );
    sip.register(
        "devices_known",
        "GB28181 devices known",
        metrics.devices_known.clone(),
    );
    sip.register(
        "ssrcs_in_use",
        "SSRCs held by media sessions (one per session)",
        metrics.ssrcs_in_use.clone(),
    );

    tokio::spawn(udp_loop(
        platform.clone(),
        executor.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(tcp_accept_loop(
        tcp,
        platform.clone(),
        executor.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(streams_gone(platform.clone(), executor.clone(), gone));
    tokio::spawn(clock(platform.clone(), executor.clone(), metrics, shutdown));
    tracing::info!(%local_addr, "SIP listening (UDP and TCP)");
    Ok(SipHandle {
        platform,
        executor,
        local_addr,
    })
}

async fn udp_loop(
    platform: Arc<Mutex<Platform>>,
    executor: Arc<Executor>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_UDP_COMMITS_IN_FLIGHT));
    loop {
        let received = tokio::select! {
            r = executor.udp.recv_from(&mut buf) => r,
            _ = shutdown.cancelled() => return,
        };
        let (len, addr) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable from an earlier send surfaces here on Linux: not fatal.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let datagram = &buf[..len];
        if datagram.iter().all(|b| b.is_ascii_whitespace()) {
            continue; // NAT keepalive
        }
        let peer = Peer {
            transport: Transport::Udp,
            addr,
        };
        let outputs = lock(&platform).on_message(datagram, peer, now_ms());
        let waits_for_store = outputs.iter().any(|o| {
            matches!(
                o,
                Output::Commit {
                    before_reply: true,
                    ..
                }
            )
        });
        if waits_for_store {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let executor = executor.clone();
            tokio::spawn(async move {
                executor.run(outputs).await;
                drop(permit);
            });
        } else {
            executor.run(outputs).await;
        }
    }
}

async fn tcp_accept_loop(
    listener: TcpListener,
    platform: Arc<Mutex<Platform>>,
    executor: Arc<Executor>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                tokio::spawn(tcp_connection(
                    stream,
                    addr,
                    platform.clone(),
                    executor.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One device's TCP connection: frames by Content-Length; a framing error closes only this one.
async fn tcp_connection(
    stream: TcpStream,
    addr: SocketAddr,
    platform: Arc<Mutex<Platform>>,
    executor: Arc<Executor>,
    shutdown: CancellationToken,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
    lock(&executor.tcp).insert(addr, tx.clone());
    let writing = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new(MAX_MESSAGE);
    let mut buf = vec![0u8; 16 * 1024];
    let peer = Peer {
        transport: Transport::Tcp,
        addr,
    };
    'connection: loop {
        let read = tokio::select! {
            r = reader.read(&mut buf) => r,
            _ = shutdown.cancelled() => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::KeepAlive)) => {
                    let _ = tx.try_send(b"\r\n".to_vec());
                }
                Ok(Some(Frame::Message(message))) => {
                    let outputs = lock(&platform).on_message(&message, peer, now_ms());
                    executor.run(outputs).await;
                }
                Err(e) => {
                    tracing::info!(peer = %addr, error = %e, "closing a TCP connection with a bad frame");
                    break 'connection;
                }
            }
        }
    }
    // Only forget the connection if it is still ours (the device may have reconnected).
    let mut connections = lock(&executor.tcp);
    if connections.get(&addr).is_some_and(|t| t.same_channel(&tx)) {
        connections.remove(&addr);
    }
    drop(connections);
    drop(tx);
    writing.abort();
}

/// UDP and TCP on the same address. With port 0 the kernel picks a free UDP port, which a TCP
/// socket (say an outgoing connection's local port) may hold: then try another.
async fn bind_udp_and_tcp(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    const ATTEMPTS_WITH_PORT_0: usize = 20;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("cannot listen on UDP {listen} (sip.listen)"))?;
        let local_addr = udp.local_addr()?;
        match TcpListener::bind(local_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if listen.port() == 0 && attempt < ATTEMPTS_WITH_PORT_0 => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot listen on TCP {local_addr} (sip.listen)"));
            }
        }
    }
}

/// Hangs up the sessions whose stream stopped (BYE, SSRC and port released).
async fn streams_gone(
    platform: Arc<Mutex<Platform>>,
    executor: Arc<Executor>,
    mut gone: mpsc::UnboundedReceiver<String>,
) {
    while let Some(call_id) = gone.recv().await {
        let outputs = lock(&platform).session_stream_gone(&call_id, now_ms());
        executor.run(outputs).await;
    }
}

async fn clock(
    platform: Arc<Mutex<Platform>>,
    executor: Arc<Executor>,
    metrics: Arc<SipMetrics>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last = Counters::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let (outputs, counters) = {
            let mut platform = lock(&platform);
            let outputs = platform.on_tick(now_ms());
            let online = platform.devices().filter(|d| d.online).count();
            metrics.devices_online.set(online as i64);
            metrics.devices_known.set(platform.devices().count() as i64);
            metrics.ssrcs_in_use.set(platform.ssrcs_in_use() as i64);
            (outputs, platform.counters())
        };
        executor.run(outputs).await;
        mirror(&metrics, &last, &counters);
        last = counters;
    }
}

/// Adds what each platform counter gained since the last tick to its Prometheus counter.
fn mirror(metrics: &SipMetrics, last: &Counters, now: &Counters) {
    let pairs = [
        (
            "malformed_message",
            last.malformed_messages,
            now.malformed_messages,
        ),
        (
            "malformed_body",
            last.malformed_bodies,
            now.malformed_bodies,
        ),
        ("auth_failure", last.auth_failures, now.auth_failures),
        (
            "retransmission_absorbed",
            last.retransmissions_absorbed,
            now.retransmissions_absorbed,
        ),
        (
            "request_timeout",
            last.requests_timed_out,
            now.requests_timed_out,
        ),
        (
            "control_refused",
            last.controls_refused,
            now.controls_refused,
        ),
        (
            "stray_session_hung_up",
            last.stray_sessions_hung_up,
            now.stray_sessions_hung_up,
        ),
    ];
    for (kind, before, after) in pairs {
        metrics
            .counters
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc_by(after.saturating_sub(before));
    }
}
