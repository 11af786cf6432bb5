//! Time: the wall clock, and the calendar arithmetic CloudTrail's
//! timestamps and S3 key layout need (UTC, proleptic Gregorian), in one
//! place, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the epoch (0 before 1970): the time the
/// store records (commits, expiries) and the daemon's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// [`now_ms`] signed, as event times are (`parse_event_time`): for
/// comparing the clock with them.
pub fn now_event_ms() -> i64 {
    now_ms().min(i64::MAX as u64) as i64
}

/// Today, in days since 1970-01-01 (UTC).
pub fn today() -> i64 {
    (now_ms() / 86_400_000) as i64
}

/// Days since the epoch of a `YYYY-MM-DD` date.
pub(crate) fn parse_date(s: &str) -> Option<i64> {
    parse_event_time(&format!("{s}T00:00:00Z")).map(|ms| ms.div_euclid(86_400_000))
}

/// Parse CloudTrail's `eventTime` (`2024-08-01T13:33:28Z`, with optional
/// fraction and offset) or the `YYYY-MM-DD HH:MM:SS[.f]` form some exports
/// use, to milliseconds since the epoch. `None` when unreadable.
pub fn parse_event_time(s: &str) -> Option<i64> {
    // Called for every record (the ingest-lag metric): no allocation, no
    // UTF-8 re-validation, trimming only when there is something to trim.
    let mut b = s.as_bytes();
    if b.first().is_some_and(u8::is_ascii_whitespace)
        || b.last().is_some_and(u8::is_ascii_whitespace)
    {
        b = s.trim().as_bytes();
    }
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(r)?;
        let mut v = 0i64;
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        // Milliseconds: the first three digits, padded with zeros.
        for k in 0..3 {
            ms = ms * 10
                + b.get(start + k)
                    .filter(|_| start + k < i)
                    .map_or(0, |c| i64::from(c - b'0'));
        }
    }
    let offset_min = match b.get(i) {
        None | Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = if b.get(i + 3) == Some(&b':') {
                num(i + 4..i + 6)?
            } else {
                num(i + 3..i + 5)?
            };
            let m = oh * 60 + om;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some((((days * 24 + h) * 60 + mi - offset_min) * 60 + sec) * 1000 + ms)
}

/// `ms` (since the epoch) as `YYYY-MM-DDTHH:MM:SSZ`, the form CloudTrail
/// writes.
pub fn iso_time(ms: i64) -> String {
    let t = ms.div_euclid(1000);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// (year, month, day) of a day since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's algorithm; [`days_from_civil`] is its inverse).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times() {
        assert_eq!(parse_event_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_event_time("2024-08-01T13:33:28Z"),
            Some(1_722_519_208_000)
        );
        assert_eq!(
            parse_event_time("2024-08-01T13:33:28.5Z"),
            Some(1_722_519_208_500)
        );
        assert_eq!(
            parse_event_time("2024-08-01T15:33:28+02:00"),
            Some(1_722_519_208_000)
        );
        assert_eq!(
            parse_event_time("2024-08-01 13:33:28.123456789"),
            Some(1_722_519_208_123)
        );
        assert_eq!(
            parse_event_time("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-08-01T13:33:28Q",
            "2024/08/01 13:33:28",
        ] {
            assert_eq!(parse_event_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_and_days_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(
            parse_date("2024-02-29").map(civil_from_days),
            Some((2024, 2, 29))
        );
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("nope"), None);
        assert_eq!(
            iso_time(parse_event_time("2026-12-01T23:05:09Z").unwrap()),
            "2026-12-01T23:05:09Z"
        );
        assert!(today() > parse_date("2026-01-01").unwrap());
    }
}
