//! Validation of each step's payload: one function per step, each turning
//! the caller's JSON into the normalised JSON that the session stores.
//!
//! Every rule names its field first in its error text (`email 'bob@' is not a
//! valid email address`), quotes the bad value and says what was expected.
//! Unknown fields are ignored, so a front end may send more than it must.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::catalog;
use crate::error::{quote, Error, Result};
use crate::kb;

pub type Object = Map<String, Value>;

/// The payload argument as a JSON object; SQL NULL counts as `{}`.
pub fn payload_object(payload: Option<&str>) -> Result<Object> {
    let Some(text) = payload else {
        return Ok(Object::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::invalid_json(format!(
            "payload must be a JSON object, got {}",
            json_type(&other)
        ))),
        Err(e) => Err(Error::invalid_json(format!(
            "payload is not valid JSON; {e}"
        ))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string field, trimmed; `None` when absent or null.
fn optional_text(map: &Object, field: &str, max_chars: usize) -> Result<Option<String>> {
    let text = match map.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(other) => {
            return Err(Error::invalid_field(format!(
                "{field} must be a string, got {}",
                json_type(other)
            )))
        }
    };
    if text.is_empty() {
        return Err(Error::invalid_field(format!("{field} must not be empty")));
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Error::invalid_field(format!(
            "{field} is {chars} characters long; at most {max_chars} are allowed"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::invalid_field(format!(
            "{field} {} contains a control character",
            quote(text)
        )));
    }
    Ok(Some(text.to_string()))
}

/// A required string field, trimmed, non-empty, at most `max_chars` long.
fn required_text(map: &Object, field: &str, max_chars: usize) -> Result<String> {
    optional_text(map, field, max_chars)?
        .ok_or_else(|| Error::invalid_field(format!("{field} is required")))
}

/// `onboarding_create`'s payload: where the session comes from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub source: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

pub fn origin(map: &Object) -> Result<Origin> {
    let source = optional_text(map, "source", 32)?.unwrap_or_else(|| "web".to_string());
    if !source
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid_field(format!(
            "source {} may hold only letters, digits, '_' and '-'",
            quote(&source)
        )));
    }
    let ip_address = optional_text(map, "ip_address", 45)?;
    if let Some(ip) = &ip_address {
        if ip.parse::<IpAddr>().is_err() {
            return Err(Error::invalid_field(format!(
                "ip_address {} is not an IPv4 or IPv6 address",
                quote(ip)
            )));
        }
    }
    let user_agent = optional_text(map, "user_agent", 512)?;
    Ok(Origin {
        source,
        ip_address,
        user_agent,
    })
}

/// The business step: `company_name`, `industry`, `phone`, `email`.
#[derive(Debug, PartialEq, Eq)]
pub struct Business {
    pub company_name: String,
    pub industry: String,
    /// E.164, e.g. `+33612345678`.
    pub phone: String,
    /// Lowercase.
    pub email: String,
}

impl Business {
    pub fn to_json(&self) -> Value {
        json!({
            "company_name": self.company_name,
            "industry": self.industry,
            "phone": self.phone,
            "email": self.email,
        })
    }
}

pub fn business(map: &Object) -> Result<Business> {
    let company_name = required_text(map, "company_name", 200)?;
    let industry = required_text(map, "industry", 100)?;
    let phone = phone_e164(&required_text(map, "phone", 32)?)?;
    let email = email(&required_text(map, "email", 254)?)?;
    Ok(Business {
        company_name,
        industry,
        phone,
        email,
    })
}

/// A phone number in E.164. Numbers without a country code are read as
/// French (`06 12 34 56 78`), as the front end's users type them.
pub fn phone_e164(text: &str) -> Result<String> {
    let invalid = || {
        Error::invalid_field(format!(
            "phone {} is not a valid phone number (expected E.164 such as '+33612345678' \
             or a French number such as '06 12 34 56 78')",
            quote(text)
        ))
    };
    let number =
        phonenumber::parse(Some(phonenumber::country::Id::FR), text).map_err(|_| invalid())?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid());
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// An email address with a dotted domain, lowercased.
pub fn email(text: &str) -> Result<String> {
    let options = email_address::Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    match email_address::EmailAddress::parse_with_options(text, options) {
        Ok(address) => Ok(address.as_str().to_lowercase()),
        Err(_) => Err(Error::invalid_field(format!(
            "email {} is not a valid email address (expected name@domain.tld)",
            quote(text)
        ))),
    }
}

/// The channels a tenant can open, in canonical order.
pub const CHANNELS: [&str; 4] = ["phone", "sms", "whatsapp", "email"];

/// The channels step: a non-empty subset of [`CHANNELS`]. Duplicates are
/// dropped; the order is the caller's.
pub fn channels(map: &Object) -> Result<Vec<&'static str>> {
    let items = match map.get("channels") {
        None | Some(Value::Null) => {
            return Err(Error::invalid_field("channels is required"));
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(Error::invalid_field(format!(
                "channels must be an array of channel names, got {}",
                json_type(other)
            )))
        }
    };
    let mut chosen: Vec<&'static str> = Vec::with_capacity(CHANNELS.len());
    for item in items {
        let known = item
            .as_str()
            .and_then(|name| CHANNELS.iter().find(|c| **c == name.trim()));
        match known {
            Some(c) if !chosen.contains(c) => chosen.push(c),
            Some(_) => {}
            None => {
                return Err(Error::invalid_field(format!(
                    "channels lists {}, which is not a channel (expected one of {})",
                    item.as_str().map_or_else(|| item.to_string(), quote),
                    CHANNELS.join(", ")
                )))
            }
        }
    }
    if chosen.is_empty() {
        return Err(Error::invalid_field(format!(
            "channels must name at least one of {}",
            CHANNELS.join(", ")
        )));
    }
    Ok(chosen)
}

/// The vapi (voice agent) step.
#[derive(Debug)]
pub struct Vapi {
    pub agent_type: &'static catalog::AgentType,
    /// As chosen: `female`, `male` or a voice id, lowercase.
    pub voice: String,
    pub assistant_name: String,
}

impl Vapi {
    pub fn to_json(&self) -> Value {
        json!({
            "agent_type": self.agent_type.id,
            "voice": self.voice,
            "assistant_name": self.assistant_name,
        })
    }
}

pub fn vapi(map: &Object) -> Result<Vapi> {
    let agent_type_id = required_text(map, "agent_type", 64)?;
    let agent_type = catalog::agent_type(&agent_type_id).ok_or_else(|| {
        Error::invalid_field(format!(
            "agent_type {} is not an agent type (expected one of {})",
            quote(&agent_type_id),
            catalog::agent_type_ids()
        ))
    })?;
    let voice = required_text(map, "voice", 64)?.to_lowercase();
    if catalog::resolve_voice(&voice).is_none() {
        return Err(Error::invalid_field(format!(
            "voice {} is not a voice (expected one of {})",
            quote(&voice),
            catalog::voice_choices()
        )));
    }
    let assistant_name = required_text(map, "assistant_name", 50)?;
    Ok(Vapi {
        agent_type,
        voice,
        assistant_name,
    })
}

/// The knowledge-base methods.
pub const KB_METHODS: [&str; 4] = ["website", "documents", "assistant", "skip"];

/// The kb step: `method`; `crawl_url` for `website` (checked against the
/// public-address rule and stored normalised); `documents` for `documents`.
pub fn kb(map: &Object, allow: &kb::AllowList) -> Result<Value> {
    let method = required_text(map, "method", 32)?;
    if !KB_METHODS.contains(&method.as_str()) {
        return Err(Error::invalid_field(format!(
            "method {} is not a knowledge-base method (expected one of {})",
            quote(&method),
            KB_METHODS.join(", ")
        )));
    }
    match method.as_str() {
        "website" => {
            let crawl_url = optional_text(map, "crawl_url", 2048)?.ok_or_else(|| {
                Error::invalid_field("crawl_url is required when method is 'website'")
            })?;
            let url = kb::address::check_url(&crawl_url, allow).map_err(|why| {
                Error::invalid_field(format!(
                    "crawl_url {} {why} (expected a public http or https address such as 'https://mon-site.fr')",
                    quote(&crawl_url)
                ))
            })?;
            Ok(json!({ "method": method, "crawl_url": url.as_str() }))
        }
        "documents" => Ok(json!({
            "method": method,
            "documents": kb::documents::documents(map.get("documents"))?,
        })),
        _ => Ok(json!({ "method": method })),
    }
}

/// The booking providers the appointments step knows.
pub const BOOKING_PROVIDERS: [&str; 1] = ["cal_com"];

/// The appointments step: optional booking settings. Saving the step at all
/// says the tenant takes appointments; each field given replaces the one
/// saved before, and a field left out keeps it.
#[derive(Debug, PartialEq, Eq)]
pub struct Appointments {
    pub provider: Option<String>,
    pub event_type_id: Option<String>,
    /// An IANA zone name, e.g. `Europe/Paris`.
    pub timezone: Option<String>,
}

pub fn appointments(map: &Object) -> Result<Appointments> {
    let provider = optional_text(map, "provider", 32)?;
    if let Some(p) = &provider {
        if !BOOKING_PROVIDERS.contains(&p.as_str()) {
            return Err(Error::invalid_field(format!(
                "provider {} is not a booking provider (expected one of {})",
                quote(p),
                BOOKING_PROVIDERS.join(", ")
            )));
        }
    }
    // Cal.com event type ids are integers; the front end may send either form.
    let event_type_id = match map.get("event_type_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => Some(n.to_string()),
        Some(Value::String(s)) if is_positive_integer(s.trim()) => Some(s.trim().to_string()),
        Some(other) => {
            return Err(Error::invalid_field(format!(
                "event_type_id {} is not a positive integer (expected a Cal.com event type id such as 123456)",
                other.as_str().map_or_else(|| other.to_string(), quote)
            )))
        }
    };
    let timezone = optional_text(map, "timezone", 64)?;
    if let Some(tz) = &timezone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            return Err(Error::invalid_field(format!(
                "timezone {} is not an IANA time zone (expected a name such as 'Europe/Paris')",
                quote(tz)
            )));
        }
    }
    Ok(Appointments {
        provider,
        event_type_id,
        timezone,
    })
}

fn is_positive_integer(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && s != "0"
        && !s.bytes().all(|b| b == b'0')
}
