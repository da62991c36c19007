//! The one-time code of a phone verification: six digits drawn from the
//! seam's random source, kept only as an HMAC-SHA-256 under the database's
//! secret, and checked in constant time.
//!
//! Why a keyed hash: there are only a million codes, so a plain hash of one
//! is reversed by trying them all; without the secret (which never leaves
//! the database) the stored value says nothing. The verification id is part
//! of the hashed text, so a stored value cannot be moved to another
//! verification.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::env::Env;
use crate::error::{Error, Result};

/// The name of the HMAC key's row in `onboarding_secrets`.
pub const SECRET_NAME: &str = "phone_code_hmac";

/// How many digits a code has.
pub const CODE_DIGITS: usize = 6;

/// The largest multiple of 1,000,000 below 2^32: draws at or above it are
/// thrown away, so every code is equally likely (no modulo bias).
const UNBIASED_LIMIT: u32 = 4_294_000_000;

/// A new HMAC key: 32 random bytes as 64 hex digits.
pub fn new_secret(env: &dyn Env) -> Result<String> {
    let mut key = [0u8; 32];
    env.fill_random(&mut key).map_err(Error::internal)?;
    Ok(to_hex(&key))
}

/// A new code: six decimal digits, leading zeros kept (`"042917"`).
pub fn new_code(env: &dyn Env) -> Result<String> {
    loop {
        let mut bytes = [0u8; 4];
        env.fill_random(&mut bytes).map_err(Error::internal)?;
        let draw = u32::from_le_bytes(bytes);
        if draw < UNBIASED_LIMIT {
            return Ok(format!("{:06}", draw % 1_000_000));
        }
    }
}

/// The value stored for `code` of `verification_id`: HMAC-SHA-256 under
/// `secret` (hex) of `ver_…:123456`, as 64 hex digits.
pub fn seal(secret: &str, verification_id: &str, code: &str) -> Result<String> {
    Ok(to_hex(
        &mac(secret, verification_id, code)?.finalize().into_bytes(),
    ))
}

/// Whether `code` is the one sealed in `stored`, compared in constant time.
pub fn matches(secret: &str, verification_id: &str, code: &str, stored: &str) -> Result<bool> {
    let stored =
        from_hex(stored).ok_or_else(|| Error::internal("a stored code HMAC is not hex"))?;
    Ok(mac(secret, verification_id, code)?
        .verify_slice(&stored)
        .is_ok())
}

fn mac(secret: &str, verification_id: &str, code: &str) -> Result<Hmac<Sha256>> {
    let key = from_hex(secret).ok_or_else(|| Error::internal("the stored secret is not hex"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| Error::internal(format!("the HMAC key is refused: {e}")))?;
    mac.update(verification_id.as_bytes());
    mac.update(b":");
    mac.update(code.as_bytes());
    Ok(mac)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::PinnedEnv;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let env = PinnedEnv::new(0, 42);
        let codes: Vec<String> = (0..200).map(|_| new_code(&*env).unwrap()).collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == CODE_DIGITS && c.bytes().all(|b| b.is_ascii_digit())));
        let distinct: std::collections::HashSet<&String> = codes.iter().collect();
        assert!(distinct.len() > 195, "{} distinct codes", distinct.len());
    }

    /// A random source answering the given draws (little-endian), in order.
    struct Draws(std::sync::Mutex<Vec<u32>>);

    impl Env for Draws {
        fn now_ms(&self) -> i64 {
            0
        }

        fn fill_random(&self, buf: &mut [u8]) -> std::result::Result<(), String> {
            let draw = self.0.lock().unwrap().remove(0);
            buf.copy_from_slice(&draw.to_le_bytes());
            Ok(())
        }
    }

    /// Draws at or above the largest multiple of 1,000,000 below 2^32 are
    /// thrown away; the first below it is the code.
    #[test]
    fn draws_at_or_above_the_unbiased_limit_are_thrown_away() {
        let env = Draws(std::sync::Mutex::new(vec![
            u32::MAX,
            4_294_000_000,
            4_293_999_999,
        ]));
        assert_eq!(new_code(&env), Ok("999999".to_string()));
        assert_eq!(env.0.lock().unwrap().len(), 0);
        let env = Draws(std::sync::Mutex::new(vec![0]));
        assert_eq!(new_code(&env), Ok("000000".to_string()));
    }

    #[test]
    fn a_sealed_code_matches_only_itself_under_its_secret_and_verification() {
        let env = PinnedEnv::new(0, 42);
        let secret = new_secret(&*env).unwrap();
        let other_secret = new_secret(&*env).unwrap();
        let sealed = seal(&secret, "ver_1", "042917").unwrap();
        assert_eq!(sealed.len(), 64);
        assert!(!sealed.contains("042917"));
        assert_eq!(matches(&secret, "ver_1", "042917", &sealed), Ok(true));
        assert_eq!(matches(&secret, "ver_1", "042918", &sealed), Ok(false));
        assert_eq!(matches(&secret, "ver_2", "042917", &sealed), Ok(false));
        assert_eq!(
            matches(&other_secret, "ver_1", "042917", &sealed),
            Ok(false)
        );
    }

    #[test]
    fn the_hmac_is_rfc_4231s() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = to_hex(b"Jefe");
        let mut mac = Hmac::<Sha256>::new_from_slice(&from_hex(&key).unwrap()).unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
