//! French-aware analysis, the same on both sides: a chunk's text when it is
//! indexed and a caller's question when it is searched.
//!
//! FTS5 sees only the output: space-separated terms that its built-in
//! `unicode61` tokenizer indexes as they are, so the database file needs no
//! custom tokenizer to be read elsewhere. A term is a word lowercased,
//! stemmed with the Snowball French stemmer (`rust-stemmers`), then folded
//! to ASCII: "Réservez" and "réserver" both become `reserv`. Stemming runs
//! before folding because the stemmer's rules are written for accented
//! words. Stop words go: without them a spoken question ("vous êtes
//! ouverts ?") ranks every "rendez-vous" first.
//!
//! That order has a cost the question pays: a word typed without its
//! accents is stemmed as another word ("mariée" is `mari`, "mariee"
//! `marie`; the stemmer strips `ée`, not `ee`). So a question's word typed
//! without accents also asks for the terms of its accented spellings (see
//! [`spellings`]), and an accented word also asks for the term a page that
//! dropped its accents got. The index holds one term a word; a question
//! holds a few, as it holds synonyms.

use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};

/// Words that carry no meaning in a question or a page, lowercase, accents
/// kept (they are removed before stemming). Not "été": it is also the
/// summer of "horaires d'été".
const STOP_WORDS: &[&str] = &[
    "a", "à", "ai", "aie", "aient", "ainsi", "alors", "as", "au", "aucun", "aussi", "autre", "aux",
    "avais", "avait", "avant", "avec", "avez", "aviez", "avoir", "avons", "bien", "bon", "bonjour",
    "c", "ça", "car", "ce", "ceci", "cela", "celle", "celui", "ces", "cet", "cette", "chez", "ci",
    "comme", "comment", "d", "dans", "de", "des", "dois", "doit", "donc", "du", "elle", "elles",
    "en", "encore", "es", "est", "et", "étaient", "était", "êtes", "être", "eu", "eux", "faire",
    "fais", "fait", "faut", "hein", "ici", "il", "ils", "j", "je", "l", "la", "là", "le", "les",
    "leur", "leurs", "lui", "m", "ma", "mais", "me", "même", "mes", "moi", "mon", "n", "ne", "ni",
    "nos", "notre", "nous", "on", "ont", "ou", "où", "par", "pas", "peu", "peut", "peux", "plus",
    "pour", "pourrais", "pouvez", "puis", "qu", "quand", "que", "quel", "quelle", "quelles",
    "quels", "qui", "s", "sa", "sans", "se", "ses", "si", "sil", "son", "sont", "suis", "sur",
    "svp", "t", "ta", "te", "tes", "toi", "ton", "tous", "tout", "toute", "toutes", "tu", "un",
    "une", "vos", "votre", "vous", "voudrais", "voulez", "vu", "y", "euh", "oui", "non", "merci",
    "madame", "monsieur", "savoir", "dire", "fois",
];

/// Question words and spoken forms mapped to the words a business page
/// uses for the same thing. Applied to a question only: a page says
/// "Horaires", a caller asks "vous êtes ouverts ?". Keys are lowercase
/// words as spoken; values are added as they are analysed.
const SYNONYMS: &[(&str, &[&str])] = &[
    ("ouvert", &["horaires", "ouverture"]),
    ("ouverts", &["horaires", "ouverture"]),
    ("ouverte", &["horaires", "ouverture"]),
    ("ouvrez", &["horaires", "ouverture"]),
    ("ouverture", &["horaires"]),
    ("fermé", &["horaires", "fermeture"]),
    ("fermez", &["horaires", "fermeture"]),
    ("heure", &["horaires"]),
    ("heures", &["horaires"]),
    ("combien", &["tarifs", "prix"]),
    ("coûte", &["tarifs", "prix"]),
    ("coute", &["tarifs", "prix"]),
    ("cher", &["tarifs", "prix"]),
    ("prix", &["tarifs"]),
    ("tarif", &["prix"]),
    ("où", &["adresse", "accès"]),
    ("trouve", &["adresse", "accès"]),
    ("trouvez", &["adresse", "accès"]),
    ("situés", &["adresse", "accès"]),
    ("venir", &["adresse", "accès"]),
    ("appeler", &["téléphone", "contact"]),
    ("joindre", &["téléphone", "contact"]),
    ("numéro", &["téléphone"]),
    ("mail", &["email", "contact"]),
    ("rdv", &["rendez", "réservation"]),
    ("rendez", &["réservation"]),
    ("réserver", &["rendez"]),
    ("garer", &["parking", "stationnement"]),
    ("stationner", &["parking"]),
    ("payer", &["paiement"]),
    ("carte", &["paiement"]),
    ("annuler", &["annulation"]),
    ("enfant", &["enfants"]),
    ("gamin", &["enfant"]),
];

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::French))
}

/// Lowercase, without diacritics, ligatures spelt out: "Œuvre" -> "oeuvre".
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => out.push('a'),
            'ç' => out.push('c'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'î' | 'ï' | 'í' | 'ì' => out.push('i'),
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => out.push('o'),
            'ù' | 'û' | 'ü' | 'ú' => out.push('u'),
            'ÿ' | 'ý' => out.push('y'),
            'ñ' => out.push('n'),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            _ => out.push(c),
        }
    }
    out
}

/// The words of `text`, lowercase, accents kept: letters and digits; an
/// apostrophe or a hyphen separates ("d'ouverture" -> "d", "ouverture").
/// Typographic ligatures ("ﬁnance", pasted from a PDF) are spelt out.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| spell_ligatures(w.to_lowercase()))
}

/// The Latin ligatures of Unicode's presentation forms (U+FB00-FB06), as
/// their letters: the stemmer and the folding know only the letters.
fn spell_ligatures(word: String) -> String {
    if !word.chars().any(|c| ('\u{fb00}'..='\u{fb06}').contains(&c)) {
        return word;
    }
    let mut out = String::with_capacity(word.len() + 4);
    for c in word.chars() {
        match c {
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => out.push_str("st"),
            _ => out.push(c),
        }
    }
    out
}

fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// A question's stop word, typed with or without its accents ("etes",
/// "ca" are "êtes", "ça").
fn is_question_stop_word(word: &str) -> bool {
    static FOLDED: OnceLock<Vec<String>> = OnceLock::new();
    is_stop_word(word) || {
        let folded = FOLDED.get_or_init(|| STOP_WORDS.iter().map(|w| fold(w)).collect());
        let word = fold(word);
        folded.contains(&word)
    }
}

/// How far from a word's end the accents that change its stem sit: the
/// French stemmer's accented endings are at most five letters (`èrent`,
/// `ières`; `é`, `ée`, `ées`, `és`, `ité`, `ère`).
const ACCENTED_ENDING: usize = 5;

/// The terms a question's word matches besides its own. Typed without
/// accents, the terms of its spellings with each plain `e` of its last
/// five letters read as `e`, `é` or `è` (at most 27; "mariee" asks for
/// `marie` and, as "mariée", `mari`). Typed with accents, the term of its
/// plain spelling, which a page written without accents got ("mariée"
/// asks for `marie` too).
fn spellings(word: &str) -> Vec<String> {
    if !word.is_ascii() {
        return vec![term(&fold(word))];
    }
    let bytes = word.as_bytes();
    let start = bytes.len().saturating_sub(ACCENTED_ENDING);
    let plain_e: Vec<usize> = (start..bytes.len()).filter(|&i| bytes[i] == b'e').collect();
    let mut out = Vec::new();
    // Each `e` as one of three letters: the combinations counted in base 3,
    // the first (all plain) being the word itself.
    'spelling: for combination in 1..3usize.pow(plain_e.len() as u32) {
        let mut spelt = String::with_capacity(word.len() + plain_e.len());
        let mut digits = combination;
        let mut last = 0;
        for &at in &plain_e {
            let letter = ['e', 'é', 'è'][digits % 3];
            // French writes `è` before a consonant alone (`ère`, `ès`):
            // a final or a vowel-led `è` spells no word.
            if letter == 'è' && bytes.get(at + 1).is_none_or(|b| b"aeiouy".contains(b)) {
                continue 'spelling;
            }
            spelt.push_str(&word[last..at]);
            spelt.push(letter);
            digits /= 3;
            last = at + 1;
        }
        spelt.push_str(&word[last..]);
        out.push(term(&spelt));
    }
    out
}

/// One word's term: stemmed, then folded.
fn term(word: &str) -> String {
    fold(&stemmer().stem(word))
}

/// The terms of a text to index, in order, stop words left out.
pub fn index_terms(text: &str) -> String {
    let mut out = String::with_capacity(text.len() / 2);
    for word in words(text).filter(|w| !is_stop_word(w)) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&term(&word));
    }
    out
}

/// The distinct terms of a question, synonyms added, in order of first
/// appearance.
pub fn query_terms(question: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut add = |t: String| {
        if !t.is_empty() && !terms.contains(&t) {
            terms.push(t);
        }
    };
    for word in words(question) {
        if let Some((_, more)) = SYNONYMS.iter().find(|(k, _)| *k == word) {
            more.iter()
                .flat_map(|m| words(m))
                .for_each(|m| add(term(&m)));
        }
        if !is_question_stop_word(&word) {
            add(term(&word));
            spellings(&word).into_iter().for_each(&mut add);
        }
    }
    terms
}

/// An FTS5 query matching any of `terms` in a chunk's terms or heading
/// terms (not in its tenant column): each quoted, so that no term is read
/// as FTS5 syntax (`AND`, `NEAR`, a column filter).
pub fn fts_query(terms: &[String]) -> String {
    let any = terms
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!("{{terms heading_terms}} : ({any})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_and_inflections_meet_on_one_term() {
        assert_eq!(index_terms("Réservez"), index_terms("réserver"));
        assert_eq!(index_terms("Coupes"), index_terms("coupe"));
        assert_eq!(index_terms("Horaires d'ouverture"), "horair ouvertur");
        assert_eq!(fold("Œuvre à Noël"), "oeuvre a noel");
        // Ligatures pasted from a PDF, and the summer.
        assert_eq!(index_terms("ﬁnance ﬂeurs eﬀet"), "financ fleur effet");
        assert_eq!(index_terms("Horaires d'été"), "horair ete");
        assert_eq!(
            query_terms("vous êtes ouverts l'été ?")[2..],
            ["ouvert", "ete"]
        );
    }

    #[test]
    fn a_word_typed_without_its_accents_meets_the_page_and_back() {
        // Words whose accented ending the stemmer strips and whose plain
        // one it does not: the terms differ, the question finds the page.
        for (plain, accented) in [
            ("mariee", "mariée"),
            ("mariees", "mariées"),
            ("apprecie", "apprécié"),
            ("appreciee", "appréciée"),
            ("parametree", "paramétrée"),
            ("listee", "listée"),
            ("reservee", "réservée"),
            ("premiere", "première"),
            ("entierement", "entièrement"),
        ] {
            let page = index_terms(accented);
            assert!(
                query_terms(plain).contains(&page),
                "{plain}: {:?} lacks {page}",
                query_terms(plain)
            );
            // A page that dropped its accents, asked with them.
            let plain_page = index_terms(plain);
            assert!(
                query_terms(accented).contains(&plain_page),
                "{accented}: {:?} lacks {plain_page}",
                query_terms(accented)
            );
        }
        assert_eq!(index_terms("mariée"), "mari");
        assert_eq!(query_terms("mariee"), ["marie", "mari"]);
        // No `è` at a word's end or before a vowel: "coupe" asks for
        // "coupé" (the same term) and nothing else.
        assert_eq!(query_terms("coupe"), ["coup"]);
        // Stop words typed without their accents are still stop words.
        assert_eq!(
            query_terms("vous etes ouverts ca"),
            query_terms("vous êtes ouverts ça")
        );
    }

    #[test]
    fn a_spoken_question_keeps_its_meaning_and_gains_synonyms() {
        assert_eq!(
            query_terms("Vous êtes ouverts le samedi ?"),
            ["horair", "ouvertur", "ouvert", "samed"]
        );
        assert_eq!(
            query_terms("c'est combien une coupe homme ?"),
            ["tarif", "prix", "combien", "coup", "homm"]
        );
        assert_eq!(
            fts_query(&query_terms("où ?")),
            "{terms heading_terms} : (\"adress\" OR \"acces\")"
        );
    }
}
