//! Fresh ids and the temporary API key of a new tenant and session.
//!
//! Ids use the uuid v7 layout: the creation time in milliseconds, then 74
//! random bits. The random part makes a session id (the only credential of
//! an anonymous onboarding) unguessable; the time prefix makes new rows land
//! next to each other in every index keyed by id, instead of on a random
//! page each, which keeps inserts flat as the tables grow. The API key is
//! 256 random bits.

use crate::env::Env;
use crate::error::{Error, Result};

/// The ids of one `onboarding_create`.
pub struct Ids {
    /// `tenant_` and 32 hex digits.
    pub tenant_id: String,
    /// `onb_` and 32 hex digits.
    pub session_id: String,
    /// `tmp_` and 64 hex digits.
    pub api_key: String,
}

/// New ids at `now_ms`, all from one draw of the seam's random source.
pub fn new_ids(env: &dyn Env, now_ms: i64) -> Result<Ids> {
    let mut bytes = [0u8; 52];
    env.fill_random(&mut bytes).map_err(Error::internal)?;
    let uuid = |random: &[u8]| {
        let mut raw = [0u8; 10];
        raw.copy_from_slice(random);
        uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &raw)
            .into_uuid()
            .simple()
            .to_string()
    };
    let api_key: String = bytes[20..].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Ids {
        tenant_id: format!("tenant_{}", uuid(&bytes[..10])),
        session_id: format!("onb_{}", uuid(&bytes[10..20])),
        api_key: format!("tmp_{api_key}"),
    })
}
