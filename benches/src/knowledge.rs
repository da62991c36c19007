//! Maximal knowledge bases for the benchmarks that store them (search,
//! recut): a salon's texts drawn from a fixed sequence, pasted at the kb
//! step and stored by the completion.

use serde_json::json;

use crate::db::Db;
use crate::flow::FunctionPath;
use crate::Result;

/// A salon's vocabulary, which every text is drawn from.
const WORDS: [&str; 40] = [
    "réserver",
    "horaires",
    "ouverture",
    "samedi",
    "coupe",
    "homme",
    "femme",
    "couleur",
    "tarif",
    "prix",
    "rendez-vous",
    "salon",
    "coiffure",
    "brushing",
    "mèches",
    "balayage",
    "shampoing",
    "soin",
    "barbe",
    "enfant",
    "étudiant",
    "forfait",
    "lundi",
    "mardi",
    "mercredi",
    "jeudi",
    "vendredi",
    "dimanche",
    "fermé",
    "parking",
    "métro",
    "adresse",
    "téléphone",
    "email",
    "cadeau",
    "carte",
    "fidélité",
    "produit",
    "conseil",
    "visagiste",
];

/// Texts per knowledge base, and characters per text: the contract's most.
pub const DOCUMENTS: usize = 20;
pub const CHARS: usize = 200_000;

/// A fixed sequence of numbers below `n` (a linear congruential generator).
pub struct Draw(pub u64);

impl Draw {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A pasted text of at most [`CHARS`] characters: sections of a heading and
/// a paragraph of 120 words.
pub fn text(draw: &mut Draw) -> String {
    let mut out = String::new();
    let mut section = 0;
    loop {
        section += 1;
        let mut piece = format!(
            "## Section {section} {}\n\n",
            WORDS[draw.below(WORDS.len())]
        );
        for w in 0..120 {
            if w > 0 {
                piece.push(' ');
            }
            piece.push_str(WORDS[draw.below(WORDS.len())]);
        }
        piece.push('.');
        if draw.below(100) == 0 {
            piece.push_str(" Accès : rue des Lilas.");
        }
        piece.push_str("\n\n");
        if out.chars().count() + piece.chars().count() > CHARS {
            return out;
        }
        out.push_str(&piece);
    }
}

/// One tenant onboarded with a maximal knowledge base; its session id.
pub fn onboard(db: &Db, k: usize, draw: &mut Draw) -> Result<String> {
    let path = FunctionPath::new(&db.conn);
    let session = path.create()?;
    let business = json!({
        "company_name": format!("Salon {k}"),
        "industry": "Coiffure",
        "phone": "06 12 34 56 78",
        "email": format!("contact@salon-{k}.fr"),
    });
    path.step(&session, "business", &business.to_string())?;
    path.step(&session, "channels", r#"{"channels":["email"]}"#)?;
    let documents: Vec<_> = (0..DOCUMENTS)
        .map(|d| json!({"title": format!("Page {d}"), "content": text(draw)}))
        .collect();
    let kb = json!({"method": "documents", "documents": documents});
    path.step(&session, "kb", &kb.to_string())?;
    path.complete(&session)?;
    Ok(session)
}
