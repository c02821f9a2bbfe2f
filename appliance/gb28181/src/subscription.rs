//! Subscriptions the platform holds on its devices (GB/T 28181 §9.11: Catalog changes, alarms,
//! mobile positions): which dialog each lives in, when it must be refreshed, and when to try again
//! after a device refused one. The platform sends the SUBSCRIBE requests; this only keeps books.

use serde::{Deserialize, Serialize};

use appliance_manscdp::Body;

/// Lifetime asked for in each SUBSCRIBE.
pub const EXPIRES_SECS: u32 = 3600;
/// Refresh this long before a subscription runs out.
const REFRESH_MARGIN_MS: i64 = 60_000;
/// A device that refused or ignored a subscription is asked again after this long (many
/// devices do not support SUBSCRIBE; asking every second would be noise).
const RETRY_AFTER_FAILURE_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionKind {
    Catalog,
    Alarm,
    MobilePosition,
}

impl SubscriptionKind {
    /// The `Event` header: GB28181 uses `Catalog` for catalog changes and `presence` for the
    /// others.
    pub fn event(self) -> &'static str {
        match self {
            SubscriptionKind::Catalog => "Catalog",
            SubscriptionKind::Alarm | SubscriptionKind::MobilePosition => "presence",
        }
    }

    /// The MANSCDP query the SUBSCRIBE carries.
    pub fn query(self) -> Body {
        match self {
            SubscriptionKind::Catalog => Body::CatalogQuery,
            SubscriptionKind::Alarm => Body::Other {
                cmd_type: "Alarm".into(),
            },
            SubscriptionKind::MobilePosition => Body::MobilePositionQuery { interval: Some(5) },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SubscriptionKind::Catalog => "Catalog",
            SubscriptionKind::Alarm => "Alarm",
            SubscriptionKind::MobilePosition => "MobilePosition",
        }
    }
}

/// One subscription's dialog and schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub call_id: String,
    pub from_tag: String,
    /// Known once the device accepted; refreshes go inside that dialog.
    pub to_tag: Option<String>,
    pub cseq: u32,
    pub expires_at_ms: i64,
    /// A SUBSCRIBE is out and unanswered.
    pub in_flight: bool,
    pub retry_at_ms: i64,
}

impl Subscription {
    pub fn new(call_id: String, from_tag: String) -> Subscription {
        Subscription {
            call_id,
            from_tag,
            to_tag: None,
            cseq: 0,
            expires_at_ms: 0,
            in_flight: false,
            retry_at_ms: 0,
        }
    }

    /// Whether a SUBSCRIBE (first or refresh) should go out now.
    pub fn due(&self, now_ms: i64) -> bool {
        !self.in_flight
            && now_ms >= self.retry_at_ms
            && now_ms >= self.expires_at_ms - REFRESH_MARGIN_MS
    }

    /// The next request of this dialog is going out.
    pub fn sending(&mut self) -> u32 {
        self.in_flight = true;
        self.cseq += 1;
        self.cseq
    }

    pub fn accepted(&mut self, to_tag: Option<String>, expires_secs: u32, now_ms: i64) {
        self.in_flight = false;
        if to_tag.is_some() {
            self.to_tag = to_tag;
        }
        self.expires_at_ms = now_ms + i64::from(expires_secs) * 1000;
    }

    /// Refused or unanswered: forget the dialog and wait before trying again.
    pub fn failed(&mut self, now_ms: i64) {
        self.in_flight = false;
        self.to_tag = None;
        self.expires_at_ms = 0;
        self.retry_at_ms = now_ms + RETRY_AFTER_FAILURE_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_before_expiry_and_backs_off_after_a_refusal() {
        let mut s = Subscription::new("c".into(), "t".into());
        assert!(s.due(0));
        assert_eq!(s.sending(), 1);
        assert!(!s.due(0), "one SUBSCRIBE at a time");
        s.accepted(Some("dev".into()), EXPIRES_SECS, 0);
        assert!(!s.due(3_600_000 - REFRESH_MARGIN_MS - 1));
        assert!(s.due(3_600_000 - REFRESH_MARGIN_MS));
        assert_eq!(s.sending(), 2, "refreshes stay in the dialog");
        s.failed(4_000_000);
        assert_eq!(s.to_tag, None);
        assert!(!s.due(4_000_000 + RETRY_AFTER_FAILURE_MS - 1));
        assert!(s.due(4_000_000 + RETRY_AFTER_FAILURE_MS));
    }
}
