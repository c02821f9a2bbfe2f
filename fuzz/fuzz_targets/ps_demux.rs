//! `PsDemuxer` on arbitrary bytes, as RTP payloads and TCP reads cut them.
//!
//! Input layout: byte 0 picks the size of the pushes (1..=256 bytes); the rest is the stream.
//!
//! Properties:
//! - the outcome (frames, then the malformed count) does not depend on how the stream was cut:
//!   one push of everything, the fuzzer's chunk size, and one byte at a time agree. The
//!   demuxer keeps state between pushes (a partial packet, a resync in progress, the last
//!   three bytes of a possible start code) that a single push never exercises;
//! - every frame it returns has data, and is a keyframe only when the codec is known;
//! - the stream itself, taken as an access unit, survives `PsMuxer` → `PsDemuxer` byte for
//!   byte, with its PTS (33 bits), and is a keyframe exactly when it holds an H.264 IDR NAL.

#![no_main]

use appliance_media::{DemuxedFrame, PsDemuxer, PsMuxer, VideoCodec};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<DemuxedFrame>,
    malformed: u64,
}

fn demux<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut demuxer = PsDemuxer::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        frames.extend(demuxer.push(chunk));
    }
    frames.extend(demuxer.flush());
    Outcome {
        frames,
        malformed: demuxer.malformed(),
    }
}

/// Longest stream that is also fed one byte per push: a third pass over long inputs would cut
/// the executions per second for little new.
const BYTEWISE_MAX: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let pts = u64::from(size) << 26 | stream.len() as u64; // past 33 bits when size ≥ 128
    let size = usize::from(size) + 1;

    let whole = demux([stream]);
    for frame in &whole.frames {
        assert!(!frame.data.is_empty(), "empty frame");
        assert!(
            !frame.keyframe || frame.codec.is_some(),
            "keyframe without a codec"
        );
    }
    assert_eq!(demux(stream.chunks(size)), whole, "{size}-byte pushes");
    if stream.len() <= BYTEWISE_MAX {
        assert_eq!(demux(stream.chunks(1)), whole, "1-byte pushes");
    }

    if stream.is_empty() {
        return;
    }
    let muxed = PsMuxer::new(VideoCodec::H264).mux(stream, pts, true);
    let round_trip = demux(muxed.chunks(size));
    assert_eq!(round_trip.malformed, 0, "our own PS is malformed");
    let [frame] = &round_trip.frames[..] else {
        panic!("{} frames from one access unit", round_trip.frames.len());
    };
    assert!(frame.data == stream, "access unit changed by mux/demux");
    assert_eq!(frame.pts_90k, Some(pts & ((1 << 33) - 1)));
    assert_eq!(frame.codec, Some(VideoCodec::H264));
    let idr = stream
        .windows(4)
        .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1F == 5);
    assert_eq!(frame.keyframe, idr);
});
