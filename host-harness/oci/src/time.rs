//! RFC 3339 timestamps for `org.opencontainers.image.created` and the tar entries' mtime,
//! without a date crate: seconds since the epoch, rendered in UTC (`YYYY-MM-DDTHH:MM:SSZ`).

use anyhow::{bail, Context, Result};
use std::fmt;

/// A point in time at one-second resolution, at or after the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    pub fn from_epoch(seconds: u64) -> Timestamp {
        Timestamp(seconds)
    }

    pub fn epoch(self) -> u64 {
        self.0
    }

    /// `$SOURCE_DATE_EPOCH` if set (reproducible-builds.org), else the epoch itself.
    pub fn source_date_epoch() -> Result<Timestamp> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => {
                let s: u64 = v.trim().parse().with_context(|| {
                    format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
                })?;
                Ok(Timestamp(s))
            }
            _ => Ok(Timestamp(0)),
        }
    }

    /// Parses RFC 3339 (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00+01:00`, fractions
    /// dropped) or a bare number of seconds since the epoch (`@1767225600` or `1767225600`).
    pub fn parse(s: &str) -> Result<Timestamp> {
        let t = s.trim();
        let digits = t.strip_prefix('@').unwrap_or(t);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Timestamp(
                digits
                    .parse()
                    .with_context(|| format!("{s:?}: too large"))?,
            ));
        }
        parse_rfc3339(t).with_context(|| {
            format!("{s:?} is not an RFC 3339 time (like 2026-01-01T00:00:00Z) or epoch seconds")
        })
    }
}

fn num(s: &str, range: std::ops::Range<usize>) -> Result<i64> {
    let part = s.get(range.clone()).unwrap_or("");
    if part.len() != range.len() || !part.bytes().all(|b| b.is_ascii_digit()) {
        bail!("expected digits at {}..{}", range.start, range.end);
    }
    Ok(part.parse()?)
}

fn parse_rfc3339(s: &str) -> Result<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        bail!("not YYYY-MM-DDTHH:MM:SS");
    }
    let (year, month, day) = (num(s, 0..4)?, num(s, 5..7)?, num(s, 8..10)?);
    let (hour, minute, second) = (num(s, 11..13)?, num(s, 14..16)?, num(s, 17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        bail!("date or time out of range");
    }
    let mut rest = s.get(19..).unwrap_or("");
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            bail!("empty fraction of a second");
        }
        rest = frac.get(n..).unwrap_or("");
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => bail!("missing time zone (Z or ±HH:MM)"),
            };
            if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                bail!("time zone offset is not ±HH:MM");
            }
            let (oh, om) = (num(rest, 1..3)?, num(rest, 4..6)?);
            if oh > 23 || om > 59 {
                bail!("time zone offset out of range");
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
    if secs < 0 {
        bail!("before 1970-01-01T00:00:00Z");
    }
    Ok(Timestamp(secs as u64))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (text, epoch) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-01-01T00:00:00Z", 1_767_225_600),
            ("2000-02-29T12:34:56Z", 951_827_696),
        ] {
            let t = Timestamp::parse(text).unwrap();
            assert_eq!(t.epoch(), epoch, "{text}");
            assert_eq!(t.to_string(), text);
        }
        assert_eq!(
            Timestamp::parse("2026-01-01T01:00:00+01:00")
                .unwrap()
                .epoch(),
            1_767_225_600
        );
        assert_eq!(
            Timestamp::parse("2025-12-31T23:00:00.123-01:00")
                .unwrap()
                .epoch(),
            1_767_225_600
        );
        assert_eq!(
            Timestamp::parse("@1767225600").unwrap().epoch(),
            1_767_225_600
        );
        for bad in [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00",
            "yesterday",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
