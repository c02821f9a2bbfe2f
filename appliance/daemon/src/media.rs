//! The built-in media interface: one RTP endpoint per media session, opened before the INVITE
//! goes out and closed when the session ends. It receives what the device sends (RTP over UDP,
//! or RFC 4571 framed over TCP, either side dialling), checks it carries the SSRC the INVITE
//! agreed, demultiplexes the MPEG-PS to count frames, and reports a stream that stops as gone so
//! the platform hangs up and releases its SSRC.
//!
//! This is the seam the ZLMediaKit issue replaces: `open`/`attach` is its `openRtpServer`
//! (`tcp_mode` 0, 1, 2 for UDP, TCP passive, TCP active), `established` with a remote address is
//! `connectRtpServer`, `close` is `closeRtpServer`, and a gone stream is its
//! `on_rtp_server_timeout` hook. Until then nothing is served to viewers: sessions have no URLs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use appliance_config::MediaConfig;
use appliance_gb28181::sdp::MediaTransport;
use appliance_media::receive::{ReceiveStats, RtpReceiver};
use appliance_media::rfc4571::Deframer;
use appliance_model::Timestamp;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Largest datagram read; RTP from devices stays under the MTU, but some send up to 8 KiB.
const MAX_DATAGRAM: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no free RTP port in media.rtp_ports {0}")]
    NoFreePort(String),
}

/// A port bound for a session that is about to be offered.
pub struct Opened {
    pub port: u16,
    socket: Bound,
}

enum Bound {
    Udp(UdpSocket),
    /// TCP passive: the device connects to us.
    Listener(TcpListener),
    /// TCP active: we connect to the device from this port once it answered.
    Dialer(TcpSocket),
}

/// What the session's answer tells the endpoint: media may start, and (TCP active) where the
/// device listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offered,
    Established { remote: Option<SocketAddr> },
}

struct Endpoint {
    port: u16,
    receiver: Arc<Mutex<RtpReceiver>>,
    phase: watch::Sender<Phase>,
    stop: CancellationToken,
}

#[derive(Default)]
struct MediaMetrics {
    packets: Counter,
    wrong_ssrc: Counter,
    streams_gone: Counter,
    endpoints_open: Gauge,
}

/// Every open endpoint, by the Call-ID of its session.
pub struct MediaEndpoints {
    config: MediaConfig,
    /// Where the next port search starts, so a just-closed port is not reused at once (late
    /// packets of the old session would land in the new one).
    cursor: AtomicU64,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    /// Sessions whose stream stopped; the SIP driver hangs them up.
    gone: mpsc::UnboundedSender<String>,
    metrics: MediaMetrics,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

impl MediaEndpoints {
    pub fn new(
        config: MediaConfig,
        registry: &mut Registry,
    ) -> (Arc<MediaEndpoints>, mpsc::UnboundedReceiver<String>) {
        let (gone, gone_rx) = mpsc::unbounded_channel();
        let media = Arc::new(MediaEndpoints {
            config,
            cursor: AtomicU64::new(0),
            endpoints: Mutex::new(HashMap::new()),
            gone,
            metrics: MediaMetrics::default(),
        });
        let sub = registry.sub_registry_with_prefix("appliance_media");
        sub.register(
            "rtp_packets",
            "RTP packets received with the agreed SSRC",
            media.metrics.packets.clone(),
        );
        sub.register(
            "rtp_wrong_ssrc",
            "RTP packets received with another SSRC than the session agreed (dropped)",
            media.metrics.wrong_ssrc.clone(),
        );
        sub.register(
            "streams_gone",
            "Sessions hung up because their stream stopped",
            media.metrics.streams_gone.clone(),
        );
        sub.register(
            "endpoints_open",
            "RTP endpoints open",
            media.metrics.endpoints_open.clone(),
        );
        (media, gone_rx)
    }

    /// The address to offer: the configured one, or the one the device reached us at.
    pub fn offer_ip(&self, reached: IpAddr) -> IpAddr {
        self.config.rtp_ip.unwrap_or(reached)
    }

    /// Binds a free port of the configured range for `transport`.
    pub fn open(&self, transport: MediaTransport) -> Result<Opened, MediaError> {
        let range = self.config.rtp_ports;
        let count = range.len() as u64;
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for step in 0..count {
            let port = range.first + ((start + step) % count) as u16;
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            if let Some(socket) = bind(transport, addr) {
                self.cursor.store(start + step + 1, Ordering::Relaxed);
                return Ok(Opened { port, socket });
            }
        }
        Err(MediaError::NoFreePort(range.to_string()))
    }

    /// Starts receiving on `opened` for the session `call_id` with the device at `device`,
    /// accepting RTP with `ssrc` only.
    pub fn attach(self: &Arc<Self>, call_id: &str, opened: Opened, ssrc: u32, device: IpAddr) {
        let receiver = Arc::new(Mutex::new(RtpReceiver::new(ssrc)));
        let (phase, phase_rx) = watch::channel(Phase::Offered);
        let stop = CancellationToken::new();
        lock(&self.endpoints).insert(
            call_id.to_string(),
            Endpoint {
                port: opened.port,
                receiver: receiver.clone(),
                phase,
                stop: stop.clone(),
            },
        );
        self.metrics.endpoints_open.inc();
        let media = self.clone();
        let call_id = call_id.to_string();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                // First: a session closed on purpose is not a gone stream.
                biased;
                _ = stop.cancelled() => None,
                outcome = media.receive(opened.socket, &receiver, phase_rx, device) => Some(outcome),
            };
            if let Some(why) = outcome {
                tracing::info!(call_id, why, "stream gone");
                media.metrics.streams_gone.inc();
                let _ = media.gone.send(call_id);
            }
        });
    }

    /// The device accepted: media may flow (and, TCP active, where to dial).
    pub fn established(&self, call_id: &str, remote: Option<SocketAddr>) {
        if let Some(endpoint) = lock(&self.endpoints).get(call_id) {
            let _ = endpoint.phase.send(Phase::Established { remote });
        }
    }

    /// The session ended: stop receiving and free the port.
    pub fn close(&self, call_id: &str) {
        if let Some(endpoint) = lock(&self.endpoints).remove(call_id) {
            endpoint.stop.cancel();
            self.metrics.endpoints_open.dec();
        }
    }

    /// What arrived so far, and on which port.
    pub fn stats(&self, call_id: &str) -> Option<(u16, ReceiveStats)> {
        let endpoints = lock(&self.endpoints);
        let endpoint = endpoints.get(call_id)?;
        Some((endpoint.port, lock(&endpoint.receiver).snapshot()))
    }

    /// Receives until the stream is gone; returns why. `device` is the device's signalling
    /// address: only it may connect to a passive TCP endpoint, and an active one dials only an
    /// address that could be the device's.
    async fn receive(
        &self,
        socket: Bound,
        receiver: &Mutex<RtpReceiver>,
        mut phase: watch::Receiver<Phase>,
        device: IpAddr,
    ) -> &'static str {
        let timeout = self.config.stream_timeout.get();
        // Nothing is expected before the device answered; the platform's INVITE timeout covers
        // a device that never does.
        let remote = loop {
            if let Phase::Established { remote } = *phase.borrow_and_update() {
                break remote;
            }
            if phase.changed().await.is_err() {
                return "session closed";
            }
        };
        // The stream is gone when nothing with the agreed SSRC came for `timeout`: packets with
        // another SSRC (say a camera still sending an old session's stream to this port) do not
        // keep a session alive.
        let mut quiet_since = Instant::now();
        match socket {
            Bound::Udp(socket) => {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    let read = socket.recv_from(&mut buf);
                    match tokio::time::timeout_at(quiet_since + timeout, read).await {
                        Err(_) => return "no RTP with the agreed SSRC within media.stream_timeout",
                        Ok(Err(e)) => tracing::debug!(error = %e, "RTP receive error"),
                        Ok(Ok((n, _))) => {
                            if self.count(receiver, &buf[..n]) {
                                quiet_since = Instant::now();
                            }
                        }
                    }
                }
            }
            Bound::Listener(listener) => {
                let deadline = quiet_since + timeout;
                let stream = loop {
                    match tokio::time::timeout_at(deadline, listener.accept()).await {
                        Ok(Ok((stream, peer))) if same_host(peer.ip(), device) => break stream,
                        // Someone else (a port scan, a stale camera): not the session's stream.
                        Ok(Ok((_, peer))) => {
                            tracing::warn!(%peer, %device, "refused a media connection from another host");
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "media accept failed"),
                        Err(_) => return "the device did not connect within media.stream_timeout",
                    }
                };
                self.receive_tcp(stream, receiver, timeout).await
            }
            Bound::Dialer(socket) => {
                let Some(remote) = remote else {
                    return "the device's answer has no address to connect to";
                };
                if !dialable(remote.ip(), device) {
                    tracing::warn!(%remote, %device, "not dialling the media address the device's answer names");
                    return "the device's answer names an address the box will not dial";
                }
                match tokio::time::timeout(timeout, socket.connect(remote)).await {
                    Ok(Ok(stream)) => self.receive_tcp(stream, receiver, timeout).await,
                    _ => "cannot connect to the device's media port",
                }
            }
        }
    }

    async fn receive_tcp(
        &self,
        mut stream: TcpStream,
        receiver: &Mutex<RtpReceiver>,
        timeout: Duration,
    ) -> &'static str {
        let mut deframer = Deframer::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut quiet_since = Instant::now();
        loop {
            match tokio::time::timeout_at(quiet_since + timeout, stream.read(&mut buf)).await {
                Err(_) => return "no RTP with the agreed SSRC within media.stream_timeout",
                Ok(Ok(0)) | Ok(Err(_)) => return "the device closed the media connection",
                Ok(Ok(n)) => {
                    deframer.push(&buf[..n]);
                    while let Some(packet) = deframer.next_packet() {
                        if self.count(receiver, &packet) {
                            quiet_since = Instant::now();
                        }
                    }
                }
            }
        }
    }

    /// Counts one packet; true when it carried the session's SSRC.
    fn count(&self, receiver: &Mutex<RtpReceiver>, packet: &[u8]) -> bool {
        let mut receiver = lock(receiver);
        let before = receiver.snapshot();
        receiver.on_packet(packet, now_ms());
        let after = receiver.snapshot();
        self.metrics.packets.inc_by(after.packets - before.packets);
        self.metrics
            .wrong_ssrc
            .inc_by(after.wrong_ssrc - before.wrong_ssrc);
        after.packets > before.packets
    }
}

/// Whether two addresses are one host (an IPv4 peer may show as IPv4-mapped IPv6).
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Whether the box may dial `remote`, the media address a device's answer names: never an
/// unspecified or multicast address, and loopback only for a device on this host (tests, the
/// simulator), so a device cannot point the box at its own local services.
fn dialable(remote: IpAddr, device: IpAddr) -> bool {
    let remote = remote.to_canonical();
    if remote.is_unspecified() || remote.is_multicast() {
        return false;
    }
    !remote.is_loopback() || device.to_canonical().is_loopback()
}

fn bind(transport: MediaTransport, addr: SocketAddr) -> Option<Bound> {
    match transport {
        MediaTransport::Udp => {
            let socket = std::net::UdpSocket::bind(addr).ok()?;
            socket.set_nonblocking(true).ok()?;
            Some(Bound::Udp(UdpSocket::from_std(socket).ok()?))
        }
        // SO_REUSEADDR: a port whose last TCP session is in TIME_WAIT is free for the next.
        MediaTransport::TcpPassive => {
            let socket = TcpSocket::new_v4().ok()?;
            socket.set_reuseaddr(true).ok()?;
            socket.bind(addr).ok()?;
            Some(Bound::Listener(socket.listen(4).ok()?))
        }
        MediaTransport::TcpActive => {
            let socket = TcpSocket::new_v4().ok()?;
            socket.set_reuseaddr(true).ok()?;
            socket.bind(addr).ok()?;
            Some(Bound::Dialer(socket))
        }
    }
}
