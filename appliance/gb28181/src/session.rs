//! Media sessions (live, playback, download) as a state machine without sockets: the INVITE
//! with its `Subject` and SDP offer, retransmitted over UDP until the device answers; the ACK of
//! its 200 (again for each retransmitted 200) or of its refusal; CANCEL of an INVITE not answered
//! yet; BYE from either side; playback control with INFO (MANSRTSP); the end of a playback the
//! device reports (MediaStatus 121). Above all, the SSRC each session holds is released on
//! every way a session can end (BYE either way, refusal, cancel, timeout, stream gone, media
//! end). Leaked SSRCs and RTP ports are a classic failure of existing platforms; the randomised
//! test at the bottom drives thousands of sessions through every path and checks that none
//! leaks.
//!
//! A device must not go on streaming to a port nobody reads either: a 200 that arrives after
//! we gave its session up is ACKed and hung up from the response alone, and an established
//! session's dialog is handed out for storage ([`StoredDialog`]) so that the platform started
//! after a crash can BYE it.

use std::collections::HashMap;
use std::net::IpAddr;

use appliance_sip::message::{Message, RequestBuilder, new_branch, new_call_id, new_tag};
use serde::{Deserialize, Serialize};

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
    leg: Leg,
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
        &self.leg.call_id
    }

    /// The next request inside the dialog (BYE, INFO), numbered `local_cseq + 1`.
    fn in_dialog(&mut self, method: &str) -> RequestBuilder {
        self.local_cseq += 1;
        self.leg.request(
            method,
            self.local_cseq,
            self.to_tag.as_deref(),
            &new_branch(),
        )
    }

    /// Whether the dialog is handed out for storage: from the moment the session is
    /// established with the device's tag (without one there is no dialog to hang up later).
    fn persisted(&self) -> bool {
        self.state == State::Established && self.to_tag.is_some()
    }

    /// The dialog to store (again, whenever its CSeq moves on), while it is persisted.
    fn stored(&self) -> Option<SessionOutput> {
        if !self.persisted() {
            return None;
        }
        Some(SessionOutput::PersistDialog {
            call_id: self.leg.call_id.clone(),
            dialog: Some(Box::new(StoredDialog {
                leg: self.leg.clone(),
                to_tag: self.to_tag.clone()?,
                next_cseq: self.local_cseq + 1,
            })),
        })
    }
}

/// How the requests of a session we started reach the device and name both ends, fixed when
/// the INVITE goes out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// The device (for logs), or for a stray 200 the channel it names.
    pub device_id: String,
    /// Where requests go: the device's address when the INVITE went out, or the source of a
    /// stray 200.
    pub peer: Peer,
    pub request_uri: String,
    /// From (our platform id in our domain).
    pub local_uri: String,
    /// To (the device's channel in our domain).
    pub remote_uri: String,
    /// Our `host:port` in Via, as the device addresses us.
    pub platform_host: String,
    pub call_id: String,
    pub from_tag: String,
}

impl Leg {
    /// A request of this leg. Every request we send for a media session comes from here (the
    /// INVITE, its CANCEL and ACKs, BYE and INFO in its dialog, the BYE of a dialog restored
    /// after a restart, the ACK and BYE of a stray 200), so they cannot drift apart; `to_tag`
    /// and `branch` tell them apart.
    fn request(
        &self,
        method: &str,
        cseq: u32,
        to_tag: Option<&str>,
        branch: &str,
    ) -> RequestBuilder {
        RequestBuilder::new(method, &self.request_uri)
            .via_with_branch(transport_name(&self.peer), &self.platform_host, branch)
            .from(&self.local_uri, &self.from_tag)
            .to(&self.remote_uri, to_tag)
            .call_id(&self.call_id)
            .cseq(cseq)
    }
}

/// An established session's dialog as stored, keyed by its Call-ID: all a platform started
/// after a crash needs to BYE it, so that the device stops streaming to a port nobody reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDialog {
    #[serde(flatten)]
    pub leg: Leg,
    /// The device's tag from its 200.
    pub to_tag: String,
    /// The CSeq number our next request in the dialog takes: above every one sent so far, or
    /// the device may refuse the BYE as out of order (RFC 3261 §12.2.2).
    pub next_cseq: u32,
}

impl StoredDialog {
    fn bye(&self) -> RequestBuilder {
        self.leg
            .request("BYE", self.next_cseq, Some(&self.to_tag), &new_branch())
    }

    /// The dialog a 2xx to an INVITE sets up, read from the response alone (RFC 3261 §12.1.2):
    /// From is ours, To the device's, the remote target its Contact (else the To URI), and our
    /// Via, echoed back, tells how we named ourselves. `None` without the tags a dialog needs.
    fn from_2xx(response: &Message, from: Peer) -> Option<StoredDialog> {
        let remote_uri = addressed_uri(response.header("To")?);
        let (cseq, _) = response.cseq()?;
        Some(StoredDialog {
            leg: Leg {
                device_id: response.to_user().unwrap_or_default(),
                peer: from,
                request_uri: response
                    .header("Contact")
                    .map_or(remote_uri, addressed_uri)
                    .to_string(),
                local_uri: addressed_uri(response.header("From")?).to_string(),
                remote_uri: remote_uri.to_string(),
                platform_host: via_sent_by(response.header("Via")?)?.to_string(),
                call_id: response.call_id()?.to_string(),
                from_tag: response.from_tag()?,
            },
            to_tag: response.to_tag()?,
            next_cseq: cseq.checked_add(1)?,
        })
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
    /// Store the dialog of an established session under its Call-ID (`Some`, again whenever
    /// it changes), or delete it (`None`, once, when a session that stored one ends or a
    /// restored one is hung up).
    PersistDialog {
        call_id: String,
        dialog: Option<Box<StoredDialog>>,
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
    /// 2xx answers to an INVITE whose session we no longer held, ACKed and hung up (one more
    /// when the device repeats its 200 because our ACK was lost).
    pub stray_sessions_hung_up: u64,
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
    /// Dialogs stored before a restart, hung up at the first tick.
    restored: Vec<StoredDialog>,
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

/// The URI of a name-addr or addr-spec header value (`"Cam" <sip:a@b>;tag=x`, `sip:a@b;tag=x`).
fn addressed_uri(value: &str) -> &str {
    match value.split_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or_default(),
        None => value.split(';').next().unwrap_or_default(),
    }
    .trim()
}

/// The sent-by (`host:port`) of the top Via entry, `SIP/2.0/UDP host:port;branch=…`.
fn via_sent_by(via: &str) -> Option<&str> {
    let top = via.split(',').next()?;
    top.split(';').next()?.split_whitespace().last()
}

/// Sends a CANCEL, BYE or INFO in `leg` as a client transaction: retransmitted over UDP until a
/// final answer, or until timer F gives up.
fn transact(
    requests: &mut ClientTransactions,
    leg: &Leg,
    request: RequestBuilder,
    now_ms: i64,
) -> Result<SessionOutput, SessionError> {
    let message = build(request)?;
    let bytes = message.to_bytes();
    let purpose = Purpose {
        device_id: leg.device_id.clone(),
        what: format!(
            "{} in session {}",
            message.method().unwrap_or_default(),
            leg.call_id
        ),
    };
    let peer = leg.peer;
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
    /// `restored` are the dialogs stored before a restart ([`SessionOutput::PersistDialog`]):
    /// their sessions are gone with the process, so the first [`Sessions::on_tick`] hangs them
    /// up. Their SSRCs are not taken: they belonged to the process that died.
    pub fn new(ssrcs: SsrcAllocator, restored: Vec<StoredDialog>) -> Sessions {
        Sessions {
            ssrcs,
            sessions: HashMap::new(),
            requests: ClientTransactions::default(),
            refusal_acks: HashMap::new(),
            restored,
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
        let leg = Leg {
            device_id: target.device_id.clone(),
            peer: target.peer,
            request_uri: format!("sip:{}@{}", target.channel_id, target.peer.addr),
            local_uri: format!("sip:{}@{}", target.platform_id, target.domain),
            remote_uri: format!("sip:{}@{}", target.channel_id, target.domain),
            platform_host: target.platform_host.clone(),
            call_id: new_call_id(&target.platform_host),
            from_tag: new_tag(),
        };
        let mut session = Session {
            target,
            kind,
            ssrc,
            endpoint,
            answer: None,
            state: State::Inviting,
            leg,
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
            .leg
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
        let call_id = session.leg.call_id.clone();
        self.sessions.insert(call_id.clone(), session);
        Ok((
            call_id,
            vec![SessionOutput::Send {
                peer,
                bytes: invite,
            }],
        ))
    }

    /// Forgets a session and releases its SSRC, and its stored dialog if it had one. A session
    /// we were cancelling ends for the reason we hung up, however the device answered.
    fn end(&mut self, call_id: &str, reason: EndReason) -> Vec<SessionOutput> {
        let Some(session) = self.sessions.remove(call_id) else {
            return Vec::new();
        };
        self.ssrcs.release(session.ssrc);
        let forget = session.persisted().then(|| SessionOutput::PersistDialog {
            call_id: call_id.to_string(),
            dialog: None,
        });
        forget
            .into_iter()
            .chain([SessionOutput::Ended {
                call_id: call_id.to_string(),
                reason: session.cancel_reason.unwrap_or(reason),
            }])
            .collect()
    }

    /// A response to our INVITE, CANCEL, BYE or INFO. `from` is where it came from when that
    /// may be hung up on: a 2xx to an INVITE whose session we no longer hold (it timed out, or
    /// its CANCEL's wait ran out) is ACKed and BYEd there (RFC 3261 §13.2.2.4), as nobody reads
    /// its stream; with `None` it is ignored.
    pub fn on_response(
        &mut self,
        response: &Message,
        from: Option<Peer>,
        now_ms: i64,
    ) -> Vec<SessionOutput> {
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
            return match (status, self.refusal_acks.get(call_id), from) {
                // A refusal repeated after we ACKed it and ended the session.
                (300.., Some(ack), _) => vec![SessionOutput::Send {
                    peer: ack.peer,
                    bytes: ack.bytes.clone(),
                }],
                (200..=299, _, Some(from)) => self.hang_up_stray(response, from, now_ms),
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
            ack(session
                .leg
                .request("ACK", INVITE_CSEQ, session.to_tag.as_deref(), &new_branch()));
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
                outputs.extend(session.stored());
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
        let acked = ack(session.leg.request(
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
        let cancel = session
            .leg
            .request("CANCEL", INVITE_CSEQ, None, &session.invite_branch);
        logged(transact(&mut self.requests, &session.leg, cancel, now_ms))
    }

    /// BYE in the dialog, and the end.
    fn bye(&mut self, call_id: &str, reason: EndReason, now_ms: i64) -> Vec<SessionOutput> {
        let Some(session) = self.sessions.get_mut(call_id) else {
            return Vec::new();
        };
        let bye = session.in_dialog("BYE");
        logged(transact(&mut self.requests, &session.leg, bye, now_ms))
            .into_iter()
            .chain(self.end(call_id, reason))
            .collect()
    }

    /// BYE in a dialog no session holds (one restored after a restart, or a stray 200's),
    /// retransmitted like any other.
    fn hang_up_dialog(&mut self, dialog: &StoredDialog, now_ms: i64) -> Option<SessionOutput> {
        logged(transact(
            &mut self.requests,
            &dialog.leg,
            dialog.bye(),
            now_ms,
        ))
    }

    /// A 2xx to an INVITE whose session is gone: the device set up a call nobody will read, so
    /// ACK it, then BYE it, from what the response says alone.
    fn hang_up_stray(&mut self, response: &Message, from: Peer, now_ms: i64) -> Vec<SessionOutput> {
        let Some(dialog) = StoredDialog::from_2xx(response, from) else {
            tracing::debug!(peer = %from.addr, "a 2xx for no session, without a dialog to end");
            return Vec::new();
        };
        self.counters.stray_sessions_hung_up += 1;
        tracing::info!(
            device = dialog.leg.device_id,
            call_id = dialog.leg.call_id,
            "the device accepted a session we had given up: hanging up"
        );
        // The ACK of a 2xx takes the INVITE's CSeq number, the one before the BYE's.
        let acked = ack(dialog.leg.request(
            "ACK",
            dialog.next_cseq - 1,
            Some(&dialog.to_tag),
            &new_branch(),
        ));
        acked
            .map(|bytes| SessionOutput::Send { peer: from, bytes })
            .into_iter()
            .chain(self.hang_up_dialog(&dialog, now_ms))
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
    }

    /// Pauses, resumes, seeks or changes the speed of an established playback, with an INFO
    /// in its dialog, and stores the dialog again with its new CSeq. Whatever the device
    /// answers, the session goes on.
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
        let sent = transact(&mut self.requests, &session.leg, info, now_ms)?;
        Ok([sent].into_iter().chain(session.stored()).collect())
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
        match found.map(|s| s.leg.call_id.clone()) {
            Some(call_id) => self.hang_up(&call_id, EndReason::MediaEnded, now_ms),
            None => Vec::new(),
        }
    }

    /// Clock tick: dialogs restored from before a restart hung up (the first time), INVITEs
    /// retransmitted over UDP (timer A), sessions that waited too long for a final answer ended
    /// (their SSRCs come back), CANCEL/BYE/INFO retransmitted or given up.
    pub fn on_tick(&mut self, now_ms: i64) -> Vec<SessionOutput> {
        let mut outputs = Vec::new();
        let restored = std::mem::take(&mut self.restored);
        if !restored.is_empty() {
            tracing::info!(
                sessions = restored.len(),
                "hanging up the media sessions of the previous run"
            );
        }
        for dialog in restored {
            outputs.extend(self.hang_up_dialog(&dialog, now_ms));
            outputs.push(SessionOutput::PersistDialog {
                call_id: dialog.leg.call_id,
                dialog: None,
            });
        }
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.state != State::Established && now_ms >= s.deadline_ms)
            .map(|s| s.leg.call_id.clone())
            .collect();
        self.counters.requests_timed_out += expired.len() as u64;
        for call_id in &expired {
            outputs.extend(self.end(call_id, EndReason::Timeout));
        }
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

    /// Where the device's responses come from, a peer a stray 200 may be hung up on.
    fn device() -> Option<Peer> {
        Some(target(Transport::Udp).peer)
    }

    fn endpoint() -> MediaEndpoint {
        MediaEndpoint {
            ip: "192.0.2.1".parse().unwrap(),
            port: 30_000,
            transport: MediaTransport::Udp,
        }
    }

    fn sessions() -> Sessions {
        Sessions::new(SsrcAllocator::new("3402000000").unwrap(), Vec::new())
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

    /// The dialogs stored (`Some`) and deleted (`None`), in order.
    fn persisted(outputs: &[SessionOutput]) -> Vec<(String, Option<StoredDialog>)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                SessionOutput::PersistDialog { call_id, dialog } => {
                    Some((call_id.clone(), dialog.as_deref().cloned()))
                }
                _ => None,
            })
            .collect()
    }

    /// Stores and deletes dialogs as the daemon does; deleting one never stored fails.
    fn apply(store: &mut HashMap<String, StoredDialog>, outputs: &[SessionOutput]) {
        for (call_id, dialog) in persisted(outputs) {
            match dialog {
                Some(dialog) => {
                    assert_eq!(dialog.leg.call_id, call_id);
                    store.insert(call_id, dialog);
                }
                None => assert!(store.remove(&call_id).is_some(), "{call_id} never stored"),
            }
        }
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
        sessions.on_response(&accept(&invite), device(), 0);
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

        let outputs = sessions.on_response(&accept(&invite), device(), 100);
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
        sessions.on_response(&respond(bye, 200), device(), 2_100);
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
                sessions.on_response(&respond(&invite, 100), device(), now);
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
        let first = sessions.on_response(&ok, device(), 100);
        let again = sessions.on_response(&ok, device(), 600);
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
        let outputs = sessions.on_response(&busy, device(), 100);
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
        assert_eq!(sessions.on_response(&busy, device(), 1_000), outputs[..1]);
        sessions.on_tick(100 + TRANSACTION_MS);
        assert!(
            sessions
                .on_response(&busy, device(), 100 + TRANSACTION_MS)
                .is_empty()
        );

        // Over TCP the ACK is not lost: nothing kept.
        let (_, invite) = started(&mut sessions, PLAYBACK, Transport::Tcp);
        let busy = respond(&invite, 486);
        assert_eq!(methods(&sessions.on_response(&busy, device(), 0)), ["ACK"]);
        assert!(sessions.on_response(&busy, device(), 500).is_empty());
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

        let outputs = sessions.on_response(&respond(&invite, 100), device(), 1_200);
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
                .on_response(&respond(&invite, 180), device(), 1_300)
                .is_empty(),
            "one CANCEL"
        );

        // The device answers the CANCEL, and ends the INVITE with 487: ACK, and the end.
        sessions.on_response(&respond(cancel, 200), device(), 1_400);
        let terminated = respond(&invite, 487);
        let outputs = sessions.on_response(&terminated, device(), 1_500);
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
        sessions.on_response(&respond(&invite, 180), device(), 20_000);
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
        sessions.on_response(&respond(&invite, 100), device(), 100);
        assert_eq!(methods(&sessions.stop(&call_id, 200)), ["CANCEL"]);
        let ok = accept(&invite);
        let outputs = sessions.on_response(&ok, device(), 300);
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
    fn an_established_session_stores_its_dialog_and_deletes_it_once_however_it_ends() {
        type End = fn(&mut Sessions, &str) -> Vec<SessionOutput>;
        let ends: [(End, EndReason); 4] = [
            (|s, id| s.stop(id, 1_000), EndReason::Stopped),
            (|s, id| s.on_bye(id), EndReason::ByeFromDevice),
            (|s, id| s.stream_gone(id, 1_000), EndReason::StreamGone),
            (
                |s, id| s.media_ended(Some(id), "34020000001320000001", CHANNEL, 1_000),
                EndReason::MediaEnded,
            ),
        ];
        for (end, reason) in ends {
            let mut sessions = sessions();
            let (call_id, invite) = started(&mut sessions, PLAYBACK, Transport::Udp);
            let ok = accept(&invite);
            let outputs = sessions.on_response(&ok, device(), 100);
            let [(stored_id, Some(dialog))] = &persisted(&outputs)[..] else {
                panic!("one dialog stored: {outputs:?}")
            };
            assert_eq!(stored_id, &call_id);
            assert_eq!(dialog.leg.call_id, call_id);
            assert_eq!(dialog.leg.peer, target(Transport::Udp).peer);
            assert_eq!(Some(&dialog.leg.from_tag), invite.from_tag().as_ref());
            assert_eq!(Some(&dialog.to_tag), ok.to_tag().as_ref());
            assert_eq!(dialog.next_cseq, 2);
            // What the daemon stores, as JSON, comes back the same.
            let json = serde_json::to_vec(dialog).unwrap();
            assert_eq!(
                &serde_json::from_slice::<StoredDialog>(&json).unwrap(),
                dialog
            );
            assert!(persisted(&sessions.on_response(&ok, device(), 600)).is_empty());

            let outputs = end(&mut sessions, &call_id);
            assert_eq!(persisted(&outputs), [(call_id.clone(), None)], "{reason:?}");
            assert_eq!(ended(&outputs), [reason]);
            assert!(end(&mut sessions, &call_id).is_empty());
            assert!(persisted(&sessions.on_tick(40_000)).is_empty());
        }
    }

    #[test]
    fn a_session_never_established_stores_nothing() {
        let mut sessions = sessions();
        // Refused, timed out, cancelled, and accepted after our CANCEL or without SDP.
        let (_, refused) = started(&mut sessions, PLAYBACK, Transport::Udp);
        let mut outputs = sessions.on_response(&respond(&refused, 486), device(), 100);
        started(&mut sessions, PLAYBACK, Transport::Udp);
        let (cancelled, invite) = started(&mut sessions, PLAYBACK, Transport::Udp);
        outputs.extend(sessions.on_response(&respond(&invite, 180), device(), 100));
        outputs.extend(sessions.stop(&cancelled, 200));
        outputs.extend(sessions.on_response(&accept(&invite), device(), 300));
        let (_, invite) = started(&mut sessions, PLAYBACK, Transport::Udp);
        let no_sdp = respond(&invite, 200);
        outputs.extend(sessions.on_response(&no_sdp, device(), 300));
        outputs.extend(sessions.on_tick(INVITE_TIMEOUT_MS));
        assert_eq!(ended(&outputs).len(), 4);
        assert!(persisted(&outputs).is_empty(), "{outputs:?}");
    }

    #[test]
    fn a_200_for_a_session_given_up_is_acked_and_hung_up_from_the_response() {
        let mut sessions = sessions();
        // Timed out unanswered; then the device accepts, naming its own target in Contact.
        let (call_id, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        sessions.on_tick(INVITE_TIMEOUT_MS);
        assert!(sessions.get(&call_id).is_none());
        let contact = "sip:34020000001310000001@192.0.2.10:5070";
        let ok = Message::response(&invite, 200, "OK")
            .header("Contact", &format!("<{contact}>"))
            .build()
            .unwrap();
        let from = Peer {
            transport: Transport::Udp,
            addr: "192.0.2.10:5999".parse().unwrap(),
        };
        let outputs = sessions.on_response(&ok, Some(from), 40_000);
        assert!(
            outputs
                .iter()
                .all(|o| matches!(o, SessionOutput::Send { peer, .. } if *peer == from)),
            "to where the 200 came from"
        );
        let [ack, bye] = &sent(&outputs)[..] else {
            panic!("ACK and BYE: {outputs:?}")
        };
        for (request, method, cseq) in [(ack, "ACK", 1), (bye, "BYE", 2)] {
            assert_eq!(request.method(), Some(method));
            assert_eq!(request.cseq(), Some((cseq, method.into())));
            assert_eq!(request.call_id(), Some(call_id.as_str()));
            assert_eq!(request.from_tag(), invite.from_tag());
            assert_eq!(request.to_tag(), ok.to_tag());
            assert_eq!(request.request_uri().as_deref(), Some(contact));
            assert_eq!(request.header("From"), ok.header("From"));
            assert_eq!(request.header("To"), ok.header("To"));
            assert!(
                request
                    .header("Via")
                    .unwrap()
                    .starts_with("SIP/2.0/UDP 192.0.2.1:5060;")
            );
            assert_ne!(request.via_branch(), invite.via_branch());
        }
        assert_eq!(sessions.counters().stray_sessions_hung_up, 1);
        assert_eq!(sessions.ssrcs_in_use(), 0);
        // The BYE is retransmitted until answered.
        assert_eq!(sessions.on_tick(41_000), outputs[1..]);
        sessions.on_response(&respond(bye, 200), device(), 41_100);
        assert!(sessions.on_tick(50_000).is_empty());

        // Given up while cancelling, without a Contact: the To URI is the target.
        let (call_id, invite) = started(&mut sessions, SessionKind::Play, Transport::Udp);
        sessions.stop(&call_id, 0);
        sessions.on_tick(INVITE_TIMEOUT_MS);
        let outputs = sessions.on_response(&accept(&invite), device(), 40_000);
        assert_eq!(methods(&outputs), ["ACK", "BYE"]);
        let bye = &sent(&outputs)[1];
        assert_eq!(
            bye.request_uri().as_deref(),
            Some("sip:34020000001310000001@3402000000")
        );
        assert_eq!(sessions.counters().stray_sessions_hung_up, 2);
        assert!(ended(&outputs).is_empty() && persisted(&outputs).is_empty());

        // Not from a device, not a 2xx, or not to an INVITE: nothing.
        assert!(
            sessions
                .on_response(&accept(&invite), None, 40_000)
                .is_empty()
        );
        assert!(
            sessions
                .on_response(&respond(&invite, 180), device(), 40_000)
                .is_empty()
        );
        let stray_bye = Message::parse(
            &String::from_utf8(bye.to_bytes())
                .unwrap()
                .replace(&call_id, "no-such-call")
                .into_bytes(),
        )
        .unwrap();
        assert!(
            sessions
                .on_response(&respond(&stray_bye, 200), device(), 40_000)
                .is_empty()
        );
        assert_eq!(sessions.counters().stray_sessions_hung_up, 2);
    }

    #[test]
    fn dialogs_restored_after_a_restart_are_byed_at_the_first_tick_and_forgotten() {
        // Before the crash: a playback paused once (its CSeq moved on) and a live stream.
        let mut before = sessions();
        let mut store = HashMap::new();
        let mut dialogs = Vec::new();
        for kind in [PLAYBACK, SessionKind::Play] {
            let (call_id, invite) = started(&mut before, kind, Transport::Udp);
            let ok = accept(&invite);
            apply(&mut store, &before.on_response(&ok, device(), 100));
            dialogs.push((call_id, invite, ok));
        }
        let info = before
            .control(&dialogs[0].0, PlaybackControl::Pause, 1_000)
            .unwrap();
        apply(&mut store, &info);
        let (info_cseq, _) = sent(&info)[0].cseq().unwrap();

        // The next process reads the store back (JSON, as the daemon keeps it).
        let restored = store
            .values()
            .map(|d| serde_json::from_slice(&serde_json::to_vec(d).unwrap()).unwrap())
            .collect();
        let mut after = Sessions::new(SsrcAllocator::new("3402000000").unwrap(), restored);
        let outputs = after.on_tick(5_000);
        let byes = sent(&outputs);
        assert_eq!(byes.len(), 2);
        for (call_id, invite, ok) in &dialogs {
            let bye = byes
                .iter()
                .find(|m| m.call_id() == Some(call_id.as_str()))
                .unwrap();
            assert_eq!(bye.method(), Some("BYE"));
            assert_eq!(bye.request_uri(), invite.request_uri());
            assert_eq!(bye.from_tag(), invite.from_tag());
            assert_eq!(bye.to_tag(), ok.to_tag());
            assert_eq!(
                bye.header("Via").map(|v| v.split(';').next()),
                invite.header("Via").map(|v| v.split(';').next())
            );
            let (cseq, _) = bye.cseq().unwrap();
            assert!(cseq > INVITE_CSEQ);
        }
        let playback_bye = byes
            .iter()
            .find(|m| m.call_id() == Some(dialogs[0].0.as_str()))
            .unwrap();
        assert_eq!(playback_bye.cseq(), Some((info_cseq + 1, "BYE".into())));
        assert!(outputs.iter().all(|o| match o {
            SessionOutput::Send { peer, .. } => *peer == target(Transport::Udp).peer,
            _ => true,
        }));
        apply(&mut store, &outputs);
        assert!(store.is_empty(), "every restored dialog deleted");
        assert!(ended(&outputs).is_empty());
        assert!(after.is_empty());
        assert_eq!(
            after.ssrcs_in_use(),
            0,
            "their SSRCs were the dead process's"
        );

        // Retransmitted over UDP like any BYE, and hung up only once.
        let again = after.on_tick(6_000);
        assert_eq!(methods(&again), ["BYE", "BYE"]);
        assert!(persisted(&again).is_empty());
        for bye in &byes {
            after.on_response(&respond(bye, 481), device(), 6_100);
        }
        assert!(after.on_tick(20_000).is_empty());
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
            sessions.on_response(&respond(info, 200), device(), 1_100);
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
        // Stored again, so that a BYE after a restart comes after this INFO.
        let [(_, Some(dialog))] = &persisted(&outputs)[..] else {
            panic!("the dialog stored again: {outputs:?}")
        };
        assert_eq!(dialog.next_cseq, 8);
        assert_eq!(sessions.on_tick(7_000), outputs[..1]);
        assert!(
            sessions
                .on_response(&respond(info, 488), device(), 7_100)
                .is_empty()
        );
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
    /// reported ended exactly once, none still waits for an answer a timeout after its last
    /// event, and the dialogs stored are those of the established sessions, each with the CSeq
    /// its next request takes. At the end, a platform restarted from the store BYEs each stored
    /// dialog, stopped sessions are all gone within a timeout, and so are the requests still
    /// being retransmitted.
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
            let mut store: HashMap<String, StoredDialog> = HashMap::new();
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
                        sessions.on_response(&late, device(), now)
                    }
                    (3, _) if !requests.is_empty() => {
                        let request = &requests[rng.gen_range(0..requests.len())];
                        let status = [200, 481, 500][rng.gen_range(0..3)];
                        sessions.on_response(&respond(request, status), device(), now)
                    }
                    (13, _) | (_, None) => sessions.on_tick(now),
                    (op, Some(at)) => {
                        let (call_id, invite, last) = &mut live[at];
                        *last = now;
                        match op {
                            4 => sessions.on_response(&accept(invite), device(), now),
                            5 => {
                                let status = [100, 180][rng.gen_range(0..2)];
                                sessions.on_response(&respond(invite, status), device(), now)
                            }
                            6 => {
                                let status = [403, 404, 486, 487, 488, 500][rng.gen_range(0..6)];
                                sessions.on_response(&respond(invite, status), device(), now)
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
                            _ => sessions.on_response(&accept(invite), device(), now),
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
                apply(&mut store, &outputs);
                let established: HashMap<&str, u32> = sessions
                    .iter()
                    .filter(|s| s.state() == State::Established)
                    .map(|s| (s.call_id(), s.local_cseq + 1))
                    .collect();
                let stored: HashMap<&str, u32> = store
                    .iter()
                    .map(|(call_id, d)| (call_id.as_str(), d.next_cseq))
                    .collect();
                assert_eq!(stored, established, "seed {seed}: stored dialogs");
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
            // A crash now: the next process BYEs every dialog stored, and deletes it.
            let mut restarted = Sessions::new(
                SsrcAllocator::new("3402000000").unwrap(),
                store.values().cloned().collect(),
            );
            let outputs = restarted.on_tick(now);
            let byes: HashSet<String> = sent(&outputs)
                .iter()
                .map(|m| m.call_id().unwrap().to_string())
                .collect();
            assert_eq!(byes.len(), store.len(), "seed {seed}");
            assert!(byes.iter().all(|id| store.contains_key(id)), "seed {seed}");
            let mut after_crash = store.clone();
            apply(&mut after_crash, &outputs);
            assert!(after_crash.is_empty(), "seed {seed}");

            for (call_id, _, _) in &live {
                apply(&mut store, &sessions.stop(call_id, now));
            }
            apply(&mut store, &sessions.on_tick(now + INVITE_TIMEOUT_MS));
            assert!(sessions.is_empty(), "seed {seed}");
            assert!(store.is_empty(), "seed {seed}");
            assert_eq!(sessions.ssrcs_in_use(), 0, "seed {seed}");
            sessions.on_tick(now + 2 * INVITE_TIMEOUT_MS);
            assert!(sessions.requests.is_empty(), "seed {seed}");
            assert!(sessions.refusal_acks.is_empty(), "seed {seed}");
            assert!(
                sessions.counters().stray_sessions_hung_up > 0,
                "seed {seed}: late 200s were hung up"
            );
        }
    }
}
