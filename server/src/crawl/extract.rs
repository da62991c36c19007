//! From HTML to what the knowledge base keeps: the main content as
//! Markdown (headings, lists and tables kept), the footer as a shared
//! block, the links, the canonical URL, whether the page may be indexed
//! and where its meta refresh sends a browser.
//!
//! Readability-style extractors are tuned for articles and drop the price
//! table and the opening hours of a small-business page; this keeps the
//! whole main element (`main`, `article`, `[role=main]`, else the body) and
//! removes only what is never content: scripts, styles, navigation, forms,
//! cookie banners, the site header.

use scraper::{Html, Selector};
use url::Url;

/// Below this many letters and digits, a page is "nearly empty": a shell
/// that JavaScript fills ("Chargement…"), not a short page of content
/// (an opening-hours table of a few rows has 60 or more).
pub const MIN_TEXT_CHARS: usize = 20;

#[derive(Debug, Default)]
pub struct Extracted {
    pub title: String,
    pub markdown: String,
    /// The footer (address, phone, hours), stored once as its own document.
    pub footer: Option<String>,
    pub links: Vec<String>,
    pub canonical: Option<String>,
    pub noindex: bool,
    /// Its robots meta says `nofollow` (or `none`): its links are left.
    pub nofollow: bool,
    /// The page has scripts and almost no text: a JavaScript-built site.
    pub script_only: bool,
    /// Where the page's meta refresh (`<meta http-equiv=refresh
    /// content="0; url=/fr/">`) sends a browser, read against the
    /// document's base URL: an http(s) URL, whatever the delay.
    pub refresh: Option<Url>,
}

fn selector(css: &str) -> Selector {
    // The selectors are literals of this file, checked by its tests.
    Selector::parse(css).unwrap_or_else(|_| panic!("bad selector {css}"))
}

/// Never content, wherever it is.
const NOISE: &str = "script, style, noscript, template, nav, form, iframe, svg, [role=navigation]";

/// Not content outside the page's own content, but content inside it. Cookie
/// banners by their words in any case (`CybotCookiebotDialog`,
/// `gdpr-banner`, an `aria-label` of "Consentement aux cookies"); inside
/// `main`, a section of "cookies maison" is a bakery's (the consent
/// managers' banners, and those named as one, go wherever they are: see
/// [`BANNERS`]). Buttons and hidden elements: the widgets of a banner or a
/// menu, but an FAQ's questions and its folded answers inside the content.
const NOISE_OUTSIDE_CONTENT: &str = "button, [aria-hidden=true], \
     [id*=cookie i], [class*=cookie i], [id*=consent i], [class*=consent i], \
     [id*=gdpr i], [class*=gdpr i], [id*=rgpd i], [class*=rgpd i], \
     [aria-label*=cookie i], [aria-label*=consent i]";

/// Cookie banners wherever they are, in the content too (a site that puts
/// its banner in `main`): the consent managers' French sites use
/// (OneTrust, tarteaucitron, Axeptio, Didomi, Cookiebot, cookieconsent's
/// `cc-window`) by their ids, and a dialog named for cookies or consent.
/// Others by their names, see [`banner_name`].
const BANNERS: &str = "[id*=onetrust i], [id*=tarteaucitron i], [id*=axeptio i], \
     [id*=didomi i], [id*=cookiebot i], .cc-window, .cc-banner, \
     [role=dialog][aria-label*=cookie i], [role=alertdialog][aria-label*=cookie i], \
     [role=dialog][aria-label*=consent i], [role=alertdialog][aria-label*=consent i]";

/// A banner named as one (`cookie-banner`, `cookieConsent`, `gdpr_popup`,
/// `bandeau-rgpd`, `cookie-law-info-bar`) is at most this many letters
/// and digits: a page's own text named so by accident is longer.
const BANNER_MAX_CHARS: usize = 2_000;

/// Whether an id or one class name (`name`) is a cookie banner's: its
/// words (split at `-`, `_` and a lowercase-to-uppercase step) hold a
/// subject (cookie, consent, gdpr, rgpd) followed by a banner's form
/// (banner, bar, notice, popup…), or `bandeau` followed by a subject, one
/// word or two next to each other. Whole words, one name at a time: a
/// subject alone is a page's own ("cookies maison", a WordPress post's
/// `category-rgpd tag-cookies`), and so are `sidebar`, `modalites`,
/// `notice-rgpd` (a privacy notice) and `consentement` (a clinic's).
fn banner_name(name: &str) -> bool {
    const SUBJECTS: [&str; 5] = ["cookie", "cookies", "consent", "gdpr", "rgpd"];
    const FORMS: [&str; 13] = [
        "banner", "bandeau", "notice", "bar", "popup", "pop", "modal", "overlay", "dialog", "wall",
        "alert", "law", "consent",
    ];
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut lower_before = false;
    for c in name.chars() {
        if c == '-' || c == '_' || (c.is_uppercase() && lower_before) {
            words.push(std::mem::take(&mut word));
        }
        lower_before = c.is_lowercase() || c.is_ascii_digit();
        if c != '-' && c != '_' {
            word.extend(c.to_lowercase());
        }
    }
    words.push(word);
    let pair = |a: &str, b: &str| {
        (SUBJECTS.contains(&a) && FORMS.contains(&b) && a != b)
            || (a == "bandeau" && SUBJECTS.contains(&b))
    };
    let joined = |w: &str| {
        SUBJECTS
            .iter()
            .chain(["bandeau"].iter())
            .any(|s| w.strip_prefix(s).is_some_and(|rest| pair(s, rest)))
    };
    words.iter().any(|w| joined(w)) || words.windows(2).any(|p| pair(&p[0], &p[1]))
}

/// Detaches the cookie banners ([`BANNERS`], and elements named as one and
/// short enough to be one), wherever they are.
fn remove_banners(doc: &mut Html) {
    remove_where(doc, BANNERS, |_| true);
    remove_where(doc, "[id], [class]", |e| {
        let v = e.value();
        v.id().into_iter().chain(v.classes()).any(banner_name)
            && e.text()
                .flat_map(str::chars)
                .filter(|c| c.is_alphanumeric())
                .take(BANNER_MAX_CHARS + 1)
                .count()
                <= BANNER_MAX_CHARS
    });
}

/// Words of a page that only says it is loading (a JavaScript shell whose
/// placeholder is a sentence), lowercase.
const LOADING: [&str; 6] = [
    "chargement",
    "veuillez patienter",
    "loading",
    "please wait",
    "javascript",
    "enable js",
];

/// A page this short whose text is about loading is a shell.
const LOADING_MAX_CHARS: usize = 200;

/// The site's header, when outside the main content: its menu and logo.
/// A `header` inside a section or an article heads content: kept. Menus
/// not in a `nav` element, too: Bootstrap's `navbar` and ARIA's `menubar`.
const SITE_HEADER: &str = "body > header, [role=banner], #header, #site-header, .site-header, \
     #navbar, .navbar, [role=menubar]";

/// The site's footer, when outside the main content: the address, phone
/// and hours every page repeats. A footer inside the content (an offer's
/// conditions) is content.
const SITE_FOOTER: &str =
    "footer, [role=contentinfo], #footer, #site-footer, .site-footer, .footer";

/// Where a page's own content is.
const CONTENT: &str = "main, article, [role=main]";

pub fn extract(html: &str, base: &Url) -> Extracted {
    let mut doc = Html::parse_document(&super::nesting::flatten(html));
    let first_text = |doc: &Html, css: &str| {
        doc.select(&selector(css))
            .next()
            .map(|e| {
                e.text()
                    .collect::<String>()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|t| !t.is_empty())
    };
    let title = first_text(&doc, "title")
        .or_else(|| first_text(&doc, "h1"))
        .unwrap_or_default();
    // The robots directives of the page's meta tags: for every crawler,
    // for Google's (which sites write for all), or for this one by its
    // name. Attribute values are case-sensitive in selectors; sites write
    // `ROBOTS` and `Robots` too.
    let contents: Vec<String> = doc
        .select(&selector(&format!(
            "meta[name=robots i], meta[name=googlebot i], meta[name={} i]",
            super::robots::ROBOTS_TOKEN
        )))
        .filter_map(|m| m.value().attr("content"))
        .map(str::to_ascii_lowercase)
        .collect();
    // `none` is `noindex, nofollow`.
    let says = |directive: &str| {
        contents
            .iter()
            .flat_map(|c| c.split([',', ' ', ';']))
            .any(|d| d.trim() == directive || d.trim() == "none")
    };
    let noindex = says("noindex");
    let nofollow = says("nofollow");
    // The document's base URL (HTML's "frozen base URL"): the first
    // `<base href>`, read against the page's own URL, which every relative
    // link and the canonical are then read against. An http(s) one only.
    let base = &doc
        .select(&selector("base[href]"))
        .next()
        .and_then(|b| b.value().attr("href"))
        .and_then(|h| base.join(h.trim()).ok())
        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
        .unwrap_or_else(|| base.clone());
    let canonical = doc
        .select(&selector("link[rel=canonical]"))
        .next()
        .and_then(|l| l.value().attr("href"))
        .and_then(|h| base.join(h).ok())
        .map(|u| u.to_string());
    // Not one inside a `<template>`, which browsers never act on (an
    // `<svg>` holds none: the parser closes it before a `<meta>`).
    let refresh = doc
        .select(&selector("meta[http-equiv=refresh i][content]"))
        .find(|m| {
            !m.ancestors()
                .filter_map(scraper::ElementRef::wrap)
                .any(|a| a.value().name() == "template")
        })
        .and_then(|m| m.value().attr("content"))
        .and_then(|content| refresh_url(content, base));
    // A page that says `nofollow` has its links left alone, as one link
    // with `rel=nofollow` is.
    let links = doc
        .select(&selector("a[href]"))
        .filter(|_| !nofollow)
        .filter(|a| {
            !a.value()
                .attr("rel")
                .is_some_and(|r| r.contains("nofollow"))
        })
        .filter_map(|a| a.value().attr("href"))
        .filter_map(|h| base.join(h).ok())
        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
        .map(|u| u.to_string())
        .collect();
    let scripts = doc.select(&selector("script")).count();
    remove(&mut doc, NOISE);
    remove_outside_content(&mut doc, NOISE_OUTSIDE_CONTENT);
    remove_banners(&mut doc);
    remove_outside_content(&mut doc, SITE_HEADER);
    // The outermost site footers (one inside another is part of it), all
    // of them, in order: a block of addresses above a copyright line.
    let footers: Vec<_> = doc
        .select(&selector(SITE_FOOTER))
        .filter(|f| outside(f, CONTENT) && outside(f, SITE_FOOTER))
        .collect();
    let footer = Some(
        footers
            .iter()
            .map(|f| to_markdown(&f.html()))
            .filter(|m| !m.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
    )
    .filter(|m| m.chars().filter(|c| c.is_alphanumeric()).count() >= 10);
    let ids: Vec<_> = footers.iter().map(|f| f.id()).collect();
    for id in ids {
        if let Some(mut node) = doc.tree.get_mut(id) {
            node.detach();
        }
    }
    // `main`, else `[role=main]`, else the one `article`; several articles
    // (a list of services) and no main are the body's, all of them.
    let articles = doc.select(&selector("article")).count();
    let main = ["main", "[role=main]", "article", "body"]
        .iter()
        .filter(|css| **css != "article" || articles == 1)
        .find_map(|css| doc.select(&selector(css)).next())
        .map(|e| e.html())
        .unwrap_or_default();
    // The tree goes before the converter parses its content again: a dense
    // page's tree is most of the worker's peak memory.
    drop(doc);
    let markdown = to_markdown(&main);
    let text_chars = markdown.chars().filter(|c| c.is_alphanumeric()).count();
    let loading = text_chars < LOADING_MAX_CHARS && {
        let lower = markdown.to_lowercase();
        LOADING.iter().any(|w| lower.contains(w))
    };
    Extracted {
        title: visible(title),
        script_only: scripts > 0 && (text_chars < MIN_TEXT_CHARS || loading),
        markdown: visible(markdown),
        footer: footer.map(visible),
        links,
        canonical,
        noindex,
        nofollow,
        refresh,
    }
}

/// The URL of a meta refresh's `content` (`5; url='/fr/'`), read against
/// `base`, as HTML's shared declarative refresh steps read it: a delay
/// (digits and dots), then `;` or `,` or white space, then the URL, after
/// an optional `url=` and between optional quotes. `None` without a URL (a
/// refresh of the page itself), or for one not http(s).
fn refresh_url(content: &str, base: &Url) -> Option<Url> {
    let space = |c: char| c.is_ascii_whitespace();
    let rest = content.trim_start_matches(space);
    let after_delay = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    if after_delay.len() == rest.len() && !after_delay.starts_with('.') {
        return None;
    }
    let rest = after_delay.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !rest.is_empty() && !rest.starts_with([';', ',']) && !rest.starts_with(space) {
        return None;
    }
    let rest = rest.trim_start_matches(space);
    let rest = rest.strip_prefix([';', ',']).unwrap_or(rest);
    let rest = rest.trim_start_matches(space);
    let rest = match rest.get(..3) {
        Some(word) if word.eq_ignore_ascii_case("url") => rest[3..]
            .trim_start_matches(space)
            .strip_prefix('=')
            .map_or(rest, |r| r.trim_start_matches(space)),
        _ => rest,
    };
    let target = match rest.chars().next() {
        Some(quote @ ('"' | '\'')) => rest[1..].split(quote).next().unwrap_or(""),
        _ => rest,
    };
    let target = target.trim();
    if target.is_empty() {
        return None;
    }
    base.join(target)
        .ok()
        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
}

/// Whether no ancestor of `element` matches `css`.
fn outside(element: &scraper::ElementRef<'_>, css: &str) -> bool {
    let matcher = selector(css);
    !element
        .ancestors()
        .filter_map(scraper::ElementRef::wrap)
        .any(|a| matcher.matches(&a))
}

/// Detaches the elements matching `css` that are outside the content.
fn remove_outside_content(doc: &mut Html, css: &str) {
    remove_where(doc, css, |e| outside(e, CONTENT));
}

/// Detaches every element matching `css` from the tree.
fn remove(doc: &mut Html, css: &str) {
    remove_where(doc, css, |_| true);
}

/// Detaches the elements matching `css` for which `pick` holds (with what
/// they hold) from the tree.
fn remove_where(doc: &mut Html, css: &str, pick: impl Fn(&scraper::ElementRef<'_>) -> bool) {
    let ids: Vec<_> = doc
        .select(&selector(css))
        .filter(|e| pick(e))
        .map(|e| e.id())
        .collect();
    for id in ids {
        if let Some(mut node) = doc.tree.get_mut(id) {
            node.detach();
        }
    }
}

/// Markdown with headings, lists and tables; blank-line runs squeezed.
fn to_markdown(html: &str) -> String {
    let (html, tables) = tables_out(html);
    let mut markdown = htmd::HtmlToMarkdown::builder()
        .skip_tags(vec![
            "script", "style", "img", "picture", "video", "audio", "head",
        ])
        .add_handler(vec!["pre"], fenced_pre)
        .add_handler(vec!["a"], followable_link)
        .build()
        .convert(&html)
        .unwrap_or_default();
    if !tables.is_empty() {
        markdown = tables_in(&markdown, &tables);
    }
    let mut out = String::with_capacity(markdown.len());
    let mut blank = 0;
    for line in markdown.lines() {
        let line = line.trim_end();
        blank = if line.trim().is_empty() { blank + 1 } else { 0 };
        if blank < 2 {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim().to_string()
}

/// A `<pre>` as a fenced code block, with or without a `<code>` inside:
/// the converter fences only `<pre><code>`, and a bare `<pre>`'s lines
/// (`# étape 1`, `| a | b |`, an ASCII table) read as headings and table
/// rows, cutting the chunks and naming their headings wrongly.
fn fenced_pre(
    handlers: &dyn htmd::element_handler::Handlers,
    element: htmd::Element,
) -> Option<htmd::element_handler::HandlerResult> {
    let converted = handlers.fallback(element)?;
    let content = converted.content.trim_matches('\n');
    if content.starts_with("```") || content.trim().is_empty() {
        return Some(converted);
    }
    // Longer than any run of backticks inside, so that none closes it.
    let mut longest = 0;
    let mut run = 0;
    for c in content.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    Some(format!("\n\n{fence}\n{content}\n{fence}\n\n").into())
}

/// A link as the converter writes it, but one no reader can follow (an
/// address of another scheme than http, https, mailto or tel: a
/// `javascript:`, `data:` or `vbscript:` one; or an anchor on the same page)
/// is its text alone: `[clic](javascript:alert\(1\))` was stored, shown in
/// search snippets, and passed to whatever renders them.
fn followable_link(
    handlers: &dyn htmd::element_handler::Handlers,
    element: htmd::Element,
) -> Option<htmd::element_handler::HandlerResult> {
    let href = element
        .attrs
        .iter()
        .find(|a| &*a.name.local == "href")
        .map(|a| followed_form(&a.value));
    if href.is_some_and(|h| !followable(&h)) {
        return Some(handlers.walk_children(element.node));
    }
    handlers.fallback(element)
}

/// An address as it reads once what the page's text loses is gone: the
/// characters [`visible`] drops (control characters: `java&#1;script:`
/// becomes `javascript:` in the stored text) and white space (browsers drop
/// tabs and line breaks anywhere in it), lowercase.
fn followed_form(href: &str) -> String {
    visible(href.to_string())
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

/// Whether a link to `href` (as [`followed_form`] writes it) leads a
/// reader somewhere: a relative address or one of the schemes of the web,
/// mail and the telephone; not an anchor on the same page.
fn followable(href: &str) -> bool {
    if href.is_empty() || href.starts_with('#') {
        return false;
    }
    let scheme = href.split_once(':').map(|(scheme, _)| scheme).filter(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    match scheme {
        // `/a:b` or `?q=a:b`: a path or a query, relative.
        None => true,
        Some(scheme) => matches!(scheme, "http" | "https" | "mailto" | "tel"),
    }
}

/// Where the `i`-th table goes back after the conversion: two characters
/// of Unicode's private use area around its number, which the converter
/// leaves as they are and [`tables_out`] takes out of the page first.
const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';

fn table_mark(i: usize) -> String {
    format!("{MARK_OPEN}{i}{MARK_CLOSE}")
}

/// `markdown` with each table mark replaced by its table, in one pass.
fn tables_in(markdown: &str, tables: &[String]) -> String {
    let mut out =
        String::with_capacity(markdown.len() + tables.iter().map(String::len).sum::<usize>());
    let mut rest = markdown;
    while let Some(at) = rest.find(MARK_OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK_OPEN.len_utf8()..];
        let table = after.split_once(MARK_CLOSE).and_then(|(number, tail)| {
            let i: usize = number.parse().ok()?;
            Some((tables.get(i)?, tail))
        });
        match table {
            Some((table, tail)) => {
                out.push_str("\n\n");
                out.push_str(table);
                out.push_str("\n\n");
                rest = tail;
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// The most tables of one page rendered here; the others are the
/// converter's (a page of thousands of one-cell tables is not a price list).
const MAX_TABLES: usize = 200;
/// The most cells of one table's grid, spans filled in: past it, the
/// table is the converter's text (a `colspan` of 50 on thousands of cells
/// would make gigabytes of copies).
const MAX_GRID_CELLS: usize = 10_000;

/// Longest cell text of a data table; a longer one makes it a layout
/// table (a page laid out in a grid), left to the converter as text.
const MAX_CELL_CHARS: usize = 300;
/// The largest row and column spans followed (a `rowspan=10000` is a
/// broken page, not a table of that many rows).
const MAX_SPAN: usize = 50;

/// Takes the data tables out of `html`, each rendered as a Markdown table,
/// and leaves a mark where each was. The converter writes a table as one
/// only when its first row has header cells: an opening-hours table of
/// plain cells (`Lundi | Fermé`, the usual kind) came out as one word per
/// paragraph, the day no longer beside its hours. Spanned cells are
/// repeated into each row and column they cover, so that every row reads
/// whole (`Lundi` beside both of its time slots).
fn tables_out(html: &str) -> (String, Vec<String>) {
    if !html.contains("<table") {
        return (html.to_string(), Vec::new());
    }
    // The marks' characters are the marks' alone.
    let cleaned;
    let html = if html.contains([MARK_OPEN, MARK_CLOSE]) {
        cleaned = html.replace([MARK_OPEN, MARK_CLOSE], "\u{FFFD}");
        &cleaned
    } else {
        html
    };
    let mut doc = Html::parse_fragment(html);
    let table = selector("table");
    let rendered: Vec<_> = doc
        .select(&table)
        .filter(|t| outside(t, "table"))
        .take(MAX_TABLES)
        .filter_map(|t| markdown_table(&t).map(|md| (t.id(), md)))
        .collect();
    let mut tables = Vec::with_capacity(rendered.len());
    for (id, markdown) in rendered {
        let Some(mut node) = doc.tree.get_mut(id) else {
            continue;
        };
        node.insert_before(scraper::Node::Text(scraper::node::Text {
            text: format!(" {} ", table_mark(tables.len())).into(),
        }));
        node.detach();
        tables.push(markdown);
    }
    (doc.root_element().html(), tables)
}

/// A cell's words, one space between two: a line break (`<br>`) or the
/// edge of a block (a paragraph, a list item) between two words is a space
/// too. Joined bare, `Soin<br>kératine` was the one word `Soinkératine`,
/// which no search for either finds.
fn cell_text(cell: &scraper::ElementRef<'_>) -> String {
    // A line break, a rule, or a block: an element that closes a paragraph.
    let is_break = |node: &scraper::Node| {
        node.as_element().is_some_and(|e| {
            matches!(e.name(), "br" | "hr") || super::nesting::CLOSES_P.contains(&e.name())
        })
    };
    let mut text = String::new();
    for node in cell.descendants() {
        // After a block's end (`<p>Mèches</p>balayage`,
        // `<div>Coupe</div><small>30 min</small>`), a comment between.
        let mut before = node.prev_sibling();
        while let Some(comment) = before.filter(|n| n.value().is_comment()) {
            before = comment.prev_sibling();
        }
        if before.is_some_and(|n| is_break(n.value())) {
            text.push(' ');
        }
        match node.value() {
            scraper::Node::Text(words) => text.push_str(words),
            n if is_break(n) => text.push(' '),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A data table as Markdown: the first row is the header when it is made
/// of header cells (`th`, or the table's `thead`), else the header is
/// empty. `None` for a layout table (another table inside, or a cell of
/// more than [`MAX_CELL_CHARS`]) or an empty one.
fn markdown_table(table: &scraper::ElementRef<'_>) -> Option<String> {
    if table.select(&selector("table")).next().is_some() {
        return None;
    }
    let rows: Vec<_> = table.select(&selector("tr")).collect();
    let mut grid: Vec<Vec<Option<String>>> = vec![Vec::new(); rows.len()];
    // The first row heads the table when every cell of it is a header's.
    let mut header = !rows.is_empty();
    for (r, row) in rows.iter().enumerate() {
        let cells = row
            .children()
            .filter_map(scraper::ElementRef::wrap)
            .filter(|c| matches!(c.value().name(), "td" | "th"));
        let mut col = 0;
        for cell in cells {
            let text = cell_text(&cell);
            if text.chars().count() > MAX_CELL_CHARS {
                return None;
            }
            if r == 0 {
                header &= cell.value().name() == "th"
                    || cell.ancestors().any(|a| {
                        scraper::ElementRef::wrap(a).is_some_and(|e| e.value().name() == "thead")
                    });
            }
            let span = |name: &str| {
                cell.value()
                    .attr(name)
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(1)
                    .clamp(1, MAX_SPAN)
            };
            let (rows_spanned, cols_spanned) = (span("rowspan"), span("colspan"));
            if (col + cols_spanned).saturating_mul(rows.len()) > MAX_GRID_CELLS {
                return None;
            }
            // The next column no cell above reaches into.
            while grid[r].get(col).is_some_and(Option::is_some) {
                col += 1;
            }
            let text = text.replace('|', "\\|");
            for covered in grid.iter_mut().skip(r).take(rows_spanned) {
                if covered.len() < col + cols_spanned {
                    covered.resize(col + cols_spanned, None);
                }
                for slot in &mut covered[col..col + cols_spanned] {
                    *slot = Some(text.clone());
                }
            }
            col += cols_spanned;
        }
    }
    grid.retain(|row| {
        row.iter()
            .any(|c| c.as_deref().is_some_and(|t| !t.is_empty()))
    });
    let width = grid.iter().map(Vec::len).max()?;
    if width == 0 {
        return None;
    }
    let line = |cells: &[Option<String>]| {
        let mut out = String::from("|");
        for i in 0..width {
            match cells.get(i).and_then(Option::as_deref).unwrap_or("") {
                "" => out.push_str(" |"),
                text => {
                    out.push(' ');
                    out.push_str(text);
                    out.push_str(" |");
                }
            }
        }
        out
    };
    let mut lines = Vec::with_capacity(grid.len() + 3);
    // The caption names the table ("Horaires d'été"): kept above it.
    if let Some(caption) = table.select(&selector("caption")).next() {
        let caption = caption.text().collect::<String>();
        let caption = caption.split_whitespace().collect::<Vec<_>>().join(" ");
        if !caption.is_empty() {
            lines.push(caption);
            lines.push(String::new());
        }
    }
    let body = if header {
        lines.push(line(&grid[0]));
        &grid[1..]
    } else {
        lines.push(line(&[]));
        &grid[..]
    };
    lines.push(format!("|{}", " --- |".repeat(width)));
    lines.extend(body.iter().map(|row| line(row)));
    Some(lines.join("\n"))
}

/// A plain-text page as Markdown: its text as is, but for its control
/// characters ([`visible`]).
pub fn plain(text: &str, url: &Url) -> Extracted {
    Extracted {
        title: url.path().trim_matches('/').to_string(),
        markdown: visible(text.trim().to_string()),
        ..Extracted::default()
    }
}

/// A page's text as the knowledge base takes it: the control characters
/// a page may hold are not text, and the library refuses them (page
/// breaks become line breaks, the others go).
fn visible(text: String) -> String {
    onboarding::kb::without_control_characters(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library refuses a control character in a page's text: none
    /// reaches it, wherever the page had one.
    #[test]
    fn a_pages_control_characters_are_not_its_text() {
        let page = Url::parse("https://salon.fr/tarifs").unwrap();
        let html = "<html><head><title>Tarifs\u{7} du salon</title></head><body><main>\
            <p>Coupe\u{1} femme\u{0} 35 euros</p><footer>Salon Léa, 12 rue des Lilas\u{1b} 75011 Paris</footer>\
            </main><footer>Salon Léa\u{7}, 12 rue des Lilas, 75011 Paris</footer></body></html>";
        let got = extract(html, &page);
        assert_eq!(
            (
                got.title.as_str(),
                got.markdown.as_str(),
                got.footer.as_deref()
            ),
            (
                "Tarifs du salon",
                "Coupe femme 35 euros\n\nSalon Léa, 12 rue des Lilas 75011 Paris",
                Some("Salon Léa, 12 rue des Lilas, 75011 Paris")
            )
        );
        let text = plain("Page 1\u{c}Page 2\u{7}\r\n\tfin\u{0}", &page);
        assert_eq!(text.markdown, "Page 1\nPage 2\r\n\tfin");
    }

    #[test]
    fn links_and_the_canonical_are_read_against_the_base_element() {
        let page = Url::parse("http://a.fr/base/page").unwrap();
        let html = r#"<html><head><base href="/other/"><link rel="canonical" href="canon">
            </head><body><main><p>Texte</p><a href="target">T</a><a href="/abs">A</a>
            <a href="https://b.fr/x">B</a></main></body></html>"#;
        let got = extract(html, &page);
        assert_eq!(got.canonical.as_deref(), Some("http://a.fr/other/canon"));
        assert_eq!(
            got.links,
            [
                "http://a.fr/other/target",
                "http://a.fr/abs",
                "https://b.fr/x"
            ]
        );
        // Without one, or with one that is not http(s), the page's URL.
        let plain = r#"<html><head><base href="javascript:void(0)"></head>
            <body><main><a href="target">T</a></main></body></html>"#;
        assert_eq!(extract(plain, &page).links, ["http://a.fr/base/target"]);
    }

    #[test]
    fn a_meta_refresh_gives_its_url_read_against_the_base() {
        let page = Url::parse("http://a.fr/base/page").unwrap();
        let refresh = |content: &str| {
            let html = format!(
                "<html><head><meta http-equiv=\"Refresh\" content=\"{content}\"></head><body></body></html>"
            );
            extract(&html, &page).refresh.map(|u| u.to_string())
        };
        for (content, url) in [
            ("0; url=/fr/", Some("http://a.fr/fr/")),
            ("0;URL='fr/accueil'", Some("http://a.fr/base/fr/accueil")),
            ("5, url = &quot;/fr/&quot;", Some("http://a.fr/fr/")),
            ("0 /fr/", Some("http://a.fr/fr/")),
            ("0.5;url=https://www.a.fr/fr/", Some("https://www.a.fr/fr/")),
            ("3;urlfr", Some("http://a.fr/base/urlfr")),
            // A refresh of the page itself, or nothing readable.
            ("30", None),
            ("0; url=", None),
            ("url=/fr/", None),
            ("0x; url=/fr/", None),
            ("0; url=javascript:go()", None),
        ] {
            assert_eq!(refresh(content).as_deref(), url, "{content:?}");
        }
        let based = "<html><head><base href=\"/autre/\">\
            <meta http-equiv=refresh content=\"0; url=fr\"></head></html>";
        assert_eq!(
            extract(based, &page).refresh.map(String::from),
            Some("http://a.fr/autre/fr".to_string())
        );
        let none = "<html><head><meta name=refresh content=\"0; url=/fr/\"></head></html>";
        assert_eq!(extract(none, &page).refresh, None);
        // Inside a template, no browser acts on it.
        let inert = "<html><body><template><meta http-equiv=refresh content=\"0; url=/fr/\"></template></body></html>";
        assert_eq!(extract(inert, &page).refresh, None);
    }

    #[test]
    fn the_main_content_keeps_tables_and_drops_navigation_and_banners() {
        let html = r#"<html><head><title>Tarifs</title><script>x()</script></head><body>
            <header><nav><a href="/">Accueil</a></nav></header>
            <div class="cookie-banner">Nous utilisons des cookies</div>
            <main><h1>Nos tarifs</h1><p>Des prix clairs pour toute la famille, affichés au salon.</p><table><tr><th>Prestation</th><th>Prix</th></tr>
            <tr><td>Coupe homme</td><td>25 €</td></tr></table>
            <form><input name=q></form></main>
            <footer><p>12 rue des Lilas, 69003 Lyon</p></footer></body></html>"#;
        let got = extract(html, &Url::parse("http://a.fr/tarifs").unwrap());
        assert_eq!(got.title, "Tarifs");
        assert!(
            got.markdown.contains("| Coupe homme | 25 € |"),
            "{}",
            got.markdown
        );
        assert!(got.markdown.starts_with("# Nos tarifs"), "{}", got.markdown);
        assert!(!got.markdown.contains("cookies"));
        assert_eq!(got.footer.as_deref(), Some("12 rue des Lilas, 69003 Lyon"));
        assert_eq!(got.links, ["http://a.fr/"]);
        assert!(!got.noindex && !got.script_only);
    }

    #[test]
    fn a_short_page_with_a_script_is_content_and_an_empty_shell_is_not() {
        let base = Url::parse("http://a.fr/").unwrap();
        let hours = r#"<html><head><script>stats()</script></head><body><main>
            <h1>Horaires d'été</h1><table><tr><td>Juillet</td><td>9h – 13h</td></tr>
            <tr><td>Août</td><td>Fermé</td></tr></table></main></body></html>"#;
        let got = extract(hours, &base);
        assert!(!got.script_only);
        assert!(got.markdown.contains("Juillet"), "{}", got.markdown);
        let shell = r#"<html><head><script src="/app.js"></script></head>
            <body><div id="root">Chargement…</div><noscript>Activez JavaScript</noscript></body></html>"#;
        assert!(extract(shell, &base).script_only);
    }

    #[test]
    fn a_footer_of_divs_is_the_shared_block_and_a_footer_in_the_content_is_content() {
        let base = Url::parse("http://a.fr/").unwrap();
        let divs = r#"<html><body><div id="header"><a href="/">Accueil</a> <a href="/tarifs">Tarifs</a></div>
            <div id="contenu"><h1>Nos soins</h1><p>Soin profond à la kératine, massage du cuir chevelu.</p></div>
            <div id="footer"><p>12 rue des Lilas, 69003 Lyon – 04 78 12 34 56</p></div></body></html>"#;
        let got = extract(divs, &base);
        assert_eq!(
            got.markdown,
            "# Nos soins\n\nSoin profond à la kératine, massage du cuir chevelu."
        );
        assert_eq!(
            got.footer.as_deref(),
            Some("12 rue des Lilas, 69003 Lyon – 04 78 12 34 56")
        );
        let inner = r#"<html><body><main><h1>Offre</h1><p>Un soin offert pour une coupe.</p>
            <footer><p>Offre valable jusqu'au 31 décembre, non cumulable.</p></footer></main>
            <footer><p>12 rue des Lilas, 69003 Lyon</p></footer></body></html>"#;
        // A header heading a section is content, on a page without `main`.
        let sections = r#"<html><body><header><a href="/">Accueil</a></header>
            <section><header><h2>Horaires</h2></header><p>Mardi 9h-19h</p></section></body></html>"#;
        assert_eq!(
            extract(sections, &base).markdown,
            "## Horaires\n\nMardi 9h-19h"
        );
        let got = extract(inner, &base);
        assert!(
            got.markdown
                .ends_with("Offre valable jusqu'au 31 décembre, non cumulable."),
            "{}",
            got.markdown
        );
        assert_eq!(got.footer.as_deref(), Some("12 rue des Lilas, 69003 Lyon"));
    }

    #[test]
    fn a_menu_outside_a_nav_element_is_dropped_and_its_links_followed() {
        let base = Url::parse("http://a.fr/").unwrap();
        for menu in [
            r#"<div id="navbar"><a href="/">Accueil</a> <a href="/soins">Soins</a></div>"#,
            r#"<div class="navbar navbar-expand"><a href="/">Accueil</a> <a href="/soins">Soins</a></div>"#,
            r#"<ul role="menubar"><li><a href="/">Accueil</a></li><li><a href="/soins">Soins</a></li></ul>"#,
        ] {
            let html = format!(
                "<html><body>{menu}<div><h1>Nos soins</h1>\
                 <p>Soin profond à la kératine, massage du cuir chevelu.</p></div></body></html>"
            );
            let got = extract(&html, &base);
            assert_eq!(
                got.markdown, "# Nos soins\n\nSoin profond à la kératine, massage du cuir chevelu.",
                "{menu}"
            );
            assert_eq!(got.links, ["http://a.fr/", "http://a.fr/soins"], "{menu}");
        }
        // Inside the content, it is the content's.
        let inside = r#"<html><body><main><div class="navbar">Soins du visage, soins du corps</div>
            <p>Soin profond à la kératine, massage du cuir chevelu.</p></main></body></html>"#;
        assert_eq!(
            extract(inside, &base).markdown,
            "Soins du visage, soins du corps\n\nSoin profond à la kératine, massage du cuir chevelu."
        );
    }

    #[test]
    fn several_articles_without_main_are_all_kept() {
        let base = Url::parse("http://a.fr/").unwrap();
        let html = r#"<html><body><header><a href="/">Accueil</a></header><div>
            <h1>Nos prestations</h1><article><h2>Coupe</h2><p>Coupe et brushing, 35 euros.</p></article>
            <article><h2>Couleur</h2><p>Couleur végétale, 60 euros.</p></article></div></body></html>"#;
        assert_eq!(
            extract(html, &base).markdown,
            "# Nos prestations\n\n## Coupe\n\nCoupe et brushing, 35 euros.\n\n## Couleur\n\n\
             Couleur végétale, 60 euros."
        );
        let one = r#"<html><body><p>Menu du site</p><article><h1>Coupe</h1>
            <p>Coupe et brushing, 35 euros.</p></article></body></html>"#;
        assert_eq!(
            extract(one, &base).markdown,
            "# Coupe\n\nCoupe et brushing, 35 euros."
        );
    }

    #[test]
    fn inside_the_content_cookies_buttons_and_folded_answers_are_content() {
        let base = Url::parse("http://a.fr/").unwrap();
        let html = r#"<html><body><div class="cookie-banner"><p>Nous utilisons des cookies.</p>
            <button>Accepter</button></div><main>
            <section class="cookies-maison"><h2>Nos cookies maison</h2><p>Cookie chocolat, 2 euros.</p></section>
            <h2><button class="accordion-button">Acceptez-vous les chèques vacances ?</button></h2>
            <div aria-hidden="true"><p>Oui, pour toutes les prestations.</p></div></main></body></html>"#;
        assert_eq!(
            extract(html, &base).markdown,
            "## Nos cookies maison\n\nCookie chocolat, 2 euros.\n\n\
             ## Acceptez-vous les chèques vacances ?\n\nOui, pour toutes les prestations."
        );
    }

    #[test]
    fn cookie_banners_inside_the_content_are_dropped_and_cookies_sold_are_kept() {
        let base = Url::parse("http://a.fr/").unwrap();
        let text = "# Le salon\n\nCoupe, couleur et soins, du mardi au samedi.";
        for banner in [
            r#"<div class="cookie-banner">Nous utilisons des cookies. <button>Accepter</button></div>"#,
            r#"<div id="cookie-consent"><p>Acceptez-vous les cookies ?</p></div>"#,
            r#"<div class="cookieNotice"><p>Ce site dépose des cookies.</p></div>"#,
            r#"<div id="onetrust-banner-sdk"><p>We use cookies.</p></div>"#,
            r#"<div role="dialog" aria-label="Cookies"><p>Vos choix.</p></div>"#,
            r#"<div role="alertdialog" aria-label="Consentement"><p>Vos choix.</p></div>"#,
            r#"<section class="rgpd-popup"><p>Vos données personnelles.</p></section>"#,
            r#"<div class="Consent-Bar"><p>Paramétrer les traceurs.</p></div>"#,
            r#"<div id="CybotCookiebotDialog"><p>Ce site utilise des cookies.</p></div>"#,
            r#"<div id="cookie-law-info-bar"><span>Ce site utilise des cookies.</span></div>"#,
            r#"<div class="bandeau-cookies"><p>Ce site utilise des cookies.</p></div>"#,
            r#"<div class="cmplz-cookiebanner"><p>Gérer le consentement.</p></div>"#,
            r#"<div id="cookieConsent"><p>Ce site utilise des cookies.</p></div>"#,
        ] {
            let html = format!(
                "<html><body><main><h1>Le salon</h1>{banner}\
                 <p>Coupe, couleur et soins, du mardi au samedi.</p></main></body></html>"
            );
            assert_eq!(extract(&html, &base).markdown, text, "{banner}");
        }
        // A subject with no banner's form next to it, in one name, is the
        // page's own; so is a banner's name over more text than a banner.
        let html = r#"<html><body><main>
            <section class="cookies-maison"><h2>Nos cookies maison</h2><p>Cookie chocolat, 2 euros.</p></section>
            <section aria-label="Nos cookies"><p>Cookie citron, 2 euros.</p></section>
            <section class="consentement-eclaire"><h2>Consentement éclairé</h2><p>Signé avant le soin.</p></section>
            <div id="rgpd"><h2>Vos données</h2><p>Conservées trois ans.</p></div>
            <article class="post category-rgpd tag-cookies"><h2>Cookies et RGPD</h2><p>Ce que la loi demande.</p></article>
            <div class="sidebar cookies-list"><p>Cookie noisette, 2 euros.</p></div>
            <section id="notice-rgpd"><p>Notice d'information sur vos droits.</p></section>
            <div class="consentement-modalites"><p>Les modalités du consentement.</p></div>
            <div id="rgpd-notification-violations"><p>Violations notifiées sous 72 heures.</p></div>
            </main></body></html>"#;
        assert_eq!(
            extract(html, &base).markdown,
            "## Nos cookies maison\n\nCookie chocolat, 2 euros.\n\nCookie citron, 2 euros.\n\n\
             ## Consentement éclairé\n\nSigné avant le soin.\n\n## Vos données\n\nConservées trois ans.\n\n\
             ## Cookies et RGPD\n\nCe que la loi demande.\n\nCookie noisette, 2 euros.\n\n\
             Notice d'information sur vos droits.\n\nLes modalités du consentement.\n\n\
             Violations notifiées sous 72 heures."
        );
        let long = format!(
            "<html><body><main><div class=\"cookie-banner\"><p>{}</p></div></main></body></html>",
            "Biscuit ".repeat(300)
        );
        assert_eq!(
            extract(&long, &base).markdown.len(),
            "Biscuit ".len() * 300 - 1
        );
    }

    #[test]
    fn a_banners_name_is_read_word_by_word() {
        for name in [
            "cookie-banner",
            "cookieBanner",
            "CookieConsent",
            "cookies_popup",
            "gdpr-consent",
            "rgpd-pop-up",
            "Bandeau-RGPD",
            "cookiebar",
            "cookie-law-info-bar",
            "cmplz-cookiebanner",
        ] {
            assert!(banner_name(name), "{name}");
        }
        for name in [
            "cookies-maison",
            "category-rgpd",
            "tag-cookies",
            "sidebar",
            "cookie-sidebar",
            "notice-rgpd",
            "consentement-modalites",
            "rgpd-notification",
            "cookiesmaison",
            "consent",
            "banner",
            "",
        ] {
            assert!(!banner_name(name), "{name}");
        }
    }

    #[test]
    fn every_site_footer_is_the_shared_block() {
        let base = Url::parse("http://a.fr/").unwrap();
        let html = r#"<html><body><main><h1>Le salon</h1><p>Coupe, couleur et soins.</p></main>
            <div class="footer"><h3>Nous trouver</h3><p>5 place Bellecour, Lyon</p></div>
            <footer><p>© 2026 Salon Léa</p></footer></body></html>"#;
        assert_eq!(
            extract(html, &base).footer.as_deref(),
            Some("### Nous trouver\n\n5 place Bellecour, Lyon\n\n© 2026 Salon Léa")
        );
    }

    #[test]
    fn a_shell_that_says_it_is_loading_is_a_javascript_page() {
        let base = Url::parse("http://a.fr/").unwrap();
        let shell = r#"<html><head><script src="/app.js"></script></head><body><div id="app">
            <p>Chargement en cours, veuillez patienter…</p></div></body></html>"#;
        assert!(extract(shell, &base).script_only);
        let page = r#"<html><head><script src="/stats.js"></script></head><body><main>
            <h1>Livraison</h1><p>Le chargement des commandes se fait le mardi, au dépôt de Vénissieux.</p>
            <p>Les colis partent le jour même et arrivent en 48 heures partout en France.</p>
            <p>Pour un envoi express, comptez 12 euros de plus et une livraison le lendemain avant midi,
            du lundi au vendredi.</p></main></body></html>"#;
        assert!(!extract(page, &base).script_only);
    }

    #[test]
    fn meta_robots_none_is_noindex() {
        let base = Url::parse("http://a.fr/").unwrap();
        let page = |content: &str| {
            format!(
                r#"<html><head><meta name="robots" content="{content}"></head><body><main><p>Du texte, assez pour une page entière.</p></main></body></html>"#
            )
        };
        assert!(extract(&page("none"), &base).noindex);
        assert!(extract(&page("noindex, follow"), &base).noindex);
        assert!(extract(&page("noindex nofollow"), &base).noindex);
        assert!(!extract(&page("index, follow"), &base).noindex);
        assert!(!extract(&page("nosnippet"), &base).noindex);
        for meta in [
            r#"<meta name="ROBOTS" content="noindex">"#,
            r#"<meta name="Robots" content="NoIndex, NoFollow">"#,
            r#"<META NAME="GOOGLEBOT" CONTENT="NOINDEX">"#,
        ] {
            let html = format!("<html><head>{meta}</head><body><p>Du texte, assez pour une page.</p></body></html>");
            assert!(extract(&html, &base).noindex, "{meta}");
        }
    }

    /// `nofollow` (or `none`) leaves the page's links alone, for every
    /// crawler or for this one by its name; a rule for another crawler
    /// does not.
    #[test]
    fn meta_robots_nofollow_leaves_the_links() {
        let base = Url::parse("http://a.fr/").unwrap();
        let links = |meta: &str| {
            let html = format!(
                r#"<html><head>{meta}</head><body><main><p>Du texte, assez pour une page.</p>
                <a href="/suite">Suite</a></main></body></html>"#
            );
            let got = extract(&html, &base);
            (got.noindex, got.links)
        };
        let none: Vec<String> = Vec::new();
        let followed = vec!["http://a.fr/suite".to_string()];
        assert_eq!(
            links(r#"<meta name="robots" content="nofollow">"#),
            (false, none.clone())
        );
        assert_eq!(
            links(r#"<meta name="robots" content="none">"#),
            (true, none.clone())
        );
        assert_eq!(
            links(r#"<meta name="onboarding-kb-crawler" content="NoFollow, NoIndex">"#),
            (true, none)
        );
        assert_eq!(
            links(r#"<meta name="bingbot" content="nofollow, noindex">"#),
            (false, followed.clone())
        );
        assert_eq!(
            links(r#"<meta name="robots" content="index, follow">"#),
            (false, followed)
        );
    }

    /// A page nested deeper than a parser should walk (a hostile one of a
    /// few kilobytes aborted the server: the converter's recursion ran out
    /// of stack) is read flattened, its text kept, on a thread of the
    /// blocking pool's 2 MiB stack; so is one of 100,000 levels, at once.
    #[test]
    fn a_page_nested_thousands_deep_is_read_flattened() {
        let base = Url::parse("http://a.fr/").unwrap();
        let nested = |open: &str, depth: usize, close: &str| {
            format!(
                "<html><body><main><h1>Salon</h1>{}Coupe homme : 25 €{}</main></body></html>",
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        for html in [
            nested("<div>", 700, "</div>"),
            nested("<div>", 5_000, "</div>"),
            nested("<div>", 100_000, "</div>"),
            // Elements a parser keeps open, whatever their tags look like.
            nested("<optgroup>", 3_000, ""),
            nested("<rb>", 100_000, ""),
            nested("<div/>", 3_000, ""),
            nested("<span><div></span>", 3_000, ""),
            nested("<li><section>", 3_000, ""),
        ] {
            let bytes = html.len();
            let base = base.clone();
            let got = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || extract(&html, &base))
                .unwrap()
                .join()
                .unwrap();
            assert!(
                got.markdown.starts_with("# Salon\n\n")
                    && got.markdown.ends_with("Coupe homme : 25 €"),
                "{bytes} bytes: {}",
                &got.markdown[..got.markdown.len().min(200)]
            );
        }
        // A sloppy page the parser keeps shallow (an unclosed `font` in
        // each of 300 cells) keeps its structure and its links.
        let sloppy = format!(
            "<html><body><main><table>{}</table><h2>Tarifs</h2><p><a href=\"/tarifs\">Voir</a>\
             </p></main></body></html>",
            "<tr><td><font face=Arial>case</td></tr>".repeat(300)
        );
        let got = extract(&sloppy, &base);
        assert_eq!(got.links, ["http://a.fr/tarifs"]);
        assert!(
            got.markdown.ends_with("## Tarifs\n\n[Voir](/tarifs)"),
            "{}",
            got.markdown
        );
    }

    #[test]
    fn consent_managers_banners_are_dropped() {
        let base = Url::parse("http://a.fr/").unwrap();
        for banner in [
            r#"<div id="CybotCookiebotDialog"><p>Ce site utilise des cookies.</p></div>"#,
            r#"<div id="onetrust-banner-sdk"><p>Nous respectons votre vie privée.</p></div>"#,
            r#"<div id="tarteaucitronRoot"><p>Gestion des services.</p></div>"#,
            r#"<div class="cc-window cc-banner"><p>Ce site utilise des traceurs.</p></div>"#,
            r#"<div role="dialog" aria-label="Consentement aux cookies"><p>Accepter ou refuser.</p></div>"#,
            r#"<div id="gdpr-banner"><p>Vos données personnelles.</p></div>"#,
            r#"<div class="Bandeau-RGPD"><p>Vos choix de confidentialité.</p></div>"#,
            r#"<div id="axeptio_overlay"><p>Choisissez vos préférences.</p></div>"#,
            r#"<div id="didomi-host"><p>Vos préférences de confidentialité.</p></div>"#,
        ] {
            let html = format!(
                "<html><body>{banner}<h1>Le salon</h1><p>Coupe, couleur et soins, du mardi au samedi.</p></body></html>"
            );
            assert_eq!(
                extract(&html, &base).markdown,
                "# Le salon\n\nCoupe, couleur et soins, du mardi au samedi.",
                "{banner}"
            );
        }
    }

    #[test]
    fn tables_of_plain_cells_stay_tables_and_spans_fill_every_row() {
        let base = Url::parse("http://a.fr/").unwrap();
        let hours = r#"<html><body><main><h2>Horaires</h2><table>
            <caption>Horaires  du salon</caption>
            <tr><td>Lundi</td><td>Fermé</td></tr>
            <tr><td>Samedi</td><td>9h - 12h | 14h - 18h</td></tr></table>
            <p>Sur rendez-vous le dimanche.</p></main></body></html>"#;
        assert_eq!(
            extract(hours, &base).markdown,
            "## Horaires\n\nHoraires du salon\n\n| | |\n| --- | --- |\n| Lundi | Fermé |\n\
             | Samedi | 9h - 12h \\| 14h - 18h |\n\nSur rendez-vous le dimanche."
        );
        let spans = r#"<html><body><main><table>
            <thead><tr><th>Jour</th><th>Matin</th><th>Après-midi</th></tr></thead>
            <tr><td rowspan="2">Lundi</td><td>9h</td><td>14h</td></tr>
            <tr><td>10h</td><td>15h</td></tr>
            <tr><td>Mardi</td><td colspan="2">Fermé</td></tr></table></main></body></html>"#;
        assert_eq!(
            extract(spans, &base).markdown,
            "| Jour | Matin | Après-midi |\n| --- | --- | --- |\n| Lundi | 9h | 14h |\n\
             | Lundi | 10h | 15h |\n| Mardi | Fermé | Fermé |"
        );
        // A line break or a paragraph inside a cell parts its words.
        let broken = r#"<html><body><main><table>
            <tr><th>Prestation</th><th>Prix</th></tr>
            <tr><td>Coupe<br>+ brushing</td><td>45 €</td></tr>
            <tr><td><p>Mèches</p><p>balayage</p></td><td>80 €</td></tr>
            <tr><td><p>Soin</p>kératine</td><td><b>60</b> €</td></tr>
            <tr><td><div>Barbe</div><small>15 min</small></td><td>12<!-- TTC --> €</td></tr>
            <tr><td><p>Couleur</p><!-- racines -->racines</td><td>45 €</td></tr></table></main></body></html>"#;
        assert_eq!(
            extract(broken, &base).markdown,
            "| Prestation | Prix |\n| --- | --- |\n| Coupe + brushing | 45 € |\n\
             | Mèches balayage | 80 € |\n| Soin kératine | 60 € |\n| Barbe 15 min | 12 € |\n\
             | Couleur racines | 45 € |"
        );
        // A page laid out in a table is text, not a table of paragraphs.
        let layout = format!(
            "<html><body><table><tr><td><p>{}</p></td></tr></table></body></html>",
            "Un long texte de présentation du salon. ".repeat(10)
        );
        let got = extract(&layout, &base).markdown;
        assert!(!got.contains('|'), "{got}");
        assert!(got.starts_with("Un long texte"), "{got}");
    }

    #[test]
    fn marks_are_the_tables_alone_and_huge_grids_are_left_as_text() {
        let base = Url::parse("http://a.fr/").unwrap();
        // Page text holding the marks' characters does not take a table.
        let page = "<html><body><main><p>\u{E000}0\u{E001} avant</p><table>\
            <tr><td>Lundi</td><td>Fermé</td></tr></table></main></body></html>";
        assert_eq!(
            extract(page, &base).markdown,
            "\u{FFFD}0\u{FFFD} avant\n\n| | |\n| --- | --- |\n| Lundi | Fermé |"
        );
        // Spans that would fill a grid of millions of cells: text.
        let cells = "<td colspan=50 rowspan=50>x</td>".repeat(300);
        let huge = format!(
            "<html><body><main><table><tr>{cells}</tr>{}</table></main></body></html>",
            "<tr></tr>".repeat(49)
        );
        let got = extract(&huge, &base).markdown;
        assert!(!got.contains('|') && got.len() < 2_000, "{}", got.len());
    }

    /// A bare `<pre>` is a fenced block (its `# étape` lines no headings,
    /// its `|` lines no table), as `<pre><code>` was; a fence inside it
    /// does not close it.
    #[test]
    fn a_pre_is_fenced_with_or_without_code_inside() {
        let base = Url::parse("http://a.fr/").unwrap();
        let page = |inner: &str| {
            extract(
                &format!("<html><body><main><h1>Guide</h1>{inner}<p>Fin.</p></main></body></html>"),
                &base,
            )
            .markdown
        };
        assert_eq!(
            page("<pre># étape 1\n| pas | une | table |</pre>"),
            "# Guide\n\n```\n# étape 1\n| pas | une | table |\n```\n\nFin."
        );
        assert_eq!(
            page("<pre><code># étape 1\nls</code></pre>"),
            "# Guide\n\n```\n# étape 1\nls\n```\n\nFin."
        );
        assert_eq!(
            page("<pre>avant\n```\napr\u{e8}s</pre>"),
            "# Guide\n\n````\navant\n```\naprès\n````\n\nFin."
        );
    }

    /// A link no reader can follow is its text alone; the others stay
    /// links.
    #[test]
    fn a_link_no_reader_can_follow_is_its_text() {
        let base = Url::parse("http://a.fr/").unwrap();
        let got = extract(
            "<html><body><main><h1>Salon</h1><p><a href=\"javascript:alert(1)\">clic</a>, \
             <a href=\" JavaScript:void(0)\">ici</a>, <a href=\"java&#9;script:x()\">là</a>, \
             <a href=\"data:text/html,x\">data</a>, <a href=\"#haut\">haut</a>, \
             <a href=\"java&#1;script:alert(1)\">un</a>, <a href=\"&#1;javascript:x()\">deux</a>, \
             <a href=\"file:///etc/passwd\">fichier</a>, \
             <a href=\"/tarifs\">tarifs</a>, <a href=\"mailto:a@a.fr\">écrire</a>, \
             <a href=\"https://b.fr/x\">ailleurs</a>, <a href=\"/a:b\">chemin</a>.</p>\
             </main></body></html>",
            &base,
        );
        assert_eq!(
            got.markdown,
            "# Salon\n\nclic, ici, là, data, haut, un, deux, fichier, [tarifs](/tarifs), \
             [écrire](mailto:a@a.fr), [ailleurs](https://b.fr/x), [chemin](/a:b)."
        );
    }
}
