//! The GB28181 platform logic, without sockets: the registrar, device state, transactions, SDP
//! and SSRC allocation. [`platform::Platform`] is the state machine the daemon drives.

pub mod device;
pub mod platform;
pub mod registrar;
pub mod sdp;
pub mod session;
pub mod ssrc;
pub mod subscription;
pub mod transaction;
