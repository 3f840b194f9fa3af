//! Tests of the audit log page's parts: the filter's times, the dates shown, the paging.

#![allow(clippy::unwrap_used, clippy::panic)]

use sallyport_state::{AuditEvent, StateDb};

use super::*;

#[test]
fn times_are_unix_ms_or_a_date_pickers_utc_text() {
    assert_eq!(parse_time("from", ""), Ok(None));
    assert_eq!(
        parse_time("from", " 1796173323456 "),
        Ok(Some(1_796_173_323_456))
    );
    assert_eq!(
        parse_time("from", "2026-12-02T01:02"),
        Ok(Some(1_796_173_320_000))
    );
    assert_eq!(
        parse_time("from", "2026-12-02T01:02:03"),
        Ok(Some(1_796_173_323_000))
    );
    assert_eq!(
        parse_time("to", "2026-12-02T01:02:03.456"),
        Ok(Some(1_796_173_323_456))
    );
    let Err(BadFilter(why)) = parse_time("to", "yesterday") else {
        panic!("a word is not a time");
    };
    assert!(
        why.contains("“to”") && why.contains("2026-12-02T01:02"),
        "{why}"
    );
    assert!(
        parse_time("from", "1969-12-31T23:59").is_err(),
        "before 1970"
    );
}

#[test]
fn times_are_shown_in_utc_with_the_exact_time_for_the_script() {
    assert_eq!(iso_time(1_796_173_323_456), "2026-12-02T01:02:03.456Z");
    assert_eq!(picker_time(1_796_173_323_456), "2026-12-02T01:02:03.456");
    assert_eq!(
        time_element(1_796_173_323_456).into_string(),
        r#"<time datetime="2026-12-02T01:02:03.456Z" title="2026-12-02T01:02:03.456Z">2026-12-02 01:02:03 UTC</time>"#
    );
    assert_eq!(
        iso_time(u64::MAX),
        u64::MAX.to_string(),
        "beyond the calendar"
    );
}

#[test]
fn the_form_and_the_links_keep_the_filter_and_escape_it() {
    let query = AuditQuery {
        user: "<dave>".into(),
        kind: "login".into(),
        from: "2026-12-02T01:02".into(),
        ..AuditQuery::default()
    };
    let filter = query.filter(10).unwrap();
    let normalized = AuditQuery::normalized(&filter);
    assert_eq!(normalized.from, "1796173320000");
    let form = filter_form(&normalized).into_string();
    assert!(form.contains(r#"value="&lt;dave&gt;""#), "{form}");
    assert!(!form.contains("<dave>"), "{form}");
    assert!(
        form.contains(r#"<input type="datetime-local" step="any" name="from" value="2026-12-02T01:02:00.000" data-unix-ms="1796173320000">"#),
        "{form}"
    );
    assert!(
        form.contains(r#"name="to" value="" data-unix-ms="""#),
        "{form}"
    );

    let links = paging(
        &normalized,
        &Page {
            newer_after: Some(7),
            older_before: Some(3),
        },
    )
    .into_string();
    assert_eq!(
        links,
        r#"<nav class="paging" aria-label="Pages of the audit log"><a rel="prev" id="audit-newer" href="/admin/audit?user=%3Cdave%3E&amp;kind=login&amp;from=1796173320000&amp;after=7">← Newer</a> · <a rel="next" id="audit-older" href="/admin/audit?user=%3Cdave%3E&amp;kind=login&amp;from=1796173320000&amp;before=3">Older →</a></nav>"#
    );
    let export = export_links(&normalized).into_string();
    assert!(
        export.contains(r#"href="/admin/audit/export?format=csv&amp;user=%3Cdave%3E&amp;kind=login&amp;from=1796173320000""#),
        "{export}"
    );
    assert!(
        export_links(&AuditQuery::default())
            .into_string()
            .contains(r#"href="/admin/audit/export?format=jsonl""#)
    );
}

#[test]
fn paging_walks_every_event_once_each_way() {
    let db = StateDb::open_in_memory().unwrap();
    let total = u64::from(PAGE_SIZE) * 2 + 17;
    for at in 0..total {
        db.audit(
            at,
            &AuditEvent {
                kind: "login".into(),
                ..AuditEvent::default()
            },
        )
        .unwrap();
    }
    let fetch = |query: &AuditQuery| {
        let filter = query.filter(PAGE_SIZE + 1).unwrap();
        let mut records = db.audit_query(&filter).unwrap();
        let page = Page::cut(&filter, &mut records);
        (records.iter().map(|r| r.at_ms).collect::<Vec<_>>(), page)
    };
    // Older and older, from the newest page.
    let mut query = AuditQuery::default();
    let mut seen: Vec<u64> = Vec::new();
    let mut pages: Vec<Vec<u64>> = Vec::new();
    loop {
        let (times, page) = fetch(&query);
        assert!(times.len() <= PAGE_SIZE as usize);
        assert_eq!(page.newer_after.is_some(), !seen.is_empty(), "{page:?}");
        seen.extend(&times);
        pages.push(times);
        match page.older_before {
            Some(before) => {
                query = AuditQuery {
                    before: before.to_string(),
                    ..AuditQuery::default()
                }
            }
            None => break,
        }
    }
    assert_eq!(seen, (0..total).rev().collect::<Vec<_>>());
    assert_eq!(pages.len(), 3);
    // And back: from the oldest page, the newer links give the same pages again.
    let (_, mut page) = fetch(&query);
    for expected in pages.iter().rev().skip(1) {
        let after = page.newer_after.unwrap();
        let (times, newer) = fetch(&AuditQuery {
            after: after.to_string(),
            ..AuditQuery::default()
        });
        assert_eq!(&times, expected);
        assert!(newer.older_before.is_some());
        page = newer;
    }
    assert_eq!(page.newer_after, None, "the newest page has nothing newer");
}

#[test]
fn bad_page_ids_are_refused_in_words() {
    let query = AuditQuery {
        before: "x".into(),
        ..AuditQuery::default()
    };
    assert_eq!(
        query.filter(1),
        Err(BadFilter("“before” is not an event number".into()))
    );
}
