//! MPEG-2 program stream (ISO/IEC 13818-1 §2.5), the container GB28181 carries over RTP.
//!
//! [`PsMuxer`] writes one pack per access unit, as GB28181 devices do; [`PsDemuxer`] reads the
//! video elementary stream back out of whatever a device or the network hands it.

use serde::Serialize;
use utoipa::ToSchema;

/// The video codecs GB28181 streams carry, as named by the PSM's stream_type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
pub enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    /// The program stream map's stream_type (ISO/IEC 13818-1 table 2-34).
    pub fn stream_type(self) -> u8 {
        match self {
            VideoCodec::H264 => 0x1B,
            VideoCodec::H265 => 0x24,
        }
    }

    fn from_stream_type(stream_type: u8) -> Option<Self> {
        match stream_type {
            0x1B => Some(VideoCodec::H264),
            0x24 => Some(VideoCodec::H265),
            _ => None,
        }
    }

    /// Whether a NAL unit header byte starts a picture a decoder can begin with: an IDR slice
    /// (H.264 type 5) or an IRAP picture (H.265 types 16–21: BLA, IDR, CRA).
    fn is_random_access(self, nal_header: u8) -> bool {
        match self {
            VideoCodec::H264 => nal_header & 0x1F == 5,
            VideoCodec::H265 => (16..=21).contains(&((nal_header >> 1) & 0x3F)),
        }
    }
}

const PACK_START: u8 = 0xBA;
const END_CODE: u8 = 0xB9;
const SYSTEM_HEADER: u8 = 0xBB;
const PSM: u8 = 0xBC;
/// The first video stream; GB28181 streams have exactly one.
const VIDEO_STREAM: u8 = 0xE0;

/// The PES_packet_length field is 16 bits. A PES may say 0 ("unbounded") only for video in a
/// *transport* stream; in a program stream every PES states its length, so a larger access unit
/// must be split over several PES packets.
const MAX_PES_LEN: usize = u16::MAX as usize;
/// PES header bytes after the length field: two flag bytes and PES_header_data_length.
const PES_FLAGS_LEN: usize = 3;
/// PTS and DTS, 5 bytes each.
const PTS_DTS_LEN: usize = 10;

/// program_mux_rate and rate_bound, in units of 50 bytes/s: 25000 is 10 Mbit/s. Receivers do
/// not pace by it, but it must not be 0 and should cover the stream's peak rate.
const MUX_RATE: u32 = 25_000;
/// How far the SCR runs ahead of the DTS (40 ms at 90 kHz): the pack "arrives" before its
/// frame is due, as in the buffer model real muxers follow; an SCR after the DTS would make a
/// demuxer's clock consider every frame late.
const SCR_LEAD: u64 = 3600;
/// PTS, DTS and SCR are 33-bit counters of a 90 kHz clock.
const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// Writes H.264 or H.265 access units as MPEG-2 program stream packs.
#[derive(Debug, Clone)]
pub struct PsMuxer {
    codec: VideoCodec,
    headers_sent: bool,
}

impl PsMuxer {
    pub fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            headers_sent: false,
        }
    }

    /// One pack for one access unit (Annex-B): pack header with the SCR; the system header and
    /// program stream map on keyframes (and on the first pack, whatever it is); then PES packets
    /// of stream 0xE0, the first one with PTS = DTS = `pts_90k` (no B-frames), the rest
    /// continuing it without timestamps.
    ///
    /// The PSM is what tells a GB28181 receiver (ZLMediaKit, WVP) the codec: without it they
    /// cannot tell H.264 from H.265 and drop or misdecode the stream. Repeating it on every
    /// keyframe lets a receiver that joins mid-stream start at the next keyframe.
    pub fn mux(&mut self, access_unit: &[u8], pts_90k: u64, keyframe: bool) -> Vec<u8> {
        let pes_count = access_unit
            .len()
            .div_ceil(MAX_PES_LEN - PES_FLAGS_LEN - PTS_DTS_LEN);
        let mut out = Vec::with_capacity(access_unit.len() + 64 + 9 * pes_count);
        write_pack_header(&mut out, pts_90k.saturating_sub(SCR_LEAD));
        if keyframe || !self.headers_sent {
            write_system_header(&mut out);
            write_psm(&mut out, self.codec);
            self.headers_sent = true;
        }
        let mut rest = access_unit;
        let mut pts = Some(pts_90k);
        loop {
            let header = PES_FLAGS_LEN + if pts.is_some() { PTS_DTS_LEN } else { 0 };
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_PES_LEN - header));
            write_pes(&mut out, chunk, pts.take());
            rest = tail;
            if rest.is_empty() {
                return out;
            }
        }
    }
}

fn write_pack_header(out: &mut Vec<u8>, scr: u64) {
    let scr = scr & TIMESTAMP_MASK;
    // '01', SCR base in three marker-separated parts, SCR extension 0, then the mux rate.
    out.extend_from_slice(&[0, 0, 1, PACK_START]);
    out.push(0x44 | ((scr >> 27) as u8 & 0x38) | ((scr >> 28) as u8 & 0x03));
    out.push((scr >> 20) as u8);
    out.push(((scr >> 12) as u8 & 0xF8) | 0x04 | ((scr >> 13) as u8 & 0x03));
    out.push((scr >> 5) as u8);
    out.push(((scr << 3) as u8 & 0xF8) | 0x04);
    out.push(0x01);
    out.extend_from_slice(&((MUX_RATE << 2) | 0x03).to_be_bytes()[1..]);
    out.push(0xF8); // reserved, no stuffing
}

fn write_system_header(out: &mut Vec<u8>) {
    // P-STD buffer bound for the video stream, in units of 1024 bytes: 1 MiB.
    const BUFFER_BOUND_KIB: u16 = 1024;
    out.extend_from_slice(&[0, 0, 1, SYSTEM_HEADER, 0, 9]);
    out.extend_from_slice(&((MUX_RATE << 1) | 0x80_0001).to_be_bytes()[1..]);
    out.push(0x00); // audio_bound 0, not fixed rate, not constrained
    out.push(0xE1); // audio and video locked to the SCR, video_bound 1
    out.push(0x7F); // no packet rate restriction
    out.push(VIDEO_STREAM);
    out.extend_from_slice(&(0xE000 | BUFFER_BOUND_KIB).to_be_bytes()); // '11', scale 1024
}

fn write_psm(out: &mut Vec<u8>, codec: VideoCodec) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 1, PSM, 0, 14]);
    out.push(0xE0); // current, version 0
    out.push(0xFF);
    out.extend_from_slice(&[0, 0]); // no program descriptors
    out.extend_from_slice(&[0, 4]); // one elementary stream entry
    out.extend_from_slice(&[codec.stream_type(), VIDEO_STREAM, 0, 0]);
    let crc = crc32_mpeg2(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn write_pes(out: &mut Vec<u8>, payload: &[u8], pts: Option<u64>) {
    let header = if pts.is_some() { PTS_DTS_LEN } else { 0 };
    let len = PES_FLAGS_LEN + header + payload.len();
    out.extend_from_slice(&[0, 0, 1, VIDEO_STREAM]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    match pts {
        Some(pts) => {
            // data_alignment_indicator: this PES starts the access unit.
            out.extend_from_slice(&[0x84, 0xC0, PTS_DTS_LEN as u8]);
            write_timestamp(out, 0x3, pts);
            write_timestamp(out, 0x1, pts);
        }
        None => out.extend_from_slice(&[0x80, 0x00, 0]),
    }
    out.extend_from_slice(payload);
}

/// A PTS or DTS: 4-bit prefix, then 33 bits in three marker-separated parts.
fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    let ts = ts & TIMESTAMP_MASK;
    out.push((prefix << 4) | ((ts >> 29) as u8 & 0x0E) | 1);
    out.push((ts >> 22) as u8);
    out.push(((ts >> 14) as u8 & 0xFE) | 1);
    out.push((ts >> 7) as u8);
    out.push(((ts << 1) as u8 & 0xFE) | 1);
}

/// Marker bits are not checked: devices get them wrong and the value is still clear.
fn read_timestamp(bytes: &[u8]) -> u64 {
    (u64::from(bytes[0] & 0x0E) << 29)
        | (u64::from(bytes[1]) << 22)
        | (u64::from(bytes[2] & 0xFE) << 14)
        | (u64::from(bytes[3]) << 7)
        | u64::from(bytes[4] >> 1)
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, no reflection, no final XOR), which ends the PSM.
/// Bitwise: it runs over 16 bytes per keyframe.
fn crc32_mpeg2(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// An access unit read back from a program stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemuxedFrame {
    /// From the last program stream map; `None` until one arrives, or for other video types.
    pub codec: Option<VideoCodec>,
    pub pts_90k: Option<u64>,
    /// Contains an IDR (H.264) or IRAP (H.265) picture; always false while the codec is
    /// unknown, since the NAL header layouts differ.
    pub keyframe: bool,
    /// The elementary stream bytes (Annex-B).
    pub data: Vec<u8>,
}

/// Largest frame assembled: a 4K H.265 IDR is a few MiB. A stream that never ends its frame
/// would otherwise grow the buffer until the box runs out of memory.
const MAX_FRAME: usize = 16 << 20;

/// Reads a program stream in arbitrary pieces (RTP payloads, TCP reads) and returns the video
/// frames in it.
///
/// A frame ends at the next pack header, at the next video PES that carries a PTS, at the
/// program end code, or at [`flush`](Self::flush). It faces the network, so it never panics:
/// bytes that are not a well-formed packet are skipped and counted in
/// [`malformed`](Self::malformed), and reading resumes at the next system start code
/// (`00 00 01` followed by a stream id ≥ 0xB9; H.264/H.265 NAL headers are below 0x80, so the
/// elementary stream inside a PES cannot fake one).
#[derive(Debug, Default)]
pub struct PsDemuxer {
    buf: Vec<u8>,
    /// Bytes of `buf` already parsed; removed on the next push.
    pos: usize,
    state: DemuxState,
}

#[derive(Debug, Default)]
struct DemuxState {
    /// Skipping bytes until the next system start code.
    resyncing: bool,
    video_id: Option<u8>,
    codec: Option<VideoCodec>,
    /// The frame being assembled; `None` while we wait for one to start (a PES continuing a
    /// frame whose start we did not see is dropped, not passed on as a broken frame).
    frame: Option<PartialFrame>,
    malformed: u64,
}

#[derive(Debug, Default)]
struct PartialFrame {
    pts: Option<u64>,
    data: Vec<u8>,
    /// Went over [`MAX_FRAME`]: the rest of it is discarded.
    oversized: bool,
}

enum Step {
    Consumed(usize),
    NeedMore,
}

impl PsDemuxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `bytes` after whatever was pushed before and returns the frames that ended.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<DemuxedFrame> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Step::Consumed(n) = self.state.step(&self.buf[self.pos..], &mut frames) {
            self.pos += n;
        }
        frames
    }

    /// Ends the frame being assembled, for when the transport says it is complete (the RTP
    /// marker bit) or the stream ended. A packet still incomplete stays buffered.
    pub fn flush(&mut self) -> Option<DemuxedFrame> {
        let mut frames = Vec::new();
        self.state.end_frame(&mut frames);
        frames.pop()
    }

    /// Forgets buffered bytes and the frame being assembled, for when input was lost (an RTP
    /// sequence gap): the next frame starts at the next pack header or PES with a PTS. What is
    /// skipped until then is not counted as malformed.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.state.frame = None;
        self.state.resyncing = true;
    }

    /// The codec the last program stream map declared for the video stream.
    pub fn codec(&self) -> Option<VideoCodec> {
        self.state.codec
    }

    /// Malformed packets and runs of bytes skipped to resynchronise.
    pub fn malformed(&self) -> u64 {
        self.state.malformed
    }
}

impl DemuxState {
    /// Reads one packet, or skips towards the next start code, from the front of `input`.
    fn step(&mut self, input: &[u8], frames: &mut Vec<DemuxedFrame>) -> Step {
        if self.resyncing {
            match find_system_start(input) {
                Some(0) => self.resyncing = false,
                Some(at) => {
                    self.resyncing = false;
                    return Step::Consumed(at);
                }
                // Keep three bytes: they may begin a start code that the next push completes.
                None if input.len() > 3 => return Step::Consumed(input.len() - 3),
                None => return Step::NeedMore,
            }
        }
        let Some(&[0, 0, 1, id]) = input.first_chunk::<4>() else {
            return if input.len() < 4 {
                Step::NeedMore
            } else {
                self.lose_sync()
            };
        };
        match id {
            PACK_START => {
                let Some(header) = input.first_chunk::<14>() else {
                    return Step::NeedMore;
                };
                // '01' marks MPEG-2; MPEG-1 packs ('0010') have no place in GB28181.
                if header[4] & 0xC0 != 0x40 {
                    return self.lose_sync();
                }
                let len = 14 + usize::from(header[13] & 0x07);
                if input.len() < len {
                    return Step::NeedMore;
                }
                self.end_frame(frames);
                self.frame = Some(PartialFrame::default());
                Step::Consumed(len)
            }
            END_CODE => {
                self.end_frame(frames);
                Step::Consumed(4)
            }
            id if id < END_CODE => self.lose_sync(),
            id => {
                // Every other stream id is followed by a 16-bit length.
                let Some(&[_, _, _, _, hi, lo]) = input.first_chunk::<6>() else {
                    return Step::NeedMore;
                };
                let len = 6 + usize::from(u16::from_be_bytes([hi, lo]));
                let Some(body) = input.get(6..len) else {
                    return Step::NeedMore;
                };
                match id {
                    PSM => self.on_psm(body),
                    0xE0..=0xEF => self.on_video(id, body, frames),
                    _ => {} // system header, audio, private, padding: nothing we need
                }
                Step::Consumed(len)
            }
        }
    }

    /// Bytes at the front are not a packet: count them once, drop the frame they interrupt
    /// (part of it is missing) and skip to the next start code.
    fn lose_sync(&mut self) -> Step {
        self.malformed += 1;
        self.frame = None;
        self.resyncing = true;
        Step::Consumed(1)
    }

    fn on_psm(&mut self, body: &[u8]) {
        // The CRC is not checked: devices are known to get it wrong, and ZLMediaKit ignores it.
        let Some(entries) = parse_psm(body) else {
            self.malformed += 1;
            return;
        };
        if let Some((stream_type, id)) = entries.into_iter().find(|&(_, id)| {
            (0xE0..=0xEF).contains(&id) && self.video_id.is_none_or(|video| video == id)
        }) {
            self.video_id = Some(id);
            self.codec = VideoCodec::from_stream_type(stream_type);
        }
    }

    fn on_video(&mut self, id: u8, body: &[u8], frames: &mut Vec<DemuxedFrame>) {
        if *self.video_id.get_or_insert(id) != id {
            return; // a second video stream: not ours
        }
        let Some((pts, payload)) = parse_pes(body) else {
            self.malformed += 1;
            self.frame = None;
            return;
        };
        if let Some(pts) = pts {
            if self.frame.as_ref().is_some_and(|f| !f.data.is_empty()) {
                self.end_frame(frames);
            }
            self.frame.get_or_insert_default().pts = Some(pts);
        }
        let Some(frame) = self.frame.as_mut() else {
            return;
        };
        if frame.oversized {
            return;
        }
        if frame.data.len() + payload.len() > MAX_FRAME {
            self.malformed += 1;
            frame.oversized = true;
            frame.data = Vec::new();
            return;
        }
        frame.data.extend_from_slice(payload);
    }

    fn end_frame(&mut self, frames: &mut Vec<DemuxedFrame>) {
        let Some(frame) = self.frame.take() else {
            return;
        };
        if frame.oversized || frame.data.is_empty() {
            return;
        }
        frames.push(DemuxedFrame {
            codec: self.codec,
            pts_90k: frame.pts,
            keyframe: self.codec.is_some_and(|codec| {
                nal_headers(&frame.data).any(|header| codec.is_random_access(header))
            }),
            data: frame.data,
        });
    }
}

/// Where `00 00 01 <id ≥ 0xB9>` starts, if it does.
fn find_system_start(input: &[u8]) -> Option<usize> {
    input
        .windows(4)
        .position(|w| w[..3] == [0, 0, 1] && w[3] >= END_CODE)
}

/// The header byte of each NAL unit after an Annex-B start code.
fn nal_headers(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    data.windows(4)
        .filter(|w| w[..3] == [0, 0, 1])
        .map(|w| w[3])
}

fn be16(bytes: &[u8]) -> Option<usize> {
    let &[hi, lo] = bytes.first_chunk::<2>()?;
    Some(usize::from(u16::from_be_bytes([hi, lo])))
}

/// (stream_type, elementary_stream_id) of each entry of a PSM body (after the length field).
fn parse_psm(body: &[u8]) -> Option<Vec<(u8, u8)>> {
    let info_len = be16(body.get(2..)?)?;
    let map_at = 4 + info_len;
    let map_len = be16(body.get(map_at..)?)?;
    let mut map = body.get(map_at + 2..map_at + 2 + map_len)?;
    let mut entries = Vec::new();
    while let Some(&[stream_type, id, hi, lo]) = map.first_chunk::<4>() {
        entries.push((stream_type, id));
        map = map.get(4 + usize::from(u16::from_be_bytes([hi, lo]))..)?;
    }
    map.is_empty().then_some(entries)
}

/// PTS (if any) and payload of an MPEG-2 PES body (after the length field).
fn parse_pes(body: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let &[flags, pts_dts, header_len] = body.first_chunk::<3>()?;
    if flags & 0xC0 != 0x80 {
        return None; // not the MPEG-2 PES syntax
    }
    let header = body.get(3..3 + usize::from(header_len))?;
    let payload = &body[3 + usize::from(header_len)..];
    let pts = match pts_dts >> 6 {
        0b10 | 0b11 => Some(read_timestamp(header.get(..5)?)),
        _ => None, // '01' is forbidden; treat it as no timestamp
    };
    Some((pts, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny H.264 access unit: AUD, SPS, PPS, then an IDR or a non-IDR slice.
    fn h264_au(keyframe: bool, slice_len: usize) -> Vec<u8> {
        let mut au = vec![0, 0, 0, 1, 0x09, 0xF0];
        if keyframe {
            au.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0, 0x1E]);
            au.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xCE, 0x38, 0x80]);
        }
        au.extend_from_slice(&[0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
        au.extend((0..slice_len).map(|i| (i % 251) as u8 | 0x80));
        au
    }

    fn demux_all(demuxer: &mut PsDemuxer, stream: &[u8]) -> Vec<DemuxedFrame> {
        let mut frames = demuxer.push(stream);
        frames.extend(demuxer.flush());
        frames
    }

    /// The packets of a stream that is known to be well formed: (stream id, whole packet).
    fn packets(stream: &[u8]) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < stream.len() {
            let id = stream[at + 3];
            let len = match id {
                PACK_START => 14 + usize::from(stream[at + 13] & 7),
                _ => 6 + usize::from(u16::from_be_bytes([stream[at + 4], stream[at + 5]])),
            };
            out.push((id, &stream[at..at + len]));
            at += len;
        }
        out
    }

    #[test]
    fn crc_is_mpeg2() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn timestamps_round_trip_in_33_bits() {
        for ts in [
            0,
            1,
            3600,
            0x1_2345_6789,
            TIMESTAMP_MASK,
            TIMESTAMP_MASK + 5,
        ] {
            let mut out = Vec::new();
            write_timestamp(&mut out, 3, ts);
            assert_eq!(read_timestamp(&out), ts & TIMESTAMP_MASK);
            assert_eq!(out[0] >> 4, 3);
            assert!(out[0] & out[2] & out[4] & 1 == 1, "marker bits set");
        }
    }

    #[test]
    fn pack_header_carries_the_scr() {
        let mut out = Vec::new();
        let scr = 0x1_8765_4321;
        write_pack_header(&mut out, scr);
        assert_eq!(out.len(), 14);
        let b = &out[4..10];
        let read = (u64::from(b[0] & 0x38) << 27)
            | (u64::from(b[0] & 0x03) << 28)
            | (u64::from(b[1]) << 20)
            | (u64::from(b[2] & 0xF8) << 12)
            | (u64::from(b[2] & 0x03) << 13)
            | (u64::from(b[3]) << 5)
            | (u64::from(b[4]) >> 3);
        assert_eq!(read, scr);
        assert_eq!(b[0] & 0xC4, 0x44, "'01' and the first marker");
        assert_eq!(
            (b[2] & 0x04, b[4] & 0x04, b[5] & 0x01),
            (4, 4, 1),
            "markers"
        );
        assert_eq!(
            u32::from_be_bytes([0, out[10], out[11], out[12]]) >> 2,
            MUX_RATE
        );
    }

    #[test]
    fn keyframes_carry_system_header_and_psm() {
        let mut muxer = PsMuxer::new(VideoCodec::H265);
        let first = muxer.mux(&h264_au(false, 10), 0, false);
        let delta = muxer.mux(&h264_au(false, 10), 3000, false);
        let key = muxer.mux(&h264_au(true, 10), 6000, true);
        let ids = |stream: &[u8]| packets(stream).iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(ids(&first), [PACK_START, SYSTEM_HEADER, PSM, VIDEO_STREAM]);
        assert_eq!(ids(&delta), [PACK_START, VIDEO_STREAM]);
        assert_eq!(ids(&key), [PACK_START, SYSTEM_HEADER, PSM, VIDEO_STREAM]);
        let psm = packets(&key)[2].1;
        assert_eq!(&psm[12..14], [0x24, VIDEO_STREAM], "stream_type of H.265");
        let (body, crc) = psm.split_at(psm.len() - 4);
        assert_eq!(crc32_mpeg2(body).to_be_bytes(), crc);
        assert_eq!(crc32_mpeg2(psm), 0, "a decoder's CRC register ends at 0");
    }

    #[test]
    fn large_access_units_split_into_pes_within_65535_bytes() {
        let mut muxer = PsMuxer::new(VideoCodec::H264);
        for len in [0, 1, 65_522, 65_523, 200_000] {
            let au = h264_au(true, len);
            let stream = muxer.mux(&au, 90_000 + len as u64, true);
            let pes: Vec<&[u8]> = packets(&stream)
                .into_iter()
                .filter(|p| p.0 == VIDEO_STREAM)
                .map(|p| p.1)
                .collect();
            assert_eq!(pes.len(), au.len().div_ceil(65_522), "AU of {len}");
            for (index, packet) in pes.iter().enumerate() {
                assert!(packet.len() <= 6 + 65_535);
                let (pts, _) = parse_pes(&packet[6..]).unwrap();
                assert_eq!(pts.is_some(), index == 0, "PTS only on the first PES");
            }
            let frames = demux_all(&mut PsDemuxer::new(), &stream);
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].data, au);
            assert_eq!(frames[0].pts_90k, Some(90_000 + len as u64));
            assert!(frames[0].keyframe);
        }
    }

    /// Frames muxed, then demuxed from the stream pushed in two pieces cut at every byte.
    #[test]
    fn demuxes_the_same_at_every_split_point() {
        let mut muxer = PsMuxer::new(VideoCodec::H264);
        let aus = [h264_au(true, 50), h264_au(false, 30), h264_au(false, 0)];
        let mut stream = Vec::new();
        for (index, au) in aus.iter().enumerate() {
            stream.extend(muxer.mux(au, index as u64 * 3000, index == 0));
        }
        stream.extend_from_slice(&[0, 0, 1, END_CODE]);
        for cut in 0..=stream.len() {
            let mut demuxer = PsDemuxer::new();
            let mut frames = demuxer.push(&stream[..cut]);
            frames.extend(demuxer.push(&stream[cut..]));
            assert_eq!(demuxer.malformed(), 0, "cut at {cut}");
            let got: Vec<_> = frames
                .iter()
                .map(|f| (f.data.clone(), f.pts_90k, f.keyframe, f.codec))
                .collect();
            let want: Vec<_> = aus
                .iter()
                .enumerate()
                .map(|(i, au)| {
                    let pts = Some(i as u64 * 3000);
                    (au.clone(), pts, i == 0, Some(VideoCodec::H264))
                })
                .collect();
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn h265_irap_is_a_keyframe() {
        let mut muxer = PsMuxer::new(VideoCodec::H265);
        // VPS (32), SPS (33), PPS (34), IDR_W_RADL (19); then a TRAIL_R (1) frame.
        let key = [
            0, 0, 0, 1, 0x40, 1, 0, 0, 1, 0x42, 1, 0, 0, 1, 0x44, 1, 0, 0, 1, 0x26, 1, 9,
        ];
        let trail = [0, 0, 0, 1, 0x02, 1, 9, 9];
        let mut stream = muxer.mux(&key, 0, true);
        stream.extend(muxer.mux(&trail, 3000, false));
        let frames = demux_all(&mut PsDemuxer::new(), &stream);
        let flags: Vec<_> = frames.iter().map(|f| (f.codec, f.keyframe)).collect();
        assert_eq!(
            flags,
            [
                (Some(VideoCodec::H265), true),
                (Some(VideoCodec::H265), false)
            ]
        );
    }

    #[test]
    fn without_a_psm_the_codec_is_unknown() {
        let mut muxer = PsMuxer::new(VideoCodec::H264);
        muxer.mux(&h264_au(true, 5), 0, true);
        // An IDR muxed as if it were not a keyframe: no PSM, as from a receiver's point of
        // view that joined after the last one.
        let second = muxer.mux(&h264_au(true, 5), 3000, false);
        let mut demuxer = PsDemuxer::new();
        demuxer.push(&second);
        let frame = demuxer.flush().unwrap();
        assert_eq!((frame.codec, frame.keyframe), (None, false));
    }

    #[test]
    fn garbage_between_packs_is_counted_and_skipped() {
        let mut muxer = PsMuxer::new(VideoCodec::H264);
        let mut stream = b"\x00\x00\x01\x65 not a PS packet \x00\x00".to_vec();
        stream.extend(muxer.mux(&h264_au(true, 20), 0, true));
        stream.extend_from_slice(&[0xFF; 100]);
        stream.extend(muxer.mux(&h264_au(false, 20), 3000, false));
        let mut demuxer = PsDemuxer::new();
        let frames = demux_all(&mut demuxer, &stream);
        // The garbage after the first pack interrupts its frame, which is dropped.
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].pts_90k, Some(3000));
        assert_eq!(demuxer.malformed(), 2);
    }

    #[test]
    fn malformed_pes_and_psm_are_counted() {
        let mut stream = Vec::new();
        write_pack_header(&mut stream, 0);
        // PSM whose ES map length runs past the packet; PES with MPEG-1 flags; PES whose
        // header length runs past the packet; PES claiming a PTS without room for it.
        stream.extend_from_slice(&[0, 0, 1, PSM, 0, 6, 0xE0, 0xFF, 0, 0, 0, 9]);
        stream.extend_from_slice(&[0, 0, 1, VIDEO_STREAM, 0, 3, 0x0F, 0, 0]);
        stream.extend_from_slice(&[0, 0, 1, VIDEO_STREAM, 0, 3, 0x80, 0, 9]);
        stream.extend_from_slice(&[0, 0, 1, VIDEO_STREAM, 0, 5, 0x80, 0x80, 2, 0x21, 0]);
        let mut demuxer = PsDemuxer::new();
        assert!(demux_all(&mut demuxer, &stream).is_empty());
        assert_eq!(demuxer.malformed(), 4);
    }

    #[test]
    fn truncated_and_corrupted_streams_never_panic() {
        let mut muxer = PsMuxer::new(VideoCodec::H264);
        let mut stream = muxer.mux(&h264_au(true, 300), 0, true);
        stream.extend(muxer.mux(&h264_au(false, 100), 3000, false));
        for len in 0..stream.len() {
            demux_all(&mut PsDemuxer::new(), &stream[..len]);
        }
        for at in 0..stream.len() {
            for value in [0x00, 0x01, 0xB9, 0xBA, 0xBC, 0xE0, 0xFF] {
                let mut corrupt = stream.clone();
                corrupt[at] = value;
                let mut demuxer = PsDemuxer::new();
                let frames = demux_all(&mut demuxer, &corrupt);
                assert!(frames.len() <= 3, "at {at} = {value:#x}");
            }
        }
        // Pseudo-random bytes, with start codes sprinkled in so that parsing goes deep.
        let mut state = 0x2545_F491_u32;
        let mut noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        for at in (0..noise.len() - 4).step_by(97) {
            let id = 0xB9 + noise[at + 4] % 0x47;
            noise[at..at + 4].copy_from_slice(&[0, 0, 1, id]);
        }
        let mut demuxer = PsDemuxer::new();
        for chunk in noise.chunks(1400) {
            demuxer.push(chunk);
        }
        assert!(demuxer.malformed() > 0);
    }

    #[test]
    fn a_frame_that_never_ends_is_bounded() {
        let mut demuxer = PsDemuxer::new();
        let mut pack = Vec::new();
        write_pack_header(&mut pack, 0);
        demuxer.push(&pack);
        let chunk = vec![0x80; 65_000];
        let mut pes = Vec::new();
        write_pes(&mut pes, &chunk, None);
        for _ in 0..(MAX_FRAME / chunk.len() + 2) {
            assert!(demuxer.push(&pes).is_empty());
        }
        assert_eq!(demuxer.malformed(), 1);
        assert_eq!(demuxer.flush(), None, "the oversized frame is dropped");
    }

    #[test]
    fn reset_waits_for_the_next_frame_start_without_counting() {
        let mut muxer = PsMuxer::new(VideoCodec::H264);
        let first = muxer.mux(&h264_au(true, 3000), 0, true);
        let second = muxer.mux(&h264_au(false, 10), 3000, false);
        let mut demuxer = PsDemuxer::new();
        demuxer.push(&first[..1000]);
        demuxer.reset(); // the next 1000 bytes were lost
        assert!(demuxer.push(&first[2000..]).is_empty());
        let frames = demux_all(&mut demuxer, &second);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].pts_90k, Some(3000));
        assert_eq!(demuxer.malformed(), 0);
    }
}
