//! The public-address rule and URL identity, shared by the kb step's
//! validation and the crawler, so both refuse exactly the same addresses.
//!
//! The crawler fetches from inside the platform: a URL that reaches
//! loopback, a private network or a cloud metadata address would turn it
//! into a proxy into places a customer must never see. Only public unicast
//! addresses on ports 80 and 443 are crawled, except the operator's explicit
//! allow-list (`--crawl-allow-host HOST:PORT`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// The environment variable of the allow-list: the server's
/// `--crawl-allow-host` reads it, and the loadable extension as it loads
/// (its host has no flags to give it).
pub const ALLOW_HOST_VARIABLE: &str = "ONBOARDING_CRAWL_ALLOW_HOST";

/// Hosts an operator allowed despite the rule (tests, intranets): exact
/// `host:port` pairs, hosts lowercase, IPv6 in brackets as URLs write them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    pairs: Vec<(String, u16)>,
}

impl AllowList {
    /// Parses `HOST:PORT` entries such as `127.0.0.1:8080` or `[::1]:8443`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        let mut pairs = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref().trim();
            let url = Url::parse(&format!("http://{entry}/"))
                .ok()
                .filter(|u| u.path() == "/" && u.username().is_empty() && u.query().is_none());
            let host = url.as_ref().and_then(|u| u.host_str().map(str::to_string));
            let has_port = entry
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            match (host, url.and_then(|u| u.port_or_known_default())) {
                (Some(host), Some(port)) if has_port => pairs.push((trim_dot(&host), port)),
                _ => {
                    return Err(format!(
                    "crawl allow-list entry '{entry}' is not HOST:PORT (such as '127.0.0.1:8080')"
                ))
                }
            }
        }
        Ok(AllowList { pairs })
    }

    /// Parses the value of `ONBOARDING_CRAWL_ALLOW_HOST` (the server's
    /// `--crawl-allow-host`, which a loaded extension reads too): entries
    /// separated by commas, each `HOST:PORT`; an empty one (a trailing
    /// comma, an empty value) is refused, as the server's flag refuses it.
    pub fn parse_variable(value: &str) -> Result<AllowList, String> {
        AllowList::parse(&value.split(',').collect::<Vec<_>>())
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether `url`'s host and port are on the list.
    pub fn allows(&self, url: &Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = trim_dot(host);
        self.pairs.iter().any(|(h, p)| *h == host && *p == port)
    }
}

/// What the library needs to know of its host's knowledge-base policy,
/// given to `register_with_settings` or `register_cached_with_settings`.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `host:port` pairs exempt from the public-address rule (the server's
    /// `--crawl-allow-host`); the kb step's validation applies it.
    pub crawl_allow_hosts: AllowList,
}

fn trim_dot(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether an address is public unicast: not loopback, private, link-local,
/// shared (100.64/10), multicast, unspecified, reserved, documentation, nor
/// an IPv4-mapped, NAT64 or 6to4 form of one of those.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    let within = |base: u32, bits: u32| n >> (32 - bits) == base >> (32 - bits);
    // (network, prefix length) of every non-public IPv4 range (RFC 6890).
    const NOT_PUBLIC: [(u32, u32); 15] = [
        (0x0000_0000, 8),  // "this network", 0.0.0.0
        (0x0A00_0000, 8),  // private 10/8
        (0x6440_0000, 10), // shared address space (carrier-grade NAT)
        (0x7F00_0000, 8),  // loopback
        (0xA9FE_0000, 16), // link-local, cloud metadata 169.254.169.254
        (0xAC10_0000, 12), // private 172.16/12
        (0xC000_0000, 24), // IETF protocol assignments
        (0xC000_0200, 24), // TEST-NET-1
        (0xC058_6300, 24), // 6to4 relay anycast
        (0xC0A8_0000, 16), // private 192.168/16
        (0xC612_0000, 15), // benchmarking
        (0xC633_6400, 24), // TEST-NET-2
        (0xCB00_7100, 24), // TEST-NET-3
        (0xE000_0000, 4),  // multicast
        (0xF000_0000, 4),  // reserved, broadcast
    ];
    !NOT_PUBLIC.iter().any(|&(base, bits)| within(base, bits))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return is_public_v4(mapped); // ::ffff:a.b.c.d
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(v4(s[6], s[7])); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return is_public_v4(v4(s[1], s[2])); // 6to4 2002::/16
    }
    // Global unicast is 2000::/3: this leaves out ::, ::1, the deprecated
    // IPv4-compatible ::/96, unique-local fc00::/7, link-local fe80::/10,
    // multicast ff00::/8, local-use NAT64 64:ff9b:1::/48 and discard 100::/64.
    let global = s[0] & 0xe000 == 0x2000;
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000);
    // 2001::/23: IETF protocol assignments (Teredo, ORCHIDv2, benchmarking;
    // the few blocks of it IANA lists as globally reachable are refused
    // too: no business site is on them).
    let protocol = s[0] == 0x2001 && s[1] < 0x0200;
    global && !documentation && !protocol
}

/// Why a URL is refused, as the end of an error sentence.
pub type Refusal = &'static str;

/// Checks `text` as a crawl address and returns it normalised: http(s),
/// no credentials, a public host on port 80 or 443 (or an allowed pair).
pub fn check_url(text: &str, allow: &AllowList) -> Result<Url, Refusal> {
    // Parsers disagree on a backslash: WHATWG reads it as a slash, curl and
    // others as part of the user info ('https://evil.example\@127.0.0.1/').
    // An address two parsers read differently is refused outright.
    if text.contains('\\') {
        return Err("contains a backslash");
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains a space or a control character");
    }
    let url = Url::parse(text).map_err(|_| "is not a URL")?;
    // A host written with escapes (`%61.fr`) is read as its decoding by
    // some parsers and refused by others.
    let authority = text.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.contains('%') {
        return Err("has a percent-encoded host");
    }
    if let Some(Host::Domain(name)) = url.host() {
        if !allow.allows(&url) && !is_host_name(name) {
            return Err(
                "is not on a host name (labels of letters, digits and inner hyphens, \
                 63 characters at most each, the last a top-level domain of letters)",
            );
        }
    }
    check_parsed(&url, allow)?;
    Ok(normalize(&url))
}

/// A DNS host name (RFC 1123): labels of ASCII letters, digits and inner
/// hyphens, 1 to 63 characters each; a final dot allowed. The parser takes
/// `a_b.fr`, `-a.fr` and labels of any length, which no resolver answers.
/// The last label is a top-level domain: two letters or more, or an
/// internationalised one (`xn--p1ai`, the parser's form of `рф`); no
/// public name ends in `.f`, `.fr0` or `.1fr`, and the document's pattern
/// says the same. (A name past DNS's 253 characters is left to fail as a
/// lookup.)
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let top = name.rsplit('.').next().unwrap_or("");
    let top_level = (top.len() >= 2 && top.bytes().all(|b| b.is_ascii_alphabetic()))
        || top.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--"));
    !name.is_empty()
        && top_level
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The rule on an already parsed URL (the crawler's redirect targets).
pub fn check_parsed(url: &Url, allow: &AllowList) -> Result<(), Refusal> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("is not an http or https URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    if url.host().is_none() {
        return Err("has no host");
    }
    if allow.allows(url) {
        return Ok(());
    }
    let public = match url.host() {
        Some(Host::Domain(d)) => is_public_name(d),
        Some(Host::Ipv4(ip)) => is_public_v4(ip),
        Some(Host::Ipv6(ip)) => is_public_v6(ip),
        None => false,
    };
    if !public {
        return Err("is not a public address");
    }
    if !matches!(url.port_or_known_default(), Some(80 | 443)) {
        return Err("uses a port other than 80 and 443");
    }
    Ok(())
}

/// Names that can only mean this machine or a local network, or that no
/// public resolver ever answers: the special-use names of RFC 6761
/// (`.invalid`, `.example`), `.onion` (RFC 7686, Tor only) and `.alt`
/// (RFC 9476). Whether a public-looking name resolves to a public address
/// is the crawler's check, at connection time. `.test` (RFC 6761) stays
/// accepted: a resolver of a test bench answers it, which is how that
/// connection-time check is tested; on the internet it ends `dns`.
fn is_public_name(name: &str) -> bool {
    let name = trim_dot(name);
    const LOCAL_SUFFIXES: [&str; 10] = [
        ".localhost",
        ".local",
        ".localdomain",
        ".internal",
        ".home.arpa",
        ".lan",
        ".invalid",
        ".example",
        ".onion",
        ".alt",
    ];
    name.contains('.')
        && !LOCAL_SUFFIXES.iter().any(|s| name.ends_with(s))
        && !name.ends_with(".in-addr.arpa")
        && !name.ends_with(".ip6.arpa")
}

/// Tracking parameters that never change a page, in any case
/// (`UTM_Source` is written by some mailing tools).
fn is_tracking(key: &str) -> bool {
    key.get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("utm_"))
        || key.eq_ignore_ascii_case("gclid")
        || key.eq_ignore_ascii_case("fbclid")
}

/// One identity per page: lowercase host without a trailing dot, no
/// fragment, no tracking parameters, the query sorted, and no trailing
/// slash except for the root.
pub fn normalize(url: &Url) -> Url {
    let mut out = url.clone();
    out.set_fragment(None);
    if let Some(host) = url.host_str() {
        if host.ends_with('.') {
            // Cannot fail: the host only loses its final dot.
            let _ = out.set_host(Some(host.trim_end_matches('.')));
        }
    }
    // The query's parameters sorted, each decoded and encoded again as a
    // form writes it (`a b` and `a%20b` are `a+b`), save one that is not
    // UTF-8 once decoded (`ville=Orl%E9ans`, Latin-1): kept as written, its
    // escapes spelled one way, where it came back as U+FFFD (another page's
    // address, and two pages one).
    let mut pairs: Vec<(Part, Part)> = url
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            (Part::of(key), Part::of(value))
        })
        .filter(|(key, _)| !is_tracking(&key.text))
        .collect();
    pairs.sort_by(|(k1, v1), (k2, v2)| (&k1.text, &v1.text).cmp(&(&k2.text, &v2.text)));
    if pairs.is_empty() {
        out.set_query(None);
    } else {
        let pieces: Vec<String> = pairs
            .into_iter()
            .map(|(key, value)| [key.written, value.written].join("="))
            .collect();
        out.set_query(Some(&pieces.join("&")));
    }
    let path = unreserved_decoded(out.path());
    if path.len() > 1 && path.ends_with('/') {
        out.set_path(path.trim_end_matches('/'));
    } else if path != out.path() {
        out.set_path(&path);
    }
    out
}

/// A query parameter's name or value: its text, to sort and compare by,
/// and how the normalised address writes it.
struct Part {
    text: String,
    written: String,
}

impl Part {
    fn of(raw: &str) -> Part {
        let spaced = raw.replace('+', " ");
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
        match String::from_utf8(bytes) {
            Ok(text) => Part {
                written: url::form_urlencoded::byte_serialize(text.as_bytes()).collect(),
                text,
            },
            Err(e) => Part {
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                written: unreserved_decoded(raw),
            },
        }
    }
}

/// `path` with the percent-escapes of unreserved characters decoded
/// (`%7Euser` is `~user`, `%41` is `A`) and the others' hex digits in
/// capitals, as RFC 3986 (6.2.2) says two spellings of one URL compare.
fn unreserved_decoded(path: &str) -> String {
    if !path.contains('%') {
        return path.to_string();
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits (`from_str_radix` alone takes `+a`).
        let escape = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok().map(|b| (b, hex)));
        match escape {
            Some((b, _)) if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                out.push(char::from(b));
                i += 3;
            }
            Some((_, hex)) => {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
                i += 3;
            }
            None => {
                // A char boundary: '%' and the hex digits are ASCII.
                let c = path[i..].chars().next().unwrap_or('%');
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// The site a URL is on: its host without `www.` (the bare host is the
/// same site), and its port when not a default one (http and https alike).
pub fn site_of(url: &Url) -> (String, Option<u16>) {
    let host = trim_dot(url.host_str().unwrap_or_default());
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    let port = url.port().filter(|p| *p != 80 && *p != 443);
    (host, port)
}

/// Whether two URLs are on one site (see [`site_of`]).
pub fn same_site(a: &Url, b: &Url) -> bool {
    site_of(a) == site_of(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> Option<Refusal> {
        check_url(text, &AllowList::default()).err()
    }

    #[test]
    fn every_refused_form_of_the_contract_is_refused() {
        let refused = [
            ("http://[::ffff:127.0.0.1]/", "is not a public address"),
            ("http://LOCALHOST./", "is not a public address"),
            ("http://[64:ff9b::7f00:1]/", "is not a public address"),
            ("http://100.64.0.1/", "is not a public address"),
            ("https://evil.example\\@127.0.0.1/", "contains a backslash"),
            (
                "http://169.254.169.254/latest/meta-data",
                "is not a public address",
            ),
            ("http://[2002:7f00:1::]/", "is not a public address"),
            ("http://%61.fr/", "has a percent-encoded host"),
            ("http://a%2efr/", "has a percent-encoded host"),
            ("http://[fd00::1]/", "is not a public address"),
            ("http://[fe80::1]/", "is not a public address"),
            ("http://0.0.0.0/", "is not a public address"),
            ("http://2130706433/", "is not a public address"),
            ("http://0x7f.1/", "is not a public address"),
            ("http://192.0.2.10/", "is not a public address"),
            ("http://224.0.0.1/", "is not a public address"),
            ("http://[2001:db8::1]/", "is not a public address"),
            // 3fff::/20, documentation too (RFC 9637), to 3fff:fff:…
            ("http://[3fff::1]/", "is not a public address"),
            ("http://[3fff:fff:ffff::1]/", "is not a public address"),
            // 2001::/23, IETF protocol assignments: Teredo, to 2001:1ff:…
            ("http://[2001:0:4136:e378::1]/", "is not a public address"),
            ("http://[2001:1ff:ffff::1]/", "is not a public address"),
            ("http://intranet/", "is not a public address"),
            ("http://printer.local/", "is not a public address"),
            ("https://example.invalid/", "is not a public address"),
            ("https://www.site.example./", "is not a public address"),
            ("http://abcdefghij234567.onion/", "is not a public address"),
            ("https://site.alt/", "is not a public address"),
            ("http://user:pw@example.fr/", "must not carry credentials"),
            ("http://user@example.fr/", "must not carry credentials"),
            ("http://:pw@example.fr/", "must not carry credentials"),
            (
                "https://mon site.fr/",
                "contains a space or a control character",
            ),
            (
                "https://mon-site.fr/\u{7f}",
                "contains a space or a control character",
            ),
            (
                "https://example.fr:8443/",
                "uses a port other than 80 and 443",
            ),
            ("ftp://example.fr/", "is not an http or https URL"),
            ("mon-site", "is not a URL"),
        ];
        for (text, why) in refused {
            assert_eq!(refusal(text), Some(why), "{text}");
        }
    }

    #[test]
    fn public_addresses_pass_and_come_back_normalised() {
        let ok = |t: &str| check_url(t, &AllowList::default()).unwrap().to_string();
        assert_eq!(
            ok("HTTPS://WWW.Salon-Exemple.FR./Tarifs/?utm_source=x&b=2&a=1&gclid=9#haut"),
            "https://www.salon-exemple.fr/Tarifs?a=1&b=2"
        );
        assert_eq!(
            ok("https://salon.fr/?UTM_Term=y&b=1&Utm_Source=n&GCLID=1&FbClid=2&utm=kept&é=1"),
            "https://salon.fr/?b=1&utm=kept&%C3%A9=1"
        );
        // Each parameter as a form writes it (a space is `+`, a key alone
        // `x=`), save a value that is not UTF-8 once decoded (Latin-1):
        // kept as written, its escapes in capitals, not U+FFFD.
        assert_eq!(
            ok("https://salon.fr/agences?ville=Orl%e9ans&r=a%20b&x&q=a+b&n=%7e1&utm%5Fsource=z"),
            "https://salon.fr/agences?n=%7E1&q=a+b&r=a+b&ville=Orl%E9ans&x="
        );
        assert_eq!(
            ok("https://salon.fr/v?ville=Orl%E8ans"),
            "https://salon.fr/v?ville=Orl%E8ans"
        );
        // Escapes of unreserved characters decoded, the others in capitals.
        assert_eq!(
            ok("https://salon.fr/%7Elea/%41telier%2fa%c3%a9"),
            "https://salon.fr/~lea/Atelier%2Fa%C3%A9"
        );
        assert_eq!(ok("https://salon.fr/x%+ab"), "https://salon.fr/x%+ab");
        assert_eq!(ok("http://93.184.216.34"), "http://93.184.216.34/");
        assert_eq!(ok("http://[2606:4700::1111]/"), "http://[2606:4700::1111]/");
        // Past the documentation block 3fff::/20; a second group under
        // 0x1000 elsewhere (a French operator's 2a01:e0a::/32).
        assert_eq!(ok("http://[3fff:1000::1]/"), "http://[3fff:1000::1]/");
        assert_eq!(ok("http://[2a01:e0a::1]/"), "http://[2a01:e0a::1]/");
        // Past 2001::/23; a second group under 0x200 elsewhere.
        assert_eq!(ok("http://[2001:200::1]/"), "http://[2001:200::1]/");
        assert_eq!(ok("http://[2a00:1::1]/"), "http://[2a00:1::1]/");
        assert_eq!(
            ok("http://[64:ff9b::5db8:d822]/"),
            "http://[64:ff9b::5db8:d822]/"
        );
    }

    #[test]
    fn hosts_are_host_names() {
        let bad = "is not on a host name (labels of letters, digits and inner hyphens, \
                   63 characters at most each, the last a top-level domain of letters)";
        let long_label = format!("https://{}.fr/", "a".repeat(64));
        for text in [
            "https://a_b.fr/",
            "https://-a.fr/",
            "https://a-.fr/",
            &long_label,
            "https://mon-site.f/",
            "https://mon-site.fr0/",
            "https://mon-site.1fr/",
            "https://mon-site.f1r./",
        ] {
            assert_eq!(refusal(text), Some(bad), "{text}");
        }
        let ok = |t: &str| check_url(t, &AllowList::default()).map(|u| u.to_string());
        assert_eq!(ok("https://a.fr./").unwrap(), "https://a.fr/");
        assert_eq!(
            ok("https://a.b.c.d.e.f.g.h.i.j.fr/").unwrap(),
            "https://a.b.c.d.e.f.g.h.i.j.fr/"
        );
        assert_eq!(
            ok(&format!("https://{}.fr/", "a".repeat(63)))
                .unwrap()
                .len(),
            8 + 63 + 4
        );
        assert_eq!(
            ok("https://xn--mnchen-3ya.de/").unwrap(),
            "https://xn--mnchen-3ya.de/"
        );
        assert_eq!(ok("https://a.fr:0443/").unwrap(), "https://a.fr/");
        // An empty port is the scheme's.
        assert_eq!(ok("https://a.fr:/x").unwrap(), "https://a.fr/x");
        // Internationalised top-level domains, written or in their ASCII form.
        assert_eq!(
            ok("https://пример.рф/").unwrap(),
            "https://xn--e1afmkfd.xn--p1ai/"
        );
        assert_eq!(ok("https://a.XN--P1AI/").unwrap(), "https://a.xn--p1ai/");
    }

    #[test]
    fn the_allow_list_admits_exact_host_and_port_only() {
        let allow = AllowList::parse(&["127.0.0.1:8080", "[::1]:9000"]).unwrap();
        assert!(check_url("http://127.0.0.1:8080/a/", &allow).is_ok());
        assert!(check_url("http://[::1]:9000/", &allow).is_ok());
        assert_eq!(
            check_url("http://127.0.0.1:8081/", &allow).err(),
            Some("is not a public address")
        );
        for entry in [
            "127.0.0.1",
            "127.0.0.1:",
            "user@127.0.0.1:8080",
            "user:pw@127.0.0.1:8080",
            "127.0.0.1:8080/x",
            "127.0.0.1:8080?a=1",
        ] {
            assert_eq!(
                AllowList::parse(&[entry]).unwrap_err(),
                format!(
                    "crawl allow-list entry '{entry}' is not HOST:PORT (such as '127.0.0.1:8080')"
                )
            );
        }
    }

    /// The crawler's check of each address a name resolves to, and of the
    /// one it connected to.
    #[test]
    fn resolved_addresses_are_public_or_not_as_urls_are() {
        let public = |text: &str| is_public_ip(text.parse().unwrap());
        for ip in ["93.184.216.34", "2606:4700::1111", "64:ff9b::5db8:d822"] {
            assert!(public(ip), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!public(ip), "{ip}");
        }
    }

    #[test]
    fn www_and_the_bare_host_are_one_site() {
        let u = |t: &str| Url::parse(t).unwrap();
        assert!(same_site(&u("https://www.a.fr/x"), &u("http://a.fr/")));
        assert!(!same_site(&u("https://a.fr/"), &u("https://b.a.fr/")));
        assert!(!same_site(
            &u("http://127.0.0.1:80/"),
            &u("http://127.0.0.1:81/")
        ));
        // Either scheme's default port, written with the other scheme, is
        // still no port of its own.
        assert!(same_site(&u("http://a.fr:443/"), &u("https://a.fr/")));
        assert!(same_site(&u("https://www.a.fr:80/"), &u("http://a.fr/")));
        assert_eq!(site_of(&u("http://a.fr:443/")), ("a.fr".to_string(), None));
        assert_eq!(
            site_of(&u("https://A.fr.:8443/")),
            ("a.fr".to_string(), Some(8443))
        );
    }
}
