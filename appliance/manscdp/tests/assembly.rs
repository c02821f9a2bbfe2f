//! Paging on the device side and reassembly on the platform side.

use std::time::{Duration, Instant};

use appliance_manscdp::assembly::MultiPartAssembler;
use appliance_manscdp::{
    Body, CatalogItem, Charset, Message, Preset, RecordItem, decode, encode, split_catalog,
    split_record_info,
};
use proptest::prelude::*;

const NVR: &str = "34020000001110000001";
const TIMEOUT: Duration = Duration::from_secs(5);

fn channel(n: usize) -> CatalogItem {
    CatalogItem {
        device_id: format!("340200000013{n:08}"),
        name: Some(format!("通道{n}")),
        online: Some(true),
        ..CatalogItem::default()
    }
}

fn record(start_hour: u32, file: &str) -> RecordItem {
    RecordItem {
        device_id: "34020000001310000001".into(),
        name: Some("大门".into()),
        file_path: Some(file.into()),
        start_time: format!("2026-11-24T{start_hour:02}:00:00"),
        end_time: format!("2026-11-24T{start_hour:02}:59:59"),
        record_type: Some("time".into()),
        ..RecordItem::default()
    }
}

fn catalog_items(message: &Message) -> &[CatalogItem] {
    match &message.body {
        Body::CatalogResponse { items, .. } => items,
        other => panic!("not a catalog response: {other:?}"),
    }
}

#[test]
fn split_catalog_pages_with_sum_and_num() {
    let items: Vec<_> = (1..=5).map(channel).collect();
    let pages = split_catalog(4, NVR, items.clone(), 2);
    assert_eq!(pages.len(), 3);
    for (page, expected) in pages.iter().zip([2usize, 2, 1]) {
        assert_eq!(page.sn, 4);
        assert_eq!(page.device_id, NVR);
        assert_eq!(catalog_items(page).len(), expected);
        assert!(matches!(
            page.body,
            Body::CatalogResponse { sum_num: 5, .. }
        ));
        let text = String::from_utf8(encode(page, Charset::Utf8)).unwrap();
        assert!(text.contains("<SumNum>5</SumNum>"));
        assert!(text.contains(&format!("<DeviceList Num=\"{expected}\">")));
    }
    let joined: Vec<_> = pages
        .iter()
        .flat_map(|page| catalog_items(page).to_vec())
        .collect();
    assert_eq!(joined, items);
}

#[test]
fn split_edge_cases() {
    let empty = split_catalog(1, NVR, Vec::new(), 10);
    assert_eq!(
        empty,
        vec![Message::response(
            Body::CatalogResponse {
                sum_num: 0,
                items: vec![]
            },
            1,
            NVR
        )]
    );
    // 0 per message is taken as 1 instead of looping or panicking.
    assert_eq!(
        split_catalog(1, NVR, (1..=3).map(channel).collect(), 0).len(),
        3
    );
    // A huge page size is one page and allocates nothing extra.
    assert_eq!(
        split_catalog(1, NVR, (1..=3).map(channel).collect(), usize::MAX).len(),
        1
    );

    let records = vec![record(0, "a"), record(1, "b"), record(2, "c")];
    let pages = split_record_info(9, "34020000001310000001", Some("大门".into()), records, 2);
    assert_eq!(pages.len(), 2);
    for page in &pages {
        let Body::RecordInfoResponse { name, sum_num, .. } = &page.body else {
            panic!("{page:?}")
        };
        assert_eq!(name.as_deref(), Some("大门"));
        assert_eq!(*sum_num, 3);
    }
}

#[test]
fn pages_out_of_order_with_duplicates() {
    let items: Vec<_> = (1..=5).map(channel).collect();
    let pages = split_catalog(4, NVR, items.clone(), 2);
    let mut assembler = MultiPartAssembler::new(TIMEOUT, 16);
    let now = Instant::now();
    assert_eq!(assembler.add(pages[2].clone(), now), None);
    assert_eq!(assembler.add(pages[0].clone(), now), None);
    assert_eq!(assembler.add(pages[0].clone(), now), None);
    assert_eq!(assembler.pending(), 1);
    let done = assembler.add(pages[1].clone(), now).expect("complete");
    assert!(done.complete);
    assert_eq!(done.pages, 4);
    let mut got = catalog_items(&done.message).to_vec();
    got.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    assert_eq!(got, items);
    assert_eq!(assembler.pending(), 0);

    // The same page again after completion (a device retry) does not start a new assembly,
    // which would otherwise expire later as a bogus incomplete catalog.
    assert_eq!(assembler.add(pages[1].clone(), now), None);
    assert_eq!(assembler.pending(), 0);
    assert!(assembler.expire(now + TIMEOUT * 2).is_empty());
    // One timeout later the key is forgotten: the SN may be reused.
    assert_eq!(assembler.add(pages[1].clone(), now + TIMEOUT * 2), None);
    assert_eq!(assembler.pending(), 1);
}

#[test]
fn partial_answers_expire_incomplete() {
    let pages = split_catalog(4, NVR, (1..=5).map(channel).collect(), 2);
    let mut assembler = MultiPartAssembler::new(TIMEOUT, 16);
    let start = Instant::now();
    assert_eq!(assembler.add(pages[0].clone(), start), None);
    assert_eq!(assembler.next_deadline(), Some(start + TIMEOUT));

    // A page with new items four seconds in moves the deadline…
    let later = start + Duration::from_secs(4);
    assert_eq!(assembler.add(pages[1].clone(), later), None);
    assert!(assembler.expire(start + TIMEOUT).is_empty());
    // …a repeated page does not.
    assert_eq!(
        assembler.add(pages[1].clone(), later + Duration::from_secs(3)),
        None
    );
    assert_eq!(assembler.next_deadline(), Some(later + TIMEOUT));

    let expired = assembler.expire(later + TIMEOUT);
    assert_eq!(expired.len(), 1);
    assert!(!expired[0].complete);
    assert_eq!(expired[0].pages, 3);
    assert_eq!(catalog_items(&expired[0].message).len(), 4);
    assert!(matches!(
        expired[0].message.body,
        Body::CatalogResponse { sum_num: 5, .. }
    ));
    assert_eq!(assembler.pending(), 0);
    assert_eq!(assembler.next_deadline(), None);

    // The missing last page, arriving after the expiry, is not a new answer either.
    assert_eq!(assembler.add(pages[2].clone(), later + TIMEOUT), None);
    assert_eq!(assembler.pending(), 0);
}

#[test]
fn oldest_assembly_is_dropped_beyond_the_cap() {
    let mut assembler = MultiPartAssembler::new(TIMEOUT, 2);
    let start = Instant::now();
    for (sn, offset) in [(1u32, 0u64), (2, 1), (3, 2)] {
        let first_page = split_catalog(sn, NVR, (1..=4).map(channel).collect(), 2).remove(0);
        assert_eq!(
            assembler.add(first_page, start + Duration::from_millis(offset)),
            None
        );
    }
    assert_eq!(assembler.pending(), 2);
    assert_eq!(assembler.dropped(), 1);
    // SN 1 was the oldest and is gone: its second page starts over (and evicts SN 2).
    let second_page = split_catalog(1, NVR, (1..=4).map(channel).collect(), 2).remove(1);
    assert_eq!(
        assembler.add(second_page, start + Duration::from_millis(3)),
        None
    );
    assert_eq!(assembler.dropped(), 2);
    let expired = assembler.expire(start + TIMEOUT * 2);
    let sns: Vec<u32> = expired.iter().map(|done| done.message.sn).collect();
    assert_eq!(sns, vec![3, 1], "oldest first");
}

#[test]
fn keys_separate_devices_sns_and_kinds() {
    let mut assembler = MultiPartAssembler::new(TIMEOUT, 16);
    let now = Instant::now();
    let catalog = split_catalog(7, NVR, (1..=2).map(channel).collect(), 1);
    let other_device = split_catalog(7, "34020000001110000002", (1..=2).map(channel).collect(), 1);
    let records = split_record_info(7, NVR, None, vec![record(0, "a"), record(1, "b")], 1);
    assert_eq!(assembler.add(catalog[0].clone(), now), None);
    assert_eq!(assembler.add(other_device[0].clone(), now), None);
    assert_eq!(assembler.add(records[0].clone(), now), None);
    assert_eq!(assembler.pending(), 3);
    assert!(assembler.add(records[1].clone(), now).unwrap().complete);
    assert!(assembler.add(catalog[1].clone(), now).unwrap().complete);
    assert!(
        assembler
            .add(other_device[1].clone(), now)
            .unwrap()
            .complete
    );
}

#[test]
fn records_deduplicate_by_time_and_file() {
    let mut assembler = MultiPartAssembler::new(TIMEOUT, 16);
    let now = Instant::now();
    let page = |items: Vec<RecordItem>| {
        Message::response(
            Body::RecordInfoResponse {
                name: Some("大门".into()),
                sum_num: 3,
                items,
            },
            9,
            NVR,
        )
    };
    // Same times, different files: two recordings. Same times and file: one.
    assert_eq!(
        assembler.add(page(vec![record(0, "a"), record(0, "b")]), now),
        None
    );
    assert_eq!(assembler.add(page(vec![record(0, "b")]), now), None);
    let done = assembler.add(page(vec![record(1, "a")]), now).unwrap();
    assert!(done.complete);
    let Body::RecordInfoResponse { items, name, .. } = done.message.body else {
        panic!()
    };
    assert_eq!(name.as_deref(), Some("大门"));
    assert_eq!(items, vec![record(0, "a"), record(0, "b"), record(1, "a")]);
}

#[test]
fn presets_and_single_messages() {
    let mut assembler = MultiPartAssembler::new(TIMEOUT, 16);
    let now = Instant::now();
    let preset = |id: &str| Preset {
        id: id.into(),
        name: format!("预置位{id}"),
    };
    let page = |items| Message::response(Body::PresetQueryResponse { sum_num: 2, items }, 3, NVR);
    assert_eq!(assembler.add(page(vec![preset("1")]), now), None);
    let done = assembler
        .add(page(vec![preset("1"), preset("2")]), now)
        .unwrap();
    assert_eq!(
        done.message.body,
        Body::PresetQueryResponse {
            sum_num: 2,
            items: vec![preset("1"), preset("2")]
        }
    );

    // Everything that is not paged comes straight back, including catalog change notifies.
    for body in [
        Body::Keepalive {
            status: "OK".into(),
        },
        Body::CatalogNotify {
            sum_num: 3,
            items: vec![channel(1)],
        },
        Body::MediaStatus { notify_type: 121 },
    ] {
        let message = Message::notify(body, 1, NVR);
        let done = assembler.add(message.clone(), now).unwrap();
        assert!(done.complete);
        assert_eq!(done.pages, 1);
        assert_eq!(done.message, message);
    }
    // An empty catalog (SumNum 0) is complete at once.
    let empty = split_catalog(5, NVR, Vec::new(), 10).remove(0);
    assert!(assembler.add(empty, now).unwrap().complete);
    assert_eq!(assembler.pending(), 0);
}

proptest! {
    /// Whatever the page size, order and repetition, the assembled catalog holds each item once.
    #[test]
    fn split_then_assemble(
        count in 0usize..40,
        per_message in 0usize..12,
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let items: Vec<_> = (0..count).map(channel).collect();
        let pages = split_catalog(42, NVR, items.clone(), per_message);
        // Every page once, in shuffled positions, plus random repeats, each through the wire.
        let mut arrivals: Vec<Message> = pages.clone();
        for index in &order {
            let page = index.get(&pages).clone();
            let at = index.index(arrivals.len() + 1);
            arrivals.insert(at, page);
        }
        let mut assembler = MultiPartAssembler::new(TIMEOUT, 4);
        let now = Instant::now();
        let mut results = Vec::new();
        for page in arrivals {
            let (page, _) = decode(&encode(&page, Charset::Gb2312)).unwrap();
            results.extend(assembler.add(page, now));
        }
        prop_assert_eq!(results.len(), 1);
        prop_assert!(results[0].complete);
        let mut got = catalog_items(&results[0].message).to_vec();
        got.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        prop_assert_eq!(got, items);
        prop_assert_eq!(assembler.pending(), 0);
    }
}
