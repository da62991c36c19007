//! The catalogues, as data: the 7 agent types (with their French greeting
//! and system-prompt templates) and the voices.
//!
//! Templates use two placeholders, `{agent_name}` and `{company_name}`,
//! filled by [`render`] at completion. Voices are labelled truthfully: the
//! original mapped `female` to a male ElevenLabs voice.

use serde_json::{json, Value};

/// One agent type of the catalogue.
#[derive(Debug)]
pub struct AgentType {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// Tool ids the runtime grants the agent.
    pub tools: &'static [&'static str],
    /// A short description of tone, stored as `agent_personality`.
    pub personality: &'static str,
    pub greeting: &'static str,
    pub system_prompt: &'static str,
}

/// Rules shared by every spoken agent, appended to each system prompt.
const SPOKEN_RULES: &str = "\n\n# Règles de conversation\n\
- Tu parles au téléphone : réponses courtes, deux phrases au plus, sans listes ni symboles.\n\
- Une seule question à la fois, puis tu écoutes la réponse.\n\
- Tu vouvoies l'interlocuteur et restes {courtoise|courtois}, même face à l'impatience.\n\
- Tu n'inventes jamais une information (prix, disponibilité, délai) : si tu ne la connais pas, tu le dis et proposes d'être recontacté.\n\
- Avant de raccrocher, tu récapitules ce qui a été convenu.";

pub const AGENT_TYPES: [AgentType; 7] = [
    AgentType {
        id: "real_estate_reception",
        name: "Réception d'appels immobiliers",
        description: "Répond aux appels entrants d'une agence immobilière, qualifie le projet de l'appelant et propose des visites.",
        tools: &["product_search", "appointment_booking"],
        personality: "{professionnelle, chaleureuse et précise|professionnel, chaleureux et précis}",
        greeting: "Bonjour, {agent_name} de l'agence {company_name}, que puis-je faire pour votre projet immobilier ?",
        system_prompt: "# Contexte\n\
Tu es {agent_name}, {l'assistante vocale|l'assistant vocal} de l'agence immobilière {company_name}. Tu réponds aux appels entrants des personnes qui cherchent à acheter, louer ou vendre un bien.\n\n\
# Déroulé de l'appel\n\
1. Demande si l'appelant cherche à acheter, louer ou vendre.\n\
2. Qualifie le projet : type de bien, secteur, budget, nombre de pièces, délai.\n\
3. Recherche les biens correspondants avec l'outil de recherche et présente-en deux au plus.\n\
4. Propose une visite et réserve le créneau avec l'outil de prise de rendez-vous.\n\
5. Note le nom et le numéro de rappel, puis confirme le rendez-vous.",
    },
    AgentType {
        id: "real_estate_callback",
        name: "Rappel de prospects immobiliers",
        description: "Rappelle les prospects qui ont laissé leurs coordonnées pour un bien, vérifie leur intérêt et fixe une visite.",
        tools: &["product_search", "appointment_booking"],
        personality: "{dynamique, attentive et jamais insistante|dynamique, attentif et jamais insistant}",
        greeting: "Bonjour, ici {agent_name} de l'agence {company_name}, je vous rappelle suite à votre demande concernant un bien.",
        system_prompt: "# Contexte\n\
Tu es {agent_name}, {l'assistante vocale|l'assistant vocal} de l'agence immobilière {company_name}. Tu rappelles des prospects qui ont demandé des informations sur un bien.\n\n\
# Déroulé de l'appel\n\
1. Vérifie que tu parles à la bonne personne et que le moment lui convient ; sinon, propose un autre moment.\n\
2. Rappelle le bien concerné et demande si le projet est toujours d'actualité.\n\
3. Qualifie le projet : budget, financement, délai, critères indispensables.\n\
4. Si le bien ne convient plus, cherche des alternatives avec l'outil de recherche.\n\
5. Propose une visite et réserve le créneau avec l'outil de prise de rendez-vous.",
    },
    AgentType {
        id: "appointment_booking",
        name: "Prise de rendez-vous générique",
        description: "Prend, déplace et annule les rendez-vous des clients dans l'agenda de l'entreprise.",
        tools: &["appointment_booking"],
        personality: "{efficace, claire et souriante|efficace, clair et souriant}",
        greeting: "Bonjour, {agent_name} pour {company_name}, je peux vous aider à prendre rendez-vous.",
        system_prompt: "# Contexte\n\
Tu es {agent_name}, {l'assistante vocale|l'assistant vocal} de {company_name}. Ton rôle est de gérer les rendez-vous des clients.\n\n\
# Déroulé de l'appel\n\
1. Demande s'il s'agit de prendre, déplacer ou annuler un rendez-vous.\n\
2. Demande le motif du rendez-vous et la période souhaitée.\n\
3. Consulte les disponibilités avec l'outil de prise de rendez-vous et propose deux créneaux.\n\
4. Recueille le nom, le numéro de téléphone et, si possible, l'adresse e-mail.\n\
5. Confirme la date, l'heure et le motif avant de conclure.",
    },
    AgentType {
        id: "phone_reception",
        name: "Accueil téléphonique",
        description: "Accueille les appelants, répond aux questions fréquentes et transfère vers la bonne personne.",
        tools: &["call_transfer", "faq"],
        personality: "{accueillante, patiente et polie|accueillant, patient et poli}",
        greeting: "{company_name}, bonjour, {agent_name} à votre écoute.",
        system_prompt: "# Contexte\n\
Tu es {agent_name}, {la standardiste virtuelle|le standardiste virtuel} de {company_name}. Tu accueilles chaque appel et orientes l'appelant.\n\n\
# Déroulé de l'appel\n\
1. Demande le motif de l'appel.\n\
2. Si la réponse figure dans la foire aux questions (horaires, adresse, services), réponds directement.\n\
3. Sinon, demande le nom de l'appelant et transfère l'appel vers le bon service avec l'outil de transfert.\n\
4. Si personne n'est disponible, prends un message : nom, numéro, motif, et indique qu'il sera rappelé.",
    },
    AgentType {
        id: "customer_support",
        name: "Support client",
        description: "Répond aux demandes d'assistance à partir de la base de connaissances, ouvre des tickets et escalade si besoin.",
        tools: &["knowledge_search", "ticket_creation", "call_transfer"],
        personality: "{empathique, méthodique et rassurante|empathique, méthodique et rassurant}",
        greeting: "Bonjour, {agent_name} du support {company_name}, comment puis-je vous aider ?",
        system_prompt: "# Contexte\n\
Tu es {agent_name}, {l'assistante|l'assistant} du support client de {company_name}. Tu aides les clients à résoudre leurs problèmes.\n\n\
# Déroulé de l'appel\n\
1. Fais décrire le problème et reformule-le pour vérifier que tu as compris.\n\
2. Cherche la solution dans la base de connaissances et guide le client étape par étape.\n\
3. Si le problème persiste, crée un ticket avec l'outil dédié et donne son numéro au client.\n\
4. Si le client le demande ou si la situation est urgente, transfère l'appel à un conseiller.",
    },
    AgentType {
        id: "multi_purpose",
        name: "Agent Polyvalent",
        description: "Accueille, informe, prend les rendez-vous et ouvre des tickets : un seul agent pour tous les besoins courants.",
        tools: &["product_search", "appointment_booking", "knowledge_search", "ticket_creation"],
        personality: "{polyvalente, chaleureuse et professionnelle|polyvalent, chaleureux et professionnel}",
        greeting: "Bonjour, {agent_name} de {company_name}, comment puis-je vous aider ?",
        system_prompt: "# Contexte\n\
Tu es {agent_name}, {l'assistante vocale|l'assistant vocal} de {company_name}. Tu traites toutes les demandes courantes des clients et prospects.\n\n\
# Déroulé de l'appel\n\
1. Demande le motif de l'appel et identifie le besoin : information, produit ou service, rendez-vous, problème.\n\
2. Pour une question, cherche la réponse dans la base de connaissances.\n\
3. Pour un produit ou un service, utilise l'outil de recherche et présente deux options au plus.\n\
4. Pour un rendez-vous, propose deux créneaux et réserve-le avec l'outil de prise de rendez-vous.\n\
5. Pour un problème que tu ne peux pas résoudre, crée un ticket et indique le délai de rappel.",
    },
    AgentType {
        id: "custom",
        name: "Configuration personnalisée",
        description: "Un agent sans outil prédéfini, à configurer entièrement depuis le tableau de bord.",
        tools: &[],
        personality: "{professionnelle et courtoise|professionnel et courtois}",
        greeting: "Bonjour, vous êtes bien chez {company_name}, {agent_name} à votre écoute.",
        system_prompt: "# Contexte\n\
Tu es {agent_name}, {l'assistante vocale|l'assistant vocal} de {company_name}.\n\n\
# Déroulé de l'appel\n\
1. Demande le motif de l'appel.\n\
2. Réponds uniquement avec les informations dont tu disposes.\n\
3. Si tu ne peux pas répondre, note le nom, le numéro et la demande de l'appelant, et indique qu'il sera recontacté.",
    },
];

pub fn agent_type(id: &str) -> Option<&'static AgentType> {
    AGENT_TYPES.iter().find(|a| a.id == id)
}

/// Ids of the agent types, comma-separated, for error texts.
pub fn agent_type_ids() -> String {
    AGENT_TYPES
        .iter()
        .map(|a| a.id)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which words a template's alternatives take: the voice's grammatical
/// gender (`Tu es Marc, l'assistant vocal`, not `l'assistante`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Female,
    Male,
}

impl Gender {
    /// A voice's gender (`female`, `male`).
    pub fn of(voice: &Voice) -> Gender {
        match voice.gender {
            "male" => Gender::Male,
            _ => Gender::Female,
        }
    }
}

/// Fills `{agent_name}` and `{company_name}` in a template, and picks one of
/// each `{feminine|masculine}` alternative by `gender`, in one pass over the
/// template: the names go in as they are, never read as placeholders or
/// alternatives themselves (an assistant named `{company_name}` stays so).
/// French elision applies before a name that starts with a vowel: "de
/// {company_name}" with "Agence du Port" reads "d'Agence du Port" (a name
/// starting with an h is left as "de": whether it elides depends on the
/// word, which no rule here knows); and contraction before a name that
/// starts with the article "Les": "des Halles".
pub fn render(template: &str, agent_name: &str, company_name: &str, gender: Gender) -> String {
    const AGENT: &str = "{agent_name}";
    const COMPANY: &str = "{company_name}";
    let mut out = String::with_capacity(template.len() + agent_name.len() + company_name.len());
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix(AGENT) {
            push_name(&mut out, agent_name);
            rest = after;
        } else if let Some(after) = rest.strip_prefix(COMPANY) {
            push_name(&mut out, company_name);
            rest = after;
        } else if let Some((feminine, masculine, after)) = alternative(&rest[1..]) {
            out.push_str(match gender {
                Gender::Female => feminine,
                Gender::Male => masculine,
            });
            rest = after;
        } else {
            out.push('{');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// `feminine|masculine}` at the start of `text` (after its `{`), and what
/// follows the `}`: one line, no brace inside.
fn alternative(text: &str) -> Option<(&str, &str, &str)> {
    let end = text.find(['}', '{', '\n'])?;
    if !text[end..].starts_with('}') {
        return None;
    }
    let (feminine, masculine) = text[..end].split_once('|')?;
    Some((feminine, masculine, &text[end + 1..]))
}

/// Appends `name`, eliding a "de" written just before it ("de" + "Agence"
/// → "d'Agence"), or contracting it with the name's leading article "Les":
/// "de" and "Les Halles" read "des Halles". Not "Le": it begins surnames
/// too, which keep it ("de Le Goff Plomberie", never "du Goff"), and no
/// rule here tells "Le Petit Café" from them; "La" and "L'" never contract.
fn push_name(out: &mut String, name: &str) {
    let de = out.strip_suffix("de ").filter(|before| {
        before.is_empty() || before.ends_with(|c: char| c.is_whitespace() || c == '(')
    });
    if let Some(before) = de {
        let after_les = name
            .split_once(' ')
            .filter(|(word, rest)| word.eq_ignore_ascii_case("les") && !rest.trim().is_empty())
            .map(|(_, rest)| rest);
        if let Some(rest) = after_les {
            out.truncate(before.len());
            out.push_str("des ");
            out.push_str(rest.trim_start());
            return;
        }
    }
    let mut letters = name.chars().flat_map(char::to_lowercase);
    let is_vowel = |c: char| "aeiouàâäáãåéèêëíìîïóòôöõøúùûüæœ".contains(c);
    let vowel = match letters.next() {
        // A "y" before a vowel sounds as a consonant: "de YouTube", "de
        // Yoga", but "d'Yvelines".
        Some('y' | 'ÿ') => !letters.next().is_some_and(is_vowel),
        Some(c) => is_vowel(c),
        None => false,
    };
    if let (true, Some(before)) = (vowel, de) {
        out.truncate(before.len());
        out.push_str("d'");
    }
    out.push_str(name);
}

/// The system prompt of `agent`, rendered, with the shared conversation rules.
pub fn system_prompt(
    agent: &AgentType,
    agent_name: &str,
    company_name: &str,
    gender: Gender,
) -> String {
    let mut prompt = render(agent.system_prompt, agent_name, company_name, gender);
    prompt.push_str(&render(SPOKEN_RULES, agent_name, company_name, gender));
    prompt
}

/// The personality of `agent`, in `gender`'s words.
pub fn personality(agent: &AgentType, gender: Gender) -> String {
    render(agent.personality, "", "", gender)
}

/// One voice of the catalogue. ElevenLabs' multilingual model speaks French
/// with any of its premade voices; `provider_voice_name` is the provider's
/// own name for the voice.
#[derive(Debug)]
pub struct Voice {
    pub id: &'static str,
    pub name: &'static str,
    pub gender: &'static str,
    pub provider_voice_id: &'static str,
    pub provider_voice_name: &'static str,
}

pub const VOICE_PROVIDER: &str = "elevenlabs";
pub const VOICE_LANGUAGE: &str = "fr-FR";
pub const VOICE_MODEL: &str = "eleven_multilingual_v2";

pub const VOICES: [Voice; 4] = [
    Voice {
        id: "sara",
        name: "Sara",
        gender: "female",
        provider_voice_id: "EXAVITQu4vr4xnSDxMaL",
        provider_voice_name: "Sarah",
    },
    Voice {
        id: "rachel",
        name: "Rachel",
        gender: "female",
        provider_voice_id: "21m00Tcm4TlvDq8ikWAM",
        provider_voice_name: "Rachel",
    },
    Voice {
        id: "daniel",
        name: "Daniel",
        gender: "male",
        provider_voice_id: "onwK4e9ZLuTAKqWW03F9",
        provider_voice_name: "Daniel",
    },
    Voice {
        id: "adam",
        name: "Adam",
        gender: "male",
        provider_voice_id: "pNInz6obpgDQGcFmaJgB",
        provider_voice_name: "Adam",
    },
];

/// The voice used when a gender (`female`, `male`) is chosen instead of a name.
pub fn default_voice(gender: &str) -> Option<&'static Voice> {
    match gender {
        "female" => voice("sara"),
        "male" => voice("daniel"),
        _ => None,
    }
}

pub fn voice(id: &str) -> Option<&'static Voice> {
    VOICES.iter().find(|v| v.id == id)
}

/// A `voice` value of the vapi step: a gender or a voice id.
pub fn resolve_voice(choice: &str) -> Option<&'static Voice> {
    default_voice(choice).or_else(|| voice(choice))
}

/// The accepted `voice` values, for error texts.
pub fn voice_choices() -> String {
    let mut choices = vec!["female", "male"];
    choices.extend(VOICES.iter().map(|v| v.id));
    choices.join(", ")
}

/// The body of `onboarding_agent_types()`.
pub fn agent_types_json() -> Value {
    let types: Vec<Value> = AGENT_TYPES
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "name": a.name,
                "description": a.description,
                "tools": a.tools,
            })
        })
        .collect();
    json!({ "success": true, "agent_types": types })
}

/// The body of `onboarding_voices()`.
pub fn voices_json() -> Value {
    let voices: Vec<Value> = VOICES
        .iter()
        .map(|v| {
            let default_for = if default_voice(v.gender).is_some_and(|d| d.id == v.id) {
                Value::from(v.gender)
            } else {
                Value::Null
            };
            json!({
                "id": v.id,
                "name": v.name,
                "gender": v.gender,
                "language": VOICE_LANGUAGE,
                "provider": VOICE_PROVIDER,
                "provider_voice_id": v.provider_voice_id,
                "provider_voice_name": v.provider_voice_name,
                "model": VOICE_MODEL,
                "default_for": default_for,
            })
        })
        .collect();
    json!({ "success": true, "voices": voices })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_in_as_they_are_even_when_they_look_like_placeholders() {
        let template = "Bonjour, {agent_name} de {company_name} ({agent_name}).";
        assert_eq!(
            render(
                template,
                "{company_name}",
                "Chez {agent_name}",
                Gender::Female
            ),
            "Bonjour, {company_name} de Chez {agent_name} ({company_name})."
        );
        assert_eq!(
            render(template, "Léa", "Dupont", Gender::Female),
            "Bonjour, Léa de Dupont (Léa)."
        );
        // Braces that start no placeholder, and a placeholder cut short.
        assert_eq!(
            render(
                "{ {agent} {{agent_name}} {company_name",
                "Léa",
                "Dupont",
                Gender::Female
            ),
            "{ {agent} {Léa} {company_name"
        );
        assert_eq!(render("", "Léa", "Dupont", Gender::Female), "");
    }

    #[test]
    fn de_is_elided_before_a_name_that_starts_with_a_vowel() {
        let template = "Bonjour, {agent_name} de {company_name}.";
        for (company, expected) in [
            ("Agence du Port", "Bonjour, Sara d'Agence du Port."),
            ("Élan Coiffure", "Bonjour, Sara d'Élan Coiffure."),
            ("orange bleue", "Bonjour, Sara d'orange bleue."),
            ("Yvelines Habitat", "Bonjour, Sara d'Yvelines Habitat."),
            ("Yoga Studio", "Bonjour, Sara de Yoga Studio."),
            ("Øster Design", "Bonjour, Sara d'Øster Design."),
            ("Ángel Peinados", "Bonjour, Sara d'Ángel Peinados."),
            ("ÉLAN", "Bonjour, Sara d'ÉLAN."),
            ("Boulangerie Léa", "Bonjour, Sara de Boulangerie Léa."),
            ("Hôtel du Parc", "Bonjour, Sara de Hôtel du Parc."),
            ("123 Immo", "Bonjour, Sara de 123 Immo."),
            // The article "Les" contracts with "de"; "Le" does not (it
            // begins Breton surnames: "de Le Goff"), nor "La", "L'", nor
            // a word that only starts so.
            ("Le Petit Café", "Bonjour, Sara de Le Petit Café."),
            ("Le Goff Plomberie", "Bonjour, Sara de Le Goff Plomberie."),
            ("LES HALLES", "Bonjour, Sara des HALLES."),
            ("les  Trois Frères", "Bonjour, Sara des Trois Frères."),
            ("La Belle Époque", "Bonjour, Sara de La Belle Époque."),
            ("L'Atelier", "Bonjour, Sara de L'Atelier."),
            ("Lesage Immo", "Bonjour, Sara de Lesage Immo."),
            ("Le", "Bonjour, Sara de Le."),
            ("", "Bonjour, Sara de ."),
        ] {
            assert_eq!(render(template, "Sara", company, Gender::Female), expected);
        }
        // Only the word "de": "du support", "l'agence", "Sarde" stay.
        assert_eq!(
            render(
                "{agent_name} du support {company_name}",
                "Léa",
                "Atelier",
                Gender::Female
            ),
            "Léa du support Atelier"
        );
        assert_eq!(
            render("Sarde {company_name}", "Léa", "Atelier", Gender::Female),
            "Sarde Atelier"
        );
        assert_eq!(
            render("de {company_name}", "Léa", "Atelier", Gender::Female),
            "d'Atelier"
        );
    }

    #[test]
    fn alternatives_follow_the_voices_gender_and_names_are_never_read_as_one() {
        let template =
            "Tu es {agent_name}, {l'assistante vocale|l'assistant vocal} de {company_name}.";
        assert_eq!(
            render(template, "Sara", "Atelier", Gender::Female),
            "Tu es Sara, l'assistante vocale d'Atelier."
        );
        assert_eq!(
            render(template, "Marc", "Atelier", Gender::Male),
            "Tu es Marc, l'assistant vocal d'Atelier."
        );
        assert_eq!(
            render(template, "{a|b}", "{x|y}", Gender::Male),
            "Tu es {a|b}, l'assistant vocal de {x|y}."
        );
        // Not alternatives: no bar, a brace or a line break inside.
        assert_eq!(
            render("{ab} {a|{b} {a\n|b}", "", "", Gender::Male),
            "{ab} {a|{b} {a\n|b}"
        );
        // Every template and personality has its two forms, and none is
        // left with a bar or a brace in either.
        for agent in &AGENT_TYPES {
            for gender in [Gender::Female, Gender::Male] {
                let prompt = system_prompt(agent, "Sam", "Atelier", gender);
                let personality = personality(agent, gender);
                for text in [&prompt, &personality] {
                    assert!(!text.contains(['{', '|', '}']), "{}: {text}", agent.id);
                }
            }
            let male = system_prompt(agent, "Sam", "Atelier", Gender::Male);
            assert!(
                !male.contains("assistante") && !male.contains("courtoise"),
                "{male}"
            );
            assert!(male.contains("restes courtois"), "{male}");
        }
        assert_eq!(
            personality(agent_type("phone_reception").unwrap(), Gender::Male),
            "accueillant, patient et poli"
        );
        assert_eq!(Gender::of(default_voice("male").unwrap()), Gender::Male);
        assert_eq!(Gender::of(voice("sara").unwrap()), Gender::Female);
    }
}
