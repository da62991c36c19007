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
//! `marie`; the stemmer strips `ée`, not `ee`). So a question's word also
//! asks for the terms of its spellings with accents on the `e`s of its
//! ending (see [`spellings`]), and an accented word for the term a page
//! that dropped its accents got. The index holds one term a word; a
//! question holds a few, as it holds synonyms. Some of them are no word
//! ("cartès"): they match nothing and cost a lookup.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use foldhash::fast::RandomState;
use regex::Regex;
use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;

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
    // "ouvrir" has two stems (`ouvr`, `ouvert`): the forms a caller asks
    // the hours with meet the page's "ouvert" and "ouverture" here. Not
    // "ouvrir" itself ("ouvrir un compte").
    ("ouvrez", &["horaires", "ouverture", "ouvert"]),
    ("ouvre", &["horaires", "ouverture", "ouvert"]),
    ("ouvrent", &["horaires", "ouverture", "ouvert"]),
    ("ouvrira", &["horaires", "ouverture", "ouvert"]),
    ("ouverture", &["horaires"]),
    ("fermé", &["horaires", "fermeture"]),
    ("fermez", &["horaires", "fermeture"]),
    ("ferment", &["horaires", "fermeture"]),
    ("heure", &["horaires"]),
    ("heures", &["horaires"]),
    // A page's hours table abbreviates the days ("Lun-Sam", "Dim : fermé"):
    // those that are no other word. Not "mar" (mars), "mer" (la mer, les
    // mères), "jeu", "ven" (every "venez"). A day asks for no "horaires":
    // "vous livrez le samedi ?" is about deliveries.
    ("lundi", &["lun"]),
    ("samedi", &["sam"]),
    ("dimanche", &["dim"]),
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
    ("appeler", &["téléphone", "tél", "contact"]),
    ("joindre", &["téléphone", "tél", "contact"]),
    ("numéro", &["téléphone", "tél"]),
    ("téléphone", &["tél"]),
    // "E-mail" is two words on the page, "e" and "mail".
    ("mail", &["email", "courriel", "contact"]),
    ("email", &["mail", "courriel"]),
    ("courriel", &["email", "mail"]),
    // Both ways where no stem is another word's: a caller says "rendez-vous" to
    // a page that writes "RDV" as often as the other way round.
    ("rdv", &["rendez", "réservation"]),
    ("rendez", &["rdv", "réservation"]),
    ("réserver", &["rendez", "rdv"]),
    ("garer", &["parking"]),
    ("stationner", &["parking", "stationnement"]),
    // Not "stationnement" for "parking" or "garer": its stem, `station`,
    // is every "station de lavage", "station de métro" ("stationner" asks
    // for it as its own).
    ("stationnement", &["parking"]),
    ("payer", &["paiement"]),
    ("carte", &["paiement", "cb"]),
    ("cb", &["carte", "paiement"]),
    ("fermeture", &["horaires"]),
    ("annuler", &["annulation"]),
    // Not the other way: "livraison" asking for `livr` would find every
    // page of books ("livre").
    ("livrez", &["livraison"]),
    ("livrer", &["livraison"]),
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
/// Typographic ligatures ("ﬁnance", pasted from a PDF) are spelt out. A
/// verb after the subject "nous" is read in its "vous" form (see
/// [`vous_form`]), and a range of days is followed by the names of the
/// days it holds (see [`Reading::days`]).
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut pieces = pieces(text).peekable();
    let mut reading = Reading::default();
    // The days a range holds, the last one first.
    let mut days: Vec<&'static str> = Vec::new();
    std::iter::from_fn(move || {
        if let Some(day) = days.pop() {
            return Some(day.to_string());
        }
        let (before, word) = pieces.next()?;
        let word = match word.contains(in_word_invisible) {
            true => word.replace(in_word_invisible, "").to_lowercase(),
            false => word.to_lowercase(),
        };
        let word = spell_ligatures(word);
        let word = reading.verb(before, word);
        // The word after, whether it goes on a list of days: "Lundi –
        // Jeudi – Samedi" is three days, no range.
        let listed = |whole: bool| {
            pieces.peek().is_some_and(|(after, next)| {
                is_dash(after, !whole)
                    && day_of(&next.to_lowercase()).is_some_and(|(_, w)| w == whole)
            })
        };
        reading.days(before, &word, listed, &mut days);
        Some(word)
    })
}

/// What the words read so far say about the next one.
#[derive(Default)]
struct Reading {
    /// The words before are the subject "nous", and maybe pronouns.
    after_nous: bool,
    /// The word before makes a "nous" after it an object: "chez nous",
    /// "vous nous trouvez", "contactez nous".
    object_next: bool,
    /// The words before are a day, a day and "au" ("du lundi au"), or a
    /// list of days.
    day: Option<DayRead>,
}

#[derive(Clone, Copy)]
enum DayRead {
    /// A day: its index, Monday 0, and whether it was its whole name.
    Day(usize, bool),
    /// A day, then "au" or "à".
    To(usize, bool),
    /// A list of days ("Lundi – Jeudi – Samedi"), whole or abbreviated.
    Listed(bool),
}

/// The days of the week, Monday first, with the abbreviation an hours
/// table gives each.
const DAYS: [(&str, &str); 7] = [
    ("lundi", "lun"),
    ("mardi", "mar"),
    ("mercredi", "mer"),
    ("jeudi", "jeu"),
    ("vendredi", "ven"),
    ("samedi", "sam"),
    ("dimanche", "dim"),
];

/// A day's index and whether `word` is its whole name.
fn day_of(word: &str) -> Option<(usize, bool)> {
    DAYS.iter().enumerate().find_map(|(n, (name, short))| {
        (word == *name)
            .then_some((n, true))
            .or((word == *short).then_some((n, false)))
    })
}

/// Words after which "nous" is an object, not the subject: prepositions
/// ("chez nous les leçons…") and subject pronouns ("vous nous trouvez").
/// An imperative ("contactez nous", without its hyphen) ends in `-ez`.
const BEFORE_AN_OBJECT: &[&str] = &[
    "chez", "avec", "pour", "de", "d", "à", "a", "par", "sans", "sur", "sous", "entre", "contre",
    "vers", "selon", "parmi", "envers", "auprès", "je", "j", "tu", "il", "elle", "on", "vous",
    "ils", "elles",
];

impl Reading {
    /// `word`, or its "vous" form when it is the verb of the subject
    /// "nous"; `before` is the text since the word before.
    fn verb(&mut self, before: &str, word: String) -> String {
        let joined = is_joining(before);
        let object_before = self.object_next && joined;
        self.object_next = BEFORE_AN_OBJECT.contains(&word.as_str()) || word.ends_with("ez");
        if self.after_nous && joined {
            if let Some(verb) = vous_form(&word) {
                self.after_nous = false;
                return verb;
            }
            self.after_nous = CLITICS.contains(&word.as_str());
        } else {
            // "Contactez-nous" and "nous-mêmes" are no subject.
            self.after_nous = word == "nous" && !before.ends_with('-') && !object_before;
        }
        word
    }

    /// An hours table says "Lun-Ven : 9h-18h", a page "du mardi au
    /// samedi"; a caller asks "vous êtes ouverts le mercredi ?". A range
    /// of days, two days joined by one dash or by "au" or "à", both whole
    /// or both abbreviated (their abbreviations are days there, and only
    /// there: "mar" is also March, "mer" the sea, "Sam" a name; "la Mer –
    /// Lundi au samedi" holds one range, Monday to Saturday), is followed
    /// by the whole names of the days it holds, but those written whole:
    /// "Lun-Ven" reads as "Lun-Ven lundi mardi mercredi jeudi vendredi". A
    /// range may run past Sunday ("Ven-Lun"). Days joined by dashes one
    /// after another are a list (`listed`: the word after `word` goes on
    /// with a dash and a day), and a full stop ends a range but after an
    /// abbreviation ("lun. au ven.").
    fn days(
        &mut self,
        before: &str,
        word: &str,
        listed: impl FnOnce(bool) -> bool,
        days: &mut Vec<&'static str>,
    ) {
        let day = day_of(word);
        self.day = match (self.day.take(), day) {
            (Some(DayRead::Day(from, from_whole)), Some((to, to_whole)))
                if from_whole == to_whole && is_dash(before, !from_whole) =>
            {
                if listed(to_whole) {
                    Some(DayRead::Listed(to_whole))
                } else {
                    range(from, to, from_whole, days);
                    None
                }
            }
            (Some(DayRead::Listed(whole)), Some((_, to_whole)))
                if whole == to_whole && is_dash(before, !whole) =>
            {
                Some(DayRead::Listed(whole))
            }
            (Some(DayRead::To(from, from_whole)), Some((to, to_whole)))
                if from_whole == to_whole && is_spaced(before, false) =>
            {
                range(from, to, from_whole, days);
                None
            }
            (Some(DayRead::Day(from, whole)), None)
                if matches!(word, "au" | "à" | "a") && is_spaced(before, !whole) =>
            {
                Some(DayRead::To(from, whole))
            }
            (_, Some((day, whole))) => Some(DayRead::Day(day, whole)),
            _ => None,
        };
    }
}

/// The whole names of the days from `from` to `to`, onto `days` to be read
/// the first first; the two ends only when they were abbreviated (`whole`
/// false), a name written whole being read already.
fn range(from: usize, to: usize, whole: bool, days: &mut Vec<&'static str>) {
    if from == to {
        return;
    }
    let count = (to + 7 - from) % 7 + 1;
    for n in (0..count).rev() {
        if !whole || (n != 0 && n != count - 1) {
            days.push(DAYS[(from + n) % 7].0);
        }
    }
}

/// A space on the line: any of Unicode's but the line and page breaks.
fn is_space(c: char) -> bool {
    c.is_whitespace()
        && !matches!(
            c,
            '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        )
}

/// A hyphen or a dash, as pages type them.
fn is_dash_char(c: char) -> bool {
    matches!(
        c,
        '-' | '‐' | '‑' | '‒' | '–' | '—' | '−' | '﹘' | '﹣' | '－'
    )
}

/// Whether the text between two days makes them a range: one dash, with
/// spaces around it, and a dot when the first was abbreviated (`dotted`):
/// "Lun-Ven", "Lundi – Vendredi", "lun. - ven.".
fn is_dash(between: &str, dotted: bool) -> bool {
    between.chars().filter(|&c| is_dash_char(c)).count() == 1
        && between
            .chars()
            .all(|c| is_dash_char(c) || is_space(c) || (dotted && c == '.'))
}

/// Whether two words of a range ("lundi au vendredi", "lun. au ven.") are
/// apart by spaces alone, or an abbreviation's dot (`dotted`).
fn is_spaced(between: &str, dotted: bool) -> bool {
    !between.is_empty() && between.chars().all(|c| is_space(c) || (dotted && c == '.'))
}

/// The words of `text` as they are written, each with the text between it
/// and the word before (the start of `text` for the first).
/// A word goes on over the invisible characters a page may hold inside
/// it (see [`in_word_invisible`]).
fn pieces(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(char::is_alphanumeric)?;
        let (before, from) = rest.split_at(start);
        let end = from
            .find(|c: char| !(c.is_alphanumeric() || in_word_invisible(c)))
            .unwrap_or(from.len());
        let (word, after) = from.split_at(end);
        rest = after;
        Some((before, word))
    })
}

/// The characters that print nothing inside a word: a soft hyphen (CMSs
/// write `Ré&shy;ser&shy;va&shy;tion` so that long French words break
/// nicely), a zero-width space, joiners, a word joiner, a byte-order mark.
/// Splitting there made "Réservation" four words no question finds.
fn in_word_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// Whether the text between two words keeps them in one clause: spaces on
/// one line, or the apostrophe of an elided "n'" or "l'". A full stop, a
/// comma or a line's end ("Chez nous.\nLeçons de …") ends it.
fn is_joining(between: &str) -> bool {
    !between.is_empty()
        && between
            .chars()
            .all(|c| is_space(c) || matches!(c, '\'' | '’'))
}

/// The words that may stand between the subject "nous" and its verb:
/// "nous ne prenons pas", "nous n'acceptons", "nous vous accueillons", "nous
/// nous déplaçons", "nous les livrons", "nous y allons", "nous en avons".
const CLITICS: &[&str] = &[
    "ne", "n", "vous", "nous", "te", "t", "le", "la", "les", "l", "lui", "leur", "y", "en",
];

/// A page says "Nous acceptons les chèques"; a caller asks "vous acceptez
/// les chèques ?". The stemmer strips `-ez` (`accept`) but leaves `-ons`
/// whole (`accepton`): a noun's plural ends so as often (coupons, salons,
/// leçons). Right after the subject "nous", an `-ons` word is a verb, read
/// as its "vous" form on both sides, page and question: `acceptez`,
/// `mangez` for "mangeons", `commencez` for "commençons", and the two
/// irregular ones whose "vous" form is no `-ez` ("faisons", "disons").
fn vous_form(word: &str) -> Option<String> {
    match word {
        "faisons" => return Some("faites".into()),
        "disons" => return Some("dites".into()),
        _ => {}
    }
    let stem = word.strip_suffix("ons")?;
    if stem.chars().count() < 2 {
        return None;
    }
    let stem = match stem.strip_suffix('ç') {
        Some(before) => format!("{before}c"),
        None => match stem.strip_suffix("ge") {
            Some(before) => format!("{before}g"),
            None => stem.to_string(),
        },
    };
    Some(format!("{stem}ez"))
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

/// A question's stop word, also when typed without its accents or with
/// other ones ("etes", "ca", "dès" are "êtes", "ça", "des"), but for the
/// words [`NOT_STOP_WORDS`] whose plain spelling is a stop word.
fn is_question_stop_word(word: &str) -> bool {
    static FOLDED: OnceLock<Vec<String>> = OnceLock::new();
    if is_stop_word(word) {
        return true;
    }
    if NOT_STOP_WORDS.contains(&word) {
        return false;
    }
    let folded = FOLDED.get_or_init(|| STOP_WORDS.iter().map(|w| fold(w)).collect());
    let word = fold(word);
    folded.contains(&word)
}

/// Words whose accents make them words of their own, although their plain
/// spelling is a stop word: "maïs" is not "mais", "sûr" not "sur".
const NOT_STOP_WORDS: &[&str] = &["maïs", "sûr", "sûre", "dés", "dû", "né", "étés", "mémé"];

/// How far from a word's end an accent can change its stem: the French
/// stemmer's accented endings (`é`, `ée`, `és`, `ité`, `ère`, `ières`,
/// `èrent`) and the adverbs' `-ièrement`, whose `è` is the seventh letter
/// from the end.
const ACCENTED_ENDING: usize = 7;

/// The `e`s of that ending read again, the last ones first: three
/// make 27 spellings, which covers `-ièrement` and keeps a word of `e`s
/// from making thousands.
const MAX_REACCENTED: usize = 3;

/// The terms a question's word matches besides its own: those of its
/// spellings with each `e`, `é`, `è` or `ê` of its last seven letters (the
/// last three at most) read as `e`, `é` or `è` (`ê` as `é` or `è`), and,
/// for a word typed with accents, the term of its plain spelling, which a
/// page written without accents got. "mariee" asks for `marie` and, as "mariée", `mari`;
/// "mariée" asks for `marie` too; "réservee" for `reserv`, "premiére"
/// (the wrong accent) for `premi`.
fn spellings(word: &str) -> Vec<String> {
    let letters: Vec<char> = word.chars().collect();
    let start = letters.len().saturating_sub(ACCENTED_ENDING);
    let mut es: Vec<usize> = (start..letters.len())
        .filter(|&i| matches!(letters[i], 'e' | 'é' | 'è' | 'ê'))
        .collect();
    es.drain(..es.len().saturating_sub(MAX_REACCENTED));
    let mut out = Vec::new();
    if !word.is_ascii() {
        out.push(term(&fold(word)));
    }
    // The combinations counted in base 3, the first (all as typed) being
    // the word itself.
    'spelling: for combination in 1..3usize.pow(es.len() as u32) {
        let mut spelt = letters.clone();
        let mut digits = combination;
        for &at in &es {
            // The letter as typed first, then two readings of it: a typed
            // `ê` reads as `é` or `è` (its plain `e` is the word's plain
            // spelling, asked for above).
            let readings = match letters[at] {
                'e' => ['e', 'é', 'è'],
                'é' => ['é', 'e', 'è'],
                'è' => ['è', 'e', 'é'],
                _ => ['ê', 'é', 'è'],
            };
            let letter = readings[digits % 3];
            digits /= 3;
            // French writes `è` before a consonant alone (`ère`, `ès`):
            // a final or a vowel-led `è` spells no word.
            if letter == 'è'
                && letters
                    .get(at + 1)
                    .is_none_or(|c| "aeiouyàâéèêëîïôöùûü".contains(*c))
            {
                continue 'spelling;
            }
            spelt[at] = letter;
        }
        out.push(term(&spelt.into_iter().collect::<String>()));
    }
    out
}

/// The synonyms of a question's word: by the word as typed, or, for a word
/// typed without accents, by its accented key ("numero" is "numéro"), but
/// never for a stop word ("ou" is not "où").
fn synonyms(word: &str) -> Option<&'static [&'static str]> {
    let exact = SYNONYMS.iter().find(|(k, _)| *k == word);
    exact
        .or_else(|| {
            if !word.is_ascii() || is_stop_word(word) {
                return None;
            }
            SYNONYMS.iter().find(|(k, _)| fold(k) == word)
        })
        .map(|(_, more)| *more)
}

/// One word's term: stemmed, then folded.
fn term(word: &str) -> String {
    fold(&stemmer().stem(word))
}

/// The most words [`index_terms`] keeps the terms of, per thread, before
/// it forgets them all: a site's vocabulary is a few thousand words.
const KNOWN_WORDS: usize = 8_192;

/// Longer words are not kept (a word runs to a chunk's length): with
/// [`KNOWN_WORDS`], the cache stays around a megabyte at most.
const KNOWN_WORD_BYTES: usize = 32;

thread_local! {
    /// Words met lately and their terms (`None`: a stop word). The words of
    /// a text repeat: stemming each one again was a sixth of the time a
    /// document took to store (the contract's largest knowledge base).
    /// Seeded at random: the words come from pages anyone can write, which
    /// must not be able to choose colliding ones.
    static KNOWN: RefCell<HashMap<String, Option<String>, RandomState>> =
        RefCell::new(HashMap::with_hasher(RandomState::default()));
}

/// `text` composed (NFC), as most text is written: a letter and its
/// combining accent (decomposed text, as macOS and many PDFs write it:
/// `e` + U+0301) one letter, `é`, which the terms fold. Apart, the accent
/// split the word in two, and neither half met the same word composed,
/// whether page or question.
fn composed(text: &str) -> Cow<'_, str> {
    match unicode_normalization::is_nfc_quick(text.chars()) {
        unicode_normalization::IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfc().collect()),
    }
}

/// The terms of a text to index, in order, stop words left out, then
/// those its contact details are asked by ([`contact_terms`]), each
/// telephone number's followed by its digits as one term ([`dialled`]).
pub fn index_terms(text: &str) -> String {
    let text = &*composed(text);
    let mut out = String::with_capacity(text.len() / 2);
    KNOWN.with_borrow_mut(|known| {
        let mut push = |term: &str| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(term);
        };
        let analyse = |word: &str| (!is_stop_word(word)).then(|| term(word));
        for word in words(text) {
            if word.len() > KNOWN_WORD_BYTES {
                if let Some(term) = analyse(&word) {
                    push(&term);
                }
                continue;
            }
            if known.len() >= KNOWN_WORDS && !known.contains_key(&word) {
                known.clear();
            }
            if let Some(term) = known.entry(word).or_insert_with_key(|w| analyse(w)) {
                push(term);
            }
        }
    });
    for contact in contact_spans(text) {
        for term in std::iter::once(contact.term).chain(contact.number.as_deref()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(term);
        }
    }
    out
}

/// What a text's contact details are asked by: the terms of "téléphone",
/// "email" and "adresse", once for each telephone number, email address
/// and postal address the text holds. A footer says "3 place du Marché,
/// 35000 Rennes – 02 99 12 34 56", and a caller asks "quelle est votre
/// adresse ?" or "votre numéro de téléphone ?": no word of the question is
/// on the page.
#[cfg(test)]
fn contact_terms(text: &str) -> impl Iterator<Item = &'static str> + '_ {
    contact_spans(text).into_iter().map(|contact| contact.term)
}

/// A contact detail of a text.
pub(super) struct Contact {
    /// Where it starts in the text.
    pub at: usize,
    /// The term it is asked by: `telephon`, `email` or `adress`.
    pub term: &'static str,
    /// A telephone number's digits as one dials them ([`dialled`]).
    pub number: Option<String>,
}

/// A telephone number as one term: its digits as dialled from France, so
/// that every way of writing one number meets on one term, and on the
/// word of a number written run together: `02 99 12 34 56`,
/// `02.99.12.34.56`, `+33 (0)2 99 12 34 56` and `+33 02 99 12 34 56` (a
/// common slip) are all `0299123456`, a question's `0299123456` or
/// `+33299123456` asks for any of them. So are the overseas departments'
/// (`+262 692 12 34 56` is `0692123456`, as Réunion writes it). A number
/// of another country keeps its code (`+44 20 7946 0958` is
/// `442079460958`, as `+442079460958` is written). `None` for digits of
/// another script, which no question typed in ASCII digits would meet.
///
/// Ten digits run together are no telephone on a page (as often an order
/// or a reference number: see [`contact_spans`]), but they are a word, and
/// a question for the number finds that word too.
fn dialled(telephone: &str) -> Option<String> {
    /// The country codes dialled from France as a 0: France's and its
    /// overseas departments' (the plans the library's phone validation
    /// reads, `validate::french_plan` and `national_region`).
    const DIALLED_AS_0: [&str; 5] = ["33", "262", "590", "594", "596"];
    let written = telephone.replace("(0)", "");
    if written
        .chars()
        .any(|c| c.is_numeric() && !c.is_ascii_digit())
    {
        return None;
    }
    let digits: String = written.chars().filter(char::is_ascii_digit).collect();
    let international = written.trim_start_matches(['(', ' ']).starts_with('+');
    let number = match digits.strip_prefix("00") {
        Some(number) => number,
        None if international => &digits,
        None => return Some(digits),
    };
    for code in DIALLED_AS_0 {
        if let Some(national) = number.strip_prefix(code) {
            let national = national.strip_prefix('0').unwrap_or(national);
            if national.len() == 9 {
                return Some(format!("0{national}"));
            }
        }
    }
    Some(number.to_string())
}

/// The contact details of `text`, with where each starts and its term:
/// telephone numbers, then email addresses, then postal addresses, each in
/// order.
///
/// The patterns are narrow on purpose: a page's prices, references,
/// legal numbers and hours must not read as an address or a telephone,
/// or "quelle est votre adresse ?" would rank the legal notice's SIRET
/// line above the footer. So a telephone's digit groups share one
/// separator ("09.00-12.00 14.00" is hours), a postcode opens a line or
/// follows a comma or a dash and is followed by a town in capitals (not
/// "10000 Euros", "45000 KM"), and a way whose name is also a word
/// ("place", "cours", "passage") counts only with a postcode on its line
/// ("1 place VIP" and "3 cours de Yoga" are none).
pub(super) fn contact_spans(text: &str) -> Vec<Contact> {
    struct Patterns {
        telephone: Regex,
        email: Regex,
        street: Regex,
        postcode: Regex,
        terms: [String; 3],
    }
    // Word boundaries are ASCII's (`(?-u:\b)`), next to digits and `+`
    // alone: Unicode's keep the regex crate's fast engines off any text
    // that is not ASCII, which made the scan 20 times slower on French
    // text (8 ms for 200 KB against 0.4).
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    let p = PATTERNS.get_or_init(|| {
        let pattern = |re: &str| {
            // A space as pages write it between groups: plain, no-break or
            // narrow no-break.
            let re = re.replace("SP", "[ \u{a0}\u{202f}]");
            Regex::new(&re).expect("a contact pattern compiles")
        };
        // A French postcode: a department (01 to 95, 97 and 98 overseas)
        // and three digits.
        const POSTCODE: &str = r"(?:0[1-9]|[1-8]\d|9[0-8])\d{3}";
        // Four pairs of digits after the first, one separator between
        // them all; run together only after a country code (ten digits
        // alone are as often an order or a reference number).
        let apart = r"(?:(?:SP\d{2}){4}|(?:\.\d{2}){4}|(?:-\d{2}){4}|(?:/\d{2}){4})";
        // Three pairs after the first four digits, likewise.
        let apart3 = r"(?:(?:SP\d{2}){3}|(?:\.\d{2}){3}|(?:-\d{2}){3}|(?:/\d{2}){3})";
        Patterns {
            // `02 99 12 34 56`, `02.99.12.34.56`, `02/99/12/34/56`,
            // `+33 (0)2 99 12 34 56`, `+33612345678`, `(+33) 6 12 34 56 78`,
            // `0033 6 …`, `0 800 123 456`, `0805 12 34 56`, `0262 12 34 56`
            // (the overseas departments group the first four); or another
            // country's, `+44 20 7946 0958`, `(+262) 692 12 34 56`: its
            // code and nine digits at least.
            telephone: pattern(&format!(
                r"(?:(?-u:\B)\+33|\(\+33\)|(?-u:\b)0033)SP?(?:\(0\)SP?)?[1-9](?:(?:\d{{2}}){{4}}|{apart})(?-u:\b)|(?-u:\b)0[1-9]{apart}(?-u:\b)|(?-u:\b)0[1-9]\d{{2}}{apart3}(?-u:\b)|(?-u:\b)0SP?[89]\d{{2}}(?:SP\d{{3}}SP\d{{3}}|SP\d{{2}}SP\d{{2}}SP\d{{2}})(?-u:\b)|(?-u:\B)\+[1-9]\d{{0,2}}\)?(?:SP?\(0\))?(?:[ .\-]?\d){{9,13}}(?-u:\b)"
            )),
            email: pattern(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)*\.(?P<tld>\w{2,})"),
            // A number, a kind of way, then its name: `12 rue des Lilas`,
            // `12B rue Nationale`, `3, rue de la gare`, `12 bd. Voltaire`,
            // `12 Av Foch`, `12 rue du 8 Mai 1945`; a way whose name is
            // also a word with a capital name and a postcode further on its
            // line: `3 place du Marché, 35000 Rennes`.
            street: pattern(&format!(
                r"(?-u:\b)\d{{1,4}}(?:SP?(?i:bis|ter)|[ABab])?,?SP+(?:(?i:rue|avenue|av\.?|boulevard|bd\.?|impasse|all[ée]e|chemin|quai|route)SP+(?:(?i:du|de la|de|des|d['’]|l['’])SP*)?(?:\p{{L}}|\d{{1,2}}SP\p{{Lu}})|(?i:place|cours|passage|square|parvis|promenade|esplanade|mail|rond-point|sentier)SP+(?:(?i:du|de la|de|des|d['’]|l['’])SP*)?(?:\p{{Lu}}|\d{{1,2}}SP\p{{Lu}})[^\n]*?(?-u:\b){POSTCODE}(?-u:\b))"
            )),
            // A postcode opening a line or after a comma, a semicolon or a
            // dash, then its town (`35000 Rennes`, `75011, Paris`,
            // `F-75011 PARIS`, `13100 Aix-en-Provence`).
            postcode: pattern(&format!(
                r"(?m:(?P<before>^|[,;–—\-])SP*)(?:F-)?{POSTCODE}SP*,?SP*(?P<town>\p{{Lu}}\p{{L}}*(?:-\p{{L}}+)*)"
            )),
            terms: [term("téléphone"), term("email"), term("adresse")],
        }
    });
    // What follows a postcode but is no town: money, distances, legal
    // registers.
    const NO_TOWN: &[&str] = &[
        "eur", "euro", "euros", "km", "kms", "ht", "ttc", "rcs", "ape", "naf", "siret", "siren",
        "tva", "ref", "réf",
    ];
    // What ends an image's or a document's name, not a mail domain
    // (`logo@2x.png`).
    const FILE_ENDS: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "webp", "svg", "avif", "bmp", "ico", "pdf",
    ];
    let [telephone, email, address] = &p.terms;
    let (telephone, email, address) = (telephone.as_str(), email.as_str(), address.as_str());
    let (mut telephones, mut emails, mut streets, mut postcodes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // No pattern crosses a line, and every one needs a digit or an `@`:
    // the patterns run only over the lines holding one, which a page's
    // prose mostly does not (half of a chunk's analysis went to running
    // them over all of it).
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let start = at;
        at += line.len();
        // What each pattern needs at least: a telephone nine digits, a
        // postcode five in a row, an email an `@`, a street one digit.
        // The patterns' `\d` is Unicode's: another script's digits count
        // too (any numeric character from U+0660, the first decimal digit
        // past ASCII's; a wider class), so that the terms stay those of a
        // scan over every line.
        let (mut digits, mut run, mut longest, mut mail) = (0, 0, 0, false);
        for c in line.chars() {
            if c.is_ascii_digit() || (c > '\u{65f}' && c.is_numeric()) {
                digits += 1;
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
                mail |= c == '@';
            }
        }
        // A sixth group of digits makes it something else: a list of
        // sizes ("02 04 06 08 10 12 ans"), a longer number.
        let another_group = |end: usize| {
            let mut after = line[end..].chars();
            matches!(
                after.next(),
                Some(' ' | '.' | '-' | '/' | '\u{a0}' | '\u{202f}')
            ) && after.next().is_some_and(|c| c.is_ascii_digit())
        };
        if digits >= 9 {
            telephones.extend(
                p.telephone
                    .find_iter(line)
                    .filter(|m| !another_group(m.end()))
                    .map(|m| (start + m.start(), dialled(m.as_str()))),
            );
        }
        if mail {
            emails.extend(p.email.captures_iter(line).filter_map(|c| {
                let tld = c.name("tld").map(|t| t.as_str().to_ascii_lowercase());
                (!tld.is_some_and(|t| FILE_ENDS.contains(&t.as_str())))
                    .then(|| start + c.get(0).map_or(0, |m| m.start()))
            }));
        }
        if digits > 0 {
            streets.extend(p.street.find_iter(line).map(|m| start + m.start()));
        }
        if longest >= 5 {
            postcodes.extend(p.postcode.captures_iter(line).filter_map(|c| {
                let whole = c.get(0)?;
                let town = c.name("town")?;
                // A list's dash ("- 15000 Clients satisfaits"), a word that
                // is no town, or a lowercase word after it ("12000 Visiteurs
                // ont…"): a figure, not an address.
                let before = c.name("before").map_or("", |b| b.as_str());
                let listed = !before.is_empty()
                    && !matches!(before, "," | ";")
                    && line[..whole.start()].trim().is_empty();
                let no_town = NO_TOWN.contains(&town.as_str().to_lowercase().as_str());
                let sentence_goes_on = line[town.end()..]
                    .strip_prefix([' ', '\u{a0}'])
                    .and_then(|r| r.chars().next())
                    .is_some_and(char::is_lowercase);
                (!listed && !no_town && !sentence_goes_on).then_some(start + whole.start())
            }));
        }
    }
    let tagged = |spans: Vec<usize>, term: &'static str| {
        spans.into_iter().map(move |at| Contact {
            at,
            term,
            number: None,
        })
    };
    telephones
        .into_iter()
        .map(|(at, number)| Contact {
            at,
            term: telephone,
            number,
        })
        .chain(tagged(emails, email))
        .chain(tagged(streets, address))
        .chain(tagged(postcodes, address))
        .collect()
}

/// The distinct terms of a question, synonyms added, in order of first
/// appearance.
pub fn query_terms(question: &str) -> Vec<String> {
    let question = &*composed(question);
    let mut terms: Vec<String> = Vec::new();
    let mut add = |t: String| {
        if !t.is_empty() && !terms.contains(&t) {
            terms.push(t);
        }
    };
    // A telephone number asked for in any of its written forms: its
    // digits as one term, as the pages' numbers are indexed.
    let numbers: Vec<String> = contact_spans(question)
        .into_iter()
        .filter_map(|contact| contact.number)
        .collect();
    for word in words(question) {
        if let Some(more) = synonyms(&word) {
            more.iter()
                .flat_map(|m| words(m))
                .for_each(|m| add(term(&m)));
        }
        if !is_question_stop_word(&word) {
            add(term(&word));
            spellings(&word).into_iter().for_each(&mut add);
            if let Some(hour) = other_hour_form(&word) {
                add(term(&hour));
            }
        }
    }
    numbers.into_iter().for_each(add);
    terms
}

/// An hour on the clock in its other written form: "9h" asks for a page's
/// "9h00", and "9h00" for "9h".
fn other_hour_form(word: &str) -> Option<String> {
    fn hour(digits: &str) -> Option<&str> {
        (!digits.is_empty() && digits.len() <= 2 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then_some(digits)
    }
    if let Some(h) = word.strip_suffix("h00").and_then(hour) {
        return Some(format!("{h}h"));
    }
    word.strip_suffix('h')
        .and_then(hour)
        .map(|h| format!("{h}h00"))
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
    fn the_terms_kept_are_the_terms_computed_also_past_the_caches_bound() {
        // More distinct words than the cache keeps, then the first ones
        // again (forgotten by then), stop words among them.
        let letters = |mut n: usize| {
            let mut word = String::new();
            loop {
                word.push((b'a' + (n % 26) as u8) as char);
                n /= 26;
                if n == 0 {
                    return word;
                }
            }
        };
        let words: Vec<String> = (0..KNOWN_WORDS + 500)
            .map(|n| format!("{}ées le Horaires", letters(n)))
            .collect();
        // And words too long to be kept.
        let long = format!("{}ées", "réservation".repeat(4));
        let text = format!(
            "{long} {} {} {long}",
            words.join(" "),
            words[..1_000].join(" ")
        );
        let computed: Vec<String> = super::words(&text)
            .filter(|w| !is_stop_word(w))
            .map(|w| term(&w))
            .collect();
        assert_eq!(computed[1..5], ["aee", "horair", "be", "horair"]);
        assert_eq!(computed[0], "reservationreservationreservationreservation");
        assert_eq!(index_terms(&text), computed.join(" "));
        assert_eq!(index_terms(&text), computed.join(" "));
    }

    /// A soft hyphen, a zero-width space, a joiner or a byte-order mark
    /// inside a word is part of it: "Ré\u{AD}ser\u{AD}va\u{AD}tion" was four
    /// words (`re ser va tion`), which no question found.
    #[test]
    fn invisible_characters_inside_a_word_keep_it_one_word() {
        assert_eq!(
            index_terms("Ré\u{AD}ser\u{AD}va\u{AD}tion obligatoire"),
            "reserv obligatoir"
        );
        for joined in [
            "r\u{200B}éservation",
            "ré\u{200C}servation",
            "rés\u{200D}ervation",
            "rése\u{2060}rvation",
            "réser\u{FEFF}vation\u{AD}",
        ] {
            assert_eq!(index_terms(joined), "reserv", "{joined:?}");
        }
        assert_eq!(query_terms("réservation"), ["reserv"]);
        // Between words, such a character still parts them only as the
        // spaces around it do.
        assert_eq!(index_terms("salon \u{200B} coiffure"), "salon coiffur");
    }

    #[test]
    fn accents_and_inflections_meet_on_one_term() {
        assert_eq!(index_terms("Réservez"), index_terms("réserver"));
        assert_eq!(index_terms("Coupes"), index_terms("coupe"));
        assert_eq!(index_terms("Horaires d'ouverture"), "horair ouvertur");
        assert_eq!(fold("Œuvre à Noël"), "oeuvre a noel");
        // Ligatures pasted from a PDF, and the summer.
        assert_eq!(index_terms("ﬁnance ﬂeurs eﬀet"), "financ fleur effet");
        assert_eq!(
            index_terms("souﬄé eﬃcace ﬆyle ﬅop"),
            "souffl efficac styl stop"
        );
        assert_eq!(index_terms("Horaires d'été"), "horair ete");
        assert_eq!(
            query_terms("vous êtes ouverts l'été ?")[2..],
            ["ouvert", "ete"]
        );
        // Decomposed (a letter, then its combining accent), page or
        // question, as composed.
        let nfd = "Re\u{301}servez votre se\u{301}jour a\u{300} l'ho\u{302}tel";
        assert_eq!(
            index_terms(nfd),
            index_terms("Réservez votre séjour à l'hôtel")
        );
        assert_eq!(index_terms(nfd), "reserv sejour hotel");
        assert_eq!(query_terms("ho\u{302}tel"), query_terms("hôtel"));
        assert_eq!(query_terms("e\u{301}te\u{301}"), query_terms("été"));
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
            ("dernierement", "dernièrement"),
            ("acces", "accès"),
            // Partly accented, or with the wrong accent.
            ("réservee", "réservée"),
            ("premiére", "première"),
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
        // Stop words typed without their accents are still stop words; a
        // word typed with accents is the word written, not the stop word
        // its plain spelling is.
        assert_eq!(
            query_terms("vous etes ouverts ca"),
            query_terms("vous êtes ouverts ça")
        );
        assert_eq!(query_terms("maïs"), ["mai", "mais"]);
        assert_eq!(query_terms("êtes-vous sûr ?"), ["sur"]);
        assert_eq!(query_terms("jeu de dés"), ["jeu", "de", "des"]);
        // Three `e`s at most are read again: 26 spellings where `è` may
        // stand for each (before a consonant), 7 where it may not.
        assert_eq!(spellings("rerererer").len(), 26);
        assert_eq!(spellings("eeeeeeeeeeee").len(), 7);
        // "dès" is the stop word "des"; a typed `ê` reads as `è` too.
        assert!(!query_terms("ouvert dès 9h").contains(&"des".to_string()));
        assert!(spellings("premiêre").contains(&index_terms("première")));
        // Each `e` read as typed first, then its two other readings, in
        // that order.
        assert_eq!(
            spellings("réservée"),
            [
                "reserve", "reserv", "reserv", "reserve", "reserve", "reserve", "reserve",
                "reserve", "reserve", "reserve", "reserve", "reserve"
            ]
        );
        assert_eq!(
            spellings("première"),
            [
                "premier", "premi", "premi", "premier", "premier", "premier", "premier", "premier",
                "premier", "premier", "premier", "premier", "premier", "premier", "premier",
                "premier", "premier", "premier"
            ]
        );
        // Synonyms by the accented key, not for a stop word.
        assert_eq!(query_terms("numero"), query_terms("numéro"));
        assert_eq!(query_terms("numero")[0], "telephon");
        assert_eq!(query_terms("ou"), Vec::<String>::new());
    }

    #[test]
    fn a_callers_words_meet_the_words_a_business_page_uses() {
        // The page's terms for each question's (the index holds one a word).
        let cases: [(&str, &str); 8] = [
            // "ouvrir", whose stems differ.
            ("le salon ouvre à quelle heure ?", "Ouverture"),
            ("ils ouvrent quand ?", "ouvert"),
            // The days' abbreviations in an hours table, and the telephone's.
            ("vous ouvrez le lundi ?", "Lun-Sam : 9h-19h"),
            ("vous travaillez le samedi ?", "Sam : 9h-12h"),
            ("et le dimanche ?", "Dim : fermé"),
            ("quel est votre téléphone ?", "Tél. : 01 23 45 67 89"),
            // "E-mail" is "e" and "mail" on the page.
            ("votre email ?", "E-mail : contact@salon.fr"),
            ("un courriel ?", "Email"),
        ];
        for (question, page) in cases {
            let asked = query_terms(question);
            let page = index_terms(page);
            assert!(
                page.split(' ').any(|t| asked.iter().any(|a| a == t)),
                "{question:?} asks {asked:?}, the page has {page:?}"
            );
        }
        assert_eq!(
            query_terms("ouvre"),
            ["horair", "ouvertur", "ouvert", "ouvr"]
        );
        assert_eq!(query_terms("téléphone"), ["tel", "telephon"]);
        assert_eq!(query_terms("email"), ["mail", "courriel", "email"]);
        // A verb after the subject "nous", on the page or in the question,
        // is read in its "vous" form: the stemmer leaves `-ons` whole.
        for (question, page, term) in [
            (
                "vous acceptez les chèques ?",
                "Nous acceptons les chèques",
                "accept",
            ),
            (
                "vous prenez la carte ?",
                "Nous ne prenons pas la carte",
                "pren",
            ),
            (
                "vous livrez à domicile ?",
                "nous vous livrons en 24 h",
                "livr",
            ),
            ("vous faites des devis ?", "Nous faisons des devis", "fait"),
            ("on mange quoi ?", "nous mangeons", "mang"),
            ("vous commencez quand ?", "Nous commençons à 9h", "commenc"),
            ("vous réparez ?", "nous n'en réparons qu'un", "repar"),
            ("vous vous déplacez ?", "Nous nous déplaçons", "deplac"),
            (
                "est-ce qu'on s'occupe de tout",
                "nous nous occupons de tout",
                "occup",
            ),
        ] {
            let page = index_terms(page);
            assert!(page.split(' ').any(|t| t == term), "{page:?} lacks {term}");
            assert!(
                query_terms(question).contains(&term.to_string()),
                "{question:?} asks {:?}, not {term}",
                query_terms(question)
            );
        }
        assert_eq!(index_terms("Nous acceptons les chèques"), "accept chequ");
        // The irregular "disons" is "dites"; a two-letter stem is a verb's
        // ("nous lions": "liez", not the animal), a one-letter one is not
        // ("nous dons").
        assert_eq!(index_terms("Nous disons"), "dit");
        assert_eq!(index_terms("Nous lions"), "li");
        assert_eq!(index_terms("Nous dons"), "don");
        // "pouvez" is a stop word, so "pouvons" after "nous" is one too.
        assert_eq!(query_terms("nous pouvons venir ?"), query_terms("venir ?"));
        // Not after an object "nous", nor across a sentence's or a line's
        // end: those `-ons` words are nouns, as they are anywhere else.
        assert_eq!(index_terms("Coupons et leçons"), "coupon lecon");
        assert_eq!(index_terms("Contactez-nous coupons"), "contact coupon");
        assert_eq!(index_terms("Venez chez nous. Coupons"), "ven coupon");
        assert_eq!(index_terms("chez nous\nLeçons"), "lecon");
        assert_eq!(index_terms("nous, salons"), "salon");
        // Nor after a "nous" that is an object: after a preposition, a
        // subject pronoun, an imperative without its hyphen.
        assert_eq!(
            index_terms("Chez nous les leçons de conduite"),
            "lecon conduit"
        );
        assert_eq!(
            index_terms("Avec nous les réservations se font en ligne"),
            "reserv font lign"
        );
        assert_eq!(index_terms("Vous nous trouvons"), "trouvon");
        assert_eq!(index_terms("Contactez nous Informations"), "contact inform");
        assert_eq!(index_terms("que nous acceptons"), "accept");
        assert_eq!(query_terms("vous coupez ?"), ["coup", "coupez"]);
        // A range of days holds the days between: an hours table's
        // "Lun-Ven" answers "le mercredi ?", and its "Ven" "le vendredi ?".
        for page in [
            "Lun-Ven : 9h-18h",
            "Ouvert du lundi au vendredi",
            "lun. au ven.",
            "Lundi – Vendredi",
            "de mardi à jeudi",
            "Sam-Mer",
        ] {
            let page_terms = index_terms(page);
            for question in ["le mercredi ?", "vous êtes ouverts le mercredi ?"] {
                let asked = query_terms(question);
                assert!(
                    page_terms.split(' ').any(|t| asked.iter().any(|a| a == t)),
                    "{question:?} asks {asked:?}, {page:?} has {page_terms:?}"
                );
            }
        }
        assert_eq!(
            index_terms("Lun-Ven : 9h-18h"),
            "lun ven lund mard mercred jeud vendred 9h 18h"
        );
        assert_eq!(
            index_terms("du mardi au samedi"),
            "mard samed mercred jeud vendred"
        );
        assert_eq!(index_terms("Ven-Lun"), "ven lun vendred samed dimanch lund");
        assert_eq!(index_terms("Lundi-Mardi : fermé"), "lund mard ferm");
        // Other dashes and spaces, and an abbreviation's dots.
        for range in [
            "Lun\u{2011}Ven",
            "Lun\u{2009}\u{2212}\u{2009}Ven",
            "Lun. - Ven.",
        ] {
            assert_eq!(
                index_terms(range),
                "lun ven lund mard mercred jeud vendred",
                "{range:?}"
            );
        }
        // Both ends whole or both abbreviated: "Mer", "Sam" before a dash
        // are the sea, a name; the range after them is read.
        assert_eq!(
            index_terms("promenade de la Mer – Lundi au samedi"),
            "promenad mer lund samed mard mercred jeud vendred"
        );
        assert_eq!(
            index_terms("Chez Sam – Lundi au vendredi"),
            "sam lund vendred mard mercred jeud"
        );
        assert_eq!(
            index_terms("Sortie en mer - samedi 14 juin"),
            "sort mer samed 14 juin"
        );
        assert_eq!(
            index_terms("Vue mer - samedi au samedi"),
            "vu mer samed samed"
        );
        // A list of days with dashes, and a full stop after a whole name.
        assert_eq!(
            index_terms("Lundi – Jeudi – Samedi : yoga"),
            "lund jeud samed yog"
        );
        assert_eq!(index_terms("Lun-Mer-Ven"), "lun mer ven");
        assert_eq!(index_terms("Lun. - Mer. - Ven."), "lun mer ven");
        // A list goes on past its third day; a day after it without a dash
        // starts anew, here a range.
        assert_eq!(index_terms("Lun-Mer-Ven-Dim"), "lun mer ven dim");
        assert_eq!(index_terms("Lun. - Mer. - Ven. - Dim."), "lun mer ven dim");
        assert_eq!(
            index_terms("Lun-Mer-Ven Sam-Dim"),
            "lun mer ven sam dim samed dimanch"
        );
        // A range, then a day after a comma or an hour after a dash: no
        // list, the range is read.
        assert_eq!(
            index_terms("Lundi – Jeudi, Samedi"),
            "lund jeud mard mercred samed"
        );
        assert_eq!(
            index_terms("Lundi – Jeudi – 14h"),
            "lund jeud mard mercred 14h"
        );
        assert_eq!(
            index_terms("Fermé le dimanche. À mercredi !"),
            "ferm dimanch mercred"
        );
        assert_eq!(index_terms("lundi. au vendredi"), "lund vendred");
        assert_eq!(
            index_terms("Lundi. - Vendredi : fermé"),
            "lund vendred ferm"
        );
        // Not a range: a list, a date, a compound, a day alone.
        assert_eq!(index_terms("Lundi, mercredi"), "lund mercred");
        assert_eq!(index_terms("Jeu-concours du mar au"), "jeu concour mar");
        assert_eq!(index_terms("lundi 3 - vendredi 7"), "lund 3 vendred 7");
        assert_eq!(index_terms("Lundi. Samedi"), "lund samed");
        // Words that are something else too ask for nothing more: an
        // account opened, the sea, a game, "venez", a delivery day.
        assert_eq!(query_terms("ouvrir un compte"), ["ouvr", "compt"]);
        assert_eq!(
            query_terms("mercredi jeudi vendredi"),
            ["mercred", "jeud", "vendred"]
        );
        assert_eq!(
            query_terms("vous livrez le samedi ?"),
            ["livraison", "livr", "livrez", "sam", "samed"]
        );
    }

    #[test]
    fn contact_details_are_indexed_with_the_words_they_are_asked_by() {
        // After the text's own terms.
        assert_eq!(
            index_terms("3 place du Marché, 35000 Rennes – 02 99 12 34 56"),
            "3 plac march 35000 ren 02 99 12 34 56 telephon 0299123456 adress adress"
        );
        assert_eq!(
            index_terms("écrivez à contact@salon-lea.fr"),
            "ecriv contact salon le fr email"
        );
        let (t, e, a) = ("telephon", "email", "adress");
        for (text, terms) in [
            ("Tél. : +33 (0)6 12 34 56 78", &[t][..]),
            ("(+33) 6 12 34 56 78", &[t]),
            ("0033 6 12 34 56 78", &[t]),
            ("+44 20 7946 0958", &[t]),
            ("+33612345678", &[t]),
            ("02.99.12.34.56", &[t]),
            ("02/99/12/34/56", &[t]),
            ("0 800 123 456", &[t]),
            ("0800 123 456", &[t]),
            ("0 805 12 34 56", &[t]),
            ("0 800 00 12 34", &[t]),
            ("0262 12 34 56", &[t]),
            ("(+262) 692 12 34 56", &[t]),
            ("bonjour@salon.fr", &[e]),
            ("12, rue des Lilas", &[a]),
            ("12B rue Nationale", &[a]),
            ("12 Av Foch", &[a]),
            ("3 rue de la gare", &[a]),
            ("12 rue du 8 Mai 1945", &[a]),
            ("10 bis av. Foch", &[a]),
            ("12 bd. Voltaire", &[a]),
            ("12 cours Mirabeau, 13100 Aix-en-Provence", &[a, a]),
            ("35000 Rennes", &[a]),
            ("F-75011 PARIS", &[a]),
            ("75011, Paris", &[a]),
            ("3 place du Marché\n35000 Rennes", &[a]),
            // None: hours, dates, audiences, prices, references, legal
            // numbers, distances, a way's word that names something else
            // without a postcode on its line, a number of more digits
            // than a telephone's, a total above the next line.
            ("09.00-12.00 14.00-19.00", &[]),
            ("01.02.2026 10:00", &[]),
            ("+10 000 000 de vues", &[]),
            ("Ouvert de 9h à 12h, 25 000 €", &[]),
            ("capital de 10000 Euros", &[]),
            ("Réf. 20345 Noir", &[]),
            ("réf. 0123456789012", &[]),
            ("SIRET 123 456 789 00019 RCS Lyon", &[]),
            ("00019 APE 9602A", &[]),
            ("- 45000 KM", &[]),
            ("3 cours de Yoga", &[]),
            ("4 cours d'Anglais", &[]),
            ("1 place VIP", &[]),
            ("1 place de Parking", &[]),
            ("2 Place du Cirque", &[]),
            ("12 places assises", &[]),
            ("02 99 12 34 567", &[]),
            ("0262 12 34 567", &[]),
            ("0262 12.34 56", &[]),
            ("0026 12 34 56", &[]),
            ("Total : 12500\nMerci", &[]),
            // Nor ten digits run together, an image's name, a figure in a
            // list or a sentence, a list of sizes.
            ("Commande n°0123456789", &[]),
            ("réf. 0612345678", &[]),
            ("Tailles : 02 04 06 08 10 12 ans", &[]),
            ("![logo](logo@2x.png) plan@2x.webp", &[]),
            ("- 15000 Clients satisfaits", &[]),
            ("– 20000 Produits en stock", &[]),
            ("15000 Clients satisfaits", &[]),
            ("En 2024, 12000 Visiteurs ont poussé la porte", &[]),
            ("Commande (12000)", &[]),
            ("Modèle Océane (35000)", &[]),
        ] {
            assert_eq!(contact_terms(text).collect::<Vec<_>>(), terms, "{text}");
        }
    }

    #[test]
    fn a_telephone_number_is_one_term_however_it_is_written() {
        let numbers = |text: &str| -> Vec<String> {
            contact_spans(text)
                .into_iter()
                .filter_map(|contact| contact.number)
                .collect()
        };
        for (written, number) in [
            ("02 99 12 34 56", "0299123456"),
            ("02.99.12.34.56", "0299123456"),
            ("02/99/12/34/56", "0299123456"),
            ("02-99-12-34-56", "0299123456"),
            ("02\u{a0}99\u{a0}12\u{a0}34\u{a0}56", "0299123456"),
            ("Tél. : +33 (0)6 12 34 56 78", "0612345678"),
            ("(+33) 6 12 34 56 78", "0612345678"),
            ("0033 6 12 34 56 78", "0612345678"),
            ("+33612345678", "0612345678"),
            ("0 800 123 456", "0800123456"),
            ("0805 12 34 56", "0805123456"),
            ("+33 06 12 34 56 78", "0612345678"),
            ("+262 692 12 34 56", "0692123456"),
            ("+262 262 12 34 56", "0262123456"),
            ("+590 590 12 34 56", "0590123456"),
            ("+594 694 12 34 56", "0694123456"),
            ("+596 596 12 34 56", "0596123456"),
            ("02 62 12 34 56", "0262123456"),
            ("0262 12 34 56", "0262123456"),
            ("0692.12.34.56", "0692123456"),
            ("(+262) 692 12 34 56", "0692123456"),
            ("(+590) 690 12 34 56", "0690123456"),
            ("(+44) 20 7946 0958", "442079460958"),
            ("+44 20 7946 0958", "442079460958"),
            ("+263 77 123 4567", "263771234567"),
        ] {
            assert_eq!(numbers(written), [number], "{written}");
        }
        // A digit of another script inside: a telephone still, but no
        // number (a question typed in ASCII digits would not meet it).
        assert_eq!(
            contact_terms("02 99 1٢ 34 56").collect::<Vec<_>>(),
            ["telephon"]
        );
        assert_eq!(numbers("02 99 1٢ 34 56"), Vec::<String>::new());
        // A postcode's last three digits in another script: five digits
        // in a row all the same to the line's gate.
        assert_eq!(
            contact_terms("35٠٠٠ Rennes").collect::<Vec<_>>(),
            ["adress"]
        );
        // A country code written without `+` or `00` is not read as one.
        assert_eq!(dialled("33 6 12 34 56 78").as_deref(), Some("33612345678"));
        // A postcode starting a line after a comma ends an address: no
        // list's item, as one after a dash is.
        assert_eq!(
            contact_terms("Salon Léa, 4 rue Vasselot\n, 35000 Rennes").collect::<Vec<_>>(),
            ["adress", "adress"]
        );
        // Where each starts, on the lines after the first too.
        let text = "Accueil\nTél. 02 99 12 34 56\nÉcrire : contact@salon.fr\nAu 4 rue Vasselot";
        assert_eq!(
            contact_spans(text)
                .into_iter()
                .map(|contact| (contact.at, contact.term))
                .collect::<Vec<_>>(),
            [
                (text.find("02").unwrap(), "telephon"),
                (text.find("contact@").unwrap(), "email"),
                (text.find("4 rue").unwrap(), "adress")
            ]
        );
        // Asked in any form: the number's term after the words'.
        assert_eq!(query_terms("0299123456"), ["0299123456"]);
        assert_eq!(
            query_terms("02 99 12 34 56 ?"),
            ["02", "99", "12", "34", "56", "0299123456"]
        );
        assert_eq!(query_terms("+33299123456"), ["33299123456", "0299123456"]);
        assert_eq!(
            query_terms("le +33 (0)2 99 12 34 56"),
            ["33", "0", "2", "99", "12", "34", "56", "0299123456"]
        );
    }

    #[test]
    fn a_spoken_question_keeps_its_meaning_and_gains_synonyms() {
        assert_eq!(
            query_terms("Vous êtes ouverts le samedi ?"),
            ["horair", "ouvertur", "ouvert", "sam", "samed"]
        );
        assert_eq!(
            query_terms("c'est combien une coupe homme ?"),
            ["tarif", "prix", "combien", "coup", "homm"]
        );
        // Both ways: a page's "RDV", "Stationnement" or "CB" is asked
        // for by the words it stands for, and each of them by it.
        assert_eq!(
            query_terms("prendre rendez-vous"),
            ["prendr", "rdv", "reserv", "rend", "rendez"]
        );
        assert_eq!(query_terms("un rdv ?"), ["rend", "reserv", "rdv"]);
        assert_eq!(query_terms("parking ?"), ["parking"]);
        assert_eq!(
            query_terms("stationnement"),
            ["parking", "station", "stationne", "stationnement"]
        );
        assert_eq!(query_terms("la carte bleue"), ["pai", "cb", "cart", "bleu"]);
        assert_eq!(query_terms("la CB ?"), ["cart", "pai", "cb"]);
        assert_eq!(
            query_terms("vous livrez ?"),
            ["livraison", "livr", "livrez"]
        );
        // An hour in either of its written forms.
        assert_eq!(query_terms("à 9h ?"), ["9h", "9h00"]);
        assert_eq!(query_terms("à 9h00"), ["9h00", "9h"]);
        assert_eq!(query_terms("9h30 123h h"), ["9h30", "123h", "h"]);
        assert_eq!(
            fts_query(&query_terms("où ?")),
            "{terms heading_terms} : (\"adress\" OR \"acces\")"
        );
    }
}
