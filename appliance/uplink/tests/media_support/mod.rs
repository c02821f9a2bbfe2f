//! What the media uploader's tests (`media.rs`, `s3.rs`) share: fast retry options and file
//! contents that differ per seed.

use std::time::Duration;

use appliance_uplink::media::{MediaOptions, MediaStatus, MediaStatusHandle};
use appliance_uplink::sender::{StatusHandle, UplinkStatus};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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

/// A sender and a media uploader running on a test's runtime; each test file starts its own.
/// A sender and a media uploader on one MQTT publisher, as the daemon runs them.
pub struct Running {
    pub events: StatusHandle,
    pub media: MediaStatusHandle,
    pub cancel: CancellationToken,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn wait_events(
        &mut self,
        what: &str,
        done: impl FnMut(&UplinkStatus) -> bool,
    ) -> UplinkStatus {
        let waited =
            tokio::time::timeout(Duration::from_secs(15), self.events.wait_for(done)).await;
        match waited {
            Ok(Some(status)) => status,
            _ => panic!("{what}: status {:#?}", self.events.snapshot()),
        }
    }

    pub async fn wait_media(
        &mut self,
        what: &str,
        done: impl FnMut(&MediaStatus) -> bool,
    ) -> MediaStatus {
        let waited = tokio::time::timeout(Duration::from_secs(15), self.media.wait_for(done)).await;
        match waited {
            Ok(Some(status)) => status,
            _ => panic!("{what}: media status {:#?}", self.media.snapshot()),
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}
