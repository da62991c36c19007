//! Validation of each step's payload: one function per step, each turning
//! the caller's JSON into the normalised JSON that the session stores; and
//! of create's origin, from its payload or from the host's arguments.
//!
//! Every rule names its field first in its error text (`email 'bob@' is not a
//! valid email address`), quotes the bad value and says what was expected.
//! Unknown fields are ignored, so a front end may send more than it must.

use std::collections::btree_map::{self, BTreeMap};
use std::net::IpAddr;

use serde_json::{json, Map, Value};
use unicode_normalization::UnicodeNormalization;

use crate::catalog;
use crate::error::{checked_text, quote, quote_json, Error, Result};
use crate::json::{got, type_name};
use crate::kb::{check_url, AllowList};

/// A payload's members. A B-tree rather than serde_json's map: a payload
/// has a handful of keys, each looked up once or twice, and serde_json's
/// ordered map hashes every key with SipHash on insert and on lookup (its
/// order is never used here: only the members' values are read). Nested
/// objects stay serde_json's.
pub type Object = BTreeMap<String, Value>;

/// The most JSON values (objects, arrays, and the items and members in
/// them) a large payload may hold: the largest valid one, twenty documents,
/// holds about a hundred. Parsed, a value takes tens of bytes whatever its
/// text (`0,` is two), so a 20 MB array of zeros would take a gigabyte: such
/// a payload is refused before it is parsed.
pub const MAX_PAYLOAD_VALUES: usize = 10_000;

/// Payloads this long or shorter are parsed without counting their values:
/// whatever they hold costs a few megabytes at most.
const COUNTED_PAYLOAD_BYTES: usize = 64 * 1024;

/// The payload argument as a JSON object; SQL NULL counts as `{}`.
pub fn payload_object(payload: Option<&str>) -> Result<Object> {
    let Some(text) = payload else {
        return Ok(Object::new());
    };
    // A byte-order mark opening the text is no part of the JSON (RFC 8259
    // 8.1 lets a parser ignore it): some Windows tools write one before a
    // UTF-8 file, and the body sent was refused for it.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    if text.len() > COUNTED_PAYLOAD_BYTES && more_values_than(text, MAX_PAYLOAD_VALUES) {
        return Err(Error::invalid_json(format!(
            "payload holds more than {MAX_PAYLOAD_VALUES} JSON values (the largest valid one \
             holds about a hundred)"
        )));
    }
    match serde_json::from_str::<Payload>(text) {
        Ok(Payload(Ok(map))) => Ok(map),
        // Named by its type alone: a whole payload may be a secret sent
        // bare (`onboarding_phone_verify(id, '482913')`), and an error
        // text must never carry a code back.
        Ok(Payload(Err(other))) => Err(Error::invalid_json(format!(
            "payload must be a JSON object, got {}",
            type_name(&other)
        ))),
        // The only data error a JSON value can raise: a key twice.
        Err(e) if e.is_data() => Err(Error::invalid_json(format!(
            "payload {e} (a key may appear once: readers disagree on which one counts)"
        ))),
        Err(e) => Err(Error::invalid_json(format!(
            "payload is not valid JSON; {e}"
        ))),
    }
}

/// A payload: its members when it is an object, else the value it is (for
/// the error naming its type). Objects in it are [`OnceKeyed`].
struct Payload(std::result::Result<Object, Value>);

impl<'de> serde::Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(PayloadVisitor).map(Payload)
    }
}

/// [`OnceKeyedVisitor`] for everything but the top-level object.
struct PayloadVisitor;

impl<'de> serde::de::Visitor<'de> for PayloadVisitor {
    type Value = std::result::Result<Object, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
        OnceKeyedVisitor.visit_bool(v).map(Err)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        OnceKeyedVisitor.visit_i64(v).map(Err)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        OnceKeyedVisitor.visit_u64(v).map(Err)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
        OnceKeyedVisitor.visit_f64(v).map(Err)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        OnceKeyedVisitor.visit_str(v).map(Err)
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
        OnceKeyedVisitor.visit_string(v).map(Err)
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
        OnceKeyedVisitor.visit_unit().map(Err)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        OnceKeyedVisitor.visit_seq(seq).map(Err)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut entries: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut map = Object::new();
        while let Some(key) = entries.next_key::<String>()? {
            match map.entry(key) {
                btree_map::Entry::Vacant(slot) => {
                    let OnceKeyed(value) = entries.next_value()?;
                    slot.insert(value);
                }
                btree_map::Entry::Occupied(slot) => return Err(repeated_key(slot.key())),
            }
        }
        Ok(Ok(map))
    }
}

fn repeated_key<E: serde::de::Error>(key: &str) -> E {
    E::custom(format_args!("has the key {} twice", quote(key)))
}

/// A JSON value whose objects name each key once. JSON leaves a repeated
/// key to the reader (RFC 8259 § 4): serde_json keeps the last, others the
/// first, so `{"channels":["fax"],"channels":["sms"]}` would be checked by
/// a proxy as one thing and saved here as another. Refused instead, as
/// I-JSON (RFC 7493) does.
struct OnceKeyed(Value);

impl<'de> serde::Deserialize<'de> for OnceKeyed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(OnceKeyedVisitor).map(OnceKeyed)
    }
}

/// `serde_json::Value`'s own visitor, but for the repeated key.
struct OnceKeyedVisitor;

impl<'de> serde::de::Visitor<'de> for OnceKeyedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(OnceKeyed(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut entries: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    let OnceKeyed(value) = entries.next_value()?;
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => return Err(repeated_key(slot.key())),
            }
        }
        Ok(Value::Object(map))
    }
}

/// Whether JSON `text` opens or separates more than `max` values outside
/// its strings (an upper bound of its values; malformed text is left to
/// the parser).
fn more_values_than(text: &str, max: usize) -> bool {
    let mut count = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b',' => {
                    count += 1;
                    if count > max {
                        return true;
                    }
                }
                _ => {}
            }
        }
    }
    false
}

/// A string field, trimmed; `None` when absent or null.
fn optional_text(map: &Object, field: &str, max_chars: usize) -> Result<Option<String>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => checked_text(field, s, max_chars).map(Some),
        Some(other) => Err(Error::invalid_field(format!(
            "{field} must be a string, got {}",
            got(other)
        ))),
    }
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

/// What the host knows of the client, given as `onboarding_create`'s second
/// and third arguments. A field given here replaces the payload's, which is
/// then not read at all: a server knows its peer, so the client's claim
/// neither wins nor fails the call.
#[derive(Debug, Default)]
pub struct Peer<'a> {
    /// The client's address, held to the payload's `ip_address` rules.
    pub ip_address: Option<&'a str>,
    /// The raw `User-Agent` header, cleaned by [`user_agent_header`].
    pub user_agent: Option<&'a str>,
}

/// The longest `user_agent` a session keeps, in characters.
pub const USER_AGENT_MAX_CHARS: usize = 512;

/// The longest `source` a session keeps, in characters.
pub const SOURCE_MAX_CHARS: usize = 64;

/// The longest text form of an IPv6 address (with an embedded IPv4 one).
const IP_ADDRESS_MAX_CHARS: usize = 45;

pub fn origin(map: &Object, peer: &Peer<'_>) -> Result<Origin> {
    // Free text on one line, as a campaign's or a partner's name is
    // ("landing page", "partenaire.example.fr", "référencement"): it is
    // only recorded, for the analytics.
    let source =
        optional_text(map, "source", SOURCE_MAX_CHARS)?.unwrap_or_else(|| "web".to_string());
    let ip_address = match peer.ip_address {
        Some(given) => Some(checked_text("ip_address", given, IP_ADDRESS_MAX_CHARS)?),
        None => optional_text(map, "ip_address", IP_ADDRESS_MAX_CHARS)?,
    };
    if let Some(ip) = &ip_address {
        if ip.parse::<IpAddr>().is_err() {
            return Err(Error::invalid_field(format!(
                "ip_address {} is not an IPv4 or IPv6 address",
                quote(ip)
            )));
        }
    }
    let user_agent = match peer.user_agent {
        Some(raw) => user_agent_header(raw),
        None => optional_text(map, "user_agent", USER_AGENT_MAX_CHARS)?,
    };
    Ok(Origin {
        source,
        ip_address,
        user_agent,
    })
}

/// A raw `User-Agent` header as a session keeps it: control characters
/// dropped, trimmed, cut to [`USER_AGENT_MAX_CHARS`]; `None` when nothing is
/// left. Cleaned rather than refused: the header is whatever the client
/// sent, and a create must not fail over it.
pub fn user_agent_header(raw: &str) -> Option<String> {
    let printable: String = raw.chars().filter(|c| !c.is_control()).collect();
    let cut: String = printable
        .trim()
        .chars()
        .take(USER_AGENT_MAX_CHARS)
        .collect();
    let cut = cut.trim_end();
    (!cut.is_empty()).then(|| cut.to_string())
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
    /// The JSON text the session keeps, written out rather than built as a
    /// map and serialised: `{"company_name":…,"industry":…,"phone":…,"email":…}`.
    pub fn to_text(&self) -> String {
        let mut w = crate::json::Writer::with_capacity(128);
        w.raw(r#"{"company_name":"#)
            .string(&self.company_name)
            .raw(r#","industry":"#)
            .string(&self.industry)
            .raw(r#","phone":"#)
            .string(&self.phone)
            .raw(r#","email":"#)
            .string(&self.email)
            .raw("}");
        w.finish()
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
/// French (`06 12 34 56 78`), as the front end's users type them, the
/// overseas departments' included (`0692 12 34 56` is Réunion's
/// `+262692123456`).
pub fn phone_e164(text: &str) -> Result<String> {
    let invalid = || {
        Error::invalid_field(format!(
            "phone {} is not a valid phone number (expected E.164 such as '+33612345678' \
             or a French number such as '06 12 34 56 78')",
            quote(text)
        ))
    };
    // French typography separates the groups with a narrow no-break space
    // (U+202F), which the parser does not take for a separator; any white
    // space is one.
    // (A copy only then: this runs in every business step.)
    let spaced: std::borrow::Cow<str> = if text.chars().any(|c| c.is_whitespace() && c != ' ') {
        text.chars()
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    };
    let text = &*spaced;
    // Digits and the separators people type, nothing else. Not letters:
    // the parser reads them as a keypad's (`06 12 34 56 AB` became
    // `+33612345622`, a letter O a zero) and a code would go to a stranger's
    // number. Nor symbols, which it drops (`☎ 06 12 34 56 78` was taken):
    // the OpenAPI document's pattern says this same set.
    if !text.chars().all(phone_char) {
        return Err(invalid());
    }
    match french_by_its_digits(text) {
        Some(e164) => Ok(e164),
        None => parsed_e164(text).ok_or_else(invalid),
    }
}

/// What the parser makes of `text` (digits and separators only): the
/// number in E.164 when it is valid, or taken by the French plan.
fn parsed_e164(text: &str) -> Option<String> {
    let number = phonenumber::parse(Some(national_region(text)), text).ok()?;
    let code = number.country().code();
    // With its leading zeros (Italian numbers keep theirs).
    let national = number.national().to_string();
    if !phone_is_valid(code, &national) && !french_plan(code, &national) {
        return None;
    }
    // E.164 is `+`, the country code and the national number. The crate's
    // formatter writes the same, after looking up the country's display
    // formats with their patterns, which E.164 does not use: 4,500
    // instructions a call.
    Some(format!("+{code}{national}"))
}

/// The number most business steps carry, a metropolitan French one typed
/// as digits with spaces, dots or dashes (`06 12 34 56 78`,
/// `+33 6 12 34 56 78`), read without the parser: its ten digits with the
/// trunk 0, or `+33` and nine, are in the French plan ([`french_plan`]),
/// which takes them whatever the metadata says, so the parser's answer is
/// known. The parser and the metadata's patterns cost about 23,000
/// instructions a number, a twentieth of a whole onboarding's; this, a
/// few hundred. Any other text (another country, the overseas prefixes, a
/// `00` prefix, brackets, a digit too many or too few) goes to the parser;
/// tests pin this equal to it on every prefix in several forms, and on
/// thousands of texts with separators anywhere.
fn french_by_its_digits(text: &str) -> Option<String> {
    let text = text.trim_matches(' ');
    let (international, rest) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // The first character after a `+` is a digit: `+ 33` goes to the parser.
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut digits = [0u8; 12];
    let (mut n, mut separators) = (0, 0);
    for b in rest.bytes() {
        match b {
            b'0'..=b'9' if n < digits.len() => {
                digits[n] = b;
                n += 1;
            }
            b'0'..=b'9' => return None,
            b' ' | b'.' | b'-' => separators += 1,
            _ => return None,
        }
    }
    // A `+` number without a space is read first as an RFC 3966 `tel:`
    // number, whose country code runs to the first dot or dash
    // (`+336.12.34.56.78` has none called 336, and is refused): only the
    // plain `+33612345678` is certain.
    if international && separators > 0 && !text.contains(' ') {
        return None;
    }
    let national = match (international, &digits[..n]) {
        (true, [b'3', b'3', national @ ..]) if national.len() == 9 => national,
        (false, [b'0', national @ ..]) if national.len() == 9 => national,
        _ => return None,
    };
    // ASCII digits only, so the bytes are text.
    let national = std::str::from_utf8(national).ok()?;
    french_plan(33, national).then(|| ["+33", national].concat())
}

/// A character a phone number may hold once its ends are trimmed: ASCII
/// digits, a space (any white space was made one), `+ . ( ) / -`, and the
/// dashes of typography (U+2010 to U+2015, the minus sign U+2212).
fn phone_char(c: char) -> bool {
    c.is_ascii_digit()
        || matches!(
            c,
            ' ' | '+' | '.' | '(' | ')' | '/' | '-' | '\u{2010}'..='\u{2015}' | '\u{2212}'
        )
}

/// A metropolitan French number by the shape of the national plan
/// (ARCEP): nine digits after +33, the first not 0. libphonenumber's
/// metadata lists the blocks allocated when it was built, and `07 12 34 56
/// 78` or `04 01 02 03 04` are in none of them yet: a number a business
/// really has is not refused for the metadata's age (the phone
/// verification proves it is theirs before it routes a call). Not the
/// blocks that are another plan's: the overseas departments' prefixes
/// (their numbers are `+262`, `+590`, `+594`, `+596`, never `+33`) and
/// `0700`, whose machine-to-machine numbers are longer.
pub fn french_plan(code: u16, national: &str) -> bool {
    const OTHER_PLANS: [&str; 15] = [
        "262", "263", "269", "590", "594", "596", "639", "690", "691", "692", "693", "694", "696",
        "697", "700",
    ];
    code == 33
        && national.len() == 9
        && !national.starts_with('0')
        && national.bytes().all(|b| b.is_ascii_digit())
        && !OTHER_PLANS
            .iter()
            .any(|prefix| national.starts_with(prefix))
}

/// The region whose numbering plan a number without a country code is
/// read in. In France the overseas departments are dialled like any other
/// number, with a leading 0, and their prefixes are theirs alone (ARCEP's
/// plan): read as metropolitan, `0692 12 34 56` (a Réunion mobile) would
/// be refused and `0596 30 12 34` (Martinique) would become the unrelated
/// `+33596301234`. Mayotte shares `+262` with Réunion, whose plan reads
/// both.
fn national_region(text: &str) -> phonenumber::country::Id {
    use phonenumber::country::Id;
    if text.trim_start().starts_with('+') {
        return Id::FR;
    }
    let mut digits = text.bytes().filter(u8::is_ascii_digit);
    if digits.next() != Some(b'0') {
        return Id::FR;
    }
    let prefix: Vec<u8> = digits.take(3).collect();
    match &prefix[..] {
        b"262" | b"263" | b"692" | b"693" | b"269" | b"639" => Id::RE,
        b"590" | b"690" | b"691" => Id::GP,
        b"594" | b"694" => Id::GF,
        b"596" | b"696" | b"697" => Id::MQ,
        _ => Id::FR,
    }
}

/// `phonenumber::is_valid` of the number `+{code}{national}`: the same
/// answer for every number (a test compares them over the metadata's
/// example numbers and variants of them), in fewer pattern matches. Both
/// find the number's region the same way; then a number is valid when it
/// matches the region's general pattern and the pattern of at least one
/// number type. The crate tries eight rare types (premium rate, toll free,
/// …) before fixed line and mobile, and each try is a lookup in its regex
/// cache (a lock and a hash of the pattern's text); mobile and fixed line
/// first, most numbers stop at the first or second: 32,700 → 23,400
/// instructions a number, parsing included.
fn phone_is_valid(code: u16, national: &str) -> bool {
    use phonenumber::metadata::DATABASE;
    let Some(regions) = DATABASE.region(&code) else {
        return false;
    };
    let region = match regions[..] {
        // A non-geographic code (`+800`, `+882`, …): its metadata is by code.
        ["001"] => DATABASE.by_code(&code).and_then(|m| m.into_iter().next()),
        [only] => DATABASE.by_id(only),
        // A code shared by regions (`+1`, `+44`, `+262`, …): the first
        // whose leading digits start the number, or without them, the
        // first the number is valid in.
        _ => regions
            .iter()
            .filter_map(|id| DATABASE.by_id(*id))
            .find(|region| match region.leading_digits() {
                Some(digits) => digits.find(national).is_some_and(|m| m.start() == 0),
                None => has_a_number_type(region, national),
            }),
    };
    region.is_some_and(|region| has_a_number_type(region, national))
}

/// Whether `national` is a number of one of `region`'s types (the crate's
/// `number_type` is not `Unknown`).
fn has_a_number_type(region: &phonenumber::metadata::Metadata, national: &str) -> bool {
    let d = region.descriptors();
    d.general().is_match(national)
        && [
            d.mobile(),
            d.fixed_line(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .any(|kind| kind.is_match(national))
}

/// A number parsed at registration ([`warm_up`]): valid, so that parsing it
/// goes through the whole metadata.
const WARM_UP_PHONE: &str = "06 12 34 56 78";

/// Parses a phone number once, through the parser (the number is one
/// [`french_by_its_digits`] would read without it). The phone metadata
/// loads on first use (a few milliseconds) and the French patterns compile,
/// which would otherwise land in the first business step's answer that
/// needs the parser; registration calls this instead. It also lets the
/// metadata's regex cache hold every pattern ([`keep_every_phone_pattern`]).
pub fn warm_up() -> Result<String> {
    let number = parsed_e164(WARM_UP_PHONE)
        .ok_or_else(|| Error::internal(format!("the phone parser refuses {WARM_UP_PHONE}")));
    keep_every_phone_pattern();
    number
}

/// The `phonenumber` crate compiles its metadata's regular expressions on
/// first use into one cache shared by the process, which keeps 100 and
/// drops the least recently used. Parsing and validating a number uses
/// about ten of its region's, so numbers of more than a few regions in
/// turn evicted each other's patterns and every call compiled its own
/// again: 3.4 ms a business step instead of 15 µs on the writer, for a
/// client sending valid numbers of thirty countries (`cargo bench -p
/// onboarding-benches --bench phone`). Raised to the count of every
/// distinct pattern in the metadata (2,090), the cache never evicts: each
/// pattern compiles once, when a number of its region first comes. The
/// price is memory, paid only for the regions used, and per thread that
/// validates numbers (each compiled pattern keeps a search cache for each
/// thread using it): about 150 MB once numbers of all 254 regions and
/// codes have come through one thread, which the server's single writer
/// is; a host validating from many threads can reach about 700 MB.
fn keep_every_phone_pattern() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let patterns = phone_patterns();
        let cache = phonenumber::metadata::DATABASE.cache();
        let mut cache = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.capacity() < patterns {
            cache.set_capacity(patterns);
        }
    });
}

/// Every entry of the phone metadata: the 245 regions and the 9
/// non-geographic codes (`+800`, `+882`, …). The crate's `iter()` misses all
/// but one of the latter, which it files under the same id, `001`.
fn phone_metadata() -> impl Iterator<Item = &'static phonenumber::metadata::Metadata> {
    (1..=999u16).flat_map(|code| {
        phonenumber::metadata::DATABASE
            .by_code(&code)
            .unwrap_or_default()
    })
}

/// Every number description of `region` it has: the general one, the
/// number types and the others (emergency, short codes, carriers, …).
fn descriptors(
    region: &phonenumber::metadata::Metadata,
) -> impl Iterator<Item = &phonenumber::metadata::Descriptor> {
    let d = region.descriptors();
    [
        Some(d.general()),
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.emergency(),
        d.voicemail(),
        d.short_code(),
        d.standard_rate(),
        d.carrier(),
        d.no_international(),
    ]
    .into_iter()
    .flatten()
}

/// How many distinct regular expressions the phone metadata holds (the
/// crate's cache is keyed by their text).
fn phone_patterns() -> usize {
    let mut patterns = std::collections::HashSet::new();
    for region in phone_metadata() {
        patterns.extend(descriptors(region).map(|d| d.national_number().as_str()));
        for format in region
            .formats()
            .iter()
            .chain(region.international_formats())
        {
            patterns.insert(format.pattern().as_str());
            patterns.extend(format.leading_digits().iter().map(|r| r.as_str()));
        }
        patterns.extend(
            [
                region.international_prefix(),
                region.national_prefix_for_parsing(),
                region.leading_digits(),
            ]
            .into_iter()
            .flatten()
            .map(|r| r.as_str()),
        );
    }
    patterns.len()
}

/// An email address with a dotted domain, in one form per mailbox, so that
/// "not used by another tenant" cannot be passed with another spelling:
/// lowercased, the domain in its Unicode form (`xn--exmple-cua.fr` is
/// `exämple.fr`), a quoted local part that needs no quotes unquoted
/// (`"bob"@y.fr` is `bob@y.fr`).
pub fn email(text: &str) -> Result<String> {
    // An address that is not one reads exactly as the contract's example
    // of an error text (`email 'bob@' is not a valid email address`); one
    // that is, but cannot receive mail, says why.
    let invalid = |why: Option<&str>| {
        let why = why.map(|why| format!(" ({why})")).unwrap_or_default();
        Error::invalid_field(format!(
            "email {} is not a valid email address{why}",
            quote(text)
        ))
    };
    let options = email_address::Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    // Composed (NFC), as RFC 6530 asks of an address: typed or pasted
    // decomposed (`e` + U+0301, as macOS writes it), the same mailbox.
    // (A copy only then: this runs in every business step.)
    let composed: std::borrow::Cow<str> = match unicode_normalization::is_nfc_quick(text.chars()) {
        unicode_normalization::IsNormalized::Yes => text.into(),
        _ => text.nfc().collect::<String>().into(),
    };
    let address = email_address::EmailAddress::parse_with_options(&composed, options)
        .map_err(|_| invalid(None))?;
    let (domain, errors) = idna::domain_to_unicode(address.domain());
    // No top-level domain is digits: `a@1.2.3.4` is an IP address written
    // without the brackets of a literal, which the address takes nowhere.
    let numeric_tld = domain
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if errors.is_err() || numeric_tld || !domain.split('.').all(is_host_label) {
        return Err(invalid(None));
    }
    // The reserved `.invalid` receives no mail; a session's placeholder
    // address is there.
    if domain == "invalid" || domain.ends_with(".invalid") {
        return Err(invalid(Some("the .invalid domain receives no mail")));
    }
    let local = address.local_part();
    let local = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        // A quoted-pair (`\a`) is the character itself.
        Some(inner) => match unescaped(inner) {
            plain if is_dot_atom(&plain) => plain,
            _ => local.to_string(),
        },
        None => local.to_string(),
    };
    Ok([&lowercase(&local), "@", &domain].concat())
}

/// A local part lowercased and still an address: `İ` (a capital I with a
/// dot, Turkish) lowercases to `i` and a combining dot, which no address
/// takes; the answer sent back was refused. It is `i`, as in Turkish.
fn lowercase(local: &str) -> String {
    let lower = local.to_lowercase();
    match lower.contains('\u{307}') {
        true => lower.replace("i\u{307}", "i"),
        false => lower,
    }
}

/// A label of a mail domain (RFC 5321's `sub-domain`, with IDNA's letters):
/// letters of any script (`пример`), digits and inner hyphens. The address
/// parser takes any of RFC 5322's `atext` in a domain (`b_c`, `b+c`, `b!c`)
/// and IDNA's mapping lets symbols through (`xn--n3h` is `☃`); no mail host
/// name carries them.
fn is_host_label(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c == '-' || c.is_alphanumeric())
}

/// A quoted local part's text without its quoted-pairs' backslashes.
fn unescaped(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// RFC 5322's dot-atom (with RFC 6531's non-ASCII letters): a local part
/// that reads the same without quotes.
fn is_dot_atom(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
}

/// The error of an email another tenant holds: the business step checks it,
/// and completion meets it again when that tenant completed in between.
pub fn email_taken(email: &str) -> Error {
    Error::conflict(format!(
        "email {} is already used by another account",
        quote(email)
    ))
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
                got(other)
            )))
        }
    };
    let mut chosen: Vec<&'static str> = Vec::with_capacity(CHANNELS.len());
    for item in items {
        let known = item
            .as_str()
            .and_then(|name| CHANNELS.iter().find(|c| **c == crate::error::trim(name)));
        match known {
            Some(c) if !chosen.contains(c) => chosen.push(c),
            Some(_) => {}
            None => {
                return Err(Error::invalid_field(format!(
                    "channels lists {}, which is not a channel (expected one of {})",
                    quote_json(item),
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
    /// The JSON text the session keeps, written out as [`Business::to_text`]:
    /// `{"agent_type":…,"voice":…,"assistant_name":…}`.
    pub fn to_text(&self) -> String {
        let mut w = crate::json::Writer::with_capacity(96);
        w.raw(r#"{"agent_type":"#)
            .string(self.agent_type.id)
            .raw(r#","voice":"#)
            .string(&self.voice)
            .raw(r#","assistant_name":"#)
            .string(&self.assistant_name)
            .raw("}");
        w.finish()
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
    let given = required_text(map, "voice", 64)?;
    let voice = given.to_lowercase();
    if catalog::resolve_voice(&voice).is_none() {
        // The value as sent, not as compared: the caller must recognise it.
        return Err(Error::invalid_field(format!(
            "voice {} is not a voice (expected one of {})",
            quote(&given),
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
/// Answers the JSON text the session keeps: `{"method":"website",
/// "crawl_url":…}`, `{"method":"documents","documents":[…]}`, or
/// `{"method":…}`; the usual ones are written out rather than built as a map
/// and serialised.
pub fn kb(map: &Object, allow: &AllowList) -> Result<String> {
    let typed = required_text(map, "method", 32)?;
    // The library's own name from here on: it goes into JSON unescaped.
    let Some(method) = KB_METHODS.iter().copied().find(|m| *m == typed) else {
        return Err(Error::invalid_field(format!(
            "method {} is not a knowledge-base method (expected one of {})",
            quote(&typed),
            KB_METHODS.join(", ")
        )));
    };
    match method {
        "website" => {
            let crawl_url = optional_text(map, "crawl_url", 2048)?.ok_or_else(|| {
                Error::invalid_field("crawl_url is required when method is 'website'")
            })?;
            let url = check_url(&crawl_url, allow).map_err(|why| {
                Error::invalid_field(format!(
                    "crawl_url {} {why} (expected a public http or https address such as 'https://mon-site.fr')",
                    quote(&crawl_url)
                ))
            })?;
            let mut w = crate::json::Writer::with_capacity(64 + url.as_str().len());
            w.raw(r#"{"method":"website","crawl_url":"#)
                .string(url.as_str())
                .raw("}");
            Ok(w.finish())
        }
        "documents" => Ok(crate::json::to_text(&json!({
            "method": method,
            "documents": documents(map.get("documents"))?,
        }))),
        // One of KB_METHODS: plain ASCII, nothing to escape.
        _ => Ok(format!(r#"{{"method":"{method}"}}"#)),
    }
}

/// The `documents` method: 1 to 20 documents given as text or Markdown,
/// stored as knowledge at completion (no crawl). A title has 1 to 200
/// characters once trimmed; a content at most 200,000 as sent, not only
/// white space.
pub const MAX_DOCUMENTS: usize = 20;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_CONTENT_CHARS: usize = 200_000;

/// The largest body of a kb step with valid documents, for a host's body
/// limit: the most documents, each with the longest title and content,
/// every character written as a JSON `\u` escape of 6 bytes (what Python's
/// `json.dumps` writes outside ASCII by default; raw UTF-8 takes at most
/// 4), plus 64 KiB for the JSON around them. About 23 MiB. Only padding
/// around titles, or characters past the Basic Multilingual Plane each
/// escaped as a surrogate pair (12 bytes), go past it.
pub const MAX_DOCUMENTS_BODY_BYTES: usize =
    MAX_DOCUMENTS * (MAX_TITLE_CHARS + MAX_CONTENT_CHARS) * 6 + 64 * 1024;

/// `documents`, validated: `[{"title","content"}]`, titles trimmed.
pub fn documents(field: Option<&Value>) -> Result<Value> {
    let items = match field {
        None | Some(Value::Null) => {
            return Err(Error::invalid_field(
                "documents is required when method is 'documents'",
            ))
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Error::invalid_field(
                "documents must be an array of {\"title\",\"content\"} objects",
            ))
        }
    };
    if items.is_empty() || items.len() > MAX_DOCUMENTS {
        return Err(Error::invalid_field(format!(
            "documents holds {} items; 1 to {MAX_DOCUMENTS} are allowed",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(Error::invalid_field(format!(
                "documents[{i}] must be an object with title and content"
            )));
        };
        let title = document_text(
            map.get("title"),
            &format!("documents[{i}].title"),
            MAX_TITLE_CHARS,
            false,
        )?;
        if title.contains(['\n', '\r', '\t', '\u{2028}', '\u{2029}']) {
            return Err(Error::invalid_field(format!(
                "documents[{i}].title must fit on one line"
            )));
        }
        // A content's length counts as sent, white space included: the
        // limit is on what a client uploads.
        let field = format!("documents[{i}].content");
        if let Some(Value::String(raw)) = map.get("content") {
            let chars = raw.chars().count();
            if chars > MAX_CONTENT_CHARS {
                return Err(Error::invalid_field(format!(
                    "{field} is {chars} characters long; at most {MAX_CONTENT_CHARS} are allowed"
                )));
            }
        }
        let content = document_text(map.get("content"), &field, MAX_CONTENT_CHARS, true)?;
        out.push(json!({ "title": title, "content": content }));
    }
    Ok(Value::Array(out))
}

/// Form feeds, vertical tabs and NEL (U+0085): in a content, the line
/// breaks they stand for. Text copied from a PDF holds a form feed at each
/// page break (`pdftotext` writes them too); the tenant pasting it cannot
/// see them, and was refused for a control character.
const PAGE_BREAKS: [char; 3] = ['\u{c}', '\u{b}', '\u{85}'];

/// Whether `c` is a control character that is no text here: line breaks
/// and tabs are (and, with `lines`, the [`PAGE_BREAKS`] a content turns
/// into line breaks).
fn stray_control(c: char, lines: bool) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t') && !(lines && PAGE_BREAKS.contains(&c))
}

/// The refusal of `field` for its control character `c`, at place `at`
/// (from 1) of `total` characters, named by its code point: it cannot be
/// seen. `hint`: the rule said after it.
fn control_refusal(field: &str, c: char, at: usize, total: usize, hint: bool) -> Error {
    Error::invalid_field(format!(
        "{field} contains a control character (U+{:04X}, character {at} of {total}){}",
        u32::from(c),
        if hint {
            "; line breaks and tabs are the only ones allowed"
        } else {
            ""
        }
    ))
}

/// A trimmed text field of 1 to `max` characters; line breaks and tabs are
/// text (`lines`: the content's, whose [`PAGE_BREAKS`] are saved as line
/// breaks; a title's are refused after), other control characters are
/// not. The first one is named by its code point and its place in the text
/// as sent: it cannot be seen.
fn document_text(value: Option<&Value>, field: &str, max: usize, lines: bool) -> Result<String> {
    let (raw, text) = match value {
        None | Some(Value::Null) => {
            return Err(Error::invalid_field(format!("{field} is required")))
        }
        Some(Value::String(s)) => (s.as_str(), crate::error::trim(s)),
        Some(_) => return Err(Error::invalid_field(format!("{field} must be a string"))),
    };
    if text.is_empty() {
        return Err(Error::invalid_field(format!("{field} must not be empty")));
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(Error::invalid_field(format!(
            "{field} is {chars} characters long; at most {max} are allowed"
        )));
    }
    if let Some((at, c)) = text
        .chars()
        .enumerate()
        .find(|&(_, c)| stray_control(c, lines))
    {
        // `text` is a slice of `raw`: what trimming took off its start
        // counts, as the sender's text box counts it.
        let lead = raw[..text.as_ptr() as usize - raw.as_ptr() as usize]
            .chars()
            .count();
        let total = raw.chars().count();
        return Err(control_refusal(field, c, lead + at + 1, total, lines));
    }
    Ok(if lines {
        text.replace(PAGE_BREAKS, "\n")
    } else {
        text.to_string()
    })
}

/// Refuses a control character in a worker's text `text` (a crawled
/// page's title or Markdown), line breaks and tabs apart: SQLite's own
/// functions read a text only to its first NUL, so `a\u0000b` was stored
/// as a document that its search showed whole and its columns cut to `a`.
/// The first one is named by its code point and its place, as the kb
/// step's documents name theirs.
pub fn no_control_character(field: &str, text: &str) -> Result<()> {
    match text
        .chars()
        .enumerate()
        .find(|&(_, c)| stray_control(c, false))
    {
        Some((at, c)) => Err(control_refusal(
            field,
            c,
            at + 1,
            text.chars().count(),
            true,
        )),
        None => Ok(()),
    }
}

/// `text` as [`no_control_character`] takes it, for a crawler: its
/// [`PAGE_BREAKS`] (a text file's pages) become line breaks, and its other
/// control characters (a stray BEL, a NUL) go.
pub fn without_control_characters(text: String) -> String {
    if !text.chars().any(|c| stray_control(c, false)) {
        return text;
    }
    text.chars()
        .filter_map(|c| match c {
            c if PAGE_BREAKS.contains(&c) => Some('\n'),
            c if stray_control(c, false) => None,
            c => Some(c),
        })
        .collect()
}

/// The booking providers the appointments step knows.
pub const BOOKING_PROVIDERS: [&str; 1] = ["cal_com"];

/// The appointments step: optional booking settings. Saving the step at all
/// says the tenant takes appointments; each field given replaces the one
/// saved before, and a field left out keeps it. `"enabled": false` says the
/// opposite, for a tenant who changed their mind: no appointments, the
/// booking settings cleared (a timezone may still be given: it is the
/// tenant's).
#[derive(Debug, PartialEq, Eq)]
pub struct Appointments {
    /// False for `"enabled": false`; true when left out, `null` or `true`.
    pub enabled: bool,
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
        Some(Value::Number(n)) if positive_integer(n).is_some() => {
            positive_integer(n).map(|id| id.to_string())
        }
        // In its one decimal form, as the number would be: "0042" is 42.
        Some(Value::String(s)) if is_positive_integer(crate::error::trim(s)) => {
            Some(crate::error::trim(s).trim_start_matches('0').to_string())
        }
        Some(other) => {
            return Err(Error::invalid_field(format!(
                "event_type_id {} is not a positive integer (expected a Cal.com event type id such as 123456)",
                quote_json(other)
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
    let enabled = match map.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(Error::invalid_field(format!(
                "enabled {} is not a boolean (expected true or false)",
                quote_json(other)
            )))
        }
    };
    if !enabled {
        let settings = [
            ("provider", provider.is_some()),
            ("event_type_id", event_type_id.is_some()),
        ];
        if let Some((field, _)) = settings.iter().find(|(_, given)| *given) {
            return Err(Error::invalid_field(format!(
                "{field} must be left out when enabled is false (no appointments, so no booking settings)"
            )));
        }
    }
    Ok(Appointments {
        enabled,
        provider,
        event_type_id,
        timezone,
    })
}

/// A JSON number whose value is a positive integer that fits in 64 bits,
/// whatever its notation: `5`, `5.0` and `5e0` are one value in JSON (and in
/// the OpenAPI document's `"type": "integer"`).
fn positive_integer(n: &serde_json::Number) -> Option<u64> {
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    let value = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f < TWO_POW_64)
            .map(|f| f as u64)
    })?;
    (value > 0).then_some(value)
}

fn is_positive_integer(s: &str) -> bool {
    // Leading zeros are not the number's: "0…042" is 42.
    let significant = s.trim_start_matches('0');
    !significant.is_empty() && significant.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The payloads of the kb functions (`onboarding_kb_search` and the worker
/// functions), read field by field: each accessor names its field in the
/// error, as every `invalid_field` detail must.
pub struct Fields(Object);

impl Fields {
    pub fn parse(payload: Option<&str>) -> Result<Fields> {
        payload_object(payload).map(Fields)
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn optional_str(&self, field: &str, max_chars: usize) -> Result<Option<&str>> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let text = value
            .as_str()
            .ok_or_else(|| Error::invalid_field(format!("{field} must be a string")))?;
        if text.chars().count() > max_chars {
            return Err(Error::invalid_field(format!(
                "{field} is longer than {max_chars} characters"
            )));
        }
        Ok(Some(text))
    }

    pub fn str(&self, field: &str, max_chars: usize) -> Result<&str> {
        match self.optional_str(field, max_chars)? {
            Some(t) if !crate::error::trim(t).is_empty() => Ok(t),
            Some(_) => Err(Error::invalid_field(format!("{field} must not be empty"))),
            None => Err(Error::invalid_field(format!("{field} is required"))),
        }
    }

    /// An integer in `range`, or `None` when absent.
    pub fn optional_int(
        &self,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>> {
        match self.get(field) {
            Some(_) => self.int(field, range, None).map(Some),
            None => Ok(None),
        }
    }

    /// An integer in `range`, or `default` when absent.
    pub fn int(
        &self,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
        default: Option<i64>,
    ) -> Result<i64> {
        let Some(value) = self.get(field) else {
            return default.ok_or_else(|| Error::invalid_field(format!("{field} is required")));
        };
        // `5.0` and `5e0` are 5 in JSON, as for `event_type_id`
        // ([`positive_integer`]); under 9e15, within 2^53, where a float
        // is an exact integer.
        let n = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        });
        match n {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(Error::invalid_field(format!(
                "{field} {} is not an integer from {} to {}",
                quote_json(value),
                range.start(),
                range.end()
            ))),
        }
    }

    /// A machine-readable code: lowercase letters, digits and '_'.
    pub fn code(&self, field: &str) -> Result<Option<&str>> {
        let Some(code) = self.optional_str(field, 40)? else {
            return Ok(None);
        };
        if code.is_empty()
            || !code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::invalid_field(format!(
                "{field} {} is not a code (lowercase letters, digits and '_')",
                quote(code)
            )));
        }
        Ok(Some(code))
    }

    /// An array of strings (absent: empty).
    pub fn strings(&self, field: &str) -> Result<Vec<&str>> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        Error::invalid_field(format!("{field} must be an array of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(Error::invalid_field(format!(
                "{field} must be an array of strings"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every JSON type but an object is refused by name, the top level
    /// read by its own visitor; an object keeps its members, nested ones
    /// with their own repeated-key rule.
    #[test]
    fn a_payload_is_an_object_and_any_other_value_is_named() {
        for (text, got) in [
            ("null", "null"),
            ("true", "a boolean"),
            ("-3", "a number"),
            ("7", "a number"),
            ("2.5", "a number"),
            (r#""482913""#, "a string"),
            ("[{}]", "an array"),
        ] {
            assert_eq!(
                payload_object(Some(text)),
                Err(Error::invalid_json(format!(
                    "payload must be a JSON object, got {got}"
                ))),
                "{text}"
            );
        }
        let map = payload_object(Some(r#"{"b":[1],"a":{"c":null}}"#)).unwrap();
        assert_eq!(map.get("a"), Some(&json!({"c": null})));
        assert_eq!(map.get("b"), Some(&json!([1])));
        assert_eq!(map.len(), 2);
        assert_eq!(payload_object(None), Ok(Object::new()));
    }

    #[test]
    fn values_are_counted_outside_strings_only() {
        assert!(!more_values_than(r#"{"a":[1,2]}"#, 3));
        assert!(more_values_than(r#"{"a":[1,2,3]}"#, 3));
        // Commas, brackets and escaped quotes inside strings are text.
        assert!(!more_values_than(r#"{"a":"[1,{2},3,\",4]"}"#, 1));
        // An escaped backslash ends before the quote that closes the string.
        assert!(more_values_than(r#"{"a":"\\",b:[1]}"#, 2));
    }

    /// A crawled text as the knowledge base takes it: its page breaks
    /// become line breaks, its other control characters go, line breaks
    /// and tabs stay; a text without any comes back as it was.
    #[test]
    fn a_crawled_text_keeps_its_page_breaks_as_line_breaks_and_drops_other_controls() {
        assert_eq!(
            without_control_characters(
                "Page 1\u{c}Page 2\u{7}\r\n\tfin\u{0}\u{b}\u{85}x\u{1b}".to_string()
            ),
            "Page 1\nPage 2\r\n\tfin\n\nx"
        );
        assert_eq!(
            without_control_characters("Horaires\r\n\tlundi : 9 h".to_string()),
            "Horaires\r\n\tlundi : 9 h"
        );
    }

    #[test]
    fn the_warm_up_number_parses_through_the_metadata() {
        assert_eq!(warm_up(), Ok("+33612345678".to_string()));
    }

    /// Numbers of every region, one after another, and then again: each
    /// pattern compiles once and stays. The cache the crate makes keeps 100,
    /// and a pass over every region would have evicted the French patterns,
    /// the first used, so that the next French number compiled them again.
    /// The cache evicts only when full: never full, it never evicted.
    #[test]
    fn numbers_of_every_region_leave_each_pattern_compiled_once() {
        use phonenumber::metadata::DATABASE;
        warm_up().unwrap();
        let cache = DATABASE.cache();
        let cached = || -> std::collections::BTreeSet<String> {
            let cache = cache.lock().unwrap();
            cache.iter().map(|(pattern, _)| pattern.clone()).collect()
        };
        let french = cached();
        assert_eq!(phone_metadata().count(), 254);
        assert_eq!(phone_patterns(), 2_090);
        assert_eq!(cache.lock().unwrap().capacity(), 2_090);
        let mut numbers = Vec::new();
        for region in phone_metadata() {
            let d = region.descriptors();
            for desc in [Some(d.general()), d.fixed_line(), d.mobile(), d.toll_free()] {
                if let Some(example) = desc.and_then(|d| d.example()) {
                    numbers.push(format!("+{}{example}", region.country_code()));
                }
            }
        }
        assert_eq!(numbers.len(), 677);
        let valid = |numbers: &[String]| numbers.iter().filter(|n| phone_e164(n).is_ok()).count();
        assert_eq!(valid(&numbers), 661);
        let after_one_pass = cached();
        assert!(after_one_pass.len() > 100, "{}", after_one_pass.len());
        assert!(french.is_subset(&after_one_pass));
        assert_eq!(valid(&numbers), 661);
        let cache = cache.lock().unwrap();
        assert!(
            cache.len() < cache.capacity(),
            "{} of {}",
            cache.len(),
            cache.capacity()
        );
    }

    /// The validity written here is the crate's, for the example number of
    /// each description of every region, and for each one digit longer, one
    /// digit shorter, and with its first digit changed to 9.
    #[test]
    fn phone_validity_is_the_phonenumber_crates() {
        let mut numbers = Vec::new();
        for region in phone_metadata() {
            for example in descriptors(region).filter_map(|d| d.example()) {
                let code = region.country_code();
                numbers.push(format!("+{code}{example}"));
                numbers.push(format!("+{code}{example}1"));
                numbers.push(format!("+{code}{}", &example[..example.len() - 1]));
                numbers.push(format!("+{code}9{}", &example[1..]));
            }
        }
        let (mut parsed, mut valid) = (0, 0);
        for text in &numbers {
            let Ok(number) = phonenumber::parse(None, text) else {
                continue;
            };
            parsed += 1;
            let code = number.country().code();
            let ours = phone_is_valid(code, &number.national().to_string());
            assert_eq!(ours, phonenumber::is_valid(&number), "{text}");
            valid += usize::from(ours);
        }
        assert_eq!((numbers.len(), parsed, valid), (4_576, 4_576, 1_863));
    }

    /// The French numbers read by their digits are read as the parser
    /// reads them: every three-digit prefix of the national plan, in nine
    /// forms people type, national and international; and the texts that
    /// look alike but are not (a digit too many or too few, `00`, a `+`
    /// apart, the overseas prefixes) are left to the parser.
    #[test]
    fn french_numbers_read_by_their_digits_are_read_as_the_parser_reads_them() {
        let (mut read, mut left) = (0, 0);
        for prefix in 100..1_000 {
            // Nine digits, the last six varying with the prefix.
            let national = format!("{prefix}{:06}", (prefix * 7_919) % 1_000_000);
            let n = national.as_bytes();
            let pairs = |first: &str| {
                let mut text = first.to_string();
                for pair in n[1..].chunks(2) {
                    text.push(' ');
                    text.push_str(std::str::from_utf8(pair).unwrap());
                }
                text
            };
            let forms = [
                format!("0{national}"),
                pairs(&format!("0{}", n[0] as char)),
                pairs(&format!("0{}", n[0] as char)).replace(' ', "."),
                pairs(&format!("0{}", n[0] as char)).replace(' ', "-"),
                format!(" 0{national}  "),
                format!("+33{national}"),
                pairs(&format!("+33 {}", n[0] as char)),
                format!("+33-{national}"),
                format!("0{} {}", &national[..4], &national[4..]),
            ];
            for text in &forms {
                let expected = format!("+33{national}");
                match french_by_its_digits(text) {
                    Some(e164) => {
                        assert_eq!(e164, expected, "{text}");
                        assert_eq!(parsed_e164(text), Some(e164), "{text}");
                        read += 1;
                    }
                    None => left += 1,
                }
            }
            let unlike = [
                format!("0{national}1"),
                format!("0{}", &national[1..]),
                format!("0033{national}"),
                format!("+ 33{national}"),
                format!("+330{national}"),
                format!("(0){national}"),
                format!("+34{national}"),
            ];
            for text in &unlike {
                assert_eq!(french_by_its_digits(text), None, "{text}");
            }
        }
        // The overseas prefixes and 0700 (15 of the 900, in nine forms) are
        // left to the parser, and so is `+33-…` (a dash and no space); no
        // other form of the plan's numbers is.
        assert_eq!((read, left), (885 * 8, 15 * 9 + 885));
        assert_eq!(phone_e164("0692 12 34 56"), Ok("+262692123456".to_string()));
        assert_eq!(french_by_its_digits("0692 12 34 56"), None);
    }

    /// Whether a number is taken, and how it is written, is the parser's
    /// answer for texts of French numbers with separators anywhere: spaces,
    /// dots, dashes, doubled, at the ends, after the `+`, inside the `33`
    /// (a `+` number without a space is an RFC 3966 one to the parser, whose
    /// country code runs to the first dot or dash).
    #[test]
    fn french_numbers_with_separators_anywhere_are_answered_as_the_parser_answers() {
        let mut texts: Vec<String> = [
            "+336.12.34.56.78",
            "+336-12-34-56-78",
            "+3.3.6.12.34.56.78",
            "+3361.23.45.67.8",
            "+33612.34.56.78",
            "+3-3-612345678",
            "+33612345678.",
            "+33612345678-",
            "+33-6-12-34-56-78",
            "+33.612345678",
            "+33 6.12.34.56.78",
            "06.12.34.56.78.",
            "-06-12-34-56-78",
        ]
        .map(String::from)
        .to_vec();
        let separators = ["", "", "", " ", ".", "-", "  ", ".-", " -"];
        // A fixed sequence (a linear congruential generator): the same
        // texts on every run.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize % bound
        };
        for i in 0..3_000 {
            let national = format!("{}{:08}", 1 + next(9), next(100_000_000));
            let number = match i % 3 {
                0 => format!("+33{national}"),
                _ => format!("0{national}"),
            };
            let mut text = String::new();
            for c in number.chars() {
                text.push_str(separators[next(separators.len())]);
                text.push(c);
            }
            text.push_str(separators[next(separators.len())]);
            texts.push(text);
        }
        let mut read = 0;
        for text in &texts {
            let ours = phone_e164(text).ok();
            assert_eq!(ours, parsed_e164(text), "{text:?}");
            read += usize::from(french_by_its_digits(text).is_some());
        }
        // Many are read without the parser; the others have a `+`, a dot
        // or a dash and no space, or an overseas prefix.
        assert_eq!((read, texts.len()), (1_307, 3_013));
    }

    /// The E.164 text written by hand is the one the crate's formatter
    /// writes, for numbers of several countries and forms.
    #[test]
    fn e164_is_written_as_the_phonenumber_crate_formats_it() {
        let cases = [
            ("06 12 34 56 78", "+33612345678"),
            ("+33 1 23 45 67 89", "+33123456789"),
            ("+39 335 123 4567", "+393351234567"),
            ("+44 20 7946 0958", "+442079460958"),
            ("+49 30 901820", "+4930901820"),
            ("+81 3-1234-5678", "+81312345678"),
            ("+262 692 12 34 56", "+262692123456"),
        ];
        for (typed, e164) in cases {
            assert_eq!(phone_e164(typed).as_deref(), Ok(e164), "{typed}");
            let number = phonenumber::parse(Some(phonenumber::country::Id::FR), typed).unwrap();
            let crate_e164 = number.format().mode(phonenumber::Mode::E164).to_string();
            assert_eq!(crate_e164, e164, "{typed}");
        }
    }

    #[test]
    fn a_user_agent_header_is_cleaned_and_cut_never_refused() {
        assert_eq!(
            user_agent_header(" curl/8.0\t "),
            Some("curl/8.0".to_string())
        );
        assert_eq!(
            user_agent_header("\u{7} Mozilla/5.0\r\n(X11)\u{0} "),
            Some("Mozilla/5.0(X11)".to_string())
        );
        assert_eq!(user_agent_header(&"é".repeat(600)), Some("é".repeat(512)));
        // Cut at 512, then the trailing space the cut left is dropped.
        let spaced = format!("{} b", "a".repeat(511));
        assert_eq!(user_agent_header(&spaced), Some("a".repeat(511)));
        assert_eq!(user_agent_header(" \t\r\n "), None);
        assert_eq!(user_agent_header(""), None);
    }
}
