//! UTC calendar arithmetic on milliseconds since the Unix epoch: parsing a
//! `YYYY-MM-DD` day and formatting iCalendar's basic UTC form.
//!
//! The plugin has no time zone database and needs none: records carry UTC
//! milliseconds, days are UTC days, and the `.ics` export uses UTC times
//! (`…Z`), which calendar apps show in the user's own zone.

use std::fmt;

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d`
/// (Howard Hinnant's `days_from_civil`). Valid for any year ≥ 0.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date `(y, m, d)` of a day counted from 1970-01-01 (Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// A `YYYY-MM-DD` that is not a UTC day on or after 1970-01-01.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDay(String);

impl fmt::Display for BadDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The start of the UTC day `YYYY-MM-DD`, ms since the Unix epoch.
pub fn parse_day(text: &str) -> Result<u64, BadDay> {
    let shape = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return Err(BadDay(format!(
            "{:?} is not a date: expected YYYY-MM-DD (a UTC day, like 2025-11-24)",
            cut(text)
        )));
    }
    // The shape check guarantees ASCII digits, so these parse.
    let num = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let y = i64::from(y);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(BadDay(format!("{text} is not a calendar date")));
    }
    if y < 1970 {
        return Err(BadDay(format!("{text} is before 1970-01-01")));
    }
    // y ≤ 9999, so this is positive and far below u64::MAX / DAY_MS.
    Ok(days_from_civil(y, m, d) as u64 * DAY_MS)
}

/// Keeps an echoed input short.
fn cut(text: &str) -> String {
    if text.chars().count() > 40 {
        let mut s: String = text.chars().take(40).collect();
        s.push('…');
        s
    } else {
        text.to_owned()
    }
}

/// Splits ms since the epoch into (y, m, d, hh, mm, ss) in UTC.
fn split(ms: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// iCalendar's UTC date-time in basic format: `20251124T100000Z`
/// (RFC 5545 §3.3.5, form #2; milliseconds are dropped).
pub fn ics_utc(ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = split(ms);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// RFC 3339 UTC date-time: `2025-11-24T10:00:00Z`.
pub fn rfc3339(ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = split(ms);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days() {
        assert_eq!(parse_day("1970-01-01"), Ok(0));
        assert_eq!(parse_day("1970-01-02"), Ok(DAY_MS));
        // `date -u -d 2025-11-24 +%s` = 1763942400
        assert_eq!(parse_day("2025-11-24"), Ok(1_763_942_400_000));
        assert_eq!(parse_day("2000-02-29"), Ok(951_782_400_000));
        assert_eq!(parse_day("2024-12-31"), Ok(1_735_603_200_000));
        assert_eq!(parse_day("9999-12-31"), Ok(253_402_214_400_000));
    }

    #[test]
    fn bad_days() {
        for text in [
            "",
            "2025-1-24",
            "2025/11/24",
            "20251124",
            "2025-11-24T00:00",
            "２０２５-11-24",
            "+025-11-24",
            "2025-11-2x",
        ] {
            let e = parse_day(text).expect_err(text);
            assert!(e.to_string().contains("YYYY-MM-DD"), "{text}: {e}");
        }
        for text in [
            "2025-13-01",
            "2025-00-10",
            "2025-02-29",
            "1900-02-29",
            "2025-04-31",
            "2025-01-00",
        ] {
            let e = parse_day(text).expect_err(text);
            assert_eq!(e.to_string(), format!("{text} is not a calendar date"));
        }
        assert!(parse_day("2024-02-29").is_ok());
        assert!(parse_day("2000-02-29").is_ok());
        assert!(
            parse_day("1969-12-31")
                .expect_err("before")
                .to_string()
                .contains("before 1970")
        );
        let long = "x".repeat(1000);
        assert!(parse_day(&long).expect_err("long").to_string().len() < 120);
    }

    #[test]
    fn formats() {
        assert_eq!(ics_utc(0), "19700101T000000Z");
        assert_eq!(ics_utc(1_763_978_400_999), "20251124T100000Z");
        assert_eq!(rfc3339(1_763_978_400_000), "2025-11-24T10:00:00Z");
        assert_eq!(ics_utc(951_868_799_000), "20000229T235959Z");
        assert_eq!(ics_utc(253_402_300_799_000), "99991231T235959Z");
    }

    #[test]
    fn civil_round_trip() {
        // Every day from 1970 to past 2100 (a non-leap century year).
        for z in 0..(131 * 366) {
            let (y, m, d) = civil_from_days(z);
            assert!(d >= 1 && d <= days_in_month(y, m), "{y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
