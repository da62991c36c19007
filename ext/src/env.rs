//! The one seam for time and randomness.
//!
//! Every timestamp and every random byte the library uses comes through an
//! [`Env`]. The default reads the system clock and the operating system's
//! cryptographic source; tests pin both with [`PinnedEnv`], and an engine that
//! replays SQL on several nodes (where each node must compute the same rows)
//! can supply its own.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Where time and randomness come from.
pub trait Env: Send + Sync {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> i64;
    /// Fills `buf` with random bytes. Session ids are the only credential of
    /// an anonymous onboarding: a real deployment needs a cryptographic source.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), String>;
}

/// The system clock and the operating system's cryptographic random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl Env for SystemEnv {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<(), String> {
        getrandom::fill(buf).map_err(|e| format!("the system random source failed: {e}"))
    }
}

/// A clock that moves only when told to and a reproducible byte stream, for
/// tests and for deterministic replays. Not a source of secrets.
#[derive(Debug)]
pub struct PinnedEnv {
    now_ms: AtomicI64,
    counter: AtomicU64,
    seed: u64,
}

impl PinnedEnv {
    /// A clock at `now_ms` and a byte stream derived from `seed`.
    pub fn new(now_ms: i64, seed: u64) -> Arc<Self> {
        Arc::new(PinnedEnv {
            now_ms: AtomicI64::new(now_ms),
            counter: AtomicU64::new(0),
            seed,
        })
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, delta_ms: i64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Env for PinnedEnv {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    /// splitmix64 over (seed, counter): distinct calls give distinct bytes.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), String> {
        for chunk in buf.chunks_mut(8) {
            let n = self.counter.fetch_add(1, Ordering::SeqCst);
            let mut z = self
                .seed
                .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// Where [`iso8601`]'s 24 characters have their separators, and which.
const SEPARATORS: [(usize, u8); 7] = [
    (4, b'-'),
    (7, b'-'),
    (10, b'T'),
    (13, b':'),
    (16, b':'),
    (19, b'.'),
    (23, b'Z'),
];

/// 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z, in milliseconds:
/// the times [`iso8601`] writes itself.
const FOUR_DIGIT_YEARS_MS: std::ops::RangeInclusive<i64> =
    -62_167_219_200_000..=253_402_300_799_999;

/// `2026-11-24T10:15:02.123Z` for a Unix time in milliseconds.
///
/// Written digit by digit from the civil date: every call of every writer
/// formats the time, and chrono's `format` (which interprets its pattern
/// each time) cost about 2 % of a whole onboarding; its date fields, about
/// 160 instructions a call more than this.
///
/// A time past 9999-12-31T23:59:59.999Z is written as that instant (and one
/// before year 0 as 0000-01-01T00:00:00.000Z): the stamps are compared as
/// text in SQL, where `+10000-…` sorted before every four-digit year (a
/// lease taken then looked expired at once, and two workers held one job)
/// and was read back by nothing (a code sent in the last minutes of 9999
/// left its session unreadable for good). Only a broken clock gets there.
pub fn iso8601(ms: i64) -> String {
    let ms = ms.clamp(*FOUR_DIGIT_YEARS_MS.start(), *FOUR_DIGIT_YEARS_MS.end());
    const DAY_MS: i64 = 86_400_000;
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: i64, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, in_day / 3_600_000, 2);
    put(14, in_day / 60_000 % 60, 2);
    put(17, in_day / 1_000 % 60, 2);
    put(20, in_day % 1_000, 3);
    for (at, sep) in SEPARATORS {
        out[at] = sep;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The civil date of a day counted from 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days` algorithm, the
/// inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`iso8601`], for timestamps this library wrote; any
/// other RFC 3339 text (an offset, more or fewer fraction digits) is read
/// by chrono.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    own_format_ms(text).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

/// Exactly what [`iso8601`] writes for years 0000-9999, read digit by
/// digit: every step reads the time its session entered the step, and
/// chrono's RFC 3339 parser took about 600 instructions for it. `None`
/// for anything else, including a leap second or a day the month lacks,
/// which are left to chrono.
fn own_format_ms(text: &str) -> Option<i64> {
    let b: &[u8; 24] = text.as_bytes().try_into().ok()?;
    if SEPARATORS.iter().any(|&(at, sep)| b[at] != sep) {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    let millis = number(20, 23)?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + millis)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's `days_from_civil` algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_has_milliseconds_and_round_trips() {
        let ms = 1_795_515_302_123; // 2026-11-24T10:15:02.123Z
        assert_eq!(iso8601(ms), "2026-11-24T10:15:02.123Z");
        assert_eq!(parse_iso8601("2026-11-24T10:15:02.123Z"), Some(ms));
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(iso8601(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        // Past year 9999 and before year 0: the last and first instants
        // written, which sort and read back as every stamp does.
        assert_eq!(iso8601(253_402_300_800_000), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso8601(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso8601(-62_167_219_200_001), "0000-01-01T00:00:00.000Z");
        assert_eq!(iso8601(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert_eq!(parse_iso8601(&iso8601(i64::MAX)), Some(253_402_300_799_999));
    }

    /// The digit-by-digit writing and reading answer what chrono does, for
    /// the library's own format over years 0000-9999; the reading leaves
    /// every other text to chrono.
    #[test]
    fn own_format_is_written_and_read_as_chrono_does() {
        let chrono_ms = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        // 0000-01-01 to 9999-12-31, in steps of about 52 days that move
        // the hour by 5, the minute by 7, the second and the millisecond by
        // 1: every value of those four comes round.
        let (first, last) = (*FOUR_DIGIT_YEARS_MS.start(), *FOUR_DIGIT_YEARS_MS.end());
        let step = 86_400_000_i64 * 365 / 7 + 3_600_000 * 5 + 60_000 * 7 + 1_001;
        let mut read = 0;
        for ms in (first..=last)
            .step_by(step as usize)
            .chain([first, last, 0])
        {
            let text = iso8601(ms);
            let chrono_text = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(text, chrono_text, "{ms}");
            assert_eq!(own_format_ms(&text), Some(ms), "{text}");
            assert_eq!(chrono_ms(&text), Some(ms), "{text}");
            read += 1;
        }
        assert_eq!(read, 69_765);
        for text in [
            "2024-02-29T23:59:59.999Z",
            "2000-02-29T00:00:00.000Z",
            "1970-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
        ] {
            assert_eq!(own_format_ms(text), chrono_ms(text), "{text}");
            assert!(own_format_ms(text).is_some(), "{text}");
        }
        // Not the library's format, or not a date: chrono's answer, whether
        // a time (an offset, a leap second) or none.
        for text in [
            "2023-02-29T00:00:00.000Z",
            "2100-02-29T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-00-10T00:00:00.000Z",
            "2026-11-24T24:00:00.000Z",
            "2026-11-24T10:60:00.000Z",
            "2016-12-31T23:59:60.000Z",
            "2026-11-24T10:15:02.123+01:00",
            "2026-11-24T10:15:02Z",
            "2026-11-24T10:15:02.12Z",
            "2026-11-24t10:15:02.123z",
            "2026-11-24T10:15:02.1234Z",
            "2026-11-24 10:15:02.123Z",
            "+2026-11-24T10:15:02.12Z",
            "2026-1a-24T10:15:02.123Z",
            "yesterday",
            "",
        ] {
            assert_eq!(own_format_ms(text), None, "{text}");
            assert_eq!(parse_iso8601(text), chrono_ms(text), "{text}");
        }
        assert_eq!(
            parse_iso8601("2026-11-24T11:15:02.123+01:00"),
            Some(1_795_515_302_123)
        );
    }

    #[test]
    fn pinned_env_bytes_differ_between_calls_and_repeat_per_seed() {
        let (a, b) = (PinnedEnv::new(0, 7), PinnedEnv::new(0, 7));
        let (mut x, mut y, mut z) = ([0u8; 16], [0u8; 16], [0u8; 16]);
        a.fill_random(&mut x).unwrap();
        a.fill_random(&mut y).unwrap();
        b.fill_random(&mut z).unwrap();
        assert_ne!(x, y);
        assert_eq!(x, z);
    }
}
