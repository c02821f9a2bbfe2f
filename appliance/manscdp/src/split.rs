//! Device side of multi-message answers: one query, several `Response` MESSAGEs with the same SN.
//!
//! A SIP MESSAGE over UDP must stay under the path MTU, so devices page long lists; GB/T 28181
//! marks each page with `SumNum` (the total) and the list's `Num=` (the items in that page), which
//! [`crate::encode`] writes from the page's `items.len()`.

use crate::message::{Body, CatalogItem, Message, RecordItem};

/// Pages a catalog answer: every message has `SumNum` = `items.len()` and at most `per_message`
/// items (0 is taken as 1). An empty catalog still yields one message, with `SumNum` 0, because
/// the platform waits for an answer.
pub fn split_catalog(
    sn: u32,
    device_id: &str,
    items: Vec<CatalogItem>,
    per_message: usize,
) -> Vec<Message> {
    let sum_num = count(items.len());
    pages(items, per_message)
        .into_iter()
        .map(|items| Message::response(Body::CatalogResponse { sum_num, items }, sn, device_id))
        .collect()
}

/// Pages a record answer the same way as [`split_catalog`]; every page repeats `name`.
pub fn split_record_info(
    sn: u32,
    device_id: &str,
    name: Option<String>,
    items: Vec<RecordItem>,
    per_message: usize,
) -> Vec<Message> {
    let sum_num = count(items.len());
    pages(items, per_message)
        .into_iter()
        .map(|items| {
            Message::response(
                Body::RecordInfoResponse {
                    name: name.clone(),
                    sum_num,
                    items,
                },
                sn,
                device_id,
            )
        })
        .collect()
}

fn count(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Chunks `items` without cloning them; an empty list gives one empty page.
fn pages<T>(items: Vec<T>, per_message: usize) -> Vec<Vec<T>> {
    let per_message = per_message.max(1);
    let mut items = items.into_iter().peekable();
    let mut pages = Vec::new();
    loop {
        pages.push(items.by_ref().take(per_message).collect());
        if items.peek().is_none() {
            return pages;
        }
    }
}
