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

/// `2026-11-24T10:15:02.123Z` for a Unix time in milliseconds.
///
/// Written digit by digit: every call of every writer formats the time, and
/// chrono's `format` (which interprets its pattern each time) cost about 2%
/// of a whole onboarding.
pub fn iso8601(ms: i64) -> String {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        // Out of chrono's range (±262,000 years): only a broken clock gets here.
        return "1970-01-01T00:00:00.000Z".to_string();
    };
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Four-digit years only below; the general path for the rest.
        return t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, t.second(), 2);
    put(20, t.timestamp_subsec_millis(), 3);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = sep;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The inverse of [`iso8601`], for timestamps this library wrote.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
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
        assert_eq!(iso8601(253_402_300_800_000), "+10000-01-01T00:00:00.000Z");
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
