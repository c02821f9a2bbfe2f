//! Key layout of the single sled tree that holds everything.
//!
//! One tree, not one per index: a `sled::Batch` on one tree is applied and recovered atomically,
//! so an event, its index entries, its outbox entry and its media references land together or not
//! at all. Every key starts with a one-byte tag; ids are big-endian so byte order is time order.
//!
//! | tag | key                                     | value                                 |
//! |-----|-----------------------------------------|---------------------------------------|
//! | `e` | id                                      | event record                          |
//! | `c` | len, camera id, bucket                  | ids in that bucket ([`IdList`])       |
//! | `t` | len, event type, bucket                 | ids in that bucket                    |
//! | `u` | bucket                                  | unacknowledged ids in that bucket     |
//! | `o` | outbox sequence of the group's first id | ids of one commit group, in order     |
//! | `r` | sha-256 (32 bytes), id                  | empty                                 |
//! | `s` | len, namespace, key                     | state of another subsystem (devices…) |
//! | `m` | name                                    | counters                              |
//!
//! Secondary indexes are bucketed: one key per (camera, ~1 s of event time) holding a sorted id
//! list, not one key per event. sled copies a leaf node on every insert, so its cost is per key;
//! a batch of 1,000 events over 16 cameras writes ~1,050 keys instead of ~5,000. The outbox is
//! one key per commit group for the same reason.

use appliance_model::EventId;

pub(crate) const EVENT: u8 = b'e';
pub(crate) const BY_CAMERA: u8 = b'c';
pub(crate) const BY_TYPE: u8 = b't';
pub(crate) const UNACKED: u8 = b'u';
pub(crate) const OUTBOX: u8 = b'o';
pub(crate) const MEDIA_REF: u8 = b'r';
const META: u8 = b'm';
const STATE: u8 = b's';

/// Ids whose values agree above this bit share a bucket: 2^10 ms (~1 s) of event time.
const BUCKET_SHIFT: u32 = appliance_model::SEQUENCE_BITS + 10;

pub(crate) fn event_key(id: EventId) -> [u8; 9] {
    let mut key = [EVENT; 9];
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// A bucketed secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Index<'a> {
    Camera(&'a str),
    Type(&'a str),
    Unacked,
}

impl Index<'_> {
    pub(crate) fn prefix(&self) -> Vec<u8> {
        match self {
            Index::Unacked => vec![UNACKED],
            Index::Camera(name) => named_prefix(BY_CAMERA, name),
            Index::Type(name) => named_prefix(BY_TYPE, name),
        }
    }

    /// Key of the bucket that holds `id`.
    pub(crate) fn bucket_key(&self, id: EventId) -> Vec<u8> {
        let mut key = self.prefix();
        key.extend_from_slice(&(id.as_u64() >> BUCKET_SHIFT).to_be_bytes());
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

/// The id at the end of an event or media-reference key.
pub(crate) fn id_from_tail(key: &[u8]) -> Option<EventId> {
    key.len()
        .checked_sub(8)
        .and_then(|start| EventId::from_be_slice(&key[start..]))
}

/// A sorted list of ids stored as concatenated big-endian u64s.
pub(crate) struct IdList;

impl IdList {
    pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<u64>> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(8)
                .map(|chunk| u64::from_be_bytes(chunk.try_into().expect("8-byte chunk")))
                .collect(),
        )
    }

    pub(crate) fn encode(ids: &[u64]) -> Vec<u8> {
        ids.iter().flat_map(|id| id.to_be_bytes()).collect()
    }
}

pub(crate) fn outbox_key(first_seq: u64) -> [u8; 9] {
    let mut key = [OUTBOX; 9];
    key[1..].copy_from_slice(&first_seq.to_be_bytes());
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

/// Prefix of every state key of `namespace`.
pub(crate) fn state_prefix(namespace: &str) -> Vec<u8> {
    named_prefix(STATE, namespace)
}

pub(crate) fn state_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut out = state_prefix(namespace);
    out.extend_from_slice(key.as_bytes());
    out
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
        let short = Index::Camera("cam1").bucket_key(EventId::from_parts(5, 0));
        let long_prefix = Index::Camera("cam10").prefix();
        assert!(!short.starts_with(&long_prefix));
        assert!(!long_prefix.starts_with(&Index::Camera("cam1").prefix()));
    }

    #[test]
    fn buckets_sort_by_time_and_group_about_a_second() {
        let index = Index::Type("intrusion");
        let a = index.bucket_key(EventId::from_parts(1_000, 3));
        let b = index.bucket_key(EventId::from_parts(1_023, 9));
        let c = index.bucket_key(EventId::from_parts(5_000, 0));
        assert_eq!(a, b);
        assert!(b < c);
        assert!(c < prefix_end(&index.prefix()));
    }

    #[test]
    fn id_lists_round_trip_and_reject_torn_values() {
        let ids = [1, 7, u64::MAX];
        assert_eq!(IdList::decode(&IdList::encode(&ids)).unwrap(), ids);
        assert!(IdList::decode(&[1, 2, 3]).is_none());
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), vec![1, 3]);
        assert_eq!(prefix_end(&[1, 255]), vec![2]);
    }
}
