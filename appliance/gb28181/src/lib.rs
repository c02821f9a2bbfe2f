//! The GB28181 platform logic, without sockets: the registrar, device state, transactions, SDP,
//! SSRC allocation, and media sessions with their playback control (MANSRTSP).
//! [`platform::Platform`] is the state machine the daemon drives.

pub mod device;
pub mod mansrtsp;
pub mod platform;
pub mod registrar;
pub mod sdp;
pub mod session;
pub mod ssrc;
pub mod subscription;
pub mod transaction;
