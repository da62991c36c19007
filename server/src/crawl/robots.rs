//! robots.txt (RFC 9309) and sitemaps: what the crawler may fetch, how
//! slowly, and the pages a site lists.

use std::time::Duration;

use quick_xml::events::Event;
use texting_robots::Robot;
use url::Url;

use super::fetch::{Accept, FetchError};
use super::Polite;

/// The product token robots.txt groups are matched against.
pub const ROBOTS_TOKEN: &str = "onboarding-kb-crawler";

/// A site's rules: `None` robot means everything is allowed (a 4xx).
pub struct Rules {
    robot: Option<Robot>,
    pub delay: Duration,
    pub sitemaps: Vec<String>,
}

impl Rules {
    pub fn allowed(&self, url: &str) -> bool {
        self.robot.as_ref().is_none_or(|r| r.allowed(url))
    }
}

/// Fetches the site's robots.txt. A 2xx is parsed whatever its content type;
/// a 4xx allows everything; a 5xx or an unreachable file crawls nothing:
/// [`job_code`] says why.
pub async fn rules(polite: &mut Polite<'_>, site: &Url) -> Result<Rules, FetchError> {
    let url = site.join("/robots.txt").map_err(|_| FetchError::OffSite)?;
    let limits = &polite.fetcher.limits;
    let (min, max) = (limits.min_delay, limits.max_delay);
    match polite.get(&url, site, Accept::Any).await {
        Ok(page) => {
            let robot = Robot::new(ROBOTS_TOKEN, page.text.as_bytes()).ok();
            let sitemaps = robot
                .as_ref()
                .map(|r| r.sitemaps.clone())
                .unwrap_or_default();
            Ok(Rules {
                delay: asked_delay(robot.as_ref(), min, max),
                robot,
                sitemaps,
            })
        }
        // A 429 with a Retry-After asks the crawler to come back, not to
        // crawl without rules: the job waits for its site.
        Err(e @ FetchError::Status(429, Some(_))) => Err(e),
        Err(FetchError::Status(400..=499, _)) => Ok(Rules {
            robot: None,
            delay: min,
            sitemaps: Vec::new(),
        }),
        Err(e) => Err(e),
    }
}

/// The job's error code when robots.txt could not be read: `unreachable`
/// when the connection failed, `robots_unavailable` when the file came
/// wrong, broken off (the connection closed before or during it) or not
/// in time, its site's turn included (held by a crawler past
/// the job's time: the job is tried again later, as the library retries
/// that code).
pub fn job_code(e: &FetchError) -> &'static str {
    match e {
        FetchError::Dns => "dns",
        FetchError::PrivateAddress => "private_address",
        FetchError::Unreachable => "unreachable",
        _ => "robots_unavailable",
    }
}

/// The gap between two requests a robots.txt asks of this crawler: its
/// `Crawl-delay`, kept within `min..=max` (1 s to 5 s).
fn asked_delay(robot: Option<&Robot>, min: Duration, max: Duration) -> Duration {
    robot
        .and_then(|r| r.delay)
        .map(|s| Duration::from_secs_f32(s.max(0.0)))
        .unwrap_or(min)
        .clamp(min, max)
}

/// The same, from robots.txt's text: the fetcher gives the site's turn back
/// with it once robots.txt is read, before the rules are applied, so that
/// the next request to the site, another job's included, waits for it.
pub fn delay_of(text: &str, min: Duration, max: Duration) -> Duration {
    asked_delay(
        Robot::new(ROBOTS_TOKEN, text.as_bytes()).ok().as_ref(),
        min,
        max,
    )
}

/// The page URLs of the site's sitemaps (those robots.txt names, else
/// `/sitemap.xml`), indexes followed two levels, at most `max` URLs, each a
/// page the crawler would ask for ([`SitemapPages`]).
pub async fn sitemap_urls(
    polite: &mut Polite<'_>,
    site: &Url,
    rules: &Rules,
    max: usize,
) -> Vec<String> {
    let mut queue: Vec<(String, usize)> = if rules.sitemaps.is_empty() {
        site.join("/sitemap.xml")
            .map(|u| vec![(u.to_string(), 0)])
            .unwrap_or_default()
    } else {
        rules.sitemaps.iter().map(|s| (s.clone(), 0)).collect()
    };
    let mut pages = SitemapPages::new(site, rules, max);
    let mut fetched = 0;
    while let Some((sitemap, level)) = queue.pop() {
        // Bounded: at most 10 sitemap files per job.
        fetched += 1;
        if fetched > 10 || pages.full() {
            break;
        }
        let Ok(url) = Url::parse(&sitemap) else {
            continue;
        };
        if !onboarding::kb::same_site(&url, site) || !rules.allowed(url.as_str()) {
            continue;
        }
        let page = match polite.get(&url, site, Accept::Xml).await {
            Ok(page) => page,
            // The job stops (its time, or its site's wait): the pages are
            // asked for after the sitemaps, which are read again on resuming.
            Err(FetchError::JobTime | FetchError::SiteWait(_)) => break,
            Err(_) => continue,
        };
        let (is_index, locs) = parse_sitemap(&page.text);
        if is_index {
            if level < 2 {
                queue.extend(locs.into_iter().map(|l| (l, level + 1)));
            }
        } else {
            locs.iter().for_each(|loc| pages.add(loc));
        }
    }
    pages.urls
}

/// The pages a sitemap lists that the job queues: only those the crawler
/// would ask for. The sitemap's pages are queued before the start page's
/// links and count toward the job's 50, so an entry that would never be
/// fetched took a link's place: a sitemap of 60 pages robots.txt
/// disallows left a job one page stored and 49 skipped, its start page's
/// links never asked. Such an entry is not a page of the job at all (never
/// tried, it is not among those not stored): one off the site or not
/// http(s), one robots.txt disallows, the start page, and a page listed
/// before under another form (`www.`, the other scheme, or what
/// normalising makes one: a trailing slash, a fragment, `utm_*`).
struct SitemapPages<'r> {
    site: &'r Url,
    rules: &'r Rules,
    max: usize,
    /// The pages taken and the start page, as the job knows a page: its
    /// site (`www.` and the bare host one), path and query, normalised.
    seen: std::collections::HashSet<(String, Option<u16>, String)>,
    urls: Vec<String>,
}

impl<'r> SitemapPages<'r> {
    fn new(site: &'r Url, rules: &'r Rules, max: usize) -> Self {
        let mut seen = std::collections::HashSet::new();
        seen.insert(page_key(&onboarding::kb::normalize(site)));
        SitemapPages {
            site,
            rules,
            max,
            seen,
            urls: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.urls.len() >= self.max
    }

    /// Takes `loc` when it is a page the crawler would ask for, not taken
    /// yet, and there is room.
    fn add(&mut self, loc: &str) {
        // Full: the rest of a long sitemap is not parsed for nothing.
        if self.full() {
            return;
        }
        let Ok(listed) = Url::parse(loc) else {
            return;
        };
        // Queued normalised, the form the fetcher asks for; robots.txt
        // must allow the form listed too (`Disallow: /admin/` is meant for
        // `/admin/`, which normalising makes `/admin`).
        let url = onboarding::kb::normalize(&listed);
        // Past the URL limit a page is never admitted: it would take one
        // of the job's places for nothing.
        let wanted = url.as_str().chars().count() <= onboarding::kb::MAX_URL_CHARS
            && matches!(url.scheme(), "http" | "https")
            && onboarding::kb::same_site(&url, self.site)
            && self.rules.allowed(listed.as_str())
            && self.rules.allowed(url.as_str());
        if wanted && self.seen.insert(page_key(&url)) {
            self.urls.push(url.to_string());
        }
    }
}

/// A normalised URL's identity in the job: `www.` and the bare host, http
/// and https, are one page (the library's `forms`).
fn page_key(url: &Url) -> (String, Option<u16>, String) {
    let (host, port) = onboarding::kb::site_of(url);
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    (host, port, path)
}

/// (whether it is a sitemap index, every `<loc>`).
pub fn parse_sitemap(xml: &str) -> (bool, Vec<String>) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut is_index = false;
    let mut loc: Option<String> = None;
    let mut locs = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => match e.local_name().as_ref() {
                b"sitemapindex" => is_index = true,
                b"loc" => loc = Some(String::new()),
                _ => {}
            },
            Ok(Event::End(e)) if e.local_name().as_ref() == b"loc" => {
                locs.extend(loc.take().map(|l| l.trim().to_string()));
            }
            Ok(Event::Text(t)) => {
                if let (Some(l), Ok(text)) = (loc.as_mut(), t.decode()) {
                    l.push_str(&text);
                }
            }
            // A `<![CDATA[…]]>` section is the text as written (`&` in it
            // is `&`).
            Ok(Event::CData(c)) => {
                if let (Some(l), Ok(text)) = (loc.as_mut(), c.decode()) {
                    l.push_str(&text);
                }
            }
            // Entities (`&amp;` in a query string) and character
            // references (`&#38;`, `&#x26;`) come as events of their own.
            Ok(Event::GeneralRef(r)) => {
                let Ok(name) = r.decode() else { continue };
                let text = match (
                    r.resolve_char_ref(),
                    quick_xml::escape::resolve_predefined_entity(&name),
                ) {
                    (Ok(Some(c)), _) => Some(c.to_string()),
                    // A reference to no character (`&#0;`, a surrogate):
                    // the entry is dropped, not read as another address
                    // (its `#` a fragment).
                    (Err(_), _) => None,
                    (_, Some(c)) => Some(c.to_string()),
                    _ => Some(format!("&{name};")),
                };
                match (text, loc.as_mut()) {
                    (Some(text), Some(l)) => l.push_str(&text),
                    (None, _) => loc = None,
                    (Some(_), None) => {}
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    (is_index, locs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_robots_asks_is_kept_between_one_and_five_seconds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let delay = |text: &str| delay_of(text, min, max).as_millis();
        assert_eq!(delay("User-agent: *\nCrawl-delay: 3\n"), 3000);
        assert_eq!(delay("User-agent: *\nCrawl-delay: 2.5\n"), 2500);
        assert_eq!(delay("User-agent: *\nCrawl-delay: 10\n"), 5000);
        assert_eq!(delay("User-agent: *\nCrawl-delay: 0.2\n"), 1000);
        assert_eq!(delay("User-agent: *\nDisallow:\n"), 1000);
        // This crawler's own group wins over `*`.
        assert_eq!(
            delay("User-agent: *\nCrawl-delay: 4\n\nUser-agent: onboarding-kb-crawler\nCrawl-delay: 2\n"),
            2000
        );
    }

    /// A sitemap's entry the crawler would never ask for is no page of the
    /// job, and takes no room among the `max`.
    #[test]
    fn only_the_sitemap_pages_the_crawler_would_ask_for_are_taken() {
        let site = Url::parse("https://salon.fr/").unwrap();
        let rules = Rules {
            robot: Robot::new(ROBOTS_TOKEN, b"User-agent: *\nDisallow: /admin/\n").ok(),
            delay: Duration::from_secs(1),
            sitemaps: Vec::new(),
        };
        let mut pages = SitemapPages::new(&site, &rules, 3);
        // Past the URL limit: never admitted, so never taken.
        pages.add(&format!("https://salon.fr/{}", "z".repeat(2048)));
        for loc in [
            "https://salon.fr/admin/p0",
            "https://salon.fr/admin/",
            "https://salon.fr/#haut",
            "http://www.salon.fr/",
            "https://autre.fr/tarifs",
            "ftp://salon.fr/tarifs",
            "pas une adresse",
            "https://salon.fr/tarifs/",
            "http://www.salon.fr/tarifs?utm_source=plan",
            "https://salon.fr/Horaires#samedi",
            "https://salon.fr/contact?b=2&a=1",
            "https://salon.fr/contact?a=1&b=2",
            "https://salon.fr/equipe",
        ] {
            pages.add(loc);
        }
        assert_eq!(
            pages.urls,
            [
                "https://salon.fr/tarifs",
                "https://salon.fr/Horaires",
                "https://salon.fr/contact?a=1&b=2"
            ]
        );
        assert!(pages.full());
    }

    #[test]
    fn sitemaps_and_indexes_give_their_locations() {
        let index = r#"<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>http://a.fr/s1.xml</loc></sitemap></sitemapindex>"#;
        assert_eq!(
            parse_sitemap(index),
            (true, vec!["http://a.fr/s1.xml".to_string()])
        );
        let set = "<urlset><url><loc> http://a.fr/x?a=1&amp;b=2 </loc></url><url><loc>http://a.fr/y</loc></url></urlset>";
        assert_eq!(
            parse_sitemap(set),
            (
                false,
                vec![
                    "http://a.fr/x?a=1&b=2".to_string(),
                    "http://a.fr/y".to_string()
                ]
            )
        );
        // Character references and CDATA, as XML has them; an entry with a
        // reference to no character is dropped.
        let set = "<urlset><url><loc>http://a.fr/x?a=1&#38;b=2&#x26;c=3</loc></url>\
                   <url><loc>http://a.fr/nul&#0;</loc></url>\
                   <url><loc><![CDATA[http://a.fr/cdata?c=1&d=2]]></loc></url></urlset>";
        assert_eq!(
            parse_sitemap(set),
            (
                false,
                vec![
                    "http://a.fr/x?a=1&b=2&c=3".to_string(),
                    "http://a.fr/cdata?c=1&d=2".to_string()
                ]
            )
        );
    }
}
