//! RTP (RFC 3550): a zero-copy view of a received packet and a packetizer for sending.
//!
//! Hand-written rather than taken from a crate: the fixed header is 12 bytes, and what GB28181
//! needs around it is small but specific: errors that name the problem (a receiving endpoint
//! reports them), tolerance for CSRCs, header extensions and padding from devices, and a
//! packetizer that splits one PS pack per frame with the marker on its last packet. `rtp-rs`
//! covers the parsing but not the splitting, and hides which check failed behind a few error
//! variants, so wrapping it would have been as much code as writing the header.

use thiserror::Error;

/// The fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
pub const HEADER_LEN: usize = 12;

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("RTP packet of {0} bytes is shorter than the 12-byte header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    #[error("RTP packet of {len} bytes ends inside its {what}, which needs {needed} bytes")]
    Truncated {
        what: &'static str,
        needed: usize,
        len: usize,
    },
    #[error("RTP padding of {padding} bytes does not fit the {available} bytes after the header")]
    Padding { padding: usize, available: usize },
}

/// A parsed RTP packet borrowing the datagram it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    data: &'a [u8],
    payload_start: usize,
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Checks the header (version 2, CSRC list, header extension, padding) and locates the
    /// payload. Never panics: every byte sequence gives a packet or an error.
    pub fn parse(data: &'a [u8]) -> Result<Self, RtpError> {
        if data.len() < HEADER_LEN {
            return Err(RtpError::TooShort(data.len()));
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let csrc_count = usize::from(data[0] & 0x0F);
        let mut start = HEADER_LEN + 4 * csrc_count;
        if data.len() < start {
            return Err(RtpError::Truncated {
                what: "CSRC list",
                needed: start,
                len: data.len(),
            });
        }
        if data[0] & 0x10 != 0 {
            // Extension: 16 bits profile-defined, 16 bits length in 32-bit words, then the words.
            let Some(words) = data.get(start + 2..start + 4) else {
                return Err(RtpError::Truncated {
                    what: "header extension",
                    needed: start + 4,
                    len: data.len(),
                });
            };
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
            if data.len() < start {
                return Err(RtpError::Truncated {
                    what: "header extension",
                    needed: start,
                    len: data.len(),
                });
            }
        }
        let mut end = data.len();
        if data[0] & 0x20 != 0 {
            // The last byte counts the padding, itself included, so 0 is invalid too.
            let padding = usize::from(data[end - 1]);
            let available = end - start;
            if padding == 0 || padding > available {
                return Err(RtpError::Padding { padding, available });
            }
            end -= padding;
        }
        Ok(Self {
            data,
            payload_start: start,
            payload_end: end,
        })
    }

    pub fn marker(&self) -> bool {
        self.data[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> u8 {
        self.data[1] & 0x7F
    }

    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.data[2], self.data[3]])
    }

    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.data[4], self.data[5], self.data[6], self.data[7]])
    }

    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.data[8], self.data[9], self.data[10], self.data[11]])
    }

    /// The payload, without CSRCs, header extension and padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.data[self.payload_start..self.payload_end]
    }
}

/// Splits frames into RTP packets of one stream (one SSRC and payload type).
#[derive(Debug, Clone)]
pub struct RtpPacketizer {
    ssrc: u32,
    payload_type: u8,
    max_payload: usize,
    sequence: u16,
}

impl RtpPacketizer {
    /// `max_payload` is the payload bytes per packet: 1400 keeps a UDP datagram under a
    /// 1500-byte MTU; over RFC 4571 TCP up to 65535 − 12 would fit.
    ///
    /// # Panics
    /// If `max_payload` is 0 or `payload_type` does not fit in 7 bits.
    pub fn new(ssrc: u32, payload_type: u8, max_payload: usize) -> Self {
        assert!(max_payload > 0, "RTP packets need room for payload");
        assert!(payload_type < 0x80, "RTP payload type {payload_type} > 127");
        Self {
            ssrc,
            payload_type,
            max_payload,
            sequence: 0,
        }
    }

    /// Starts the sequence at `sequence` (RFC 3550 asks for a random start, which the caller
    /// can pick; tests start near 65535 to cross the wrap).
    pub fn with_sequence(mut self, sequence: u16) -> Self {
        self.sequence = sequence;
        self
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// One frame's payload as packets with consecutive sequence numbers (wrapping after 65535),
    /// all with `timestamp_90k`, the marker bit on the last one: receivers take the marker as
    /// "the frame is complete" and need not wait for the next frame to start. An empty payload
    /// gives no packets.
    pub fn packetize(&mut self, payload: &[u8], timestamp_90k: u32) -> Vec<Vec<u8>> {
        let count = payload.len().div_ceil(self.max_payload);
        payload
            .chunks(self.max_payload)
            .enumerate()
            .map(|(index, chunk)| {
                let marker = if index + 1 == count { 0x80 } else { 0 };
                let mut packet = Vec::with_capacity(HEADER_LEN + chunk.len());
                packet.push(0x80); // version 2, no padding, no extension, no CSRC
                packet.push(marker | self.payload_type);
                packet.extend_from_slice(&self.sequence.to_be_bytes());
                packet.extend_from_slice(&timestamp_90k.to_be_bytes());
                packet.extend_from_slice(&self.ssrc.to_be_bytes());
                packet.extend_from_slice(chunk);
                self.sequence = self.sequence.wrapping_add(1);
                packet
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packetize_then_parse_round_trips() {
        let payload: Vec<u8> = (0..=255).cycle().take(3000).collect();
        let mut packetizer = RtpPacketizer::new(0x0102_0304, 96, 1400);
        let packets = packetizer.packetize(&payload, 90_000);
        assert_eq!(packets.len(), 3);
        let mut joined = Vec::new();
        for (index, bytes) in packets.iter().enumerate() {
            let packet = RtpPacket::parse(bytes).unwrap();
            assert_eq!(packet.ssrc(), 0x0102_0304);
            assert_eq!(packet.payload_type(), 96);
            assert_eq!(packet.timestamp(), 90_000);
            assert_eq!(packet.sequence(), index as u16);
            assert_eq!(
                packet.marker(),
                index == 2,
                "marker only on the last packet"
            );
            joined.extend_from_slice(packet.payload());
        }
        assert_eq!(joined, payload);
        assert_eq!(packets[0].len(), HEADER_LEN + 1400);
        assert_eq!(packets[2].len(), HEADER_LEN + 200);
        assert!(packetizer.packetize(&[], 0).is_empty());
        assert_eq!(packetizer.next_sequence(), 3);
    }

    #[test]
    fn sequence_wraps_after_65535() {
        let mut packetizer = RtpPacketizer::new(1, 96, 10).with_sequence(65534);
        let sequences: Vec<u16> = packetizer
            .packetize(&[0; 40], 0)
            .iter()
            .map(|p| RtpPacket::parse(p).unwrap().sequence())
            .collect();
        assert_eq!(sequences, [65534, 65535, 0, 1]);
        assert_eq!(packetizer.next_sequence(), 2);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut bytes = vec![
            0x80 | 0x20 | 0x10 | 2,
            0x80 | 96,
            0,
            7,
            0,
            0,
            0,
            9,
            0,
            0,
            0,
            42,
        ];
        bytes.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]); // two CSRCs
        bytes.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // extension of one word
        bytes.extend_from_slice(b"payload");
        bytes.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let packet = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(packet.payload(), b"payload");
        assert_eq!(
            (packet.ssrc(), packet.sequence(), packet.timestamp()),
            (42, 7, 9)
        );
        assert!(packet.marker());
    }

    #[test]
    fn errors_name_the_problem() {
        let header = [0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(RtpPacket::parse(&header[..11]), Err(RtpError::TooShort(11)));
        let mut v1 = header;
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::Version(1)));
        let mut csrc = header;
        csrc[0] = 0x81;
        assert_eq!(
            RtpPacket::parse(&csrc).unwrap_err().to_string(),
            "RTP packet of 12 bytes ends inside its CSRC list, which needs 16 bytes"
        );
        let mut extension = header.to_vec();
        extension[0] = 0x90;
        extension.extend_from_slice(&[0, 0, 0, 2, 1, 2, 3, 4]);
        assert_eq!(
            RtpPacket::parse(&extension),
            Err(RtpError::Truncated {
                what: "header extension",
                needed: 24,
                len: 20
            })
        );
        let mut padding = header.to_vec();
        padding[0] = 0xA0;
        padding.extend_from_slice(&[1, 2, 5]);
        assert_eq!(
            RtpPacket::parse(&padding),
            Err(RtpError::Padding {
                padding: 5,
                available: 3
            })
        );
        *padding.last_mut().unwrap() = 0;
        assert!(matches!(
            RtpPacket::parse(&padding),
            Err(RtpError::Padding { padding: 0, .. })
        ));
        // Padding flag on a packet without payload: the count byte would be header.
        padding.truncate(12);
        assert!(matches!(
            RtpPacket::parse(&padding),
            Err(RtpError::Padding { available: 0, .. })
        ));
    }
}
