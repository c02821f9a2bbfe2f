//! `applianced sim-device`: simulated GB28181 cameras for installers (check a box end to end) and
//! tests. Each device registers with digest authentication over UDP or TCP, keeps alive, answers
//! Catalog (split over several messages), DeviceInfo, DeviceStatus and RecordInfo queries, accepts
//! controls, raises alarms on a timer, and answers INVITEs by streaming real H.264 as MPEG-PS over
//! RTP (`stream.rs`), honouring BYE and playback control (INFO), and reporting the end of a
//! playback (MediaStatus 121).

mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use appliance_gb28181::mansrtsp::{self, PlaybackControl};
use appliance_gb28181::sdp::{Offer, SessionKind};
use appliance_manscdp::{self as manscdp, Alarm, Body, CatalogItem, Charset, RecordItem, Root};
use appliance_media::source::SourceSpec;
use appliance_sip::digest::{Challenge, Credentials};
use appliance_sip::framing::{Frame, StreamFramer};
use appliance_sip::message::{Message, RequestBuilder, new_call_id, new_tag};
use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::signal::unix::SignalKind;
use tokio::sync::mpsc;

use stream::{Prepared, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimTransport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Args)]
pub struct SimOptions {
    /// The platform's SIP address (host:port).
    #[arg(long)]
    pub platform: SocketAddr,
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: SimTransport,
    /// Id of the first device; further devices count up from it.
    #[arg(long, default_value = "34020000001320000001")]
    pub device_id: String,
    /// How many devices to simulate.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    #[arg(long)]
    pub password: String,
    /// The platform's 20-digit id.
    #[arg(long, default_value = "34020000002000000001")]
    pub platform_id: String,
    /// SIP domain (digest realm).
    #[arg(long, default_value = "3402000000")]
    pub domain: String,
    /// Channels per device.
    #[arg(long, default_value_t = 4)]
    pub channels: u32,
    /// Catalog items per MESSAGE (responses are split like real NVRs split them).
    #[arg(long, default_value_t = 2)]
    pub catalog_page: usize,
    /// Keepalive period.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub keepalive: Duration,
    /// Raise an alarm this often (off when absent); `kill -USR1` raises one on demand.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub alarm_every: Option<Duration>,
    /// Registration lifetime requested (seconds); re-registers at 80 % of it.
    #[arg(long, default_value_t = 3600)]
    pub expires: u32,
    /// Stop (and unregister) after this long; run until Ctrl-C when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Write MANSCDP bodies in UTF-8 instead of GB2312.
    #[arg(long)]
    pub utf8: bool,
    /// Spread the devices' start over this long (thousands of devices registering in the same
    /// instant overflow socket buffers, which real fleets never do).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub stagger: Duration,
    /// Stream this video file (any container GStreamer reads, H.264 inside, looped) instead of
    /// a generated test pattern.
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// End playbacks and downloads after this long (MediaStatus 121, as a device reaching the
    /// end of a recording); by default after the length of the range asked for.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub playback_length: Option<Duration>,
}

impl SimOptions {
    fn source(&self) -> SourceSpec {
        match &self.video {
            Some(path) => SourceSpec::File(path.clone()),
            None => SourceSpec::TestPattern {
                width: 640,
                height: 360,
                fps: 25,
                keyframe_interval: 50,
            },
        }
    }
}

/// A subscription the platform holds on us (SUBSCRIBE): NOTIFYs go in its dialog.
struct SimSubscription {
    call_id: String,
    /// The platform's tag (From of its SUBSCRIBE) and ours (To of our 200).
    platform_tag: String,
    our_tag: String,
    event: String,
    cseq: u32,
}

/// A media session the platform opened on one of our channels.
struct SimSession {
    /// Our 200 to the INVITE, sent again if the INVITE is retransmitted, and over UDP until the
    /// ACK comes (RFC 3261 §13.3.1.4: a lost 200 would otherwise end the session at the
    /// platform's INVITE timeout).
    ok: Message,
    /// When the 200 was first sent: past 32 s without ACK the session is given up.
    answered: tokio::time::Instant,
    /// The media side, until the ACK starts the stream.
    prepared: Option<Prepared>,
    stream: Option<Stream>,
    ssrc: u32,
    channel_id: String,
    /// When a playback or download ends by itself.
    length: Option<Duration>,
}

/// Runs every simulated device until the duration ends or Ctrl-C; fails if any device fails.
pub fn run(options: SimOptions) -> anyhow::Result<()> {
    let first: u128 = options
        .device_id
        .parse()
        .context("--device-id must be digits")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let mut devices = tokio::task::JoinSet::new();
            for n in 0..u128::from(options.count) {
                let id = format!("{:0width$}", first + n, width = options.device_id.len());
                let delay = options.stagger.mul_f64(n as f64 / f64::from(options.count));
                let options = options.clone();
                devices.spawn(async move {
                    tokio::time::sleep(delay).await;
                    SimDevice::run(id, options).await
                });
            }
            let mut failures = 0;
            while let Some(result) = devices.join_next().await {
                if let Err(e) = result.context("device task panicked").and_then(|r| r) {
                    tracing::error!("{e:#}");
                    failures += 1;
                }
            }
            if failures > 0 {
                bail!("{failures} simulated device(s) failed");
            }
            Ok(())
        })
}

/// One signalling connection to the platform.
enum Link {
    Udp(UdpSocket),
    Tcp {
        reader: OwnedReadHalf,
        writer: OwnedWriteHalf,
        framer: StreamFramer,
    },
}

impl Link {
    async fn connect(options: &SimOptions) -> anyhow::Result<Link> {
        Ok(match options.transport {
            SimTransport::Udp => {
                let socket = UdpSocket::bind(("0.0.0.0", 0)).await?;
                socket.connect(options.platform).await?;
                Link::Udp(socket)
            }
            SimTransport::Tcp => {
                let (reader, writer) = TcpStream::connect(options.platform).await?.into_split();
                Link::Tcp {
                    reader,
                    writer,
                    framer: StreamFramer::new(64 * 1024),
                }
            }
        })
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Link::Udp(socket) => socket.local_addr(),
            Link::Tcp { writer, .. } => writer.local_addr(),
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Link::Udp(_) => "UDP",
            Link::Tcp { .. } => "TCP",
        }
    }

    async fn send(&mut self, message: &Message) -> anyhow::Result<()> {
        let bytes = message.to_bytes();
        match self {
            Link::Udp(socket) => {
                socket.send(&bytes).await?;
            }
            Link::Tcp { writer, .. } => writer.write_all(&bytes).await?,
        }
        Ok(())
    }

    /// The next SIP message from the platform.
    async fn recv(&mut self) -> anyhow::Result<Message> {
        match self {
            Link::Udp(socket) => {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = socket.recv(&mut buf).await?;
                    match Message::parse(&buf[..n]) {
                        Ok(message) => return Ok(message),
                        Err(e) => tracing::warn!(error = %e, "ignoring an unparsable datagram"),
                    }
                }
            }
            Link::Tcp { reader, framer, .. } => loop {
                match framer.next_frame()? {
                    Some(Frame::Message(bytes)) => return Ok(Message::parse(&bytes)?),
                    Some(Frame::KeepAlive) => continue,
                    None => {
                        let mut buf = [0u8; 16 * 1024];
                        let n = reader.read(&mut buf).await?;
                        if n == 0 {
                            bail!("the platform closed the TCP connection");
                        }
                        framer.push(&buf[..n]);
                    }
                }
            },
        }
    }
}

struct SimDevice {
    id: String,
    options: SimOptions,
    link: Link,
    local: String,
    cseq: u32,
    sn: u32,
    register_call_id: String,
    register_tag: String,
    sessions: HashMap<String, SimSession>,
    /// Subscriptions by the CmdType they are for (`Catalog`, `Alarm`, `MobilePosition`).
    subscriptions: HashMap<String, SimSubscription>,
    /// What ConfigDownload reports; DeviceConfig changes it (the simulation only remembers).
    basic: manscdp::BasicParam,
    /// Call-IDs of playbacks whose stream reached its end.
    ended_tx: mpsc::UnboundedSender<String>,
    ended_rx: mpsc::UnboundedReceiver<String>,
}

impl SimDevice {
    async fn run(id: String, options: SimOptions) -> anyhow::Result<()> {
        let link = Link::connect(&options).await?;
        let local = link.local_addr()?.to_string();
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        let basic = manscdp::BasicParam {
            name: Some(format!("sim {id}")),
            expiration: Some(options.expires),
            heartbeat_interval: u32::try_from(options.keepalive.as_secs()).ok(),
            heartbeat_count: Some(3),
        };
        let mut device = SimDevice {
            basic,
            sessions: HashMap::new(),
            subscriptions: HashMap::new(),
            ended_tx,
            ended_rx,
            register_call_id: new_call_id(&local),
            register_tag: new_tag(),
            id,
            options,
            link,
            local,
            cseq: 0,
            sn: 0,
        };
        device.register(device.options.expires).await?;
        tracing::info!(device = device.id, "registered");
        let result = device.serve().await;
        if let Err(e) = device.register(0).await {
            tracing::warn!(device = device.id, error = %e, "unregister failed");
        }
        result
    }

    fn charset(&self) -> Charset {
        if self.options.utf8 {
            Charset::Utf8
        } else {
            Charset::Gb2312
        }
    }

    fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    fn next_sn(&mut self) -> u32 {
        self.sn += 1;
        self.sn
    }

    fn register_request(
        &mut self,
        expires: u32,
        authorization: Option<String>,
    ) -> anyhow::Result<Message> {
        let o = &self.options;
        let uri = format!("sip:{}@{}", o.platform_id, o.platform);
        let aor = format!("sip:{}@{}", self.id, o.domain);
        let mut builder = RequestBuilder::new("REGISTER", &uri)
            .via(self.link.transport(), &self.local)
            .from(&aor, &self.register_tag)
            .to(&aor, None)
            .call_id(&self.register_call_id)
            .cseq(self.next_cseq())
            .contact(&format!("sip:{}@{}", self.id, self.local))
            .header("Expires", &expires.to_string())
            .header("User-Agent", "applianced sim-device");
        if let Some(value) = authorization {
            builder = builder.header("Authorization", &value);
        }
        Ok(builder.build()?)
    }

    /// REGISTER, answer the challenge, expect 200 (`expires` 0 unregisters).
    async fn register(&mut self, expires: u32) -> anyhow::Result<()> {
        let first = self.register_request(expires, None)?;
        let challenge = self.transact(&first).await?;
        let response = match challenge.status() {
            Some(401) => {
                let value = challenge
                    .header("WWW-Authenticate")
                    .context("401 without WWW-Authenticate")?;
                let challenge = Challenge::parse(value)?;
                let uri = format!("sip:{}@{}", self.options.platform_id, self.options.platform);
                let cnonce = new_tag();
                let credentials = Credentials::answer(
                    &challenge,
                    &self.id,
                    &self.options.password,
                    "REGISTER",
                    &uri,
                    &cnonce,
                    1,
                );
                let second = self.register_request(expires, Some(credentials.to_header_value()))?;
                self.transact(&second).await?
            }
            _ => challenge,
        };
        match response.status() {
            Some(200) => Ok(()),
            other => bail!("device {}: REGISTER answered {other:?}", self.id),
        }
    }

    /// Sends `request` and waits for its final response, answering requests meanwhile. Over
    /// UDP the request is sent again at 0.5, 1, 2, 4 s (RFC 3261 timer E) until something
    /// answers it: a registration must survive a lost datagram, as a real camera's does.
    async fn transact(&mut self, request: &Message) -> anyhow::Result<Message> {
        let method = request.method().unwrap_or_default().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut resend = Duration::from_millis(500);
        let mut resend_at = tokio::time::Instant::now() + resend;
        let mut answered = false;
        self.link.send(request).await?;
        loop {
            let wait_until = if answered || !matches!(self.link, Link::Udp(_)) {
                deadline
            } else {
                resend_at.min(deadline)
            };
            let message = match tokio::time::timeout_at(wait_until, self.link.recv()).await {
                Ok(message) => message?,
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    bail!("no answer to {method}")
                }
                Err(_) => {
                    self.link.send(request).await?;
                    resend = (resend * 2).min(Duration::from_secs(4));
                    resend_at = tokio::time::Instant::now() + resend;
                    continue;
                }
            };
            if message.is_request() {
                self.on_request(message).await?;
            } else if message.cseq() == request.cseq() {
                // (A late answer to an earlier request has another CSeq and is ignored.)
                answered = true;
                if message.status().is_some_and(|s| s >= 200) {
                    return Ok(message);
                }
            }
        }
    }

    async fn serve(&mut self) -> anyhow::Result<()> {
        let mut keepalive = tokio::time::interval(self.options.keepalive);
        keepalive.tick().await;
        let far = Duration::from_secs(100 * 365 * 24 * 3600);
        let mut alarm = tokio::time::interval(self.options.alarm_every.unwrap_or(far));
        alarm.tick().await;
        let renew = Duration::from_secs(u64::from(self.options.expires) * 8 / 10);
        let mut reregister = tokio::time::interval(renew.max(Duration::from_secs(1)));
        reregister.tick().await;
        // Timer G's floor: unacknowledged 200s go again every half second.
        let mut unacked = tokio::time::interval(Duration::from_millis(500));
        unacked.tick().await;
        // `kill -USR1 <pid>` raises an alarm on every simulated device, for installers checking
        // that alarms reach the box.
        let mut on_demand = tokio::signal::unix::signal(SignalKind::user_defined1())?;
        let stop = tokio::time::sleep(self.options.duration.unwrap_or(far));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = keepalive.tick() => {
                    let body = Body::Keepalive { status: "OK".into() };
                    self.notify(Root::Notify, body, None).await?;
                }
                _ = alarm.tick() => self.raise_alarm().await?,
                _ = on_demand.recv() => self.raise_alarm().await?,
                _ = reregister.tick() => self.register(self.options.expires).await?,
                _ = unacked.tick() => self.resend_unacknowledged().await?,
                received = self.link.recv() => {
                    let message = received?;
                    if message.is_request() {
                        self.on_request(message).await?;
                    }
                }
                Some(call_id) = self.ended_rx.recv() => self.playback_ended(call_id).await?,
            }
        }
    }

    /// An intrusion alarm (video method) on the first channel.
    async fn raise_alarm(&mut self) -> anyhow::Result<()> {
        let time = appliance_model::Timestamp::now().to_string();
        let body = Body::Alarm(Alarm {
            priority: Some(1),
            method: Some(5),
            alarm_type: Some(2),
            time: Some(time.trim_end_matches('Z').to_string()),
            description: Some("simulated intrusion".into()),
            longitude: None,
            latitude: None,
        });
        let channel = self.channel_id(1);
        if self.subscriptions.contains_key("Alarm") {
            let sn = self.next_sn();
            let message = manscdp::Message::new(Root::Notify, sn, channel, body);
            tracing::info!(device = self.id, "alarm sent by NOTIFY");
            return self.notify_subscriber("Alarm", message).await;
        }
        self.notify(Root::Notify, body, Some(channel)).await
    }

    /// SUBSCRIBE: 200 with the granted expiry; the subscription's NOTIFYs go in its dialog.
    async fn on_subscribe(&mut self, request: &Message) -> anyhow::Result<()> {
        let cmd_type = match manscdp::decode(request.body()) {
            Ok((query, _)) => query.body.cmd_type().to_string(),
            Err(e) => {
                tracing::warn!(device = self.id, error = %e, "undecodable SUBSCRIBE body");
                return self.respond(request, 400, "Bad Request").await;
            }
        };
        let expires = match request.expires() {
            Some(Ok(expires)) => expires,
            _ => 3600,
        };
        let ok = Message::response(request, 200, "OK")
            .header("Expires", &expires.to_string())
            .build()?;
        self.link.send(&ok).await?;
        if expires == 0 {
            self.subscriptions.remove(&cmd_type);
            return Ok(());
        }
        let subscription = SimSubscription {
            call_id: request.call_id().unwrap_or_default().to_string(),
            platform_tag: request.from_tag().unwrap_or_default(),
            our_tag: ok.to_tag().unwrap_or_default(),
            event: request.header("Event").unwrap_or("presence").to_string(),
            cseq: 0,
        };
        tracing::info!(device = self.id, cmd_type, "subscribed");
        self.subscriptions.insert(cmd_type, subscription);
        Ok(())
    }

    /// Sends `message` as a NOTIFY in the dialog of the subscription for `cmd_type`.
    async fn notify_subscriber(
        &mut self,
        cmd_type: &str,
        message: manscdp::Message,
    ) -> anyhow::Result<()> {
        let xml = manscdp::encode(&message, self.charset());
        let o = &self.options;
        let Some(subscription) = self.subscriptions.get_mut(cmd_type) else {
            return Ok(());
        };
        subscription.cseq += 1;
        let request =
            RequestBuilder::new("NOTIFY", &format!("sip:{}@{}", o.platform_id, o.platform))
                .via(self.link.transport(), &self.local)
                .from(
                    &format!("sip:{}@{}", self.id, o.domain),
                    &subscription.our_tag,
                )
                .to(
                    &format!("sip:{}@{}", o.platform_id, o.domain),
                    Some(&subscription.platform_tag),
                )
                .call_id(&subscription.call_id)
                .cseq(subscription.cseq)
                .header("Event", &subscription.event)
                .header("Subscription-State", "active")
                .body("Application/MANSCDP+xml", xml)
                .build()?;
        self.link.send(&request).await
    }

    fn channel_id(&self, n: u32) -> String {
        // Same centre and industry code, type 131 (camera channel), serial n.
        let prefix = self.id.get(..10).unwrap_or(&self.id);
        format!("{prefix}131{:07}", n)
    }

    /// Sends a MANSCDP message to the platform as a MESSAGE request (answers are not awaited:
    /// the platform's 200 arrives in the serve loop).
    async fn notify(
        &mut self,
        root: Root,
        body: Body,
        device_id: Option<String>,
    ) -> anyhow::Result<()> {
        let sn = self.next_sn();
        self.send_manscdp(manscdp::Message::new(
            root,
            sn,
            device_id.unwrap_or_else(|| self.id.clone()),
            body,
        ))
        .await
    }

    async fn send_manscdp(&mut self, message: manscdp::Message) -> anyhow::Result<()> {
        let call_id = new_call_id(&self.local);
        self.send_manscdp_in(message, &call_id).await
    }

    /// Sends a MANSCDP MESSAGE with the given Call-ID (a session's, for MediaStatus).
    async fn send_manscdp_in(
        &mut self,
        message: manscdp::Message,
        call_id: &str,
    ) -> anyhow::Result<()> {
        let xml = manscdp::encode(&message, self.charset());
        let o = &self.options;
        let request =
            RequestBuilder::new("MESSAGE", &format!("sip:{}@{}", o.platform_id, o.domain))
                .via(self.link.transport(), &self.local)
                .from(&format!("sip:{}@{}", self.id, o.domain), &new_tag())
                .to(&format!("sip:{}@{}", o.platform_id, o.domain), None)
                .call_id(call_id)
                .cseq(self.next_cseq())
                .body("Application/MANSCDP+xml", xml)
                .build()?;
        self.link.send(&request).await
    }

    /// A request from the platform.
    async fn on_request(&mut self, request: Message) -> anyhow::Result<()> {
        match request.method() {
            Some("INVITE") => return self.on_invite(&request).await,
            // ACK is never answered.
            Some("ACK") => {
                self.on_ack(&request);
                return Ok(());
            }
            Some("BYE") => return self.on_bye(&request).await,
            Some("INFO") => return self.on_info(&request).await,
            Some("SUBSCRIBE") => return self.on_subscribe(&request).await,
            _ => {}
        }
        let ok = Message::response(&request, 200, "OK").build()?;
        self.link.send(&ok).await?;
        if request.method() != Some("MESSAGE") {
            return Ok(());
        }
        let (query, _) = match manscdp::decode(request.body()) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(device = self.id, error = %e, "undecodable request body");
                return Ok(());
            }
        };
        let sn = query.sn;
        let answers = match query.body {
            Body::CatalogQuery => {
                let items = (1..=self.options.channels)
                    .map(|n| CatalogItem {
                        device_id: self.channel_id(n),
                        name: Some(format!("通道{n}")),
                        manufacturer: Some("applianced".into()),
                        model: Some("sim-device".into()),
                        parent_id: Some(self.id.clone()),
                        online: Some(true),
                        ..CatalogItem::default()
                    })
                    .collect();
                manscdp::split_catalog(sn, &self.id, items, self.options.catalog_page)
            }
            Body::DeviceInfoQuery => vec![manscdp::Message::response(
                Body::DeviceInfoResponse {
                    device_name: Some(format!("sim {}", self.id)),
                    manufacturer: Some("applianced".into()),
                    model: Some("sim-device".into()),
                    firmware: Some(env!("CARGO_PKG_VERSION").into()),
                    channel: Some(self.options.channels),
                    result: "OK".into(),
                },
                sn,
                self.id.clone(),
            )],
            Body::DeviceStatusQuery => vec![manscdp::Message::response(
                Body::DeviceStatusResponse {
                    online: Some(true),
                    status: Some("OK".into()),
                    record: Some(false),
                    device_time: None,
                    alarm_status: Vec::new(),
                },
                sn,
                self.id.clone(),
            )],
            Body::RecordInfoQuery {
                start_time,
                end_time,
                ..
            } => {
                let item = RecordItem {
                    device_id: query.device_id.clone(),
                    name: Some("sim".into()),
                    file_path: Some("/sim/0001.mp4".into()),
                    start_time,
                    end_time,
                    record_type: Some("time".into()),
                    ..RecordItem::default()
                };
                let name = Some(format!("sim {}", self.id));
                manscdp::split_record_info(
                    sn,
                    &query.device_id,
                    name,
                    vec![item],
                    self.options.catalog_page,
                )
            }
            Body::PresetQuery => {
                let items = vec![
                    manscdp::Preset {
                        id: "1".into(),
                        name: "Gate".into(),
                    },
                    manscdp::Preset {
                        id: "2".into(),
                        name: "Car park".into(),
                    },
                ];
                vec![manscdp::Message::response(
                    Body::PresetQueryResponse { sum_num: 2, items },
                    sn,
                    query.device_id.clone(),
                )]
            }
            Body::ConfigDownloadQuery { .. } => vec![manscdp::Message::response(
                Body::ConfigDownloadResponse {
                    basic: Some(self.basic.clone()),
                },
                sn,
                self.id.clone(),
            )],
            Body::DeviceConfigBasic(change) => {
                tracing::info!(device = self.id, ?change, "configuration changed");
                let basic = &mut self.basic;
                basic.name = change.name.or(basic.name.take());
                basic.expiration = change.expiration.or(basic.expiration);
                basic.heartbeat_interval = change.heartbeat_interval.or(basic.heartbeat_interval);
                basic.heartbeat_count = change.heartbeat_count.or(basic.heartbeat_count);
                vec![manscdp::Message::response(
                    Body::ControlResponse {
                        cmd_type: "DeviceConfig".into(),
                        result: "OK".into(),
                    },
                    sn,
                    self.id.clone(),
                )]
            }
            Body::DeviceControl(control) => {
                tracing::info!(device = self.id, ?control, "control received");
                vec![manscdp::Message::response(
                    Body::ControlResponse {
                        cmd_type: "DeviceControl".into(),
                        result: "OK".into(),
                    },
                    sn,
                    query.device_id.clone(),
                )]
            }
            other => {
                tracing::debug!(
                    device = self.id,
                    cmd = other.cmd_type(),
                    "query not simulated"
                );
                Vec::new()
            }
        };
        for answer in answers {
            self.send_manscdp(answer).await?;
        }
        Ok(())
    }

    async fn respond(
        &mut self,
        request: &Message,
        status: u16,
        reason: &str,
    ) -> anyhow::Result<()> {
        let response = Message::response(request, status, reason).build()?;
        self.link.send(&response).await
    }

    /// INVITE: set up the media side the offer asks for and answer 200 with our SDP; the
    /// stream starts with the ACK.
    async fn on_invite(&mut self, request: &Message) -> anyhow::Result<()> {
        let call_id = request.call_id().unwrap_or_default().to_string();
        if let Some(session) = self.sessions.get(&call_id) {
            // A retransmitted INVITE: the same answer again.
            let ok = session.ok.clone();
            return self.link.send(&ok).await;
        }
        let offer = match std::str::from_utf8(request.body())
            .map_err(anyhow::Error::from)
            .and_then(|sdp| Offer::parse(sdp).map_err(anyhow::Error::from))
        {
            Ok(offer) => offer,
            Err(e) => {
                tracing::warn!(device = self.id, "unusable SDP offer: {e:#}");
                return self.respond(request, 488, "Not Acceptable Here").await;
            }
        };
        self.respond(request, 100, "Trying").await?;
        let local_ip = self.link.local_addr()?.ip();
        let (prepared, answer) = match Prepared::for_offer(&offer, local_ip) {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::warn!(device = self.id, "cannot set up media: {e:#}");
                return self.respond(request, 500, "Server Internal Error").await;
            }
        };
        let (name, length) = match offer.session {
            SessionKind::Play => ("Play", None),
            SessionKind::Playback { start, end } => ("Playback", Some(end.saturating_sub(start))),
            SessionKind::Download { start, end, .. } => {
                ("Download", Some(end.saturating_sub(start)))
            }
        };
        let length = length.map(|range| {
            self.options
                .playback_length
                .unwrap_or(Duration::from_secs(range))
        });
        let ok = Message::response(request, 200, "OK")
            .header(
                "Contact",
                &format!("<sip:{}@{}>", offer.channel_id, self.local),
            )
            .body("APPLICATION/SDP", answer.to_sdp(&offer.channel_id, name))
            .build()?;
        self.link.send(&ok).await?;
        tracing::info!(device = self.id, channel = offer.channel_id, ssrc = %offer.ssrc, name, "session accepted");
        self.sessions.insert(
            call_id,
            SimSession {
                ok,
                answered: tokio::time::Instant::now(),
                prepared: Some(prepared),
                stream: None,
                ssrc: offer.ssrc.value(),
                channel_id: offer.channel_id,
                length,
            },
        );
        Ok(())
    }

    /// Over UDP, sends the 200 of every session not yet ACKed again; gives up after 32 s
    /// (timer H).
    async fn resend_unacknowledged(&mut self) -> anyhow::Result<()> {
        if !matches!(self.link, Link::Udp(_)) {
            return Ok(());
        }
        let give_up = Duration::from_secs(32);
        self.sessions
            .retain(|_, s| s.prepared.is_none() || s.answered.elapsed() < give_up);
        let pending: Vec<Message> = self
            .sessions
            .values()
            .filter(|s| s.prepared.is_some())
            .map(|s| s.ok.clone())
            .collect();
        for ok in pending {
            self.link.send(&ok).await?;
        }
        Ok(())
    }

    fn on_ack(&mut self, request: &Message) {
        let call_id = request.call_id().unwrap_or_default().to_string();
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return;
        };
        let Some(prepared) = session.prepared.take() else {
            return; // a retransmitted ACK
        };
        let ended = self.ended_tx.clone();
        let ended_call = call_id.clone();
        session.stream = Some(Stream::start(
            prepared,
            self.options.source(),
            session.ssrc,
            session.length,
            move || {
                let _ = ended.send(ended_call);
            },
        ));
        tracing::info!(device = self.id, call_id, "streaming");
    }

    async fn on_bye(&mut self, request: &Message) -> anyhow::Result<()> {
        let call_id = request.call_id().unwrap_or_default();
        // Dropping the session stops its stream.
        match self.sessions.remove(call_id) {
            Some(session) => {
                tracing::info!(
                    device = self.id,
                    call_id,
                    ssrc = session.ssrc,
                    "session ended by BYE"
                );
                self.respond(request, 200, "OK").await
            }
            None => {
                self.respond(request, 481, "Call/Transaction Does Not Exist")
                    .await
            }
        }
    }

    /// INFO with MANSRTSP: pause and resume the stream (seek and speed are acknowledged; the
    /// simulated recording has no timeline to move on).
    async fn on_info(&mut self, request: &Message) -> anyhow::Result<()> {
        let call_id = request.call_id().unwrap_or_default().to_string();
        let Some(session) = self.sessions.get(&call_id) else {
            return self
                .respond(request, 481, "Call/Transaction Does Not Exist")
                .await;
        };
        let control = std::str::from_utf8(request.body())
            .map_err(anyhow::Error::from)
            .and_then(|body| mansrtsp::parse(body).map_err(anyhow::Error::from));
        match control {
            Ok((_, control)) => {
                tracing::info!(device = self.id, call_id, ?control, "playback control");
                if let Some(stream) = &session.stream {
                    match control {
                        PlaybackControl::Pause => stream.set_paused(true),
                        PlaybackControl::Resume | PlaybackControl::Seek { .. } => {
                            stream.set_paused(false)
                        }
                        PlaybackControl::Speed(_) => {}
                    }
                }
                self.respond(request, 200, "OK").await
            }
            Err(e) => {
                tracing::warn!(device = self.id, "bad MANSRTSP: {e:#}");
                self.respond(request, 400, "Bad Request").await
            }
        }
    }

    /// A playback reached its end: tell the platform (MediaStatus 121 in the session's dialog);
    /// it hangs up.
    async fn playback_ended(&mut self, call_id: String) -> anyhow::Result<()> {
        let Some(channel_id) = self.sessions.get(&call_id).map(|s| s.channel_id.clone()) else {
            return Ok(());
        };
        let sn = self.next_sn();
        let message = manscdp::Message::new(
            Root::Notify,
            sn,
            channel_id,
            Body::MediaStatus { notify_type: 121 },
        );
        tracing::info!(device = self.id, call_id, "playback ended");
        self.send_manscdp_in(message, &call_id).await
    }
}
