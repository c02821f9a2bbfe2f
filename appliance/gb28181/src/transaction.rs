//! SIP transactions, reduced to what a platform needs (RFC 3261 §17), without sockets.
//!
//! * Server side: a request retransmitted by a device (same top Via branch and CSeq method) is
//!   answered from the cache, not processed twice.
//! * Client side: our non-INVITE requests are retransmitted over UDP at T1, doubling up to T2,
//!   until a final response arrives or timer F (64·T1) fires. INVITEs follow the same
//!   [`Backoff`] without the cap (timer A); the media sessions keep theirs, because an INVITE
//!   transaction's life is tied to its session's.

use std::collections::{HashMap, VecDeque};

use crate::device::{Peer, Transport};

pub const T1_MS: i64 = 500;
pub const T2_MS: i64 = 4_000;
/// Timer F / timer J: how long a transaction lives.
pub const TRANSACTION_MS: i64 = 64 * T1_MS;
/// Server transactions remembered at once (about 0.5 KiB each); the oldest are forgotten first.
/// Sized for thousands of registrations a second within one transaction lifetime: a forgotten
/// authenticated REGISTER that is retransmitted later is re-verified and, its nonce count being
/// used, challenged again.
const MAX_SERVER_TRANSACTIONS: usize = 65_536;

/// Identifies a server transaction: the top Via branch and the CSeq method.
pub type ServerKey = (String, String);

/// Responses we sent, to answer retransmissions.
#[derive(Default)]
pub struct ServerTransactions {
    responses: HashMap<ServerKey, (Vec<u8>, i64)>,
    order: VecDeque<(ServerKey, i64)>,
}

impl ServerTransactions {
    /// The response already sent for this request, if it is a retransmission.
    pub fn cached(&self, key: &ServerKey) -> Option<&[u8]> {
        self.responses.get(key).map(|(bytes, _)| bytes.as_slice())
    }

    pub fn remember(&mut self, key: ServerKey, response: Vec<u8>, now_ms: i64) {
        self.expire(now_ms);
        if self.responses.len() >= MAX_SERVER_TRANSACTIONS
            && let Some((oldest, _)) = self.order.pop_front()
        {
            self.responses.remove(&oldest);
        }
        self.order.push_back((key.clone(), now_ms));
        self.responses.insert(key, (response, now_ms));
    }

    pub fn expire(&mut self, now_ms: i64) {
        while let Some((key, at)) = self.order.front() {
            if now_ms - at < TRANSACTION_MS {
                break;
            }
            if self
                .responses
                .get(key)
                .is_some_and(|(_, stored)| stored == at)
            {
                self.responses.remove(key);
            }
            self.order.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.responses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }
}

/// When to send a request again over UDP (RFC 3261 §17.1): T1 after the first send, then at
/// doubling intervals, capped at T2 for non-INVITE requests (timer E) and not at all for an
/// INVITE (timer A).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next_ms: i64,
    interval_ms: i64,
    cap_ms: i64,
}

impl Backoff {
    /// Timer A of an INVITE first sent at `now_ms`.
    pub fn invite(now_ms: i64) -> Backoff {
        Backoff {
            next_ms: now_ms + T1_MS,
            interval_ms: T1_MS,
            cap_ms: i64::MAX,
        }
    }

    /// Timer E of a non-INVITE request first sent at `now_ms`.
    pub fn non_invite(now_ms: i64) -> Backoff {
        Backoff {
            cap_ms: T2_MS,
            ..Backoff::invite(now_ms)
        }
    }

    /// Whether a retransmission is due at `now_ms`, scheduling the next one if so. The clock may
    /// tick more coarsely than the schedule (the daemon ticks once a second): several
    /// retransmissions due at one tick go out as one, and the next is counted from now.
    pub fn due(&mut self, now_ms: i64) -> bool {
        if now_ms < self.next_ms {
            return false;
        }
        self.interval_ms = self.interval_ms.saturating_mul(2).min(self.cap_ms);
        self.next_ms = now_ms.saturating_add(self.interval_ms);
        true
    }

    /// A provisional response to a non-INVITE request: keep retransmitting, but only every T2
    /// (RFC 3261 §17.1.2.2).
    pub fn slow_down(&mut self) {
        self.interval_ms = T2_MS;
    }
}

/// What a client transaction was for, so its answer (or its timeout) can be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purpose {
    pub device_id: String,
    pub what: String,
}

struct Pending {
    peer: Peer,
    bytes: Vec<u8>,
    purpose: Purpose,
    backoff: Backoff,
    deadline_ms: i64,
}

/// Our outstanding requests, by Via branch.
#[derive(Default)]
pub struct ClientTransactions {
    pending: HashMap<String, Pending>,
}

impl ClientTransactions {
    /// Records a request just sent for the first time.
    pub fn start(
        &mut self,
        branch: String,
        peer: Peer,
        bytes: Vec<u8>,
        purpose: Purpose,
        now_ms: i64,
    ) {
        self.pending.insert(
            branch,
            Pending {
                peer,
                bytes,
                purpose,
                backoff: Backoff::non_invite(now_ms),
                deadline_ms: now_ms + TRANSACTION_MS,
            },
        );
    }

    /// A response arrived: a final one ends the transaction and returns what it was for.
    pub fn on_response(&mut self, branch: &str, status: u16) -> Option<Purpose> {
        if status < 200 {
            if let Some(p) = self.pending.get_mut(branch) {
                p.backoff.slow_down();
            }
            return None;
        }
        self.pending.remove(branch).map(|p| p.purpose)
    }

    /// Retransmissions due now (UDP only), and the transactions that timed out.
    pub fn poll(&mut self, now_ms: i64) -> (Vec<(Peer, Vec<u8>)>, Vec<Purpose>) {
        let mut resend = Vec::new();
        let mut timed_out = Vec::new();
        self.pending.retain(|_, p| {
            if now_ms >= p.deadline_ms {
                timed_out.push(p.purpose.clone());
                return false;
            }
            if p.peer.transport == Transport::Udp && p.backoff.due(now_ms) {
                resend.push((p.peer, p.bytes.clone()));
            }
            true
        });
        (resend, timed_out)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(transport: Transport) -> Peer {
        Peer {
            transport,
            addr: "192.0.2.7:5060".parse().unwrap(),
        }
    }

    fn purpose() -> Purpose {
        Purpose {
            device_id: "34020000001320000001".into(),
            what: "Catalog".into(),
        }
    }

    #[test]
    fn udp_requests_are_retransmitted_with_backoff_until_timer_f() {
        let mut tx = ClientTransactions::default();
        tx.start(
            "b1".into(),
            peer(Transport::Udp),
            b"MESSAGE".to_vec(),
            purpose(),
            0,
        );
        let mut sends = Vec::new();
        let mut now = 0;
        let timed_out = loop {
            now += 100;
            let (resend, timed_out) = tx.poll(now);
            if !resend.is_empty() {
                sends.push(now);
            }
            if !timed_out.is_empty() {
                break timed_out;
            }
        };
        // 500, +1000, +2000, +4000, +4000, …
        assert_eq!(&sends[..4], &[500, 1_500, 3_500, 7_500]);
        assert_eq!(sends[4] - sends[3], T2_MS);
        assert_eq!(now, TRANSACTION_MS);
        assert_eq!(timed_out, vec![purpose()]);
        assert!(tx.is_empty());
    }

    #[test]
    fn invite_backoff_doubles_without_a_cap_and_coarse_ticks_send_once() {
        let sends = |tick: i64| {
            let mut backoff = Backoff::invite(0);
            (1..=TRANSACTION_MS / tick)
                .map(|n| n * tick)
                .filter(|&now| backoff.due(now))
                .collect::<Vec<_>>()
        };
        // Timer A: 0.5 s, then 1, 2, 4, 8, 16 s apart (a non-INVITE request stops at T2).
        assert_eq!(sends(100), [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        // The daemon's one-second tick: whatever is due goes out once, at the next tick.
        assert_eq!(sends(1_000), [1_000, 2_000, 4_000, 8_000, 16_000, 32_000]);
    }

    #[test]
    fn a_final_response_ends_the_transaction_and_tcp_is_never_retransmitted() {
        let mut tx = ClientTransactions::default();
        tx.start("b1".into(), peer(Transport::Udp), vec![], purpose(), 0);
        tx.start("b2".into(), peer(Transport::Tcp), vec![], purpose(), 0);
        assert_eq!(tx.on_response("b1", 100), None);
        assert_eq!(tx.on_response("b1", 200), Some(purpose()));
        assert_eq!(
            tx.on_response("b1", 200),
            None,
            "a late duplicate matches nothing"
        );
        let (resend, _) = tx.poll(10_000);
        assert!(resend.is_empty());
        assert_eq!(tx.len(), 1);
    }

    #[test]
    fn retransmitted_requests_are_answered_from_the_cache_until_they_expire() {
        let mut server = ServerTransactions::default();
        let key = ("z9hG4bK1".to_string(), "REGISTER".to_string());
        server.remember(key.clone(), b"SIP/2.0 200 OK".to_vec(), 0);
        assert_eq!(server.cached(&key), Some(&b"SIP/2.0 200 OK"[..]));
        server.expire(TRANSACTION_MS - 1);
        assert!(server.cached(&key).is_some());
        server.expire(TRANSACTION_MS);
        assert!(server.cached(&key).is_none());
    }
}
