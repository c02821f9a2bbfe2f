//! MANSCDP bodies of GB/T 28181 (2016, with the 2022 edition's tolerated differences), without
//! sockets: the XML a platform and its devices exchange in `Application/MANSCDP+xml` MESSAGE and
//! NOTIFY bodies.
//!
//! - [`decode`] turns body bytes into a typed [`Message`] and tells which [`Charset`] the peer used,
//!   so the answer can go back in the same one.
//! - [`encode`] writes a [`Message`] in GB2312 (GBK bytes) or UTF-8; `decode(encode(m)) == m`.
//! - [`split_catalog`] / [`split_record_info`] page a large answer over several messages (device
//!   side); [`assembly::MultiPartAssembler`] puts such pages back together (platform side).
//! - [`ptz`] builds and checks the 8-byte `PTZCmd` hex string.
//!
//! Character sets: quick-xml reads its input as UTF-8 whatever the XML declaration says, so the
//! bytes are decoded here first — GB2312, GBK and GB18030 all with the GB18030 decoder, which is a
//! superset of the other two. Devices in the field also send GBK text without any declaration;
//! bytes that are not valid UTF-8 are therefore decoded as GB18030 too.
//!
//! Tolerance: element names match case-insensitively (`DeviceID` vs `DeviceId`), text is trimmed
//! (`<SN> 17 </SN>`), unknown elements are ignored and unknown `CmdType`s decode to
//! [`Body::Other`]. Only the header (`CmdType`, `SN`, `DeviceID`) and the few body fields without
//! which a message means nothing are required; an optional field that does not parse reads as
//! `None`, because one odd value from a device must not discard a whole catalog page. No input
//! makes [`decode`] panic.
//!
//! ```
//! use appliance_manscdp::{Body, Charset, Message, decode, encode};
//!
//! let keepalive = Message::notify(
//!     Body::Keepalive { status: "OK".into() },
//!     43,
//!     "34020000001320000001",
//! );
//! let bytes = encode(&keepalive, Charset::Gb2312);
//! assert!(bytes.starts_with(b"<?xml version=\"1.0\" encoding=\"GB2312\"?>"));
//! assert_eq!(decode(&bytes).unwrap(), (keepalive, Charset::Gb2312));
//! ```

pub mod assembly;
mod decode;
mod encode;
mod error;
mod message;
pub mod ptz;
mod split;
mod xml;

pub use decode::decode;
pub use encode::encode;
pub use error::ManscdpError;
pub use message::{
    Alarm, BasicParam, Body, CatalogEvent, CatalogItem, Charset, DeviceControl, Message, Preset,
    RecordItem, Root,
};
pub use split::{split_catalog, split_record_info};
