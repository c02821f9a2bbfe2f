//! Key layout of the single sled tree that holds everything.
//!
//! One tree, not one per index: a `sled::Batch` on one tree is applied and recovered atomically,
//! so an event, its index entries, its outbox entry and its media references land together or not
//! at all. Every key starts with a one-byte tag; ids are big-endian so byte order is time order.
//!
//! | tag | key                                   | value            |
//! |-----|---------------------------------------|------------------|
//! | `e` | id                                    | event record     |
//! | `c` | len, camera id, id                    | empty            |
//! | `t` | len, event type, id                   | empty            |
//! | `u` | id (only while unacknowledged)        | empty            |
//! | `o` | outbox sequence (commit order)        | id               |
//! | `r` | sha-256 (32 bytes), id                | empty            |
//! | `m` | name                                  | u64, big-endian  |

use appliance_model::EventId;

pub(crate) const EVENT: u8 = b'e';
pub(crate) const BY_CAMERA: u8 = b'c';
pub(crate) const BY_TYPE: u8 = b't';
pub(crate) const UNACKED: u8 = b'u';
pub(crate) const OUTBOX: u8 = b'o';
pub(crate) const MEDIA_REF: u8 = b'r';
const META: u8 = b'm';

/// An ordered family of keys that each end in an event id: the primary records or one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Index<'a> {
    Events,
    Camera(&'a str),
    Type(&'a str),
    Unacked,
}

impl Index<'_> {
    pub(crate) fn prefix(&self) -> Vec<u8> {
        match self {
            Index::Events => vec![EVENT],
            Index::Unacked => vec![UNACKED],
            Index::Camera(name) => named_prefix(BY_CAMERA, name),
            Index::Type(name) => named_prefix(BY_TYPE, name),
        }
    }

    pub(crate) fn key(&self, id: EventId) -> Vec<u8> {
        let mut key = self.prefix();
        key.extend_from_slice(&id.to_be_bytes());
        key
    }
}

/// Names are length-prefixed so that one camera's prefix never matches another camera whose id
/// merely starts with it. Names are at most `MAX_ID_LEN` (64) bytes, validated before writing.
fn named_prefix(tag: u8, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + name.len() + 8);
    key.push(tag);
    key.push(name.len().min(usize::from(u8::MAX)) as u8);
    key.extend_from_slice(name.as_bytes());
    key
}

/// The event id at the end of any key of an [`Index`].
pub(crate) fn id_from_tail(key: &[u8]) -> Option<EventId> {
    key.len()
        .checked_sub(8)
        .and_then(|start| EventId::from_be_slice(&key[start..]))
}

pub(crate) fn outbox_key(seq: u64) -> [u8; 9] {
    let mut key = [OUTBOX; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn outbox_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

pub(crate) fn media_ref_prefix(sha: &[u8; 32]) -> [u8; 33] {
    let mut key = [MEDIA_REF; 33];
    key[1..].copy_from_slice(sha);
    key
}

pub(crate) fn media_ref_key(sha: &[u8; 32], id: EventId) -> Vec<u8> {
    let mut key = media_ref_prefix(sha).to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META];
    key.extend_from_slice(name.as_bytes());
    key
}

/// Smallest key strictly greater than every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_prefixes_do_not_overlap() {
        let short = Index::Camera("cam1").key(EventId::from_parts(5, 0));
        let long_prefix = Index::Camera("cam10").prefix();
        assert!(!short.starts_with(&long_prefix));
        assert!(!long_prefix.starts_with(&Index::Camera("cam1").prefix()));
    }

    #[test]
    fn keys_sort_by_time_within_an_index() {
        let a = Index::Type("intrusion").key(EventId::from_parts(1_000, 3));
        let b = Index::Type("intrusion").key(EventId::from_parts(2_000, 0));
        assert!(a < b);
        assert_eq!(id_from_tail(&b), Some(EventId::from_parts(2_000, 0)));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), vec![1, 3]);
        assert_eq!(prefix_end(&[1, 255]), vec![2]);
        let p = Index::Camera("x").prefix();
        let end = prefix_end(&p);
        assert!(Index::Camera("x").key(EventId::MAX) < end);
    }
}
