//! `RtpReceiver` behind an RFC 4571 `Deframer`, on arbitrary bytes: what the platform's RTP
//! endpoint does with a TCP media connection (and, packet by packet, with UDP datagrams).
//!
//! Input layout: bytes 0..4 = the expected SSRC (big-endian); byte 4 picks the size of the
//! reads (1..=256 bytes); the rest is the TCP stream.
//!
//! Properties:
//! - deframing does not depend on how the stream was read: the packets from the fuzzer's
//!   reads are those from one read of everything, each an exact slice of the stream after its
//!   2-byte length, in order, with nothing left over but an incomplete frame;
//! - every packet is counted exactly once: `packets + wrong_ssrc + malformed` is the number
//!   of packets, and `bytes` is the size of those with the expected SSRC;
//! - the derived counts stay consistent: keyframes ≤ frames, out-of-order ≤ packets, first
//!   arrival ≤ last, and no arrival time, frame or codec without an accepted packet.

#![no_main]

use appliance_media::{Deframer, RtpPacket, RtpReceiver};
use libfuzzer_sys::fuzz_target;

fn deframe<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, usize) {
    let mut deframer = Deframer::new();
    let mut packets = Vec::new();
    for chunk in chunks {
        deframer.push(chunk);
        packets.extend(std::iter::from_fn(|| deframer.next_packet()));
    }
    (packets, deframer.buffered())
}

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b, c, d, size], stream)) = data.split_first_chunk::<5>() else {
        return;
    };
    let ssrc = u32::from_be_bytes([a, b, c, d]);
    let size = usize::from(size) + 1;

    let (packets, left) = deframe(stream.chunks(size));
    let whole = deframe([stream]);
    assert!(packets == whole.0 && left == whole.1, "{size}-byte reads");
    let mut at = 0;
    for (index, packet) in packets.iter().enumerate() {
        // Zero-length frames are skipped.
        while stream[at..at + 2] == [0, 0] {
            at += 2;
        }
        assert_eq!(
            usize::from(u16::from_be_bytes([stream[at], stream[at + 1]])),
            packet.len(),
            "packet {index}: length prefix"
        );
        assert!(
            stream[at + 2..].starts_with(packet),
            "packet {index}: not the stream's bytes"
        );
        at += 2 + packet.len();
    }
    // What is left is the rest of the stream after any zero-length frames: an incomplete one.
    while stream.get(at..at + 2) == Some(&[0, 0]) {
        at += 2;
    }
    assert_eq!(left, stream.len() - at, "bytes left over");
    if let Some(&[hi, lo]) = stream[at..].first_chunk::<2>() {
        assert!(
            left < 2 + usize::from(u16::from_be_bytes([hi, lo])),
            "a whole frame left over"
        );
    }

    let mut receiver = RtpReceiver::new(ssrc);
    let mut ours = (0u64, 0u64);
    for (now_ms, packet) in packets.iter().enumerate() {
        receiver.on_packet(packet, now_ms as i64);
        if RtpPacket::parse(packet).is_ok_and(|p| p.ssrc() == ssrc) {
            ours.0 += 1;
            ours.1 += packet.len() as u64;
        }
    }
    let stats = receiver.snapshot();
    assert_eq!(
        stats.packets + stats.wrong_ssrc + stats.malformed,
        packets.len() as u64,
        "{stats:?}"
    );
    assert_eq!((stats.packets, stats.bytes), ours, "{stats:?}");
    assert!(stats.keyframes <= stats.frames, "{stats:?}");
    assert!(stats.out_of_order <= stats.packets, "{stats:?}");
    assert_eq!(
        stats.first_packet_ms.is_some(),
        stats.packets > 0,
        "{stats:?}"
    );
    assert!(stats.first_packet_ms <= stats.last_packet_ms, "{stats:?}");
    if stats.packets == 0 {
        assert_eq!((stats.frames, stats.codec), (0, None), "{stats:?}");
    }
});
