//! A page's `rel=canonical` link: the site's hint of the address its text
//! belongs under, checked before it is trusted. The canonical page is asked
//! (once a job, ahead of its turn when need be) and a page is stored as a
//! redirect to it only when both hold the same text.

use std::collections::HashMap;

use serde_json::{json, Value};
use url::Url;

use super::extract;
use super::fetch::{Accept, Page};
use super::{Crawl, Polite, MAX_LINKS};

impl Crawl<'_> {
    /// Keeps what `report` says of the page at `urls` (where it was asked,
    /// where it ended): its address, title and text when stored, nothing
    /// when it is not, for good (a 429, a 503 or the site's turn not come
    /// may pass: the page stays unknown). A page naming it as its
    /// canonical is compared with it ([`Crawl::report_under`]).
    pub(super) fn remember(&mut self, urls: &[&Url], report: &Value) {
        let reason = report["reason"].as_str().unwrap_or_default();
        if matches!(reason, "http_429" | "http_503" | "site_busy") {
            return;
        }
        // As the library holds it, the form the queue asks; past the URLs
        // it takes, no page's canonical (a report naming it is refused).
        let stored_at = report["final_url"]
            .as_str()
            .and_then(|u| Url::parse(u).ok())
            .map(|u| onboarding::kb::normalize(&u).to_string())
            .filter(|u| u.chars().count() <= onboarding::kb::MAX_URL_CHARS);
        let text = stored_at
            .filter(|_| report["status"] == "stored")
            .map(|url| Known {
                url,
                title: report["title"].as_str().unwrap_or_default().to_string(),
                markdown: report["markdown"].as_str().unwrap_or_default().to_string(),
            });
        for url in urls {
            self.known.insert(identity(url), text.clone());
        }
    }

    /// The page that `page`'s canonical link names, when it is one this
    /// crawler may store a page under: on the site, allowed by robots.txt
    /// (a canonical it disallows would store the page under an address the
    /// site keeps from crawlers), within the URLs the library takes.
    pub(super) fn canonical_of(
        &self,
        polite: &Polite<'_>,
        site: &Url,
        asked: &Url,
        page: &Page,
        extracted: &extract::Extracted,
    ) -> Canonical {
        let Some(canonical) = extracted
            .canonical
            .as_deref()
            .and_then(|c| Url::parse(c).ok())
        else {
            return Canonical::None;
        };
        if !onboarding::kb::same_site(&canonical, site)
            || !polite.fetcher.may_ask(&canonical, Accept::Page)
            || canonical.as_str().chars().count() > onboarding::kb::MAX_URL_CHARS
        {
            return Canonical::None;
        }
        let key = identity(&canonical);
        if key == identity(&page.final_url) || key == identity(asked) {
            Canonical::Itself(canonical)
        } else {
            Canonical::Other(canonical)
        }
    }

    /// The report of a page (`own`, its report at its own address) whose
    /// canonical link names another page of the site. A canonical link is
    /// the site's hint, and templates get it wrong: a page naming one that
    /// is gone (a 404) was stored under a dead address, never asked, and
    /// the second page of a list naming the first took the first's place.
    /// So the canonical page is asked, once a job (now, when this worker
    /// has not asked it yet and `ahead` allows: its report then waits for
    /// its turn in the queue), and a page with a text of its own is a
    /// redirect to it only when it is stored with the same text
    /// ([`same_text`]: the same words, in any order, a list sorted another
    /// way); the report then carries the canonical page's text, under its
    /// address, which the library settles (or finds stored). Otherwise the
    /// page is stored at its own address (or skipped, with no text of its
    /// own), and the canonical page (stored or not, its links followed) at
    /// its own when its turn comes, from this page's links (unless
    /// `nofollow`): whichever of the two the crawl meets first. `ask`:
    /// whether the canonical page may be asked now.
    pub(super) async fn report_under(
        &mut self,
        polite: &mut Polite<'_>,
        site: &Url,
        mut own: Value,
        canonical: &Url,
        nofollow: bool,
        ask: bool,
    ) -> Value {
        let key = identity(canonical);
        // A page with no text of its own is no redirect, whatever the
        // canonical holds: it need not be asked now.
        let own_text = own["markdown"]
            .as_str()
            .filter(|_| own["status"] == "stored");
        if ask && own_text.is_some() && !self.known.contains_key(&key) {
            self.ask_ahead(polite, site, canonical).await;
        }
        let named = self
            .known
            .get(&key)
            .and_then(Option::as_ref)
            .filter(|named| own_text.is_some_and(|text| same_text(text, &named.markdown)));
        let Some(named) = named else {
            // The canonical page among the links, so that the job has it,
            // at the address asked ahead: its turn uses that report.
            if !nofollow {
                let link = Value::from(onboarding::kb::normalize(canonical).to_string());
                if let Some(links) = own["links"].as_array_mut() {
                    if !links.contains(&link) {
                        links.insert(0, link);
                        links.truncate(MAX_LINKS);
                    }
                }
            }
            return own;
        };
        // The links of both, the canonical page's when its report waits.
        let waiting = self.ahead.get(&key).map(|(_, r)| &r["links"]);
        let mut seen = std::collections::HashSet::new();
        let links: Vec<Value> = [Some(&own["links"]), waiting]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter(|l| l.as_str().is_some_and(|l| seen.insert(l.to_string())))
            .take(MAX_LINKS)
            .cloned()
            .collect();
        let (url, title, markdown) = (
            named.url.clone(),
            named.title.clone(),
            named.markdown.clone(),
        );
        own["links"] = Value::Array(links);
        own["final_url"] = json!(url);
        own["title"] = json!(title);
        own["markdown"] = json!(markdown);
        own
    }

    /// Asks for `canonical` ahead of its turn in the queue, as the queue
    /// would (its trailing slash as the site wants it, its meta refresh
    /// followed, a 429 not waited for): what it holds is remembered, and
    /// its report kept for its turn. Once a job, and not past the job's
    /// budget; a refusal that may pass (a 429, a 503, the site's turn not
    /// come) leaves it unknown, asked at its turn.
    async fn ask_ahead(&mut self, polite: &mut Polite<'_>, site: &Url, canonical: &Url) {
        let target = onboarding::kb::normalize(canonical);
        if !self.asked_ahead.insert(identity(&target))
            || self.budget.exhausted(&self.config.limits).is_some()
        {
            return;
        }
        // No retries in hand: they are kept with a page of the job.
        let report = Box::pin(self.fetch_page(polite, site, target.as_str(), usize::MAX, false));
        let Ok(report) = report.await else {
            return;
        };
        if !self.known.contains_key(&identity(&target)) {
            return;
        }
        if report["status"] != "stored" {
            tracing::info!(job = self.job_id, canonical = %canonical, reason = %report["reason"],
                "a canonical page not stored: the pages naming it are stored at their own address");
        }
        // Under where it ended too (a redirect to a page the queue holds):
        // unless that page's own report is kept already.
        let ended = report["final_url"]
            .as_str()
            .and_then(|u| Url::parse(u).ok())
            .filter(|u| identity(u) != identity(&target));
        if let Some(ended) = ended {
            let asked = onboarding::kb::normalize(&ended).to_string();
            self.ahead
                .entry(identity(&ended))
                .or_insert_with(|| (asked, report.clone()));
        }
        self.ahead
            .insert(identity(&target), (target.to_string(), report));
    }
}

/// What a page's canonical link names ([`Crawl::canonical_of`]).
pub(super) enum Canonical {
    /// Nothing the page may be stored under: no link, or one to another
    /// site, disallowed by robots.txt or too long.
    None,
    /// The page itself, in another form.
    Itself(Url),
    /// Another page of the site.
    Other(Url),
}

/// A page a worker asked for and stored ([`Crawl::remember`]).
#[derive(Clone)]
pub(super) struct Known {
    /// The address it is stored under.
    pub(super) url: String,
    pub(super) title: String,
    pub(super) markdown: String,
}

/// Whether two pages' texts are one text: the same words, each as many
/// times, in any order, but for a tenth of the longer (a list sorted
/// another way, a date or a counter that changes). A list's second page
/// shares its headings with the first, not its items. A link counts by
/// its label and its address's last segment: a list's items link to paths
/// that share the rest.
pub(super) fn same_text(a: &str, b: &str) -> bool {
    fn words(text: &str) -> HashMap<String, i64> {
        let mut counts = HashMap::new();
        let mut rest = text;
        let mut shown = String::with_capacity(text.len());
        // `[label](target)`: the label is text, and of the target its
        // last segment alone (`/boutique/soins/shampooing`: `shampooing`),
        // which names the item where paths share the rest (and an image's
        // file, where a gallery has no labels).
        while let Some(at) = rest.find("](") {
            shown.push_str(&rest[..at]);
            let target = &rest[at + 2..];
            let Some(end) = target.find(')') else {
                rest = target;
                break;
            };
            let path = target[..end].split(['?', '#']).next().unwrap_or_default();
            shown.push(' ');
            shown.push_str(
                path.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default(),
            );
            shown.push(' ');
            rest = &target[end + 1..];
        }
        shown.push_str(rest);
        for word in shown
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
        counts
    }
    if a == b {
        return true;
    }
    let (a, b) = (words(a), words(b));
    let total = |counts: &HashMap<String, i64>| counts.values().sum::<i64>();
    let shared: i64 = a
        .iter()
        .map(|(word, n)| (*n).min(b.get(word).copied().unwrap_or(0)))
        .sum();
    let longer = total(&a).max(total(&b));
    longer > 0 && shared * 10 >= longer * 9
}

/// A page's identity as a key: its normalised URL, the `http` and `https`
/// forms and the `www.` and bare hosts as one (as the library takes them).
pub(super) fn identity(url: &Url) -> String {
    let mut key = onboarding::kb::normalize(url);
    let _ = key.set_scheme("https");
    if let Some(bare) = key.host_str().and_then(|h| h.strip_prefix("www.")) {
        let bare = bare.to_string();
        let _ = key.set_host(Some(&bare));
    }
    key.to_string()
}

#[cfg(test)]
mod tests {
    use super::{identity, same_text};
    use url::Url;

    #[test]
    fn one_text_is_the_same_words_in_any_order_but_for_a_tenth() {
        let list = "# Produits\n\nShampooing 12 euros, masque 20 euros, huile 25 euros.";
        assert!(same_text(list, list));
        assert!(same_text(
            list,
            "# Produits\n\nHuile 25 euros, MASQUE 20 euros, shampooing 12 euros."
        ));
        // A date that changes: one word of twelve.
        let dated = "Promotion du mois de juillet : moins vingt pour cent sur les soins";
        assert!(same_text(
            dated,
            "Promotion du mois de août : moins vingt pour cent sur les soins"
        ));
        // Two words of twelve, or a list's next page: its own items.
        assert!(!same_text(
            dated,
            "Promotion du mois de août : moins trente pour cent sur les soins"
        ));
        assert!(!same_text(
            "# Avis\n\nUn accueil parfait, merci à Léa.",
            "# Avis\n\nDes clientes ravies de leur balayage."
        ));
        // Links count by their labels: items linking to paths that share
        // their words are still other items.
        let page = |items: &[&str]| -> String {
            items
                .iter()
                .map(|i| format!("- [{i}](/boutique/produits/soins/cheveux/{i})\n"))
                .collect()
        };
        assert!(!same_text(
            &page(&["shampooing", "masque", "huile"]),
            &page(&["serum", "baume", "lotion"])
        ));
        assert!(same_text(
            &page(&["shampooing", "masque", "huile"]),
            &page(&["huile", "shampooing", "masque"])
        ));
        // A gallery without labels, by its images' and links' last
        // segments; a bracket left open keeps the rest of the text.
        let gallery = |n: u32| -> String {
            (n..n + 6)
                .map(|i| format!("[![](/img/coupe-{i}.jpg)](/galerie/{i})\n"))
                .collect()
        };
        assert!(!same_text(&gallery(1), &gallery(7)));
        assert!(same_text(&gallery(1), &gallery(1).replace('\n', " ")));
        assert!(!same_text("[a](b c d e f g", "[a](b h i j k l"));
        // A text and none.
        assert!(!same_text(list, ""));
        assert!(!same_text("", "!"));
    }

    #[test]
    fn a_pages_identity_takes_both_schemes_and_the_www_host_as_one() {
        let key = |u: &str| identity(&Url::parse(u).unwrap());
        assert_eq!(
            key("http://www.salon.fr/avis#haut"),
            "https://salon.fr/avis"
        );
        assert_eq!(key("https://salon.fr/avis"), "https://salon.fr/avis");
        assert_eq!(
            key("https://Salon.fr/avis?utm_source=x&b=2&a=1"),
            "https://salon.fr/avis?a=1&b=2"
        );
        assert_ne!(
            key("https://salon.fr/avis?page=2"),
            key("https://salon.fr/avis")
        );
        // One trailing-slash form, as the library's.
        assert_eq!(key("https://salon.fr/avis/"), "https://salon.fr/avis");
    }
}
