//! How times, durations, dates and sizes are written on screen and parsed from filters (UTC, no time zone data).

/// Days since 1970-01-01 to a civil date (proleptic Gregorian), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A civil date to days since 1970-01-01 (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn datetime(unix_ms: u64) -> String {
    let secs = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Parses `YYYY-MM-DD` to the Unix milliseconds of its midnight (UTC).
pub fn parse_date(text: &str) -> Option<u64> {
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days).ok()?.checked_mul(86_400_000)
}

/// Milliseconds as `H:MM:SS` (or `M:SS` under an hour).
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

/// Milliseconds as `M:SS.t`, for the player's position.
pub fn position(ms: u64) -> String {
    format!("{}.{}", duration(ms), ms % 1000 / 100)
}

/// Bytes with a binary unit.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00:00");
        for date in ["1970-01-01", "2000-02-29", "2024-12-31", "2026-03-01"] {
            let ms = parse_date(date);
            assert_eq!(
                ms.map(|ms| datetime(ms)[..10].to_owned()).as_deref(),
                Some(date)
            );
        }
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(61_000), "1:01");
        assert_eq!(duration(3_661_000), "1:01:01");
        assert_eq!(position(1_250), "0:01.2");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1536), "1.5K");
        assert_eq!(size(5 * 1024 * 1024), "5.0M");
    }
}
