//! Blocks a site's template repeats on most pages (an address, the opening
//! hours, a phone line written in a plain `div`, outside any footer the
//! crawler recognises): lifted out of the pages at the job's end and stored
//! once as their own document, so that a search finds them once and not on
//! every page.

use std::collections::{HashMap, HashSet};

/// Fewer letters and digits than this is not a block worth lifting (a
/// "Lire la suite" link, a lone price).
const MIN_BLOCK_CHARS: usize = 20;

/// A block on at least this many pages, and on more than half of them, is
/// the template's.
const MIN_PAGES: usize = 3;

/// A block's identity: its words, whatever the spacing.
fn key(block: &str) -> String {
    block.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The blocks of a Markdown text: what blank lines separate (a paragraph, a
/// whole table, a whole list).
fn blocks(markdown: &str) -> impl Iterator<Item = &str> {
    markdown
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
}

/// Whether a block may be lifted: enough text, and not a heading alone
/// (a page's "## Contact" heads that page's own text).
fn liftable(block: &str) -> bool {
    let heading_alone = block.starts_with('#') && !block.contains('\n');
    !heading_alone && block.chars().filter(|c| c.is_alphanumeric()).count() >= MIN_BLOCK_CHARS
}

/// The blocks on more than half of `pages` and on at least [`MIN_PAGES`],
/// in the order of their first appearance: the template's.
pub fn repeated(pages: &[&str]) -> Vec<String> {
    if pages.len() < MIN_PAGES {
        return Vec::new();
    }
    let mut on_pages: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for page in pages {
        let mut seen = HashSet::new();
        for block in blocks(page).filter(|b| liftable(b)) {
            let k = key(block);
            if seen.insert(k.clone()) {
                let n = on_pages.entry(k.clone()).or_insert(0);
                if *n == 0 {
                    order.push((k, block.to_string()));
                }
                *n += 1;
            }
        }
    }
    order
        .into_iter()
        .filter(|(k, _)| {
            let n = on_pages[k];
            n >= MIN_PAGES && n * 2 > pages.len()
        })
        .map(|(_, block)| block)
        .collect()
}

/// `markdown` without the blocks of `lifted` (compared by their words).
pub fn without(markdown: &str, lifted: &[String]) -> String {
    let keys: HashSet<String> = lifted.iter().map(|b| key(b)).collect();
    blocks(markdown)
        .filter(|b| !keys.contains(&key(b)))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "Salon Léa, 12 rue des Lilas, 69003 Lyon – 04 78 12 34 56";

    #[test]
    fn a_block_on_most_pages_is_lifted_once_in_its_first_order() {
        let hours = "Ouvert du mardi au samedi, de 9h à 19h";
        let pages = [
            format!("# Accueil\n\nBienvenue au salon, coupe et couleur.\n\n{ADDRESS}\n\n{hours}"),
            format!("# Tarifs\n\n| Coupe | 25 € |\n|---|---|\n\n{ADDRESS}\n\n{hours}"),
            format!("# Contact\n\nAppelez-nous ou passez au salon.\n\n{ADDRESS}\n\n{hours}"),
            format!("# Équipe\n\nLéa et Karim, coiffeurs depuis 2010.\n\n{ADDRESS}"),
        ];
        let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
        assert_eq!(repeated(&pages), [ADDRESS, hours]);
        assert_eq!(
            without(pages[1], &repeated(&pages)),
            "# Tarifs\n\n| Coupe | 25 € |\n|---|---|"
        );
    }

    #[test]
    fn headings_short_blocks_and_blocks_on_half_the_pages_stay() {
        let pages = [
            format!("## Contact\n\nPrix\n\nPremière page, son texte à elle.\n\n{ADDRESS}"),
            format!("## Contact\n\nPrix\n\nDeuxième page, son texte à elle.\n\n{ADDRESS}"),
            "## Contact\n\nPrix\n\nTroisième page, son texte à elle.".to_string(),
            "## Contact\n\nPrix\n\nQuatrième page, son texte à elle.".to_string(),
        ];
        let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
        assert!(repeated(&pages).is_empty());
        // Two pages are not a template, whatever they share.
        assert!(repeated(&pages[..2]).is_empty());
    }

    #[test]
    fn spacing_does_not_make_another_block() {
        let pages = [
            format!("Une page.\n\n{ADDRESS}"),
            format!("Une autre page.\n\n{}", ADDRESS.replace(' ', "  ")),
            format!("Encore une page.\n\n  {ADDRESS}\n"),
        ];
        let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
        assert_eq!(repeated(&pages), [ADDRESS]);
        assert_eq!(without(pages[1], &repeated(&pages)), "Une autre page.");
    }
}
