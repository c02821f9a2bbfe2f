//! GB28181 media without sockets: what the device simulator uses to stream H.264 as MPEG-PS
//! over RTP, and what the platform's RTP receiving endpoint uses to check that a stream arrives
//! with the agreed SSRC and carries video.
//!
//! - [`rtp`]: RTP packets, parsed zero-copy and built by a packetizer.
//! - [`rfc4571`]: the 2-byte length framing of RTP over TCP.
//! - [`ps`]: MPEG-2 program stream muxer and demuxer (H.264/H.265 video).
//! - [`receive`]: per-stream receive statistics, SSRC check and frame counting.
//! - `source` (feature `source`, on by default): H.264 access units from a GStreamer test
//!   pattern or a looping file.
//! - `frames` (feature `source`): decoded RGB frames from a camera or a file, decoding only what
//!   the skills need, on the platform's hardware decoder where there is one.
//! - `clip` (feature `source`): H.264 MP4 test and benchmark clips from RGB frames.
//!
//! Everything but `source` is plain code over byte slices; nothing that reads network input
//! panics on it.

#[cfg(feature = "source")]
pub mod clip;
#[cfg(feature = "source")]
pub mod frames;
pub mod ps;
pub mod receive;
pub mod rfc4571;
pub mod rtp;
#[cfg(feature = "source")]
pub mod source;

pub use ps::{DemuxedFrame, PsDemuxer, PsMuxer, VideoCodec};
pub use receive::{ReceiveStats, RtpReceiver};
pub use rfc4571::Deframer;
pub use rtp::{RtpError, RtpPacket, RtpPacketizer};
#[cfg(feature = "source")]
pub use source::{AccessUnit, H264Source, SourceError, SourceSpec};
