//! Times and durations as the pages show them. A moment goes out as `<time datetime="…Z">` with a UTC
//! text ([`time_element`]); the pages that show one load `web/src/local-time.js`, which rewrites it in
//! the viewer's time zone and keeps the exact UTC time on hover. Without the script the UTC text
//! stands, so the page still says when.

use std::time::Duration;

use maud::{Markup, html};
use time::OffsetDateTime;
use time::macros::format_description;

/// A time as UTC, to the millisecond: `2026-12-02T01:02:03.456Z`.
pub(crate) fn iso_time(at_ms: u64) -> String {
    format_utc(
        at_ms,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"),
    )
}

/// A time for people who read the page without its script: `2026-12-02 01:02:03 UTC`.
pub(crate) fn utc_text(at_ms: u64) -> String {
    format_utc(
        at_ms,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC"),
    )
}

/// `at_ms` in `format`, as UTC.
pub(crate) fn format_utc(
    at_ms: u64,
    format: &[time::format_description::BorrowedFormatItem<'_>],
) -> String {
    i128::from(at_ms)
        .checked_mul(1_000_000)
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
        .and_then(|at| at.format(format).ok())
        // Beyond year 9999: the number is all there is to show.
        .unwrap_or_else(|| at_ms.to_string())
}

/// A time the script shows in the viewer's zone (the exact time on hover); UTC without it.
pub(crate) fn time_element(at_ms: u64) -> Markup {
    let iso = iso_time(at_ms);
    html! { time datetime=(iso) title=(iso) { (utc_text(at_ms)) } }
}

/// A duration in the two largest units that matter: `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
pub(crate) fn duration_text(duration: Duration) -> String {
    let s = duration.as_secs();
    let (d, h, m, s) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_iso_with_a_readable_fallback() {
        assert_eq!(iso_time(1_796_173_323_456), "2026-12-02T01:02:03.456Z");
        assert_eq!(
            time_element(1_796_173_323_456).into_string(),
            r#"<time datetime="2026-12-02T01:02:03.456Z" title="2026-12-02T01:02:03.456Z">2026-12-02 01:02:03 UTC</time>"#
        );
    }

    #[test]
    fn durations_name_their_two_largest_units() {
        let text = |s| duration_text(Duration::from_secs(s));
        assert_eq!(text(0), "0 s");
        assert_eq!(text(59), "59 s");
        assert_eq!(text(185), "3 min 5 s");
        assert_eq!(text(7_800), "2 h 10 min");
        assert_eq!(text(3 * 86_400 + 4 * 3_600 + 7), "3 d 4 h");
    }
}
