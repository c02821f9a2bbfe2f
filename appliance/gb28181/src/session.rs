//! Media sessions (live, playback, download) as a state machine without sockets: the INVITE
//! with its `Subject` and SDP offer, retransmitted over UDP until the device answers; the ACK of
//! its 200 (again for each retransmitted 200) or of its refusal; CANCEL of an INVITE not answered
//! yet; BYE from either side; playback control with INFO (MANSRTSP); the end of a playback the
//! device reports (MediaStatus 121). Above all, the SSRC each session holds is released on
//! every way a session can end (BYE either way, refusal, cancel, timeout, stream gone, media
//! end). Leaked SSRCs and RTP ports are a classic failure of existing platforms; the randomised
//! test at the bottom drives thousands of sessions through every path and checks that none
//! leaks.

use std::collections::HashMap;
use std::net::IpAddr;

use appliance_sip::message::{Message, RequestBuilder, new_branch, new_call_id, new_tag};

use crate::device::{Peer, Transport};
use crate::mansrtsp::{self, MansrtspError, PlaybackControl};
use crate::sdp::{Answer, MediaTransport, Offer, SessionKind};
use crate::ssrc::{Ssrc, SsrcAllocator, SsrcError, StreamKind};
use crate::transaction::{Backoff, ClientTransactions, Purpose, TRANSACTION_MS};

/// The INVITE's CSeq number; the dialog's later requests count up from it.
const INVITE_CSEQ: u32 = 1;
/// How long a device has to answer an INVITE finally (timer B, 64·T1), and how long the final
/// response may take after a CANCEL (RFC 3261 §9.1).
const INVITE_TIMEOUT_MS: i64 = TRANSACTION_MS;

/// Where the media server receives the stream (from its `openRtpServer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaEndpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub transport: MediaTransport,
}

/// The device a session is asked of, and how we are known to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub device_id: String,
    pub channel_id: String,
    pub peer: Peer,
    /// Our `host:port` as the device addressed us.
    pub platform_host: String,
    pub platform_id: String,
    pub domain: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INVITE sent, no answer yet.
    Inviting,
    /// A provisional answer (100/180) arrived.
    Proceeding,
    /// 200 answered and ACKed: media flows.
    Established,
    /// We hung up before the device answered finally. The CANCEL is out, or goes out with the
    /// first provisional answer (none may go before one, RFC 3261 §9.1); the session waits for
    /// the INVITE's final response or the timeout.
    Cancelling,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up (the viewer left, the API stopped it).
    Stopped,
    /// The device sent BYE (end of a playback, device restart…).
    ByeFromDevice,
    /// The device refused the INVITE with this status.
    Refused(u16),
    /// No final answer within the INVITE timeout.
    Timeout,
    /// The media server reported the stream gone (nothing arrived, or it closed).
    StreamGone,
    /// The device reported that the playback or download reached its end (MediaStatus 121).
    MediaEnded,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub target: Target,
    pub kind: SessionKind,
    pub ssrc: Ssrc,
    pub endpoint: MediaEndpoint,
    /// The device's SDP, once it accepted.
    pub answer: Option<Answer>,
    state: State,
    call_id: String,
    from_tag: String,
    /// The device's tag from its 200: the dialog exists once it is known.
    to_tag: Option<String>,
    /// The INVITE's Via branch, which its CANCEL and the ACK of a refusal reuse.
    invite_branch: String,
    /// The CSeq of our latest request in the dialog.
    local_cseq: u32,
    /// A provisional answer arrived, so a CANCEL may go out.
    provisional: bool,
    /// Set with `State::Cancelling`: the reason the session ends with, whatever the device
    /// answers to the CANCEL.
    cancel_reason: Option<EndReason>,
    /// The INVITE and its timer A, over UDP until the first answer.
    resend: Option<(Vec<u8>, Backoff)>,
    /// The ACK of the device's 200, sent again for each retransmitted 200: the device repeats
    /// its 200 until an ACK gets through.
    ack: Option<Vec<u8>>,
    /// When waiting for a final answer ends: timer B, pushed back when a CANCEL goes out.
    deadline_ms: i64,
}

impl Session {
    pub fn state(&self) -> State {
        self.state
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// A request of this session. The INVITE, its CANCEL and ACKs, and the BYE and INFO in its
    /// dialog share the Request-URI, From and Call-ID; `to_tag` and `branch` tell them apart.
    fn request(
        &self,
        method: &str,
        cseq: u32,
        to_tag: Option<&str>,
        branch: &str,
    ) -> RequestBuilder {
        let target = &self.target;
        RequestBuilder::new(
            method,
            &format!("sip:{}@{}", target.channel_id, target.peer.addr),
        )
        .via_with_branch(transport_name(&target.peer), &target.platform_host, branch)
        .from(
            &format!("sip:{}@{}", target.platform_id, target.domain),
            &self.from_tag,
        )
        .to(
            &format!("sip:{}@{}", target.channel_id, target.domain),
            to_tag,
        )
        .call_id(&self.call_id)
        .cseq(cseq)
    }

    /// The next request inside the dialog (BYE, INFO), numbered `local_cseq + 1`.
    fn in_dialog(&mut self, method: &str) -> RequestBuilder {
        self.local_cseq += 1;
        self.request(
            method,
            self.local_cseq,
            self.to_tag.as_deref(),
            &new_branch(),
        )
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    Send {
        peer: Peer,
        bytes: Vec<u8>,
    },
    /// The device accepted; media should arrive at the endpoint with this SSRC.
    Established {
        call_id: String,
        ssrc: Ssrc,
    },
    /// The session is over and its SSRC released; close the media server's RTP endpoint.
    Ended {
        call_id: String,
        reason: EndReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no SSRC: {0}")]
    Ssrc(#[from] SsrcError),
    #[error("cannot build the request: {0}")]
    Build(String),
    #[error("no media session {0}")]
    NoSession(String),
    #[error("session {call_id} cannot be controlled: {reason}")]
    NotControllable {
        call_id: String,
        reason: &'static str,
    },
    #[error("invalid playback control: {0}")]
    Control(#[from] MansrtspError),
}

/// What went wrong with sessions' requests, for the platform's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// INFO (playback control) answered with a failure status.
    pub controls_refused: u64,
    /// INVITE, CANCEL, BYE or INFO without a final answer in time.
    pub requests_timed_out: u64,
}

/// The ACK of a refused INVITE over UDP, kept for timer D.
struct RefusalAck {
    peer: Peer,
    bytes: Vec<u8>,
    until_ms: i64,
}

/// Every media session of the platform, by Call-ID.
pub struct Sessions {
    ssrcs: SsrcAllocator,
    sessions: HashMap<String, Session>,
    /// Our CANCEL, BYE and INFO requests until answered (retransmitted over UDP). They outlive
    /// their session: a BYE is retransmitted after its session ended and gave its SSRC back.
    requests: ClientTransactions,
    /// By Call-ID: a device that missed our ACK of its refusal repeats the refusal, and gets the
    /// same ACK again until timer D runs out (RFC 3261 §17.1.1.2).
    refusal_acks: HashMap<String, RefusalAck>,
    counters: SessionCounters,
}

fn transport_name(peer: &Peer) -> &'static str {
    match peer.transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    }
}

fn build(request: RequestBuilder) -> Result<Message, SessionError> {
    request
        .build()
        .map_err(|e| SessionError::Build(e.to_string()))
}

/// A request that could not be built is logged and not sent. It cannot happen in practice: the
/// INVITE was built from the same parts, and the device's tag comes from a parsed message.
fn logged<T>(built: Result<T, SessionError>) -> Option<T> {
    built
        .inspect_err(|e| tracing::warn!(error = %e, "cannot send a session request"))
        .ok()
}

/// An ACK's bytes. An ACK has no transaction: it goes out once per answer it acknowledges.
fn ack(request: RequestBuilder) -> Option<Vec<u8>> {
    logged(build(request)).map(|ack| ack.to_bytes())
}

/// Sends a CANCEL, BYE or INFO of `session` as a client transaction: retransmitted over UDP
/// until a final answer, or until timer F gives up.
fn transact(
    requests: &mut ClientTransactions,
    session: &Session,
    request: RequestBuilder,
    now_ms: i64,
) -> Result<SessionOutput, SessionError> {
    let message = build(request)?;
    let bytes = message.to_bytes();
    let purpose = Purpose {
        device_id: session.target.device_id.clone(),
        what: format!(
            "{} in session {}",
            message.method().unwrap_or_default(),
            session.call_id
        ),
    };
    let peer = session.target.peer;
    requests.start(
        message.via_branch().unwrap_or_default(),
        peer,
        bytes.clone(),
        purpose,
        now_ms,
    );
    Ok(SessionOutput::Send { peer, bytes })
}

impl Sessions {
    pub fn new(ssrcs: SsrcAllocator) -> Sessions {
        Sessions {
            ssrcs,
            sessions: HashMap::new(),
            requests: ClientTransactions::default(),
            refusal_acks: HashMap::new(),
            counters: SessionCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn get(&self, call_id: &str) -> Option<&Session> {
        self.sessions.get(call_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// SSRCs held now; equals the number of sessions (the invariant the tests check).
    pub fn ssrcs_in_use(&self) -> usize {
        self.ssrcs.in_use()
    }

    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// Sends an INVITE for `kind` from `target`'s channel to `endpoint`. Returns the Call-ID that
    /// names the session.
    pub fn start(
        &mut self,
        target: Target,
        kind: SessionKind,
        endpoint: MediaEndpoint,
        now_ms: i64,
    ) -> Result<(String, Vec<SessionOutput>), SessionError> {
        let stream = match kind {
            SessionKind::Play => StreamKind::Live,
            SessionKind::Playback { .. } | SessionKind::Download { .. } => StreamKind::Playback,
        };
        let ssrc = self.ssrcs.allocate(stream)?;
        let offer = Offer {
            session: kind,
            channel_id: target.channel_id.clone(),
            origin_user: target.platform_id.clone(),
            media_ip: endpoint.ip,
            media_port: endpoint.port,
            transport: endpoint.transport,
            ssrc,
        };
        let mut session = Session {
            call_id: new_call_id(&target.platform_host),
            target,
            kind,
            ssrc,
            endpoint,
            answer: None,
            state: State::Inviting,
            from_tag: new_tag(),
            to_tag: None,
            invite_branch: new_branch(),
            local_cseq: INVITE_CSEQ,
            provisional: false,
            cancel_reason: None,
            resend: None,
            ack: None,
            deadline_ms: now_ms + INVITE_TIMEOUT_MS,
        };
        let target = &session.target;
        let invite = session
            .request("INVITE", INVITE_CSEQ, None, &session.invite_branch)
            .contact(&format!(
                "sip:{}@{}",
                target.platform_id, target.platform_host
            ))
            .header(
                "Subject",
                &format!("{}:{ssrc},{}:0", target.channel_id, target.platform_id),
            )
            .body("APPLICATION/SDP", offer.to_sdp());
        let invite = match build(invite) {
            Ok(invite) => invite.to_bytes(),
            Err(e) => {
                // Every exit path gives the SSRC back, this early one included.
                self.ssrcs.release(ssrc);
                return Err(e);
            }
        };
        let peer = target.peer;
        if peer.transport == Transport::Udp {
            session.resend = Some((invite.clone(), Backoff::invite(now_ms)));
        }
        let call_id = session.call_id.clone();
        self.sessions.insert(call_id.clone(), session);
        Ok((
            call_id,
            vec![SessionOutput::Send {
                peer,
                bytes: invite,
            }],
        ))
    }

    /// Forgets a session and releases its SSRC. A session we were cancelling ends for the reason
    /// we hung up, however the device answered.
    fn end(&mut self, call_id: &str, reason: EndReason) -> Option<SessionOutput> {
        let session = self.sessions.remove(call_id)?;
        self.ssrcs.release(session.ssrc);
        Some(SessionOutput::Ended {
            call_id: call_id.to_string(),
            reason: session.cancel_reason.unwrap_or(reason),
        })
    }

    /// A response to our INVITE, CANCEL, BYE or INFO.
    pub fn on_response(&mut self, response: &Message, now_ms: i64) -> Vec<SessionOutput> {
        let (Some(call_id), Some(status), Some((cseq, method))) =
            (response.call_id(), response.status(), response.cseq())
        else {
            return Vec::new();
        };
        if method != "INVITE" {
            self.on_request_answered(response, &method, status);
            return Vec::new();
        }
        let Some(session) = self.sessions.get_mut(call_id) else {
            // A refusal repeated after we ACKed it and ended the session.
            return match self.refusal_acks.get(call_id) {
                Some(ack) if status >= 300 => vec![SessionOutput::Send {
                    peer: ack.peer,
                    bytes: ack.bytes.clone(),
                }],
                _ => Vec::new(),
            };
        };
        if cseq != INVITE_CSEQ {
            return Vec::new();
        }
        // Any answer ends timer A.
        session.resend = None;
        match status {
            100..=199 => self.on_provisional(call_id, now_ms),
            200..=299 => self.on_accepted(call_id, response, now_ms),
            _ => self.on_refused(call_id, response, status, now_ms),
        }
    }

    /// The answer to a CANCEL, BYE or INFO: its transaction is over. Only a refused playback
    /// control matters to anyone; a CANCEL or BYE the device no longer knows (481) is normal
    /// when it crossed the device's own answer or BYE.
    fn on_request_answered(&mut self, response: &Message, method: &str, status: u16) {
        let Some(branch) = response.via_branch() else {
            return;
        };
        let Some(purpose) = self.requests.on_response(&branch, status) else {
            return;
        };
        if status < 300 {
            return;
        }
        if method == "INFO" {
            self.counters.controls_refused += 1;
            tracing::warn!(
                device = purpose.device_id,
                what = purpose.what,
                status,
                "device refused a playback control"
            );
        } else {
            tracing::debug!(
                device = purpose.device_id,
                what = purpose.what,
                status,
                "device refused a request"
            );
        }
    }

    fn on_provisional(&mut self, call_id: &str, now_ms: i64) -> Vec<SessionOutput> {
        let session = self.sessions.get_mut(call_id).expect("session exists");
        let first = !std::mem::replace(&mut session.provisional, true);
        match session.state {
            State::Inviting => {
                session.state = State::Proceeding;
                Vec::new()
            }
            // The CANCEL held back for want of a provisional answer goes now.
            State::Cancelling if first => self.cancel(call_id, now_ms).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn on_accepted(
        &mut self,
        call_id: &str,
        response: &Message,
        now_ms: i64,
    ) -> Vec<SessionOutput> {
        let session = self.sessions.get_mut(call_id).expect("session exists");
        let peer = session.target.peer;
        if session.state == State::Established {
            // A retransmitted 200: our ACK did not get through.
            return session
                .ack
                .iter()
                .map(|bytes| SessionOutput::Send {
                    peer,
                    bytes: bytes.clone(),
                })
                .collect();
        }
        session.to_tag = response.to_tag();
        session.ack =
            ack(session.request("ACK", INVITE_CSEQ, session.to_tag.as_deref(), &new_branch()));
        let mut outputs: Vec<SessionOutput> = session
            .ack
            .iter()
            .map(|bytes| SessionOutput::Send {
                peer,
                bytes: bytes.clone(),
            })
            .collect();
        let answer = std::str::from_utf8(response.body())
            .ok()
            .and_then(|sdp| Answer::parse(sdp).ok());
        match (session.state, answer) {
            // Our CANCEL crossed the device's 200: the call exists now, and only a BYE ends it
            // (`end` reports the reason we hung up for).
            (State::Cancelling, _) => outputs.extend(self.bye(call_id, EndReason::Stopped, now_ms)),
            // An answer without a usable SDP: hang up rather than wait for media that cannot
            // come.
            (_, None) => outputs.extend(self.bye(call_id, EndReason::Refused(488), now_ms)),
            (_, Some(answer)) => {
                session.answer = Some(answer);
                session.state = State::Established;
                outputs.push(SessionOutput::Established {
                    call_id: call_id.to_string(),
                    ssrc: session.ssrc,
                });
            }
        }
        outputs
    }

    fn on_refused(
        &mut self,
        call_id: &str,
        response: &Message,
        status: u16,
        now_ms: i64,
    ) -> Vec<SessionOutput> {
        let session = &self.sessions[call_id];
        if session.state == State::Established {
            // A failure after the 200 belongs to no transaction of ours: the dialog stands.
            return Vec::new();
        }
        // RFC 3261 §17.1.1.3: the ACK of a failure is part of the INVITE transaction, so it
        // takes the INVITE's branch and CSeq number, and the To tag of the failure.
        let peer = session.target.peer;
        let acked = ack(session.request(
            "ACK",
            INVITE_CSEQ,
            response.to_tag().as_deref(),
            &session.invite_branch,
        ));
        let mut outputs = Vec::new();
        if let Some(bytes) = acked {
            if peer.transport == Transport::Udp {
                // Timer D: zero over TCP, which does not lose the ACK.
                self.refusal_acks.insert(
                    call_id.to_string(),
                    RefusalAck {
                        peer,
                        bytes: bytes.clone(),
                        until_ms: now_ms + TRANSACTION_MS,
                    },
                );
            }
            outputs.push(SessionOutput::Send { peer, bytes });
        }
        outputs.extend(self.end(call_id, EndReason::Refused(status)));
        outputs
    }

    /// CANCEL of the INVITE (RFC 3261 §9.1): its Request-URI, Call-ID, From, To without tag,
    /// Via branch and CSeq number.
    fn cancel(&mut self, call_id: &str, now_ms: i64) -> Option<SessionOutput> {
        let session = self.sessions.get_mut(call_id)?;
        // The INVITE's final answer may take another transaction lifetime to follow.
        session.deadline_ms = session.deadline_ms.max(now_ms + INVITE_TIMEOUT_MS);
        let cancel = session.request("CANCEL", INVITE_CSEQ, None, &session.invite_branch);
        logged(transact(&mut self.requests, session, cancel, now_ms))
    }

    /// BYE in the dialog, and the end.
    fn bye(&mut self, call_id: &str, reason: EndReason, now_ms: i64) -> Vec<SessionOutput> {
        let Some(session) = self.sessions.get_mut(call_id) else {
            return Vec::new();
        };
        let bye = session.in_dialog("BYE");
        logged(transact(&mut self.requests, session, bye, now_ms))
            .into_iter()
            .chain(self.end(call_id, reason))
            .collect()
    }

    /// Ends a session from our side: BYE once the dialog exists; before that, CANCEL and wait
    /// for the device's final answer.
    fn hang_up(&mut self, call_id: &str, reason: EndReason, now_ms: i64) -> Vec<SessionOutput> {
        let Some(session) = self.sessions.get_mut(call_id) else {
            return Vec::new();
        };
        match session.state {
            State::Established => self.bye(call_id, reason, now_ms),
            State::Cancelling => Vec::new(),
            State::Inviting | State::Proceeding => {
                session.state = State::Cancelling;
                session.cancel_reason = Some(reason);
                if session.provisional {
                    self.cancel(call_id, now_ms).into_iter().collect()
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// We stop a session (viewer gone, API).
    pub fn stop(&mut self, call_id: &str, now_ms: i64) -> Vec<SessionOutput> {
        self.hang_up(call_id, EndReason::Stopped, now_ms)
    }

    /// The media server says the stream is gone.
    pub fn stream_gone(&mut self, call_id: &str, now_ms: i64) -> Vec<SessionOutput> {
        self.hang_up(call_id, EndReason::StreamGone, now_ms)
    }

    /// The device sent BYE; the caller answers it 200 (or 481 when this returns nothing).
    pub fn on_bye(&mut self, call_id: &str) -> Vec<SessionOutput> {
        self.end(call_id, EndReason::ByeFromDevice)
            .into_iter()
            .collect()
    }

    /// Pauses, resumes, seeks or changes the speed of an established playback, with an INFO
    /// in its dialog. Whatever the device answers, the session goes on.
    pub fn control(
        &mut self,
        call_id: &str,
        control: PlaybackControl,
        now_ms: i64,
    ) -> Result<Vec<SessionOutput>, SessionError> {
        let session = self
            .sessions
            .get_mut(call_id)
            .ok_or_else(|| SessionError::NoSession(call_id.to_string()))?;
        let refuse = |reason| SessionError::NotControllable {
            call_id: call_id.to_string(),
            reason,
        };
        match (session.kind, session.state) {
            (SessionKind::Play, _) => {
                return Err(refuse("a live stream has no playback to control"));
            }
            (SessionKind::Download { .. }, _) => {
                return Err(refuse("a download runs at the speed it was asked for"));
            }
            (SessionKind::Playback { .. }, State::Established) => {}
            (SessionKind::Playback { .. }, _) => {
                return Err(refuse("the playback is not established"));
            }
        }
        // The MANSRTSP CSeq is the INFO's own: one count that rises through the dialog. Built
        // first, so an invalid control leaves the dialog untouched.
        let body = control.to_body(session.local_cseq + 1)?;
        let info = session.in_dialog("INFO").body(mansrtsp::CONTENT_TYPE, body);
        Ok(vec![transact(&mut self.requests, session, info, now_ms)?])
    }

    /// A device reported that a playback or download reached its end (MediaStatus 121): BYE
    /// the session named by the MESSAGE's Call-ID (devices send it in the INVITE's dialog),
    /// else the one established playback or download on `device_id`'s `channel_id`, if only one
    /// is. Returns nothing when no session matches.
    pub fn media_ended(
        &mut self,
        call_id: Option<&str>,
        device_id: &str,
        channel_id: &str,
        now_ms: i64,
    ) -> Vec<SessionOutput> {
        let recorded =
            |s: &&Session| s.kind != SessionKind::Play && s.target.device_id == device_id;
        let by_call_id = call_id
            .and_then(|call_id| self.sessions.get(call_id))
            .filter(recorded);
        let found = by_call_id.or_else(|| {
            let mut on_channel = self.sessions.values().filter(|s| {
                recorded(s) && s.target.channel_id == channel_id && s.state == State::Established
            });
            match (on_channel.next(), on_channel.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        });
        match found.map(|s| s.call_id.clone()) {
            Some(call_id) => self.hang_up(&call_id, EndReason::MediaEnded, now_ms),
            None => Vec::new(),
        }
    }

    /// Clock tick: INVITEs retransmitted over UDP (timer A), sessions that waited too long for
    /// a final answer ended (their SSRCs come back), CANCEL/BYE/INFO retransmitted or given up.
    pub fn on_tick(&mut self, now_ms: i64) -> Vec<SessionOutput> {
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.state != State::Established && now_ms >= s.deadline_ms)
            .map(|s| s.call_id.clone())
            .collect();
        self.counters.requests_timed_out += expired.len() as u64;
        let mut outputs: Vec<SessionOutput> = expired
            .iter()
            .flat_map(|call_id| self.end(call_id, EndReason::Timeout))
            .collect();
        for session in self.sessions.values_mut() {
            if let Some((invite, backoff)) = &mut session.resend
                && backoff.due(now_ms)
            {
                outputs.push(SessionOutput::Send {
                    peer: session.target.peer,
                    bytes: invite.clone(),
                });
            }
        }
        let (resend, timed_out) = self.requests.poll(now_ms);
        outputs.extend(
            resend
                .into_iter()
                .map(|(peer, bytes)| SessionOutput::Send { peer, bytes }),
        );
        for purpose in timed_out {
            self.counters.requests_timed_out += 1;
            tracing::warn!(
                device = purpose.device_id,
                what = purpose.what,
                "device did not answer"
            );
        }
        self.refusal_acks.retain(|_, ack| now_ms < ack.until_ms);
        outputs
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const CHANNEL: &str = "34020000001310000001";

    fn target(transport: Transport) -> Target {
        Target {
            device_id: "34020000001320000001".into(),
            channel_id: CHANNEL.into(),
            peer: Peer {
                transport,
                addr: "192.0.2.10:5060".parse().unwrap(),
            },
            platform_host: "192.0.2.1:5060".into(),
            platform_id: "34020000002000000001".into(),
            domain: "3402000000".into(),
        }
    }

    fn endpoint() -> MediaEndpoint {
        MediaEndpoint {
            ip: "192.0.2.1".parse().unwrap(),
            port: 30_000,
            transport: MediaTransport::Udp,
        }
    }

    fn sessions() -> Sessions {
        Sessions::new(SsrcAllocator::new("3402000000").unwrap())
    }

    const PLAYBACK: SessionKind = SessionKind::Playback {
        start: 1_700_000_000,
        end: 1_700_003_600,
    };

    fn sent(outputs: &[SessionOutput]) -> Vec<Message> {
        outputs
            .iter()
            .filter_map(|o| match o {
                SessionOutput::Send { bytes, .. } => Some(Message::parse(bytes).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn methods(outputs: &[SessionOutput]) -> Vec<String> {
        sent(outputs)
            .iter()
            .map(|m| m.method().unwrap_or_default().to_string())
            .collect()
    }

    fn ended(outputs: &[SessionOutput]) -> Vec<EndReason> {
        outputs
            .iter()
            .filter_map(|o| match o {
                SessionOutput::Ended { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn respond(request: &Message, status: u16) -> Message {
        Message::response(request, status, "Whatever")
            .build()
            .unwrap()
    }

    /// The device's 200 to an INVITE, with an SDP answer.
    fn accept(invite: &Message) -> Message {
        let answer = "v=0\r\no=34020000001310000001 0 0 IN IP4 192.0.2.10\r\ns=Play\r\n\
                      c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=video 15060 RTP/AVP 96\r\n\
                      a=sendonly\r\na=rtpmap:96 PS/90000\r\ny=0200000001\r\n";
        Message::response(invite, 200, "OK")
            .body("APPLICATION/SDP", answer)
            .build()
            .unwrap()
    }

    /// A session of `kind` started at 0 over `transport`, with its INVITE.
    fn started(
        sessions: &mut Sessions,
        kind: SessionKind,
        transport: Transport,
    ) -> (String, Message) {
        let (call_id, outputs) = sessions
            .start(target(transport), kind, endpoint(), 0)
            .unwrap();
        (call_id, sent(&outputs).remove(0))
    }

    /// A session of `kind` over UDP that the device accepted.
    fn established(sessions: &mut Sessions, kind: SessionKind) -> (String, Message) {
        let (call_id, invite) = started(sessions, kind, Transport::Udp);
        sessions.on_response(&accept(&invite), 0);
        assert_eq!(sessions.get(&call_id).unwrap().state(), State::Established);
        (call_id, invite)
    }

    #[test]
    fn a_live_session_invites_with_subject_and_ssrc_acks_the_answer_and_hangs_up() {
        let mut sessions = sessions();
        let (call_id, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        assert_eq!(invite.method(), Some("INVITE"));
        let session = sessions.get(&call_id).unwrap();
        let ssrc = session.ssrc;
        assert_eq!(
            (session.call_id(), session.state()),
            (call_id.as_str(), State::Inviting)
        );
        assert_eq!(
            invite.header("Subject"),
            Some(format!("{CHANNEL}:{ssrc},34020000002000000001:0").as_str())
        );
        let offer = Offer::parse(std::str::from_utf8(invite.body()).unwrap()).unwrap();
        assert_eq!((offer.ssrc, offer.media_port), (ssrc, 30_000));

        let outputs = sessions.on_response(&accept(&invite), 100);
        let ack = &sent(&outputs)[0];
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.cseq(), Some((1, "ACK".into())));
        assert!(ack.to_tag().is_some(), "ACK carries the device's To tag");
        assert_ne!(
            ack.via_branch(),
            invite.via_branch(),
            "a 2xx ACK is its own transaction"
        );
        assert!(outputs.contains(&SessionOutput::Established {
            call_id: call_id.clone(),
            ssrc
        }));
        assert_eq!(sessions.get(&call_id).unwrap().state(), State::Established);
        assert!(sessions.get(&call_id).unwrap().answer.is_some());

        let outputs = sessions.stop(&call_id, 1_000);
        let bye = &sent(&outputs)[0];
        assert_eq!(bye.method(), Some("BYE"));
        assert_eq!(bye.cseq(), Some((2, "BYE".into())));
        assert_eq!(ended(&outputs), [EndReason::Stopped]);
        assert!(sessions.is_empty());
        assert_eq!(sessions.ssrcs_in_use(), 0);
        // The BYE outlives the session: retransmitted over UDP until the device answers it.
        assert_eq!(methods(&sessions.on_tick(2_000)), ["BYE"]);
        sessions.on_response(&respond(bye, 200), 2_100);
        assert!(sessions.on_tick(10_000).is_empty());
    }

    #[test]
    fn the_invite_is_retransmitted_over_udp_on_timer_a_until_any_answer() {
        let mut sessions = sessions();
        let (unanswered, _) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        let (trying, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        let (tcp, _) = started(&mut sessions, SessionKind::Play, Transport::Tcp);
        let mut resent: HashMap<String, Vec<i64>> = HashMap::new();
        for now in (1_000..=40_000).step_by(1_000) {
            if now == 3_000 {
                sessions.on_response(&respond(&invite, 100), now);
            }
            let outputs = sessions.on_tick(now);
            for message in sent(&outputs) {
                assert_eq!(message.method(), Some("INVITE"));
                let call_id = message.call_id().unwrap().to_string();
                resent.entry(call_id).or_default().push(now);
            }
            if now == 32_000 {
                assert_eq!(ended(&outputs), vec![EndReason::Timeout; 3], "timer B");
            }
        }
        // 0.5 s, then doubling; with the daemon's one-second tick, each goes at the next tick.
        assert_eq!(resent[&unanswered], [1_000, 2_000, 4_000, 8_000, 16_000]);
        assert_eq!(
            resent[&trying],
            [1_000, 2_000],
            "a provisional answer stops them"
        );
        assert!(!resent.contains_key(&tcp), "TCP does not lose the INVITE");
        assert_eq!(sessions.counters().requests_timed_out, 3);
        assert_eq!(sessions.ssrcs_in_use(), 0);
    }

    #[test]
    fn a_retransmitted_200_is_acked_again_and_establishes_nothing_twice() {
        let mut sessions = sessions();
        let (call_id, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        let ok = accept(&invite);
        let first = sessions.on_response(&ok, 100);
        let again = sessions.on_response(&ok, 600);
        assert_eq!(methods(&again), ["ACK"]);
        assert_eq!(again, first[..1], "the same ACK, and no second Established");
        assert_eq!(sessions.get(&call_id).unwrap().state(), State::Established);
    }

    #[test]
    fn a_refusal_is_acked_in_the_invite_transaction_and_releases_the_playback_ssrc() {
        let mut sessions = sessions();
        let (call_id, invite) = started(&mut sessions, PLAYBACK, Transport::Udp);
        assert!(
            sessions
                .get(&call_id)
                .unwrap()
                .ssrc
                .to_string()
                .starts_with('1')
        );
        let busy = respond(&invite, 486);
        let outputs = sessions.on_response(&busy, 100);
        assert_eq!(ended(&outputs), [EndReason::Refused(486)]);
        assert_eq!(sessions.ssrcs_in_use(), 0);
        let ack = &sent(&outputs)[0];
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.via_branch(), invite.via_branch());
        assert_eq!(ack.cseq(), Some((1, "ACK".into())));
        assert_eq!(ack.request_uri(), invite.request_uri());
        assert_eq!(ack.from_tag(), invite.from_tag());
        assert_eq!(ack.to_tag(), busy.to_tag());
        // The device missed the ACK and repeats its refusal: the same ACK, until timer D ends.
        assert_eq!(sessions.on_response(&busy, 1_000), outputs[..1]);
        sessions.on_tick(100 + TRANSACTION_MS);
        assert!(sessions.on_response(&busy, 100 + TRANSACTION_MS).is_empty());

        // Over TCP the ACK is not lost: nothing kept.
        let (_, invite) = started(&mut sessions, PLAYBACK, Transport::Tcp);
        let busy = respond(&invite, 486);
        assert_eq!(methods(&sessions.on_response(&busy, 0)), ["ACK"]);
        assert!(sessions.on_response(&busy, 500).is_empty());
    }

    #[test]
    fn stopped_before_any_answer_the_cancel_waits_for_a_provisional_answer() {
        let mut sessions = sessions();
        let (call_id, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        assert!(
            sessions.stop(&call_id, 200).is_empty(),
            "no CANCEL before a 1xx"
        );
        assert_eq!(sessions.get(&call_id).unwrap().state(), State::Cancelling);
        assert!(
            sessions.stop(&call_id, 300).is_empty(),
            "stopping twice changes nothing"
        );
        // The INVITE still goes on: without an answer there is nothing to cancel yet.
        assert_eq!(methods(&sessions.on_tick(1_000)), ["INVITE"]);

        let outputs = sessions.on_response(&respond(&invite, 100), 1_200);
        let cancel = &sent(&outputs)[0];
        assert_eq!(cancel.method(), Some("CANCEL"));
        assert_eq!(cancel.request_uri(), invite.request_uri());
        assert_eq!(cancel.call_id(), invite.call_id());
        assert_eq!(cancel.header("From"), invite.header("From"));
        assert_eq!(cancel.header("To"), invite.header("To"));
        assert_eq!(cancel.to_tag(), None);
        assert_eq!(cancel.via_branch(), invite.via_branch());
        assert_eq!(cancel.cseq(), Some((1, "CANCEL".into())));
        assert!(
            sessions
                .on_response(&respond(&invite, 180), 1_300)
                .is_empty(),
            "one CANCEL"
        );

        // The device answers the CANCEL, and ends the INVITE with 487: ACK, and the end.
        sessions.on_response(&respond(cancel, 200), 1_400);
        let terminated = respond(&invite, 487);
        let outputs = sessions.on_response(&terminated, 1_500);
        let ack = &sent(&outputs)[0];
        assert_eq!(
            (ack.method(), ack.via_branch()),
            (Some("ACK"), invite.via_branch())
        );
        assert_eq!(ended(&outputs), [EndReason::Stopped]);
        assert_eq!(sessions.ssrcs_in_use(), 0);
        assert!(
            sessions.on_tick(5_000).is_empty(),
            "nothing left to retransmit"
        );
    }

    #[test]
    fn stopped_after_a_provisional_answer_the_cancel_goes_at_once_and_is_retransmitted() {
        let mut sessions = sessions();
        let (call_id, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        sessions.on_response(&respond(&invite, 180), 20_000);
        assert_eq!(sessions.get(&call_id).unwrap().state(), State::Proceeding);
        let outputs = sessions.stream_gone(&call_id, 30_000);
        assert_eq!(methods(&outputs), ["CANCEL"]);
        assert_eq!(methods(&sessions.on_tick(31_000)), ["CANCEL"]);
        // The final answer may come up to a transaction lifetime after the CANCEL, beyond the
        // INVITE's own timer B.
        assert!(ended(&sessions.on_tick(32_000)).is_empty());
        let outputs = sessions.on_tick(30_000 + TRANSACTION_MS);
        assert_eq!(ended(&outputs), [EndReason::StreamGone]);
        assert_eq!(sessions.ssrcs_in_use(), 0);
    }

    #[test]
    fn stopped_and_never_answered_the_session_ends_at_the_timeout() {
        let mut sessions = sessions();
        let (call_id, _) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        sessions.stop(&call_id, 1_000);
        let outputs: Vec<SessionOutput> =
            (2..=32).flat_map(|s| sessions.on_tick(s * 1_000)).collect();
        assert!(!methods(&outputs).contains(&"CANCEL".to_string()));
        assert_eq!(ended(&outputs), [EndReason::Stopped]);
        assert_eq!(sessions.ssrcs_in_use(), 0);
    }

    #[test]
    fn a_200_that_crossed_the_cancel_is_acked_then_byed() {
        let mut sessions = sessions();
        let (call_id, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        sessions.on_response(&respond(&invite, 100), 100);
        assert_eq!(methods(&sessions.stop(&call_id, 200)), ["CANCEL"]);
        let ok = accept(&invite);
        let outputs = sessions.on_response(&ok, 300);
        assert_eq!(methods(&outputs), ["ACK", "BYE"]);
        let bye = &sent(&outputs)[1];
        assert_eq!(bye.to_tag(), ok.to_tag());
        assert_eq!(bye.cseq(), Some((2, "BYE".into())));
        assert_eq!(ended(&outputs), [EndReason::Stopped]);
        assert!(
            !outputs
                .iter()
                .any(|o| matches!(o, SessionOutput::Established { .. }))
        );
        assert_eq!(sessions.ssrcs_in_use(), 0);
    }

    #[test]
    fn playback_controls_go_as_info_in_the_dialog_and_survive_a_refusal() {
        let mut sessions = sessions();
        let (call_id, invite) = established(&mut sessions, PLAYBACK);
        let controls = [
            PlaybackControl::Pause,
            PlaybackControl::Resume,
            PlaybackControl::Seek { position_s: 120 },
            PlaybackControl::Speed(0.5),
            PlaybackControl::Speed(4.0),
        ];
        for (n, control) in (2..).zip(controls) {
            let outputs = sessions.control(&call_id, control, 1_000).unwrap();
            let info = &sent(&outputs)[0];
            assert_eq!(info.method(), Some("INFO"));
            assert_eq!(info.cseq(), Some((n, "INFO".into())));
            assert_eq!(info.call_id(), invite.call_id());
            assert!(info.to_tag().is_some(), "in the dialog");
            assert_eq!(info.content_type(), Some("Application/MANSRTSP"));
            let body = std::str::from_utf8(info.body()).unwrap();
            assert_eq!(mansrtsp::parse(body), Ok((n, control)));
            sessions.on_response(&respond(info, 200), 1_100);
        }
        assert!(
            sessions.on_tick(5_000).is_empty(),
            "answered: not retransmitted"
        );

        // An invalid speed sends nothing and uses no CSeq.
        assert!(matches!(
            sessions.control(&call_id, PlaybackControl::Speed(3.0), 6_000),
            Err(SessionError::Control(MansrtspError::Speed(_)))
        ));
        // Unanswered over UDP, the INFO is retransmitted; refused, it is counted and the
        // playback goes on.
        let outputs = sessions
            .control(&call_id, PlaybackControl::Pause, 6_000)
            .unwrap();
        let info = &sent(&outputs)[0];
        assert_eq!(info.cseq(), Some((7, "INFO".into())));
        assert_eq!(sessions.on_tick(7_000), outputs);
        assert!(sessions.on_response(&respond(info, 488), 7_100).is_empty());
        assert_eq!(sessions.counters().controls_refused, 1);
        assert_eq!(sessions.get(&call_id).unwrap().state(), State::Established);
        assert!(sessions.on_tick(20_000).is_empty());
    }

    #[test]
    fn only_an_established_playback_can_be_controlled() {
        let mut sessions = sessions();
        let (live, _) = established(&mut sessions, SessionKind::Play);
        let (download, _) = established(
            &mut sessions,
            SessionKind::Download {
                start: 1,
                end: 2,
                speed: 4,
            },
        );
        let (inviting, _) = started(&mut sessions, PLAYBACK, Transport::Udp);
        for call_id in [&live, &download, &inviting] {
            let refused = sessions.control(call_id, PlaybackControl::Pause, 0);
            assert!(
                matches!(refused, Err(SessionError::NotControllable { .. })),
                "{refused:?}"
            );
        }
        assert!(matches!(
            sessions.control("no-such-call", PlaybackControl::Pause, 0),
            Err(SessionError::NoSession(_))
        ));
        assert!(sessions.on_tick(100).is_empty(), "nothing was sent");
    }

    #[test]
    fn the_end_of_a_playback_is_found_by_call_id_or_by_its_channel() {
        let device = "34020000001320000001";
        let mut sessions = sessions();
        // By Call-ID: BYE and the end.
        let (call_id, _) = established(&mut sessions, PLAYBACK);
        let outputs = sessions.media_ended(Some(&call_id), device, "ignored", 0);
        assert_eq!(methods(&outputs), ["BYE"]);
        assert_eq!(ended(&outputs), [EndReason::MediaEnded]);

        // By channel, when one playback alone runs on it; a live stream there does not count.
        established(&mut sessions, SessionKind::Play);
        let (playback, _) = established(&mut sessions, PLAYBACK);
        assert!(
            sessions
                .media_ended(None, "34020000001320000009", CHANNEL, 0)
                .is_empty()
        );
        let outputs = sessions.media_ended(Some("unknown-call"), device, CHANNEL, 0);
        assert_eq!(ended(&outputs), [EndReason::MediaEnded]);
        assert!(sessions.get(&playback).is_none());

        // Two playbacks on the channel: which one ended is unknown, so neither is touched.
        established(&mut sessions, PLAYBACK);
        established(&mut sessions, PLAYBACK);
        assert!(sessions.media_ended(None, device, CHANNEL, 0).is_empty());
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions.ssrcs_in_use(), 3);
    }

    /// Keeps the latest `n` entries.
    fn push_bounded<T>(list: &mut Vec<T>, item: T, n: usize) {
        if list.len() == n {
            list.remove(0);
        }
        list.push(item);
    }

    /// Thousands of sessions through every path in random order: starts over UDP and TCP,
    /// provisional, final and retransmitted answers, late answers, stops (cancels), BYEs, lost
    /// streams, playback controls, media ends, answers to our CANCEL/BYE/INFO, clock ticks.
    /// After every step: the SSRCs in use equal the sessions held, a session that vanished was
    /// reported ended exactly once, and none still waits for an answer a timeout after its
    /// last event. At the end, stopped sessions are all gone within a timeout, and so are the
    /// requests still being retransmitted.
    #[test]
    fn no_ssrc_leaks_whatever_happens_to_sessions() {
        let channels = [CHANNEL, "34020000001310000002"];
        for seed in [1_u64, 2, 3] {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sessions = sessions();
            // Live sessions in start order (so the seed decides the picks): Call-ID, INVITE,
            // time of the last thing that happened to it.
            let mut live: Vec<(String, Message, i64)> = Vec::new();
            let mut old_invites: Vec<Message> = Vec::new();
            let mut requests: Vec<Message> = Vec::new();
            let mut ended_once: HashSet<String> = HashSet::new();
            let mut now = 0;
            for _ in 0..6_000 {
                now += rng.gen_range(0..2_000);
                let picked = (!live.is_empty()).then(|| rng.gen_range(0..live.len()));
                let op = rng.gen_range(0..14);
                let outputs = match (op, picked) {
                    (0 | 1, _) => {
                        let kind = [
                            SessionKind::Play,
                            PLAYBACK,
                            SessionKind::Download {
                                start: 1,
                                end: 2,
                                speed: 4,
                            },
                        ][rng.gen_range(0..3)];
                        let transport = if rng.gen_bool(0.7) {
                            Transport::Udp
                        } else {
                            Transport::Tcp
                        };
                        let mut target = target(transport);
                        target.channel_id = channels[rng.gen_range(0..2)].into();
                        match sessions.start(target, kind, endpoint(), now) {
                            Ok((call_id, outputs)) => {
                                live.push((call_id, sent(&outputs).remove(0), now));
                                outputs
                            }
                            Err(_) => Vec::new(),
                        }
                    }
                    (2, _) if !old_invites.is_empty() => {
                        // A late answer to a session that has ended.
                        let invite = &old_invites[rng.gen_range(0..old_invites.len())];
                        let late = match rng.gen_range(0..3) {
                            0 => accept(invite),
                            1 => respond(invite, 180),
                            _ => respond(invite, 486),
                        };
                        sessions.on_response(&late, now)
                    }
                    (3, _) if !requests.is_empty() => {
                        let request = &requests[rng.gen_range(0..requests.len())];
                        let status = [200, 481, 500][rng.gen_range(0..3)];
                        sessions.on_response(&respond(request, status), now)
                    }
                    (13, _) | (_, None) => sessions.on_tick(now),
                    (op, Some(at)) => {
                        let (call_id, invite, last) = &mut live[at];
                        *last = now;
                        match op {
                            4 => sessions.on_response(&accept(invite), now),
                            5 => {
                                let status = [100, 180][rng.gen_range(0..2)];
                                sessions.on_response(&respond(invite, status), now)
                            }
                            6 => {
                                let status = [403, 404, 486, 487, 488, 500][rng.gen_range(0..6)];
                                sessions.on_response(&respond(invite, status), now)
                            }
                            7 => sessions.stop(call_id, now),
                            8 => sessions.on_bye(call_id),
                            9 => sessions.stream_gone(call_id, now),
                            10 => {
                                let control = [
                                    PlaybackControl::Pause,
                                    PlaybackControl::Resume,
                                    PlaybackControl::Seek { position_s: 60 },
                                    PlaybackControl::Speed(2.0),
                                    PlaybackControl::Speed(3.0),
                                ][rng.gen_range(0..5)];
                                sessions.control(call_id, control, now).unwrap_or_default()
                            }
                            11 => {
                                let by_call_id = rng.gen_bool(0.5).then_some(call_id.as_str());
                                let channel = channels[rng.gen_range(0..2)];
                                sessions.media_ended(
                                    by_call_id,
                                    &target(Transport::Udp).device_id,
                                    channel,
                                    now,
                                )
                            }
                            _ => sessions.on_response(&accept(invite), now),
                        }
                    }
                };
                for message in sent(&outputs) {
                    if matches!(message.method(), Some("CANCEL" | "BYE" | "INFO")) {
                        push_bounded(&mut requests, message, 32);
                    }
                }
                let reported: HashSet<String> = outputs
                    .iter()
                    .filter_map(|o| match o {
                        SessionOutput::Ended { call_id, .. } => Some(call_id.clone()),
                        _ => None,
                    })
                    .collect();
                let mut vanished = HashSet::new();
                live.retain(|(call_id, invite, _)| {
                    let held = sessions.get(call_id).is_some();
                    if !held {
                        vanished.insert(call_id.clone());
                        push_bounded(&mut old_invites, invite.clone(), 32);
                    }
                    held
                });
                assert_eq!(reported, vanished, "seed {seed}: ended exactly when gone");
                for call_id in reported {
                    assert!(ended_once.insert(call_id), "seed {seed}: ended twice");
                }
                assert_eq!(sessions.ssrcs_in_use(), sessions.len(), "seed {seed}");
                if op == 13 {
                    for (call_id, _, last) in &live {
                        let state = sessions.get(call_id).unwrap().state();
                        assert!(
                            state == State::Established || now - last < INVITE_TIMEOUT_MS,
                            "seed {seed}: {state:?} since {last}, now {now}"
                        );
                    }
                }
                assert!(sessions.on_bye("no-such-call").is_empty());
            }
            for (call_id, _, _) in &live {
                sessions.stop(call_id, now);
            }
            sessions.on_tick(now + INVITE_TIMEOUT_MS);
            assert!(sessions.is_empty(), "seed {seed}");
            assert_eq!(sessions.ssrcs_in_use(), 0, "seed {seed}");
            sessions.on_tick(now + 2 * INVITE_TIMEOUT_MS);
            assert!(sessions.requests.is_empty(), "seed {seed}");
            assert!(sessions.refusal_acks.is_empty(), "seed {seed}");
        }
    }
}
