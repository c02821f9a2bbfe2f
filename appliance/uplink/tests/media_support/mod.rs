//! What the media uploader's tests (`media.rs`, `s3.rs`) share: fast retry options and file
//! contents that differ per seed.

use std::time::Duration;

use appliance_uplink::media::MediaOptions;

pub fn media_options() -> MediaOptions {
    MediaOptions {
        ack_timeout: Duration::from_secs(10),
        recheck: Duration::from_millis(200),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
        seed: Some(7),
        ..MediaOptions::default()
    }
}

/// `len` bytes that differ for each `seed` (files are content-addressed: equal bytes would be one
/// file).
pub fn file_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
