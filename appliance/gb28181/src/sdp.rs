//! SDP offers and answers as GB28181 media sessions use them.
//!
//! The platform's INVITE carries an [`Offer`]: where our media server receives (`c=`, `m=`), over
//! which transport, for which kind of session (`s=Play|Playback|Download`, with `t=` times and
//! `a=downloadspeed`) and, in the GB-specific `y=` line, the SSRC the RTP must carry. The device's
//! 200 carries an [`Answer`] that says the same from its side, possibly with its own `y=` SSRC and
//! the GB `f=` media-format line.
//!
//! The general SDP crates reject `y=` and `f=` (they are not RFC 4566 line types), and devices
//! write SDP loosely (LF endings, trailing blanks, vendor attributes, `RTP/AVP/TCP`), so this
//! module parses by hand and tolerantly: unknown lines and attributes are skipped, only the lines
//! that are used are checked, and every error names the offending line. Output is strict: CRLF
//! line endings in the order the GB28181 examples use.
//!
//! Wire format of an offer ([`Offer::to_sdp`]):
//!
//! ```text
//! v=0
//! o=<origin_user> 0 0 IN IP4 <media_ip>
//! s=Play | Playback | Download
//! u=<channel_id>:0
//! c=IN IP4 <media_ip>
//! t=0 0 | t=<start> <end>
//! m=video <port> RTP/AVP 96 98 97        (TCP/RTP/AVP for TCP)
//! a=recvonly
//! a=rtpmap:96 PS/90000
//! a=rtpmap:98 H264/90000
//! a=rtpmap:97 MPEG4/90000
//! a=setup:passive | a=setup:active       (TCP only)
//! a=connection:new                       (TCP only)
//! a=downloadspeed:<n>                    (Download only)
//! y=<10-digit SSRC>
//! ```
//!
//! `o=` names the originator (the platform id), as RFC 4566 and the GB28181 examples do, and
//! `u=` names the channel for every kind so that a parsed offer carries both ids.

use std::net::IpAddr;

use crate::ssrc::Ssrc;

/// What the INVITE asks for. Times are epoch seconds, as GB28181 puts them in `t=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// Live video (`s=Play`, `t=0 0`).
    Play,
    /// Recorded video at normal pace, controllable with MANSRTSP (`s=Playback`).
    Playback { start: u64, end: u64 },
    /// Recorded video as fast as `speed` allows (`s=Download`, `a=downloadspeed:<speed>`).
    Download { start: u64, end: u64, speed: u32 },
}

impl SessionKind {
    fn name(self) -> &'static str {
        match self {
            SessionKind::Play => "Play",
            SessionKind::Playback { .. } => "Playback",
            SessionKind::Download { .. } => "Download",
        }
    }
}

/// How RTP travels, as the SDP's author states it.
///
/// In an [`Offer`] it is the platform side: `TcpPassive` means our media server listens
/// (`a=setup:passive`), `TcpActive` that it dials out (`a=setup:active`). In an [`Answer`] it is
/// the device side, so a device answering a passive offer says `TcpActive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaTransport {
    /// RTP over UDP (`RTP/AVP`).
    Udp,
    /// RTP over TCP (RFC 4571 framing), this side accepts the connection.
    TcpPassive,
    /// RTP over TCP (RFC 4571 framing), this side opens the connection.
    TcpActive,
}

impl MediaTransport {
    fn protocol(self) -> &'static str {
        match self {
            MediaTransport::Udp => "RTP/AVP",
            MediaTransport::TcpPassive | MediaTransport::TcpActive => "TCP/RTP/AVP",
        }
    }

    fn setup(self) -> Option<&'static str> {
        match self {
            MediaTransport::Udp => None,
            MediaTransport::TcpPassive => Some("passive"),
            MediaTransport::TcpActive => Some("active"),
        }
    }
}

/// Payload types the platform offers, in the order GB28181 lists them: PS first (what devices
/// send), then the elementary-stream fallbacks.
const OFFERED_PAYLOADS: [u8; 3] = [96, 98, 97];

/// The `a=rtpmap` encoding of the payload types GB28181 uses with fixed meanings.
fn rtpmap(payload_type: u8) -> Option<&'static str> {
    match payload_type {
        96 => Some("PS/90000"),
        97 => Some("MPEG4/90000"),
        98 => Some("H264/90000"),
        99 => Some("H265/90000"),
        _ => None,
    }
}

/// The platform's SDP offer in an INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub session: SessionKind,
    /// The 20-digit id of the channel (camera) asked for.
    pub channel_id: String,
    /// The platform's 20-digit id, written as the `o=` username.
    pub origin_user: String,
    /// Where our media server receives (or, for `TcpActive`, the address it dials from).
    pub media_ip: IpAddr,
    pub media_port: u16,
    pub transport: MediaTransport,
    pub ssrc: Ssrc,
}

impl Offer {
    /// The offer as SDP text with CRLF line endings.
    pub fn to_sdp(&self) -> String {
        let addr = address(self.media_ip);
        let mut lines = vec![
            "v=0".to_owned(),
            format!("o={} 0 0 {addr}", self.origin_user),
            format!("s={}", self.session.name()),
            format!("u={}:0", self.channel_id),
            format!("c={addr}"),
        ];
        lines.push(match self.session {
            SessionKind::Play => "t=0 0".to_owned(),
            SessionKind::Playback { start, end } | SessionKind::Download { start, end, .. } => {
                format!("t={start} {end}")
            }
        });
        lines.push(media_line(
            self.media_port,
            self.transport,
            &OFFERED_PAYLOADS,
        ));
        lines.push("a=recvonly".to_owned());
        lines.extend(rtpmap_lines(&OFFERED_PAYLOADS));
        lines.extend(tcp_lines(self.transport));
        if let SessionKind::Download { speed, .. } = self.session {
            lines.push(format!("a=downloadspeed:{speed}"));
        }
        lines.push(format!("y={}", self.ssrc));
        crlf(lines)
    }

    /// Parses an offer (what a device does with the INVITE body).
    ///
    /// `channel_id` comes from `u=<channel_id>:<n>`; offers from other platforms often omit `u=`
    /// for live video, and then it is empty (the device knows the channel from the Request-URI).
    /// A TCP offer without `a=setup` is taken as active, the RFC 4145 default for an offer.
    pub fn parse(text: &str) -> Result<Offer, SdpError> {
        let sdp = Sections::split(text)?;
        let origin = sdp.origin.ok_or(SdpError::Missing("o="))?;
        let origin_user = origin
            .value
            .split_whitespace()
            .next()
            .ok_or_else(|| origin.error("no username"))?
            .to_owned();
        let name = sdp.name.ok_or(SdpError::Missing("s="))?;
        let session = match name.value.trim() {
            n if n.eq_ignore_ascii_case("Play") => SessionKind::Play,
            n if n.eq_ignore_ascii_case("Playback") => {
                let (start, end) = sdp.timing()?;
                SessionKind::Playback { start, end }
            }
            n if n.eq_ignore_ascii_case("Download") => {
                let (start, end) = sdp.timing()?;
                let (line, value) = sdp
                    .attribute("downloadspeed")
                    .ok_or(SdpError::Missing("a=downloadspeed"))?;
                let speed = number(value).ok_or_else(|| line.error("bad download speed"))?;
                SessionKind::Download { start, end, speed }
            }
            _ => return Err(name.error("unsupported session name")),
        };
        let channel_id = sdp
            .uri
            .map(|u| {
                u.value
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        let media = sdp.media(MediaTransport::TcpActive)?;
        let ssrc = sdp.ssrc()?.ok_or(SdpError::Missing("y="))?;
        Ok(Offer {
            session,
            channel_id,
            origin_user,
            media_ip: media.ip,
            media_port: media.port,
            transport: media.transport,
            ssrc,
        })
    }
}

/// The device's SDP answer in its 200 to the INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Where the device sends from (UDP) or listens / dials from (TCP).
    pub media_ip: IpAddr,
    pub media_port: u16,
    /// As the device states it: answering our passive offer it says `TcpActive`.
    pub transport: MediaTransport,
    /// The device's `y=`: usually ours, but some devices put their own, and RTP then carries
    /// theirs. `None` when the device sent no `y=` line.
    pub ssrc: Option<Ssrc>,
    /// The payload types of the `m=video` line, in the device's order.
    pub payload_types: Vec<u8>,
    /// The GB `f=` media-format line's value (`v/<codec>/<resolution>/...`), verbatim.
    pub f_line: Option<String>,
}

impl Answer {
    /// Parses a device's answer.
    ///
    /// A TCP answer without `a=setup` is taken as passive, the RFC 4145 default for an answer.
    pub fn parse(text: &str) -> Result<Answer, SdpError> {
        let sdp = Sections::split(text)?;
        let media = sdp.media(MediaTransport::TcpPassive)?;
        Ok(Answer {
            media_ip: media.ip,
            media_port: media.port,
            transport: media.transport,
            ssrc: sdp.ssrc()?,
            payload_types: media.payload_types,
            f_line: sdp.format.map(|f| f.value.to_owned()),
        })
    }

    /// The answer as a device would send it (for the device simulator), with CRLF line endings.
    pub fn to_sdp(&self, device_id: &str, session_name: &str) -> String {
        let addr = address(self.media_ip);
        let mut lines = vec![
            "v=0".to_owned(),
            format!("o={device_id} 0 0 {addr}"),
            format!("s={session_name}"),
            format!("c={addr}"),
            "t=0 0".to_owned(),
            media_line(self.media_port, self.transport, &self.payload_types),
            "a=sendonly".to_owned(),
        ];
        lines.extend(rtpmap_lines(&self.payload_types));
        lines.extend(tcp_lines(self.transport));
        if let Some(ssrc) = self.ssrc {
            lines.push(format!("y={ssrc}"));
        }
        if let Some(f) = &self.f_line {
            lines.push(format!("f={f}"));
        }
        crlf(lines)
    }
}

/// Why an SDP body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line that is used could not be understood.
    #[error("line {line} `{text}`: {reason}")]
    BadLine {
        /// 1-based line number in the body.
        line: usize,
        /// The line, shortened if long (bodies come from the network and end up in logs).
        text: String,
        reason: &'static str,
    },
    /// A required line (or attribute) is absent.
    #[error("missing `{0}` line")]
    Missing(&'static str),
}

/// Longest excerpt of a bad line kept in an error.
const MAX_EXCERPT_CHARS: usize = 80;

/// `IN IP4 <addr>` or `IN IP6 <addr>`, the address part of `o=` and `c=`.
fn address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

fn media_line(port: u16, transport: MediaTransport, payload_types: &[u8]) -> String {
    let mut line = format!("m=video {port} {}", transport.protocol());
    for pt in payload_types {
        line.push_str(&format!(" {pt}"));
    }
    line
}

fn rtpmap_lines(payload_types: &[u8]) -> impl Iterator<Item = String> + '_ {
    payload_types
        .iter()
        .filter_map(|&pt| rtpmap(pt).map(|encoding| format!("a=rtpmap:{pt} {encoding}")))
}

fn tcp_lines(transport: MediaTransport) -> Vec<String> {
    match transport.setup() {
        // A new connection per session: reusing one would mix streams of different sessions.
        Some(setup) => vec![format!("a=setup:{setup}"), "a=connection:new".to_owned()],
        None => Vec::new(),
    }
}

fn crlf(lines: Vec<String>) -> String {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

/// A decimal number of ASCII digits only (`str::parse` would also take a leading `+`).
fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One SDP line: `<type>=<value>`.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// 1-based.
    number: usize,
    /// The whole line, trimmed.
    text: &'a str,
    value: &'a str,
}

impl Line<'_> {
    fn error(&self, reason: &'static str) -> SdpError {
        let mut text: String = self.text.chars().take(MAX_EXCERPT_CHARS).collect();
        if text.len() < self.text.len() {
            text.push('…');
        }
        SdpError::BadLine {
            line: self.number,
            text,
            reason,
        }
    }
}

/// The first `m=video` section: the one GB28181 media sessions are about.
#[derive(Debug, Default)]
struct VideoSection<'a> {
    media: Option<Line<'a>>,
    connection: Option<Line<'a>>,
    attributes: Vec<Line<'a>>,
}

/// The lines of a body that matter, sorted by where they apply. Nothing is interpreted yet, so
/// a malformed line that is not needed (a `t=` in a live offer, an audio section) does no harm.
#[derive(Debug, Default)]
struct Sections<'a> {
    origin: Option<Line<'a>>,
    name: Option<Line<'a>>,
    uri: Option<Line<'a>>,
    timing: Option<Line<'a>>,
    connection: Option<Line<'a>>,
    attributes: Vec<Line<'a>>,
    video: VideoSection<'a>,
    ssrc: Option<Line<'a>>,
    format: Option<Line<'a>>,
}

/// Which part of the body the parser is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Session,
    Video,
    OtherMedia,
}

/// What the `m=video` section says, interpreted.
#[derive(Debug)]
struct Media {
    ip: IpAddr,
    port: u16,
    transport: MediaTransport,
    payload_types: Vec<u8>,
}

impl<'a> Sections<'a> {
    fn split(text: &'a str) -> Result<Sections<'a>, SdpError> {
        let mut sections = Sections::default();
        let mut part = Part::Session;
        // `lines()` accepts LF and CRLF; trimming drops trailing blanks and stray CRs.
        for (index, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut line = Line {
                number: index + 1,
                text: trimmed,
                value: "",
            };
            let kind = match trimmed.as_bytes() {
                [kind, b'=', ..] if kind.is_ascii_alphabetic() => *kind,
                _ => return Err(line.error("not a `<type>=<value>` line")),
            };
            // The first two bytes are ASCII, so byte 2 is a char boundary.
            line.value = trimmed.get(2..).unwrap_or_default();
            match kind {
                b'm' => {
                    let is_video = line.value.split_whitespace().next() == Some("video");
                    part = if is_video && sections.video.media.is_none() {
                        sections.video.media = Some(line);
                        Part::Video
                    } else {
                        Part::OtherMedia
                    };
                }
                b'c' => match part {
                    Part::Session => first(&mut sections.connection, line),
                    Part::Video => first(&mut sections.video.connection, line),
                    Part::OtherMedia => {}
                },
                b'a' => match part {
                    Part::Session => sections.attributes.push(line),
                    Part::Video => sections.video.attributes.push(line),
                    Part::OtherMedia => {}
                },
                // Session-level by RFC 4566; taken wherever they appear, as devices misplace them.
                b'o' => first(&mut sections.origin, line),
                b's' => first(&mut sections.name, line),
                b'u' => first(&mut sections.uri, line),
                b't' => first(&mut sections.timing, line),
                // The GB lines, which devices put after the media section.
                b'y' => first(&mut sections.ssrc, line),
                b'f' => first(&mut sections.format, line),
                _ => {}
            }
        }
        Ok(sections)
    }

    /// The value of attribute `name` (`a=name:value`), media level first, then session level.
    fn attribute(&self, name: &str) -> Option<(Line<'a>, &'a str)> {
        self.video
            .attributes
            .iter()
            .chain(&self.attributes)
            .find_map(|line| {
                let (key, value) = line.value.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then_some((*line, value.trim()))
            })
    }

    /// `t=<start> <end>`, required for recorded video.
    fn timing(&self) -> Result<(u64, u64), SdpError> {
        let line = self.timing.ok_or(SdpError::Missing("t="))?;
        let mut fields = line.value.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(start), Some(end), None) => number(start)
                .zip(number(end))
                .ok_or_else(|| line.error("bad start or end time")),
            _ => Err(line.error("expected `t=<start> <end>`")),
        }
    }

    /// The `y=` SSRC, if present.
    fn ssrc(&self) -> Result<Option<Ssrc>, SdpError> {
        self.ssrc
            .map(|line| {
                line.value
                    .trim()
                    .parse()
                    .map_err(|_| line.error("bad SSRC (expected 10 digits)"))
            })
            .transpose()
    }

    /// Address, port, transport and payload types of the `m=video` section. `tcp_default` is the
    /// transport a TCP section without `a=setup` has (RFC 4145: active in an offer, passive in
    /// an answer).
    fn media(&self, tcp_default: MediaTransport) -> Result<Media, SdpError> {
        let line = self.video.media.ok_or(SdpError::Missing("m=video"))?;
        let mut fields = line.value.split_whitespace().skip(1);
        let port_field = fields.next().ok_or_else(|| line.error("no port"))?;
        // `<port>/<count>` is legal SDP; GB sessions use one port.
        let port_text = port_field.split('/').next().unwrap_or_default();
        let port = number(port_text).ok_or_else(|| line.error("bad port"))?;
        let protocol = fields.next().ok_or_else(|| line.error("no transport"))?;
        let tcp = if protocol.eq_ignore_ascii_case("RTP/AVP") {
            false
        } else if protocol.eq_ignore_ascii_case("TCP/RTP/AVP")
            || protocol.eq_ignore_ascii_case("RTP/AVP/TCP")
        {
            true
        } else {
            return Err(line.error("unsupported transport"));
        };
        let payload_types = fields
            .map(|pt| number(pt).ok_or_else(|| line.error("bad payload type")))
            .collect::<Result<Vec<u8>, _>>()?;

        let transport = if tcp {
            match self.attribute("setup") {
                None => tcp_default,
                Some((_, setup)) if setup.eq_ignore_ascii_case("active") => {
                    MediaTransport::TcpActive
                }
                Some((_, setup)) if setup.eq_ignore_ascii_case("passive") => {
                    MediaTransport::TcpPassive
                }
                Some((setup, _)) => return Err(setup.error("unsupported setup role")),
            }
        } else {
            MediaTransport::Udp
        };

        let connection = self
            .video
            .connection
            .or(self.connection)
            .ok_or(SdpError::Missing("c="))?;
        Ok(Media {
            ip: connection_address(connection)?,
            port,
            transport,
            payload_types,
        })
    }
}

/// Keeps the first occurrence of a line that should appear once.
fn first<'a>(slot: &mut Option<Line<'a>>, line: Line<'a>) {
    slot.get_or_insert(line);
}

/// `c=IN IP4 <addr>[/ttl[/count]]` or `c=IN IP6 <addr>[/count]`.
fn connection_address(line: Line<'_>) -> Result<IpAddr, SdpError> {
    let mut fields = line.value.split_whitespace();
    let (Some(net), Some(kind), Some(addr), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(line.error("expected `c=IN IP4 <address>`"));
    };
    if !net.eq_ignore_ascii_case("IN") {
        return Err(line.error("network type is not IN"));
    }
    let addr = addr.split('/').next().unwrap_or_default();
    let ip = if kind.eq_ignore_ascii_case("IP4") {
        addr.parse::<std::net::Ipv4Addr>().map(IpAddr::V4)
    } else if kind.eq_ignore_ascii_case("IP6") {
        addr.parse::<std::net::Ipv6Addr>().map(IpAddr::V6)
    } else {
        return Err(line.error("address type is not IP4 or IP6"));
    };
    ip.map_err(|_| line.error("bad address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const CHANNEL: &str = "34020000001320000001";
    const PLATFORM: &str = "34020000002000000001";

    fn ssrc(text: &str) -> Ssrc {
        text.parse().expect("valid SSRC literal")
    }

    fn offer(session: SessionKind, transport: MediaTransport, ssrc_text: &str) -> Offer {
        Offer {
            session,
            channel_id: CHANNEL.to_owned(),
            origin_user: PLATFORM.to_owned(),
            media_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
            media_port: 30000,
            transport,
            ssrc: ssrc(ssrc_text),
        }
    }

    #[test]
    fn live_udp_offer_text() -> Result<(), SdpError> {
        let o = offer(SessionKind::Play, MediaTransport::Udp, "0200000001");
        let expected = "v=0\r\n\
                        o=34020000002000000001 0 0 IN IP4 192.168.1.10\r\n\
                        s=Play\r\n\
                        u=34020000001320000001:0\r\n\
                        c=IN IP4 192.168.1.10\r\n\
                        t=0 0\r\n\
                        m=video 30000 RTP/AVP 96 98 97\r\n\
                        a=recvonly\r\n\
                        a=rtpmap:96 PS/90000\r\n\
                        a=rtpmap:98 H264/90000\r\n\
                        a=rtpmap:97 MPEG4/90000\r\n\
                        y=0200000001\r\n";
        assert_eq!(o.to_sdp(), expected);
        assert_eq!(Offer::parse(expected)?, o);
        Ok(())
    }

    #[test]
    fn live_tcp_passive_offer_text() -> Result<(), SdpError> {
        let o = offer(SessionKind::Play, MediaTransport::TcpPassive, "0200000002");
        let expected = "v=0\r\n\
                        o=34020000002000000001 0 0 IN IP4 192.168.1.10\r\n\
                        s=Play\r\n\
                        u=34020000001320000001:0\r\n\
                        c=IN IP4 192.168.1.10\r\n\
                        t=0 0\r\n\
                        m=video 30000 TCP/RTP/AVP 96 98 97\r\n\
                        a=recvonly\r\n\
                        a=rtpmap:96 PS/90000\r\n\
                        a=rtpmap:98 H264/90000\r\n\
                        a=rtpmap:97 MPEG4/90000\r\n\
                        a=setup:passive\r\n\
                        a=connection:new\r\n\
                        y=0200000002\r\n";
        assert_eq!(o.to_sdp(), expected);
        assert_eq!(Offer::parse(expected)?, o);
        Ok(())
    }

    #[test]
    fn playback_tcp_active_offer_text() -> Result<(), SdpError> {
        let o = offer(
            SessionKind::Playback {
                start: 1_700_000_000,
                end: 1_700_003_600,
            },
            MediaTransport::TcpActive,
            "1200000003",
        );
        let expected = "v=0\r\n\
                        o=34020000002000000001 0 0 IN IP4 192.168.1.10\r\n\
                        s=Playback\r\n\
                        u=34020000001320000001:0\r\n\
                        c=IN IP4 192.168.1.10\r\n\
                        t=1700000000 1700003600\r\n\
                        m=video 30000 TCP/RTP/AVP 96 98 97\r\n\
                        a=recvonly\r\n\
                        a=rtpmap:96 PS/90000\r\n\
                        a=rtpmap:98 H264/90000\r\n\
                        a=rtpmap:97 MPEG4/90000\r\n\
                        a=setup:active\r\n\
                        a=connection:new\r\n\
                        y=1200000003\r\n";
        assert_eq!(o.to_sdp(), expected);
        assert_eq!(Offer::parse(expected)?, o);
        Ok(())
    }

    #[test]
    fn download_udp_offer_text() -> Result<(), SdpError> {
        let o = offer(
            SessionKind::Download {
                start: 1_700_000_000,
                end: 1_700_000_600,
                speed: 4,
            },
            MediaTransport::Udp,
            "1200000004",
        );
        let expected = "v=0\r\n\
                        o=34020000002000000001 0 0 IN IP4 192.168.1.10\r\n\
                        s=Download\r\n\
                        u=34020000001320000001:0\r\n\
                        c=IN IP4 192.168.1.10\r\n\
                        t=1700000000 1700000600\r\n\
                        m=video 30000 RTP/AVP 96 98 97\r\n\
                        a=recvonly\r\n\
                        a=rtpmap:96 PS/90000\r\n\
                        a=rtpmap:98 H264/90000\r\n\
                        a=rtpmap:97 MPEG4/90000\r\n\
                        a=downloadspeed:4\r\n\
                        y=1200000004\r\n";
        assert_eq!(o.to_sdp(), expected);
        assert_eq!(Offer::parse(expected)?, o);
        Ok(())
    }

    #[test]
    fn ipv6_offer_round_trips() -> Result<(), SdpError> {
        let mut o = offer(SessionKind::Play, MediaTransport::Udp, "0200000005");
        o.media_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let text = o.to_sdp();
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"), "{text}");
        assert_eq!(Offer::parse(&text)?, o);
        Ok(())
    }

    /// The GB28181-2016 example INVITE body as other platforms send it: LF endings, no `u=` for
    /// live, an empty `f=`, trailing blanks.
    #[test]
    fn offer_from_another_platform() -> Result<(), SdpError> {
        let text = "v=0\n\
                    o=64010000002020000001 0 0 IN IP4 172.20.16.3  \n\
                    s=Play\n\
                    c=IN IP4 172.20.16.3\n\
                    t=0 0\n\
                    m=video 6000 RTP/AVP 96 98 97\n\
                    a=recvonly\n\
                    a=rtpmap:96 PS/90000\n\
                    a=rtpmap:98 H264/90000\n\
                    a=rtpmap:97 MPEG4/90000\n\
                    y=0100000001\n\
                    f=\n";
        let o = Offer::parse(text)?;
        assert_eq!(o.session, SessionKind::Play);
        assert_eq!(o.origin_user, "64010000002020000001");
        assert_eq!(o.channel_id, "");
        assert_eq!(o.media_ip, IpAddr::V4(Ipv4Addr::new(172, 20, 16, 3)));
        assert_eq!(o.media_port, 6000);
        assert_eq!(o.transport, MediaTransport::Udp);
        assert_eq!(o.ssrc, ssrc("0100000001"));
        Ok(())
    }

    #[test]
    fn tcp_offer_without_setup_is_active() -> Result<(), SdpError> {
        let text = "v=0\r\no=p 0 0 IN IP4 10.0.0.1\r\ns=Play\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                    m=video 9000 TCP/RTP/AVP 96\r\ny=0200000001\r\n";
        assert_eq!(Offer::parse(text)?.transport, MediaTransport::TcpActive);
        Ok(())
    }

    /// A Hikvision camera's answer to a UDP live offer: its own `y=`, the `f=` format line,
    /// session-level `c=`, LF endings.
    #[test]
    fn hikvision_answer() -> Result<(), SdpError> {
        let text = "v=0\n\
                    o=34020000001320000001 0 0 IN IP4 192.168.1.64\n\
                    s=Play\n\
                    c=IN IP4 192.168.1.64\n\
                    t=0 0\n\
                    m=video 15060 RTP/AVP 96\n\
                    a=sendonly\n\
                    a=rtpmap:96 PS/90000\n\
                    a=filesize:0\n\
                    y=0100000001\n\
                    f=v/2/4///a///\n";
        let answer = Answer::parse(text)?;
        assert_eq!(
            answer,
            Answer {
                media_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 64)),
                media_port: 15060,
                transport: MediaTransport::Udp,
                ssrc: Some(ssrc("0100000001")),
                payload_types: vec![96],
                f_line: Some("v/2/4///a///".to_owned()),
            }
        );
        Ok(())
    }

    /// A Dahua-style answer to a passive TCP offer: `RTP/AVP/TCP`, media-level `c=`, `a=setup:active`,
    /// vendor attributes, an `m=audio` section, no `y=`.
    #[test]
    fn tcp_answer_with_extras() -> Result<(), SdpError> {
        let text = "v=0\r\n\
                    o=34020000001320000002 2890844526 2890842807 IN IP4 10.1.2.3\r\n\
                    s=Play\r\n\
                    c=IN IP4 0.0.0.0\r\n\
                    t=0 0\r\n\
                    m=audio 8000 RTP/AVP 8\r\n\
                    c=IN IP4 10.9.9.9\r\n\
                    a=setup:passive\r\n\
                    m=video 40000 RTP/AVP/TCP 96 98\r\n\
                    c=IN IP4 10.1.2.3\r\n\
                    a=sendonly\r\n\
                    a=rtpmap:96 PS/90000\r\n\
                    a=setup:active\r\n\
                    a=connection:new\r\n\
                    a=x-vendor-thing\r\n";
        let answer = Answer::parse(text)?;
        assert_eq!(answer.media_ip, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(answer.media_port, 40000);
        assert_eq!(answer.transport, MediaTransport::TcpActive);
        assert_eq!(answer.ssrc, None);
        assert_eq!(answer.payload_types, vec![96, 98]);
        assert_eq!(answer.f_line, None);
        Ok(())
    }

    #[test]
    fn tcp_answer_without_setup_is_passive() -> Result<(), SdpError> {
        let text = "v=0\nc=IN IP4 10.0.0.2\nm=video 9000 TCP/RTP/AVP 96\n";
        assert_eq!(Answer::parse(text)?.transport, MediaTransport::TcpPassive);
        Ok(())
    }

    #[test]
    fn answer_text_and_round_trip() -> Result<(), SdpError> {
        let answer = Answer {
            media_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 64)),
            media_port: 15060,
            transport: MediaTransport::TcpActive,
            ssrc: Some(ssrc("0200000001")),
            payload_types: vec![96],
            f_line: Some("v/2/4///a///".to_owned()),
        };
        let expected = "v=0\r\n\
                        o=34020000001320000001 0 0 IN IP4 192.168.1.64\r\n\
                        s=Play\r\n\
                        c=IN IP4 192.168.1.64\r\n\
                        t=0 0\r\n\
                        m=video 15060 TCP/RTP/AVP 96\r\n\
                        a=sendonly\r\n\
                        a=rtpmap:96 PS/90000\r\n\
                        a=setup:active\r\n\
                        a=connection:new\r\n\
                        y=0200000001\r\n\
                        f=v/2/4///a///\r\n";
        assert_eq!(answer.to_sdp(CHANNEL, "Play"), expected);
        assert_eq!(Answer::parse(expected)?, answer);

        let bare = Answer {
            transport: MediaTransport::Udp,
            ssrc: None,
            payload_types: vec![96, 100],
            f_line: None,
            ..answer
        };
        assert_eq!(Answer::parse(&bare.to_sdp(CHANNEL, "Play"))?, bare);
        Ok(())
    }

    #[test]
    fn errors_name_the_line() {
        let cases: [(&str, &str); 14] = [
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=video abc RTP/AVP 96\n",
                "line 3 `m=video abc RTP/AVP 96`: bad port",
            ),
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=video 70000 RTP/AVP 96\n",
                "line 3 `m=video 70000 RTP/AVP 96`: bad port",
            ),
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=video 5000 UDP/TLS/RTP/SAVPF 96\n",
                "line 3 `m=video 5000 UDP/TLS/RTP/SAVPF 96`: unsupported transport",
            ),
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=video 5000 RTP/AVP 96 300\n",
                "line 3 `m=video 5000 RTP/AVP 96 300`: bad payload type",
            ),
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=video\n",
                "line 3 `m=video`: no port",
            ),
            (
                "v=0\nc=IN IP4 1.2.3.999\nm=video 5000 RTP/AVP 96\n",
                "line 2 `c=IN IP4 1.2.3.999`: bad address",
            ),
            (
                "v=0\nc=IN IP4 ::1\nm=video 5000 RTP/AVP 96\n",
                "line 2 `c=IN IP4 ::1`: bad address",
            ),
            (
                "v=0\nc=IN IPX 1.2.3.4\nm=video 5000 RTP/AVP 96\n",
                "line 2 `c=IN IPX 1.2.3.4`: address type is not IP4 or IP6",
            ),
            (
                "v=0\nc=IN IP4\nm=video 5000 RTP/AVP 96\n",
                "line 2 `c=IN IP4`: expected `c=IN IP4 <address>`",
            ),
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=video 5000 TCP/RTP/AVP 96\na=setup:actpass\n",
                "line 4 `a=setup:actpass`: unsupported setup role",
            ),
            (
                "v=0\nc=IN IP4 1.2.3.4\nm=video 5000 RTP/AVP 96\ny=12345\n",
                "line 4 `y=12345`: bad SSRC (expected 10 digits)",
            ),
            (
                "v=0\n\nhello\nc=IN IP4 1.2.3.4\n",
                "line 3 `hello`: not a `<type>=<value>` line",
            ),
            ("v=0\nc=IN IP4 1.2.3.4\n", "missing `m=video` line"),
            (
                "v=0\nm=audio 5000 RTP/AVP 8\nc=IN IP4 1.2.3.4\nm=video 5000 RTP/AVP 96\n",
                "missing `c=` line",
            ),
        ];
        for (text, message) in cases {
            match Answer::parse(text) {
                Err(e) => assert_eq!(e.to_string(), message, "{text:?}"),
                Ok(a) => panic!("{text:?} parsed as {a:?}"),
            }
        }
    }

    #[test]
    fn offer_errors_name_the_line() {
        let body = |session: &str, extra: &str| {
            format!(
                "v=0\no=p 0 0 IN IP4 1.2.3.4\n{session}\nc=IN IP4 1.2.3.4\n{extra}\
                 m=video 5000 RTP/AVP 96\ny=0200000001\n"
            )
        };
        let cases = [
            (
                body("s=Talk", ""),
                "line 3 `s=Talk`: unsupported session name",
            ),
            (body("s=Playback", ""), "missing `t=` line"),
            (
                body("s=Playback", "t=0\n"),
                "line 5 `t=0`: expected `t=<start> <end>`",
            ),
            (
                body("s=Playback", "t=-1 5\n"),
                "line 5 `t=-1 5`: bad start or end time",
            ),
            (
                body("s=Download", "t=1 2\n"),
                "missing `a=downloadspeed` line",
            ),
            (
                body("s=Download", "t=1 2\na=downloadspeed:fast\n"),
                "line 6 `a=downloadspeed:fast`: bad download speed",
            ),
            (
                "v=0\ns=Play\nc=IN IP4 1.2.3.4\nm=video 5000 RTP/AVP 96\ny=0200000001\n".to_owned(),
                "missing `o=` line",
            ),
            (
                "v=0\no=p 0 0 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=video 5000 RTP/AVP 96\n"
                    .to_owned(),
                "missing `s=` line",
            ),
            (
                "v=0\no=p\ns=Play\nc=IN IP4 1.2.3.4\nm=video 5000 RTP/AVP 96\n".to_owned(),
                "missing `y=` line",
            ),
            (
                "v=0\no= \ns=Play\nc=IN IP4 1.2.3.4\nm=video 5000 RTP/AVP 96\n".to_owned(),
                "line 2 `o=`: no username",
            ),
        ];
        for (text, message) in cases {
            match Offer::parse(&text) {
                Err(e) => assert_eq!(e.to_string(), message, "{text:?}"),
                Ok(o) => panic!("{text:?} parsed as {o:?}"),
            }
        }
    }

    #[test]
    fn long_bad_lines_are_shortened_in_errors() {
        let text = format!(
            "v=0\nc=IN IP4 1.2.3.4\nm=video {} RTP/AVP 96\n",
            "9".repeat(500)
        );
        let Err(SdpError::BadLine { line, text, reason }) = Answer::parse(&text) else {
            panic!("accepted");
        };
        assert_eq!((line, reason), (3, "bad port"));
        assert_eq!(text.chars().count(), MAX_EXCERPT_CHARS + 1);
    }

    fn arb_offer() -> impl Strategy<Value = Offer> {
        let session = prop_oneof![
            Just(SessionKind::Play),
            (any::<u64>(), any::<u64>())
                .prop_map(|(start, end)| SessionKind::Playback { start, end }),
            (any::<u64>(), any::<u64>(), any::<u32>())
                .prop_map(|(start, end, speed)| SessionKind::Download { start, end, speed }),
        ];
        let transport = prop_oneof![
            Just(MediaTransport::Udp),
            Just(MediaTransport::TcpPassive),
            Just(MediaTransport::TcpActive),
        ];
        (
            session,
            "[0-9]{20}",
            "[0-9]{20}",
            any::<IpAddr>(),
            any::<u16>(),
            transport,
            any::<u32>(),
        )
            .prop_map(
                |(session, channel_id, origin_user, media_ip, media_port, transport, ssrc)| Offer {
                    session,
                    channel_id,
                    origin_user,
                    media_ip,
                    media_port,
                    transport,
                    ssrc: Ssrc::from(ssrc),
                },
            )
    }

    /// Lines that look like SDP, valid or not, to reach deep into the parser.
    fn arb_sdp_line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]=[ -~]{0,40}",
            "m=(video|audio) [0-9a-z/]{0,8} (RTP/AVP|TCP/RTP/AVP|RTP/AVP/TCP|x)( [0-9]{1,4}){0,4}",
            "c=(IN|OUT) (IP4|IP6|IPX) [0-9a-f.:/]{0,40}",
            "a=(setup|downloadspeed|rtpmap|recvonly):[ -~]{0,12}",
            "s=(Play|Playback|Download|play|x)",
            "t=[0-9 -]{0,25}",
            "y=[0-9]{0,12}",
            "f=[ -~]{0,20}",
            "u=[0-9:]{0,25}",
            "o=[ -~]{0,40}",
            "\\PC{0,30}",
        ]
    }

    proptest! {
        #[test]
        fn offers_round_trip(o in arb_offer()) {
            prop_assert_eq!(Offer::parse(&o.to_sdp()), Ok(o));
        }

        #[test]
        fn answers_round_trip(
            media_ip in any::<IpAddr>(),
            media_port in any::<u16>(),
            transport in prop_oneof![
                Just(MediaTransport::Udp),
                Just(MediaTransport::TcpPassive),
                Just(MediaTransport::TcpActive),
            ],
            ssrc in proptest::option::of(any::<u32>()),
            payload_types in proptest::collection::vec(any::<u8>(), 0..6),
            f_line in proptest::option::of("[ -~]{0,20}"),
        ) {
            let answer = Answer {
                media_ip,
                media_port,
                transport,
                ssrc: ssrc.map(Ssrc::from),
                payload_types,
                // The value is trimmed on parse, like every line.
                f_line: f_line.map(|f| f.trim().to_owned()),
            };
            prop_assert_eq!(Answer::parse(&answer.to_sdp("34020000001320000001", "Play")), Ok(answer));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = Offer::parse(&text);
            let _ = Answer::parse(&text);
        }

        #[test]
        fn arbitrary_sdp_lines_never_panic(
            lines in proptest::collection::vec(arb_sdp_line(), 0..16),
            crlf in any::<bool>(),
        ) {
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            let _ = Offer::parse(&text);
            let _ = Answer::parse(&text);
        }

        #[test]
        fn mangled_offers_never_panic(
            o in arb_offer(),
            cut in any::<prop::sample::Index>(),
            insert in "\\PC{0,8}",
        ) {
            let text = o.to_sdp();
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mangled = format!("{}{insert}{}", &text[..at], &text[at..]);
            let _ = Offer::parse(&mangled);
            let _ = Answer::parse(&mangled);
            let _ = Offer::parse(&text[..at]);
        }
    }
}
