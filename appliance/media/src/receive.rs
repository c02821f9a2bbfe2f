//! The checks of a receiving endpoint: does a stream arrive, with the SSRC agreed in the SDP
//! (`y=`), without gaps, and does it carry decodable video?
//!
//! [`RtpReceiver`] takes datagrams (or RFC 4571 packets) of one media session and keeps
//! [`ReceiveStats`]. Packets with another SSRC are counted and not processed: in GB28181 the
//! SSRC is what ties a stream to its INVITE, and a device sending with the wrong one is the
//! classic interoperability failure this is meant to make visible.

use serde::Serialize;
use utoipa::ToSchema;

use crate::ps::{PsDemuxer, VideoCodec};
use crate::rtp::RtpPacket;

/// A forward jump of at least this many sequence numbers is not loss but a sender that
/// restarted its sequence (RFC 3550 A.1's MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;
/// A packet at most this far behind the expected sequence number is late or duplicated
/// (RFC 3550 A.1's MAX_MISORDER).
const MAX_MISORDER: u16 = 100;

/// What one media session has received so far: JSON for the daemon's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReceiveStats {
    /// The SSRC agreed in the SDP.
    pub expected_ssrc: u32,
    /// RTP packets with the expected SSRC.
    pub packets: u64,
    /// Their bytes, RTP headers included.
    pub bytes: u64,
    /// Packets with another SSRC, counted and otherwise ignored.
    pub wrong_ssrc: u64,
    /// The SSRC of the last such packet, to tell what the sender uses instead.
    pub last_wrong_ssrc: Option<u32>,
    /// Datagrams that are not RTP packets.
    pub malformed: u64,
    /// Sequence numbers skipped over (with wraparound): packets lost, or too late to use.
    pub lost: u64,
    /// Packets dropped because they came behind the sequence (late or duplicated), or far
    /// ahead of it before the sender's new sequence was confirmed by the next packet.
    pub out_of_order: u64,
    /// Malformed program stream packets and runs of bytes skipped in the payloads.
    pub ps_malformed: u64,
    /// Video frames reassembled from the program stream.
    pub frames: u64,
    /// Those that contain an IDR (H.264) or IRAP (H.265) picture.
    pub keyframes: u64,
    /// The codec the program stream map declares.
    pub codec: Option<VideoCodec>,
    /// The RTP payload type of the last packet (GB28181 uses 96 for PS).
    pub payload_type: Option<u8>,
    /// Arrival of the first packet with the expected SSRC, in the caller's clock (ms).
    pub first_packet_ms: Option<i64>,
    /// Arrival of the last one: a stream that stopped shows here.
    pub last_packet_ms: Option<i64>,
}

/// The receiving side of one RTP/PS stream.
#[derive(Debug)]
pub struct RtpReceiver {
    stats: ReceiveStats,
    demuxer: PsDemuxer,
    last_sequence: Option<u16>,
    /// After a big jump: the sequence number that would confirm the sender restarted.
    probation: Option<u16>,
}

impl RtpReceiver {
    pub fn new(expected_ssrc: u32) -> Self {
        Self {
            stats: ReceiveStats {
                expected_ssrc,
                packets: 0,
                bytes: 0,
                wrong_ssrc: 0,
                last_wrong_ssrc: None,
                malformed: 0,
                lost: 0,
                out_of_order: 0,
                ps_malformed: 0,
                frames: 0,
                keyframes: 0,
                codec: None,
                payload_type: None,
                first_packet_ms: None,
                last_packet_ms: None,
            },
            demuxer: PsDemuxer::new(),
            last_sequence: None,
            probation: None,
        }
    }

    /// Takes one datagram (or one packet out of an RFC 4571 stream) that arrived at `now_ms`.
    pub fn on_packet(&mut self, datagram: &[u8], now_ms: i64) {
        let stats = &mut self.stats;
        let Ok(packet) = RtpPacket::parse(datagram) else {
            stats.malformed += 1;
            return;
        };
        if packet.ssrc() != stats.expected_ssrc {
            stats.wrong_ssrc += 1;
            stats.last_wrong_ssrc = Some(packet.ssrc());
            return;
        }
        stats.packets += 1;
        stats.bytes += datagram.len() as u64;
        stats.first_packet_ms.get_or_insert(now_ms);
        stats.last_packet_ms = Some(now_ms);
        stats.payload_type = Some(packet.payload_type());
        if !self.accept_sequence(packet.sequence()) {
            self.stats.out_of_order += 1;
            return;
        }
        let mut frames = self.demuxer.push(packet.payload());
        if packet.marker() {
            // The marker ends the frame's last packet: count it now rather than when the next
            // frame begins, so the counts are current and the last frame is not left behind.
            frames.extend(self.demuxer.flush());
        }
        let stats = &mut self.stats;
        stats.frames += frames.len() as u64;
        stats.keyframes += frames.iter().filter(|f| f.keyframe).count() as u64;
        stats.codec = self.demuxer.codec();
        stats.ps_malformed = self.demuxer.malformed();
    }

    pub fn snapshot(&self) -> ReceiveStats {
        self.stats.clone()
    }

    /// Whether the packet's payload continues the stream; counts what was skipped. After a
    /// gap the demuxer forgets its partial frame, which lacks the lost bytes.
    fn accept_sequence(&mut self, sequence: u16) -> bool {
        let Some(last) = self.last_sequence else {
            self.last_sequence = Some(sequence);
            return true;
        };
        let gap = sequence.wrapping_sub(last.wrapping_add(1));
        if gap == 0 {
            // In order.
        } else if gap < MAX_DROPOUT {
            self.stats.lost += u64::from(gap);
            self.demuxer.reset();
        } else if gap >= u16::MAX - MAX_MISORDER {
            return false; // late or duplicated: its place in the stream is gone
        } else if self.probation == Some(sequence) {
            self.demuxer.reset(); // two packets in a row agree: the sender restarted
        } else {
            self.probation = Some(sequence.wrapping_add(1));
            return false;
        }
        self.probation = None;
        self.last_sequence = Some(sequence);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ps::PsMuxer;
    use crate::rtp::RtpPacketizer;

    /// `y=0100000001`: a live stream's SSRC.
    const SSRC: u32 = 100_000_001;

    /// RTP packets of `count` frames of about 300 bytes, every fifth a keyframe.
    fn stream(count: u64, packetizer: &mut RtpPacketizer) -> Vec<Vec<u8>> {
        let mut muxer = PsMuxer::new(VideoCodec::H264);
        let mut packets = Vec::new();
        for index in 0..count {
            let keyframe = index % 5 == 0;
            let mut au = vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }];
            au.extend([0x88; 300]);
            let pack = muxer.mux(&au, index * 3600, keyframe);
            packets.extend(packetizer.packetize(&pack, (index * 3600) as u32));
        }
        packets
    }

    #[test]
    fn counts_frames_keyframes_and_codec() {
        let packets = stream(10, &mut RtpPacketizer::new(SSRC, 96, 100));
        let mut receiver = RtpReceiver::new(SSRC);
        for (index, packet) in packets.iter().enumerate() {
            receiver.on_packet(packet, 1000 + index as i64);
        }
        let stats = receiver.snapshot();
        assert_eq!((stats.frames, stats.keyframes), (10, 2));
        assert_eq!(stats.codec, Some(VideoCodec::H264));
        assert_eq!(stats.packets, packets.len() as u64);
        assert_eq!(
            stats.bytes,
            packets.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        assert_eq!(
            (stats.lost, stats.out_of_order, stats.ps_malformed),
            (0, 0, 0)
        );
        assert_eq!(stats.first_packet_ms, Some(1000));
        assert_eq!(stats.last_packet_ms, Some(1000 + packets.len() as i64 - 1));
        assert_eq!(stats.payload_type, Some(96));
    }

    #[test]
    fn wrong_ssrc_is_counted_and_not_processed() {
        let packets = stream(3, &mut RtpPacketizer::new(SSRC + 1, 96, 1400));
        let mut receiver = RtpReceiver::new(SSRC);
        for packet in &packets {
            receiver.on_packet(packet, 5);
        }
        receiver.on_packet(b"\x80\x60 short", 6); // 8 bytes: not RTP
        let stats = receiver.snapshot();
        assert_eq!(stats.wrong_ssrc, packets.len() as u64);
        assert_eq!(stats.last_wrong_ssrc, Some(SSRC + 1));
        assert_eq!(stats.malformed, 1);
        assert_eq!((stats.packets, stats.bytes, stats.frames), (0, 0, 0));
        assert_eq!((stats.first_packet_ms, stats.codec), (None, None));
    }

    #[test]
    fn lost_packets_are_counted_across_the_wrap_and_their_frames_dropped() {
        // Frames of 4 packets; packet 18 has sequence number 0.
        let mut packetizer = RtpPacketizer::new(SSRC, 96, 100).with_sequence(65_518);
        let packets = stream(10, &mut packetizer);
        assert_eq!(packets.len(), 40);
        let mut receiver = RtpReceiver::new(SSRC);
        for (index, packet) in packets.iter().enumerate() {
            // Drop one packet in frame 2 and two (across the wrap: 65535 and 0) in frame 4.
            if ![9, 17, 18].contains(&index) {
                receiver.on_packet(packet, 0);
            }
        }
        let stats = receiver.snapshot();
        assert_eq!(stats.lost, 3);
        // Frames 2 and 4 lose bytes and are dropped; the others arrive whole.
        assert_eq!(stats.frames, 8);
        assert_eq!(
            stats.ps_malformed, 0,
            "skipping after a gap is not malformed"
        );
        assert_eq!(stats.keyframes, 2);
    }

    #[test]
    fn late_duplicate_and_restarted_sequences() {
        let packets = stream(3, &mut RtpPacketizer::new(SSRC, 96, 100));
        let mut receiver = RtpReceiver::new(SSRC);
        receiver.on_packet(&packets[0], 0);
        receiver.on_packet(&packets[1], 0);
        receiver.on_packet(&packets[1], 0); // duplicate
        receiver.on_packet(&packets[0], 0); // late
        let stats = receiver.snapshot();
        assert_eq!((stats.out_of_order, stats.lost), (2, 0));

        // The sender restarts at sequence 40000: the first packet is held to probation, the
        // second confirms the new sequence, and nothing is counted as lost.
        let restarted = stream(
            3,
            &mut RtpPacketizer::new(SSRC, 96, 100).with_sequence(40_000),
        );
        for packet in &restarted {
            receiver.on_packet(packet, 0);
        }
        let stats = receiver.snapshot();
        assert_eq!((stats.out_of_order, stats.lost), (3, 0));
        // Frame 0 of the restart lost its first packet to probation; frames 1 and 2 arrive.
        assert_eq!(stats.frames, 2);
    }
}
