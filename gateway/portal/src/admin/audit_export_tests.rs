//! Tests of the audit export: what is exported, read back, is what the filter showed.

#![allow(clippy::unwrap_used, clippy::panic)]

use sallyport_state::{AuditEvent, AuditFilter, AuditRecord, StateDb};

use super::*;

/// A state database in a real file, with events whose text needs escaping in both formats.
fn filled_db() -> (tempfile::TempDir, StateDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let awkward = [
        "plain",
        "a, comma",
        "a \"quote\" and a 'single'",
        "two\nlines\r\nand a tab\t",
        "ünïcødé ✓ <b>&amp;</b>",
        "=SUM(A1)",
        "@cmd",
        "-2+3",
        "'already quoted",
    ];
    for (i, detail) in awkward.iter().cycle().take(30).enumerate() {
        let i = u64::try_from(i).unwrap();
        db.audit(
            1_764_637_323_000 + i * 1_000,
            &AuditEvent {
                kind: if i % 3 == 0 { "login" } else { "connect" }.into(),
                actor: Some(if i % 2 == 0 { "dave" } else { "erin, jr." }.into()),
                client_addr: (i % 4 != 0).then(|| format!("10.0.0.{i}:5{i:04}")),
                target: (i % 5 != 0).then(|| "web \"prod\"".to_owned()),
                session_id: (i % 7 == 0).then(|| format!("session-{i}")),
                detail: Some((*detail).to_owned()),
            },
        )
        .unwrap();
    }
    (dir, db)
}

/// The filled database and every event in it, as an unfiltered export selects them.
fn every_event() -> (tempfile::TempDir, Vec<AuditRecord>) {
    let (dir, db) = filled_db();
    let all = db
        .audit_query(&AuditFilter {
            limit: EXPORT_LIMIT,
            ..AuditFilter::default()
        })
        .unwrap();
    (dir, all)
}

/// An exported event back as the record it came from, checking its UTC time says its Unix ms.
fn record(event: ExportedEvent) -> AuditRecord {
    assert_eq!(
        event.at,
        iso_time(event.at_ms),
        "the two times of {event:?}"
    );
    AuditRecord {
        id: event.id,
        at_ms: event.at_ms,
        event: AuditEvent {
            kind: event.kind,
            actor: event.actor,
            client_addr: event.client_addr,
            target: event.target,
            session_id: event.session_id,
            detail: event.detail,
        },
    }
}

/// An event read from the CSV with the one `'` that [`spreadsheet_cell`] adds taken off again.
fn from_spreadsheet(event: ExportedEvent) -> ExportedEvent {
    let text = |cell: String| cell.strip_prefix('\'').map(str::to_owned).unwrap_or(cell);
    ExportedEvent {
        kind: text(event.kind),
        actor: event.actor.map(text),
        client_addr: event.client_addr.map(text),
        target: event.target.map(text),
        session_id: event.session_id.map(text),
        detail: event.detail.map(text),
        ..event
    }
}

#[test]
fn no_csv_cell_starts_a_spreadsheet_formula() {
    let (_dir, all) = every_event();
    let csv = export(&all, ExportFormat::Csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let mut prefixed = 0;
    for row in reader.records() {
        for cell in row.unwrap().iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell: {cell:?}"
            );
            prefixed += usize::from(cell.starts_with("'=") || cell.starts_with("''"));
        }
    }
    assert!(
        prefixed >= 2,
        "the formula and the quoted cells were not prefixed"
    );
    assert_eq!(spreadsheet_cell("=1+1".into()), "'=1+1");
    assert_eq!(spreadsheet_cell("'x".into()), "''x");
    assert_eq!(spreadsheet_cell("plain -1".into()), "plain -1");
}

#[test]
fn an_export_read_back_is_what_the_filter_showed() {
    let (_dir, db) = filled_db();
    let filter = AuditFilter {
        actor: Some("erin, jr.".into()),
        kind: Some("connect".into()),
        from_ms: Some(1_764_637_323_000 + 3_000),
        to_ms: Some(1_764_637_323_000 + 25_000),
        limit: EXPORT_LIMIT,
        ..AuditFilter::default()
    };
    let shown = db.audit_query(&filter).unwrap();
    assert!(shown.len() >= 5, "the filter selects too little: {shown:?}");
    assert!(shown.len() < 30, "the filter selects everything");

    let csv = export(&shown, ExportFormat::Csv).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    assert_eq!(reader.headers().unwrap(), CSV_HEADER.as_slice());
    let from_csv: Vec<AuditRecord> = reader
        .deserialize::<ExportedEvent>()
        .map(|event| record(from_spreadsheet(event.unwrap())))
        .collect();
    assert_eq!(from_csv, shown);

    let jsonl = String::from_utf8(export(&shown, ExportFormat::Jsonl).unwrap()).unwrap();
    assert_eq!(jsonl.lines().count(), shown.len(), "one line per event");
    let from_jsonl: Vec<AuditRecord> = jsonl
        .lines()
        .map(|line| record(serde_json::from_str(line).unwrap()))
        .collect();
    assert_eq!(from_jsonl, shown);
}

#[test]
fn json_lines_keep_a_missing_value_apart_from_an_empty_one() {
    let (_dir, all) = every_event();
    let jsonl = String::from_utf8(export(&all, ExportFormat::Jsonl).unwrap()).unwrap();
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    // The oldest event (i = 0) has no client address and no target.
    assert_eq!(first["client_addr"], serde_json::Value::Null);
    assert_eq!(first["target"], serde_json::Value::Null);
    assert_eq!(first["at"], "2025-12-02T01:02:03.000Z");
}

#[test]
fn an_empty_filter_exports_nothing_but_the_csv_header() {
    assert!(export(&[], ExportFormat::Jsonl).unwrap().is_empty());
    assert_eq!(
        String::from_utf8(export(&[], ExportFormat::Csv).unwrap()).unwrap(),
        "id,at,at_ms,kind,actor,client_addr,target,session_id,detail\n"
    );
}

#[test]
fn formats_are_named_in_the_query_string() {
    let query: ExportQuery =
        serde_urlencoded::from_str("format=jsonl&user=dave&from=2026-12-02T01%3A02&before=")
            .unwrap();
    assert_eq!(query.format, ExportFormat::Jsonl);
    assert_eq!(query.filter.user, "dave");
    assert_eq!(
        query.filter.filter(1).unwrap().from_ms,
        Some(1_796_173_320_000)
    );
    assert!(serde_urlencoded::from_str::<ExportQuery>("format=xml").is_err());
}
