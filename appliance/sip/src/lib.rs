//! SIP plumbing for the GB28181 platform, without sockets, async or IO: pure functions and state
//! machines that the daemon drives from its tokio tasks.
//!
//! - [`framing`]: cutting a TCP byte stream into SIP messages and keepalives.
//! - [`message`]: parsing messages (on rsip, with raw header access where rsip falls short) and
//!   building requests and responses.
//! - [`digest`]: HTTP digest authentication (MD5, SHA-256), stateless nonces and a replay guard.
//!
//! Nothing here panics on input: every byte sequence from the network yields a value or an error.

pub mod digest;
mod fields;
pub mod framing;
pub mod message;

pub use digest::{
    Algorithm, Challenge, Credentials, DigestError, NonceCounts, NonceIssuer, NonceState,
};
pub use framing::{Frame, FramingError, StreamFramer};
pub use message::{
    BuildError, Message, ParseError, RequestBuilder, ResponseBuilder, new_branch, new_call_id,
    new_tag,
};
