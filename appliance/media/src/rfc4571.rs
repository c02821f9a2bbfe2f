//! RTP over TCP as GB28181 uses it (RFC 4571): each packet is preceded by its length as a
//! 16-bit big-endian number. There are no markers to resynchronise on, so a deframer that loses
//! its place cannot find it again; it only has to be exact and bounded.

/// Bytes a [`Deframer`] holds by default before it drops whole packets nobody has taken.
pub const DEFAULT_LIMIT: usize = 1 << 20;

/// Bytes of the largest frame: the prefix and a 65535-byte packet.
const MAX_FRAME: usize = 2 + u16::MAX as usize;

/// `packet` with its 2-byte length prefix.
///
/// # Panics
/// If the packet is longer than 65535 bytes, which the prefix cannot express (an
/// [`RtpPacketizer`](crate::rtp::RtpPacketizer) with `max_payload` ≤ 65523 never makes one).
pub fn frame(packet: &[u8]) -> Vec<u8> {
    let len = u16::try_from(packet.len())
        .unwrap_or_else(|_| panic!("{}-byte RTP packet exceeds RFC 4571's 65535", packet.len()));
    let mut out = Vec::with_capacity(2 + packet.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    out
}

/// Cuts a TCP byte stream, read in arbitrary pieces, back into packets.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`: consumed bytes are removed lazily, on the next
    /// push, so that taking packets one by one does not move the rest each time.
    start: usize,
    limit: usize,
    dropped: u64,
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new()
    }
}

impl Deframer {
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// A deframer holding at most `limit` bytes (at least one whole frame, 65537 bytes), so a
    /// peer that sends faster than the reader takes packets cannot grow it without bound.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            limit: limit.max(MAX_FRAME),
            dropped: 0,
        }
    }

    /// Appends bytes read from the stream. If more than the limit is then waiting, the oldest
    /// complete packets are dropped (and counted): a live stream wants the newest data, and
    /// dropping whole frames keeps the deframer in step with the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        while self.buf.len() - self.start > self.limit {
            match self.frame_len() {
                Some(len) if self.buf.len() - self.start >= len => {
                    self.start += len;
                    self.dropped += 1;
                }
                // Not reached: more than the limit (≥ one maximal frame) is buffered, so the
                // frame at the front is complete.
                _ => break,
            }
        }
    }

    /// The next complete packet, or `None` until more bytes arrive. Zero-length frames carry
    /// nothing and are skipped.
    pub fn next_packet(&mut self) -> Option<Vec<u8>> {
        loop {
            let len = self.frame_len()?;
            if self.buf.len() - self.start < len {
                return None;
            }
            let packet = self.buf[self.start + 2..self.start + len].to_vec();
            self.start += len;
            if !packet.is_empty() {
                return Some(packet);
            }
        }
    }

    /// Packets dropped because the buffer was over its limit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes waiting: a partial frame, or packets not taken yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Length of the frame at `start`, prefix included, once its prefix is there.
    fn frame_len(&self) -> Option<usize> {
        let prefix = self.buf.get(self.start..self.start + 2)?;
        Some(2 + usize::from(u16::from_be_bytes([prefix[0], prefix[1]])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(deframer: &mut Deframer) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| deframer.next_packet()).collect()
    }

    #[test]
    fn deframes_the_same_at_every_split_point() {
        let packets: Vec<Vec<u8>> = vec![b"first".to_vec(), vec![7; 300], b"x".to_vec()];
        let mut stream = Vec::new();
        for packet in &packets {
            stream.extend(frame(packet));
            stream.extend(frame(&[])); // skipped
        }
        for cut in 0..=stream.len() {
            let mut deframer = Deframer::new();
            deframer.push(&stream[..cut]);
            let mut got = drain(&mut deframer);
            deframer.push(&stream[cut..]);
            got.extend(drain(&mut deframer));
            assert_eq!(got, packets, "split at byte {cut}");
            assert_eq!(deframer.buffered(), 0);
        }
        // And one byte at a time.
        let mut deframer = Deframer::new();
        let mut got = Vec::new();
        for byte in &stream {
            deframer.push(std::slice::from_ref(byte));
            got.extend(drain(&mut deframer));
        }
        assert_eq!(got, packets);
    }

    #[test]
    fn buffer_stays_bounded_when_nobody_reads() {
        let mut deframer = Deframer::with_limit(0); // raised to one maximal frame
        let packet = vec![1; 40_000];
        for _ in 0..10 {
            deframer.push(&frame(&packet));
            assert!(deframer.buffered() <= MAX_FRAME);
        }
        assert_eq!(deframer.dropped(), 9);
        assert_eq!(drain(&mut deframer), [packet]);
        // A maximal frame still fits.
        let big = vec![2; 65535];
        deframer.push(&frame(&big));
        assert_eq!(drain(&mut deframer), [big]);
    }

    #[test]
    #[should_panic(expected = "65536-byte RTP packet exceeds RFC 4571's 65535")]
    fn oversized_packet_cannot_be_framed() {
        frame(&vec![0; 65536]);
    }
}
