//! Media sessions (live, playback, download) as a state machine without sockets: the INVITE
//! with its `Subject` and SDP offer, the answer, ACK, BYE from either side, and above all the SSRC
//! each session holds, released on every way a session can end (BYE either way, refusal, timeout,
//! stream gone, a failed request). Leaked SSRCs and RTP ports are a classic failure of existing
//! platforms; the randomised test at the bottom drives thousands of sessions through every path
//! and checks that none leaks.
//!
//! Not wired into the platform and the daemon yet: the next step gives `Platform` a `Sessions`,
//! routes INVITE responses and BYEs to it, and asks the media server for the RTP endpoint.

use std::collections::HashMap;
use std::net::IpAddr;

use appliance_sip::message::{Message, RequestBuilder, new_call_id, new_tag};

use crate::device::{Peer, Transport};
use crate::sdp::{Answer, MediaTransport, Offer, SessionKind};
use crate::ssrc::{Ssrc, SsrcAllocator, SsrcError, StreamKind};

/// How long a device has to answer an INVITE finally (timer B, 64·T1).
const INVITE_TIMEOUT_MS: i64 = 32_000;

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
}

#[derive(Debug, Clone)]
pub struct Session {
    pub target: Target,
    pub kind: SessionKind,
    pub ssrc: Ssrc,
    pub endpoint: MediaEndpoint,
    pub state: State,
    pub answer: Option<Answer>,
    call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    invite_cseq: u32,
    started_ms: i64,
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
}

/// Every media session of the platform, by Call-ID.
pub struct Sessions {
    ssrcs: SsrcAllocator,
    sessions: HashMap<String, Session>,
}

fn transport_name(peer: &Peer) -> &'static str {
    match peer.transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    }
}

impl Sessions {
    pub fn new(ssrcs: SsrcAllocator) -> Sessions {
        Sessions {
            ssrcs,
            sessions: HashMap::new(),
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

    /// SSRCs held now; equals the number of sessions (the invariant the tests check).
    pub fn ssrcs_in_use(&self) -> usize {
        self.ssrcs.in_use()
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
        let call_id = new_call_id(&target.platform_host);
        let from_tag = new_tag();
        let built = RequestBuilder::new(
            "INVITE",
            &format!("sip:{}@{}", target.channel_id, target.peer.addr),
        )
        .via(transport_name(&target.peer), &target.platform_host)
        .from(
            &format!("sip:{}@{}", target.platform_id, target.domain),
            &from_tag,
        )
        .to(
            &format!("sip:{}@{}", target.channel_id, target.domain),
            None,
        )
        .call_id(&call_id)
        .cseq(1)
        .contact(&format!(
            "sip:{}@{}",
            target.platform_id, target.platform_host
        ))
        .header(
            "Subject",
            &format!("{}:{ssrc},{}:0", target.channel_id, target.platform_id),
        )
        .body("APPLICATION/SDP", offer.to_sdp())
        .build();
        let invite = match built {
            Ok(invite) => invite,
            Err(e) => {
                // Every exit path gives the SSRC back, this early one included.
                self.ssrcs.release(ssrc);
                return Err(SessionError::Build(e.to_string()));
            }
        };
        let peer = target.peer;
        self.sessions.insert(
            call_id.clone(),
            Session {
                target,
                kind,
                ssrc,
                endpoint,
                state: State::Inviting,
                answer: None,
                call_id: call_id.clone(),
                from_tag,
                to_tag: None,
                invite_cseq: 1,
                started_ms: now_ms,
            },
        );
        Ok((
            call_id,
            vec![SessionOutput::Send {
                peer,
                bytes: invite.to_bytes(),
            }],
        ))
    }

    fn end(&mut self, call_id: &str, reason: EndReason) -> Option<SessionOutput> {
        let session = self.sessions.remove(call_id)?;
        self.ssrcs.release(session.ssrc);
        Some(SessionOutput::Ended {
            call_id: call_id.to_string(),
            reason,
        })
    }

    /// A request inside a session's dialog (ACK, BYE).
    fn in_dialog(&self, session: &Session, method: &str, cseq: u32) -> Option<Message> {
        let target = &session.target;
        RequestBuilder::new(
            method,
            &format!("sip:{}@{}", target.channel_id, target.peer.addr),
        )
        .via(transport_name(&target.peer), &target.platform_host)
        .from(
            &format!("sip:{}@{}", target.platform_id, target.domain),
            &session.from_tag,
        )
        .to(
            &format!("sip:{}@{}", target.channel_id, target.domain),
            session.to_tag.as_deref(),
        )
        .call_id(&session.call_id)
        .cseq(cseq)
        .build()
        .ok()
    }

    /// A response to our INVITE or BYE.
    pub fn on_response(&mut self, response: &Message) -> Vec<SessionOutput> {
        let (Some(call_id), Some(status), Some((cseq, method))) =
            (response.call_id(), response.status(), response.cseq())
        else {
            return Vec::new();
        };
        let call_id = call_id.to_string();
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return Vec::new();
        };
        if method != "INVITE" || cseq != session.invite_cseq {
            // The answer to our BYE: the session ended when we sent it.
            return Vec::new();
        }
        match status {
            100..=199 => {
                if session.state == State::Inviting {
                    session.state = State::Proceeding;
                }
                Vec::new()
            }
            200..=299 => {
                session.to_tag = response.to_tag();
                let answer = std::str::from_utf8(response.body())
                    .ok()
                    .and_then(|sdp| Answer::parse(sdp).ok());
                let session = &self.sessions[&call_id];
                let ack = self.in_dialog(session, "ACK", session.invite_cseq);
                let mut outputs: Vec<SessionOutput> = ack
                    .map(|ack| SessionOutput::Send {
                        peer: session.target.peer,
                        bytes: ack.to_bytes(),
                    })
                    .into_iter()
                    .collect();
                let Some(answer) = answer else {
                    // An answer without a usable SDP: hang up rather than wait for media that
                    // cannot come.
                    outputs.extend(self.hang_up(&call_id, EndReason::Refused(488)));
                    return outputs;
                };
                let session = self.sessions.get_mut(&call_id).expect("session exists");
                session.answer = Some(answer);
                session.state = State::Established;
                outputs.push(SessionOutput::Established {
                    call_id,
                    ssrc: session.ssrc,
                });
                outputs
            }
            _ => self
                .end(&call_id, EndReason::Refused(status))
                .into_iter()
                .collect(),
        }
    }

    /// BYE to the device (when the dialog exists) and release.
    fn hang_up(&mut self, call_id: &str, reason: EndReason) -> Vec<SessionOutput> {
        let Some(session) = self.sessions.get(call_id) else {
            return Vec::new();
        };
        let mut outputs = Vec::new();
        if session.to_tag.is_some()
            && let Some(bye) = self.in_dialog(session, "BYE", session.invite_cseq + 1)
        {
            outputs.push(SessionOutput::Send {
                peer: session.target.peer,
                bytes: bye.to_bytes(),
            });
        }
        outputs.extend(self.end(call_id, reason));
        outputs
    }

    /// We stop a session (viewer gone, API).
    pub fn stop(&mut self, call_id: &str) -> Vec<SessionOutput> {
        self.hang_up(call_id, EndReason::Stopped)
    }

    /// The media server says the stream is gone.
    pub fn stream_gone(&mut self, call_id: &str) -> Vec<SessionOutput> {
        self.hang_up(call_id, EndReason::StreamGone)
    }

    /// The device sent BYE; the caller answers it 200 (or 481 when this returns nothing).
    pub fn on_bye(&mut self, call_id: &str) -> Vec<SessionOutput> {
        self.end(call_id, EndReason::ByeFromDevice)
            .into_iter()
            .collect()
    }

    /// Clock tick: INVITEs unanswered for too long end (and their SSRCs come back).
    pub fn on_tick(&mut self, now_ms: i64) -> Vec<SessionOutput> {
        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.state != State::Established && now_ms - s.started_ms >= INVITE_TIMEOUT_MS)
            .map(|s| s.call_id.clone())
            .collect();
        expired
            .iter()
            .flat_map(|call_id| self.end(call_id, EndReason::Timeout))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn target() -> Target {
        Target {
            device_id: "34020000001320000001".into(),
            channel_id: "34020000001310000001".into(),
            peer: Peer {
                transport: Transport::Udp,
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

    fn sent(outputs: &[SessionOutput]) -> Vec<Message> {
        outputs
            .iter()
            .filter_map(|o| match o {
                SessionOutput::Send { bytes, .. } => Some(Message::parse(bytes).unwrap()),
                _ => None,
            })
            .collect()
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

    #[test]
    fn a_live_session_invites_with_subject_and_ssrc_acks_the_answer_and_hangs_up() {
        let mut sessions = sessions();
        let (call_id, outputs) = sessions
            .start(target(), SessionKind::Play, endpoint(), 0)
            .unwrap();
        let invite = &sent(&outputs)[0];
        assert_eq!(invite.method(), Some("INVITE"));
        let ssrc = sessions.get(&call_id).unwrap().ssrc;
        assert_eq!(
            invite.header("Subject"),
            Some(format!("34020000001310000001:{ssrc},34020000002000000001:0").as_str())
        );
        let offer = Offer::parse(std::str::from_utf8(invite.body()).unwrap()).unwrap();
        assert_eq!((offer.ssrc, offer.media_port), (ssrc, 30_000));

        let outputs = sessions.on_response(&accept(invite));
        let ack = &sent(&outputs)[0];
        assert_eq!(ack.method(), Some("ACK"));
        assert_eq!(ack.cseq(), Some((1, "ACK".into())));
        assert!(ack.to_tag().is_some(), "ACK carries the device's To tag");
        assert!(outputs.contains(&SessionOutput::Established {
            call_id: call_id.clone(),
            ssrc
        }));
        assert_eq!(sessions.get(&call_id).unwrap().state, State::Established);

        let outputs = sessions.stop(&call_id);
        let bye = &sent(&outputs)[0];
        assert_eq!(bye.method(), Some("BYE"));
        assert_eq!(bye.cseq(), Some((2, "BYE".into())));
        assert!(sessions.is_empty());
        assert_eq!(sessions.ssrcs_in_use(), 0);
    }

    #[test]
    fn playback_uses_a_playback_ssrc_and_a_refusal_releases_it() {
        let mut sessions = sessions();
        let kind = SessionKind::Playback {
            start: 1_700_000_000,
            end: 1_700_003_600,
        };
        let (call_id, outputs) = sessions.start(target(), kind, endpoint(), 0).unwrap();
        assert!(
            sessions
                .get(&call_id)
                .unwrap()
                .ssrc
                .to_string()
                .starts_with('1')
        );
        let busy = Message::response(&sent(&outputs)[0], 486, "Busy Here")
            .build()
            .unwrap();
        let outputs = sessions.on_response(&busy);
        assert_eq!(
            outputs,
            [SessionOutput::Ended {
                call_id,
                reason: EndReason::Refused(486)
            }]
        );
        assert_eq!(sessions.ssrcs_in_use(), 0);
    }

    /// Thousands of sessions through every exit path, in random order: after every step the
    /// SSRCs in use equal the live sessions, and at the end none is left.
    #[test]
    fn no_ssrc_leaks_whatever_happens_to_sessions() {
        for seed in [1_u64, 2, 3] {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sessions = sessions();
            let mut invites: HashMap<String, Message> = HashMap::new();
            let mut now = 0;
            for _ in 0..5_000 {
                now += rng.gen_range(0..2_000);
                let live: Vec<String> = invites.keys().cloned().collect();
                let pick = |rng: &mut StdRng| live[rng.gen_range(0..live.len())].clone();
                match rng.gen_range(0..9) {
                    0 | 1 => {
                        let kind = if rng.gen_bool(0.5) {
                            SessionKind::Play
                        } else {
                            SessionKind::Download {
                                start: 1,
                                end: 2,
                                speed: 4,
                            }
                        };
                        if let Ok((call_id, outputs)) =
                            sessions.start(target(), kind, endpoint(), now)
                        {
                            invites.insert(call_id, sent(&outputs).remove(0));
                        }
                    }
                    _ if live.is_empty() => {}
                    2 => {
                        let call_id = pick(&mut rng);
                        sessions.on_response(&accept(&invites[&call_id]));
                    }
                    3 => {
                        let call_id = pick(&mut rng);
                        let status = [403, 404, 486, 488, 500][rng.gen_range(0..5)];
                        let refusal = Message::response(&invites[&call_id], status, "No")
                            .build()
                            .unwrap();
                        sessions.on_response(&refusal);
                    }
                    4 => {
                        let ringing = Message::response(&invites[&pick(&mut rng)], 180, "Ringing")
                            .build()
                            .unwrap();
                        sessions.on_response(&ringing);
                    }
                    5 => drop(sessions.stop(&pick(&mut rng))),
                    6 => drop(sessions.on_bye(&pick(&mut rng))),
                    7 => drop(sessions.stream_gone(&pick(&mut rng))),
                    _ => drop(sessions.on_tick(now)),
                }
                invites.retain(|call_id, _| sessions.get(call_id).is_some());
                assert_eq!(sessions.ssrcs_in_use(), sessions.len(), "seed {seed}");
                // A late BYE or answer for a finished session frees nothing twice.
                assert!(sessions.on_bye("no-such-call").is_empty());
            }
            for call_id in invites.keys().cloned().collect::<Vec<_>>() {
                sessions.stop(&call_id);
            }
            assert_eq!(sessions.ssrcs_in_use(), 0, "seed {seed}");
            assert!(sessions.is_empty());
        }
    }
}
