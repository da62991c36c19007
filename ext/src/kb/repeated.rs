//! Blocks a site's template repeats on most pages (an address, the opening
//! hours, a phone line written in a plain `div`, outside any footer the
//! crawler recognises): lifted out of the pages at the job's end and stored
//! once as their own document, so that a search finds them once and not on
//! every page.

use std::collections::{HashMap, HashSet};

/// Fewer letters and digits than this is not a block worth lifting (a
/// "Lire la suite" link, a lone price), unless it holds a contact detail.
const MIN_BLOCK_CHARS: usize = 20;

/// A block on at least this many pages, and on more than half of them, is
/// the template's.
const MIN_PAGES: usize = 3;

/// A block's identity: its words, whatever the spacing.
fn key(block: &str) -> String {
    block.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The blocks of a Markdown text: what blank lines separate (a heading, a
/// paragraph, a whole table, a whole list).
fn blocks(markdown: &str) -> Vec<&str> {
    markdown
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect()
}

fn heading_alone(block: &str) -> bool {
    block.starts_with('#') && !block.contains('\n')
}

/// Whether a block may be lifted: not a heading alone (a page's
/// "## Contact" heads that page's own text), and enough text or a contact
/// detail. A template's phone line or email address on a line of its own
/// (`Tél. 04 78 00 00 00`, 13 letters and digits) is short, and is the
/// block a caller asks for most: left on every page, a search for the
/// phone number answered the same line once per page.
fn liftable(block: &str) -> bool {
    !heading_alone(block)
        && (block.chars().filter(|c| c.is_alphanumeric()).count() >= MIN_BLOCK_CHARS
            || !super::french::contact_spans(block).is_empty())
}

/// The units a page offers for lifting: each liftable block, and each
/// heading with the liftable block right under it (`## Horaires` and its
/// table go together).
fn units(page: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, block) in page.iter().enumerate() {
        if liftable(block) {
            out.push((key(block), block.to_string()));
        } else if heading_alone(block) {
            if let Some(next) = page.get(i + 1).filter(|next| liftable(next)) {
                let unit = format!("{block}\n\n{next}");
                out.push((key(&unit), unit));
            }
        }
    }
    out
}

/// What a job's pages repeat: the text of the shared document, and what
/// [`strip`] takes out of each page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lifted {
    /// The repeated units in the order of their first appearance, a
    /// heading's block given once, under its heading.
    pub units: Vec<String>,
    keys: HashSet<String>,
}

impl Lifted {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

/// The blocks (with their heading, when it repeats with them) on more than
/// half of `pages` and on at least [`MIN_PAGES`]: the template's.
pub fn repeated(pages: &[&str]) -> Lifted {
    if pages.len() < MIN_PAGES {
        return Lifted::default();
    }
    let mut on_pages: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for page in pages {
        let mut seen = HashSet::new();
        for (k, unit) in units(&blocks(page)) {
            if seen.insert(k.clone()) {
                let n = on_pages.entry(k.clone()).or_insert(0);
                if *n == 0 {
                    order.push((k, unit));
                }
                *n += 1;
            }
        }
    }
    let repeated: Vec<(String, String)> = order
        .into_iter()
        .filter(|(k, _)| on_pages[k] >= MIN_PAGES && on_pages[k] * 2 > pages.len())
        .collect();
    let keys: HashSet<String> = repeated.iter().map(|(k, _)| k.clone()).collect();
    // A block lifted with its heading is not given a second time alone.
    let under_headings: HashSet<String> = repeated
        .iter()
        .filter(|(_, unit)| heading_alone(unit.split("\n\n").next().unwrap_or("")))
        .filter_map(|(_, unit)| unit.split_once("\n\n").map(|(_, block)| key(block)))
        .collect();
    Lifted {
        units: repeated
            .into_iter()
            .filter(|(k, _)| !under_headings.contains(k))
            .map(|(_, unit)| unit)
            .collect(),
        keys,
    }
}

/// `markdown` without what `lifted` holds, when it held any of it: `None`
/// when nothing was taken out (the text is then left exactly as it is).
pub fn strip(markdown: &str, lifted: &Lifted) -> Option<String> {
    let (rest, removed) = take_out(markdown, lifted);
    removed.then_some(rest)
}

/// `markdown` without what `lifted` holds (as the tests read it).
#[cfg(test)]
fn without(markdown: &str, lifted: &Lifted) -> String {
    take_out(markdown, lifted).0
}

/// `markdown` without what `lifted` holds: each repeated block, and a
/// repeated heading with its block; and whether anything was taken out.
fn take_out(markdown: &str, lifted: &Lifted) -> (String, bool) {
    let page = blocks(markdown);
    let mut kept = Vec::with_capacity(page.len());
    let mut i = 0;
    while i < page.len() {
        let block = page[i];
        if heading_alone(block) {
            if let Some(next) = page.get(i + 1) {
                if lifted.keys.contains(&key(&format!("{block} {next}"))) {
                    i += 2;
                    continue;
                }
            }
        }
        if !lifted.keys.contains(&key(block)) {
            kept.push(block);
        }
        i += 1;
    }
    let removed = kept.len() < page.len();
    (kept.join("\n\n"), removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "Salon Léa, 12 rue des Lilas, 69003 Lyon – 04 78 12 34 56";

    fn lifted(pages: &[String]) -> Lifted {
        let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
        repeated(&pages)
    }

    #[test]
    fn a_block_on_most_pages_is_lifted_once_in_its_first_order() {
        let hours = "Ouvert du mardi au samedi, de 9h à 19h";
        let pages = [
            format!("# Accueil\n\nBienvenue au salon, coupe et couleur.\n\n{ADDRESS}\n\n{hours}"),
            format!("# Tarifs\n\n| Coupe | 25 € |\n|---|---|\n\n{ADDRESS}\n\n{hours}"),
            format!("# Contact\n\nAppelez-nous ou passez au salon.\n\n{ADDRESS}\n\n{hours}"),
            format!("# Équipe\n\nLéa et Karim, coiffeurs depuis 2010.\n\n{ADDRESS}"),
        ];
        let lifted = lifted(&pages);
        assert_eq!(lifted.units, [ADDRESS, hours]);
        assert_eq!(
            without(&pages[1], &lifted),
            "# Tarifs\n\n| Coupe | 25 € |\n|---|---|"
        );
    }

    #[test]
    fn a_repeated_heading_goes_with_its_block() {
        let hours = "## Horaires\n\n| Mardi | 9h – 19h |\n| --- | --- |\n| Samedi | 9h – 18h |";
        let pages = [
            format!("# Accueil\n\nBienvenue au salon, coupe et couleur.\n\n{hours}"),
            format!("# Tarifs\n\nCoupe homme 25 €, coupe femme 35 €.\n\n{hours}\n\n{ADDRESS}"),
            format!("# Contact\n\n{ADDRESS}\n\n{hours}"),
        ];
        let lifted = lifted(&pages);
        assert_eq!(lifted.units, [hours]);
        assert_eq!(
            without(&pages[0], &lifted),
            "# Accueil\n\nBienvenue au salon, coupe et couleur."
        );
        // The address is on two pages of three: more than half, but under 3.
        assert_eq!(
            without(&pages[1], &lifted),
            format!("# Tarifs\n\nCoupe homme 25 €, coupe femme 35 €.\n\n{ADDRESS}")
        );
        // The table without its heading is taken out too.
        let bare = hours.split_once("\n\n").unwrap().1;
        assert_eq!(without(&format!("# Plan\n\n{bare}"), &lifted), "# Plan");
    }

    #[test]
    fn headings_short_blocks_and_blocks_on_half_the_pages_stay() {
        let pages = [
            format!("## Contact\n\nPrix\n\nPremière page, son texte à elle.\n\n{ADDRESS}"),
            format!("## Contact\n\nPrix\n\nDeuxième page, son texte à elle.\n\n{ADDRESS}"),
            "## Contact\n\nPrix\n\nTroisième page, son texte à elle.".to_string(),
            "## Contact\n\nPrix\n\nQuatrième page, son texte à elle.".to_string(),
        ];
        assert!(lifted(&pages).is_empty());
        // Two pages are not a template, whatever they share.
        assert!(lifted(&pages[..2]).is_empty());
    }

    #[test]
    fn a_short_phone_line_or_email_on_most_pages_is_lifted() {
        let pages = [
            "# Accueil\n\nBienvenue au salon.\n\nSalon Léa\n\nTél. 04 78 00 00 00\n\ncontact@lea.fr",
            "# Tarifs\n\nCoupe 25 €.\n\nSalon Léa\n\nTél. 04 78 00 00 00\n\ncontact@lea.fr",
            "# Équipe\n\nLéa et Karim.\n\nSalon Léa\n\nTél. 04 78 00 00 00\n\ncontact@lea.fr",
        ];
        let lifted = repeated(&pages);
        // The name alone, as short and with no contact detail, stays.
        assert_eq!(lifted.units, ["Tél. 04 78 00 00 00", "contact@lea.fr"]);
        assert_eq!(
            without(pages[1], &lifted),
            "# Tarifs\n\nCoupe 25 €.\n\nSalon Léa"
        );
    }

    #[test]
    fn spacing_does_not_make_another_block() {
        let pages = [
            format!("Une page.\n\n{ADDRESS}"),
            format!("Une autre page.\n\n{}", ADDRESS.replace(' ', "  ")),
            format!("Encore une page.\n\n  {ADDRESS}\n"),
        ];
        let lifted = lifted(&pages);
        assert_eq!(lifted.units, [ADDRESS]);
        assert_eq!(without(&pages[1], &lifted), "Une autre page.");
        assert_eq!(
            strip(&pages[1], &lifted).as_deref(),
            Some("Une autre page.")
        );
        assert_eq!(strip("Rien à retirer.\n\n\n  ici", &lifted), None);
    }
}
