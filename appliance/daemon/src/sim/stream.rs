//! The simulated camera's media: real H.264 (GStreamer test pattern or a file) muxed into
//! MPEG-PS and sent as RTP with the SSRC the INVITE offered, over UDP or TCP (RFC 4571 framing,
//! either side dialling), as GB28181 devices send it.
//!
//! Each stream runs on its own thread: the GStreamer source blocks, and a load test with many
//! devices streams at once without touching the signalling tasks.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use appliance_gb28181::sdp::{Answer, MediaTransport, Offer};
use appliance_media::ps::{PsMuxer, VideoCodec};
use appliance_media::rfc4571;
use appliance_media::rtp::RtpPacketizer;
use appliance_media::source::{H264Source, SourceSpec};

/// The PS payload type GB28181 devices use.
const PS_PAYLOAD_TYPE: u8 = 96;
/// RTP payload per packet: under a 1500-byte MTU with IP, UDP and RTP headers.
const MAX_RTP_PAYLOAD: usize = 1400;
/// How long a passive device side waits for the platform to connect.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The device's end of the media, set up while answering the INVITE.
pub enum Prepared {
    Udp {
        socket: UdpSocket,
        to: SocketAddr,
    },
    /// The platform listens (its offer said passive): we connect.
    Dial {
        to: SocketAddr,
    },
    /// The platform connects (its offer said active): we listen.
    Listen(TcpListener),
}

impl Prepared {
    /// Sets up the media side `offer` asks for on `local_ip` and returns the SDP answer.
    pub fn for_offer(offer: &Offer, local_ip: IpAddr) -> anyhow::Result<(Prepared, Answer)> {
        let platform = SocketAddr::new(offer.media_ip, offer.media_port);
        let (prepared, port, transport) = match offer.transport {
            MediaTransport::Udp => {
                let socket = UdpSocket::bind((local_ip, 0))?;
                let port = socket.local_addr()?.port();
                (
                    Prepared::Udp {
                        socket,
                        to: platform,
                    },
                    port,
                    MediaTransport::Udp,
                )
            }
            // RFC 4145: the active side has no port to state; 9 (discard) is the convention.
            MediaTransport::TcpPassive => (
                Prepared::Dial { to: platform },
                9,
                MediaTransport::TcpActive,
            ),
            MediaTransport::TcpActive => {
                let listener = TcpListener::bind((local_ip, 0))?;
                let port = listener.local_addr()?.port();
                (Prepared::Listen(listener), port, MediaTransport::TcpPassive)
            }
        };
        let answer = Answer {
            media_ip: local_ip,
            media_port: port,
            transport,
            ssrc: Some(offer.ssrc),
            payload_types: vec![PS_PAYLOAD_TYPE],
            f_line: None,
        };
        Ok((prepared, answer))
    }
}

enum Sink {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

impl Sink {
    fn open(prepared: Prepared) -> anyhow::Result<Sink> {
        Ok(match prepared {
            Prepared::Udp { socket, to } => Sink::Udp(socket, to),
            Prepared::Dial { to } => Sink::Tcp(
                TcpStream::connect_timeout(&to, ACCEPT_TIMEOUT)
                    .with_context(|| format!("cannot connect to the platform's media port {to}"))?,
            ),
            Prepared::Listen(listener) => {
                listener.set_nonblocking(true)?;
                let deadline = Instant::now() + ACCEPT_TIMEOUT;
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false)?;
                            break Sink::Tcp(stream);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            anyhow::ensure!(
                                Instant::now() < deadline,
                                "the platform did not connect to the media port"
                            );
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        })
    }

    fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Udp(socket, to) => socket.send_to(packet, *to).map(drop),
            Sink::Tcp(stream) => stream.write_all(&rfc4571::frame(packet)),
        }
    }
}

/// A running stream; dropping it stops it.
pub struct Stream {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
}

impl Stream {
    /// Starts sending `source` to `prepared` with `ssrc`. After `length` (a playback's end), the
    /// stream stops and `on_end` runs.
    pub fn start(
        prepared: Prepared,
        source: SourceSpec,
        ssrc: u32,
        length: Option<Duration>,
        on_end: impl FnOnce() + Send + 'static,
    ) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            let paused = paused.clone();
            std::thread::spawn(move || {
                match send(prepared, source, ssrc, length, &stop, &paused) {
                    Ok(true) => on_end(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(ssrc, "stream failed: {e:#}"),
                }
            });
        }
        Stream { stop, paused }
    }

    /// Pausing drops frames, as a device pausing a playback sends nothing.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }
}

impl Drop for Stream {
    /// Tells the thread to stop and leaves it to finish on its own: joining here would block a
    /// signalling task for as long as the thread sits in GStreamer's start-up or a connect.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends until stopped (false) or until `length` elapsed (true).
fn send(
    prepared: Prepared,
    source: SourceSpec,
    ssrc: u32,
    length: Option<Duration>,
    stop: &AtomicBool,
    paused: &AtomicBool,
) -> anyhow::Result<bool> {
    let mut source = H264Source::start(source)?;
    let mut sink = Sink::open(prepared)?;
    let mut muxer = PsMuxer::new(VideoCodec::H264);
    let mut packetizer = RtpPacketizer::new(ssrc, PS_PAYLOAD_TYPE, MAX_RTP_PAYLOAD);
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if length.is_some_and(|length| started.elapsed() >= length) {
            return Ok(true);
        }
        let Some(unit) = source.next_access_unit(Duration::from_millis(200))? else {
            continue;
        };
        if paused.load(Ordering::Relaxed) {
            continue;
        }
        let ps = muxer.mux(&unit.data, unit.pts_90k, unit.keyframe);
        // The RTP clock is the 90 kHz PTS, wrapping as RTP timestamps do.
        for packet in packetizer.packetize(&ps, unit.pts_90k as u32) {
            sink.send(&packet).context("sending RTP")?;
        }
    }
    Ok(false)
}
