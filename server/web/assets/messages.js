// The server's error messages said in French. The API writes them in
// English, for developers and logs (`phone '12' is not a valid phone
// number …`); a tenant reads the French sentence, with the server's text
// after it as the technical detail (what support asks for). A message this
// table does not know is shown as the server wrote it.

/**
 * What a field is called on the pages (the subject of a generic rule), and
 * whether the word is feminine (« trop longue »).
 */
const FIELD_NAMES = {
  company_name: ["Le nom de l'entreprise", false],
  industry: ["Le secteur d'activité", false],
  phone: ['Le numéro de téléphone', false],
  email: ["L'adresse e-mail", true],
  assistant_name: ["Le nom de l'assistant", false],
  crawl_url: ["L'adresse du site", true],
  title: ['Le titre', false],
  content: ['Le contenu', false],
  event_type_id: ["Le numéro de l'événement", false],
  timezone: ['Le fuseau horaire', false],
  code: ['Le code', false],
  q: ['La recherche', true],
  agent_type: ["Le type d'agent", false],
  voice: ['La voix', true],
  method: ['La source', true],
};

const STEP_NAMES = {
  business: 'votre entreprise',
  channels: 'vos canaux',
  vapi: 'votre agent vocal',
  kb: 'la base de connaissances',
};

/** The knowledge base's sources, as the kb step's radios name them. */
const SOURCES = 'choisissez « Mon site web », « Coller des textes » ou « Plus tard ».';

const subject = (field) => (FIELD_NAMES[field] || ['Ce champ'])[0];
/** `masculine` or `feminine`, as the field's name wants. */
const agreed = (field, masculine, feminine) => ((FIELD_NAMES[field] || [])[1] ? feminine : masculine);
/** `1er`, `2e`, `1 234e`: a place in a text, as French writes it. */
const ordinal = (n) => (n === 1 ? '1er' : `${n.toLocaleString('fr-FR')}e`);
/** `200 000`: a count as French writes it, its thousands apart. */
const count = (digits) => Number(digits).toLocaleString('fr-FR');

/** `retry after N s` (or the Retry-After header) as French words. */
export function delay(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return 'dans quelques instants';
  if (seconds < 1.5) return 'dans 1 seconde';
  if (seconds < 90) return `dans ${Math.ceil(seconds)} secondes`;
  if (seconds < 3600) return `dans ${Math.ceil(seconds / 60)} minutes`;
  const hours = Math.ceil(seconds / 3600);
  return hours === 1 ? 'dans 1 heure' : `dans ${hours} heures`;
}

/** A size in bytes as French units (« 64 Ko », « 4 Mo »). */
function size(bytes) {
  if (bytes >= 1048576) return `${Math.floor(bytes / 1048576)} Mo`;
  return `${Math.max(1, Math.floor(bytes / 1024))} Ko`;
}

const retryAfter = (message, error) => {
  const match = /retry after (\d+) s/.exec(message);
  return delay(match ? Number(match[1]) : error.retryAfter);
};

/**
 * [pattern, French]: the first pattern that matches the server's message
 * gives the French text; `field` is the field the message is about.
 */
const RULES = [
  [/^q must not be empty/, () => 'Saisissez un ou plusieurs mots à rechercher.'],
  // Required, said for what it asks.
  [/^crawl_url is required/, () => "Indiquez l'adresse de votre site."],
  [/^documents is required/, () => 'Collez au moins un texte.'],
  [/^channels is required/, () => 'Aucun canal choisi : cochez-en au moins un.'],
  // A choice among radios: the options are named, not "this field".
  [/^method is required/, () => `Aucune source choisie : ${SOURCES}`],
  [/^agent_type is required/, () => "Choisissez un type d'agent dans la liste."],
  [/^voice is required/, () => 'Choisissez une voix dans la liste.'],
  // Any field.
  [/^(\w+) is required\b/, (m) => `${subject(m[1])} est obligatoire.`],
  [/^(\w+) must not be empty/, (m) => `${subject(m[1])} est obligatoire.`],
  [/^(\w+) is (\d+) characters long; at most (\d+) are allowed/,
    (m) => `${subject(m[1])} est ${agreed(m[1], 'trop long', 'trop longue')} : ${count(m[2])} caractères, ${count(m[3])} au plus.`],
  [/^(\w+) is longer than (\d+) characters/,
    (m) => `${subject(m[1])} est ${agreed(m[1], 'trop long', 'trop longue')} : ${count(m[2])} caractères au plus.`],
  // The field, then perhaps its value quoted (which may itself say
  // anything): the rule is the message's end.
  // Pasted texts may hold line breaks and tabs: the character is another.
  // A pasted text's says where the character is (it cannot be seen).
  [/^content(?: '.*')? contains a control character(?: \(U\+[0-9A-F]+, character (\d+) of \d+\))?/,
    (m) => `Le contenu contient un caractère invisible non autorisé${m[1] ? ` (au ${ordinal(Number(m[1]))} caractère)` : ''}, venu d’un copier-coller par exemple : retirez-le.`],
  [/^(\w+)(?: '.*')? contains a control character/,
    (m) => `${subject(m[1])} contient un caractère invisible (retour à la ligne, tabulation…) : retirez-le.`],
  // A title with a line break, or a name with a line separator pasted in.
  [/^(\w+)(?: must fit on one line|(?: '.*')? contains a line break)/,
    (m) => `${subject(m[1])} doit tenir sur une ligne.`],
  // A right-to-left override pasted with a name.
  [/^(\w+)(?: '.*')? contains a bidirectional control character/,
    (m) => `${subject(m[1])} contient un caractère invisible qui inverse le sens de l’écriture (venu d’un copier-coller, par exemple) : retirez-le.`],
  [/^(\w+) must be (a string|text)/, (m) => `${subject(m[1])} doit être un texte.`],
  // The business step.
  [/^email .* is not a valid email address/, () => "Cette adresse e-mail n'est pas valide (exemple : contact@mon-entreprise.fr)."],
  [/^email .* is already used by another account/, () => 'Cette adresse e-mail est déjà utilisée par un autre compte.'],
  [/^too many 'email already used' answers/,
    (m, e) => `Trop d'adresses e-mail déjà utilisées ont été essayées : réessayez ${delay(e.retryAfter)}.`],
  [/^phone .* is not a valid phone number/,
    () => "Ce numéro de téléphone n'est pas valide (exemple : 06 12 34 56 78, ou +33 6 12 34 56 78)."],
  // Channels, the voice agent.
  [/^channels must name at least one/, () => 'Aucun canal choisi : cochez-en au moins un.'],
  [/^channels lists .*, which is not a channel/, () => "Un des canaux choisis n'existe pas."],
  [/^agent_type .* is not an agent type/, () => "Choisissez un type d'agent dans la liste."],
  [/^voice .* is not a voice/, () => 'Choisissez une voix dans la liste.'],
  // The knowledge base.
  [/^method .* is not a knowledge-base method/, () => `Cette source n'existe pas : ${SOURCES}`],
  [/^crawl_url .* is not a public address/,
    () => "Cette adresse n'est pas celle d'un site public : indiquez l'adresse de votre site, par exemple https://mon-site.fr."],
  [/^crawl_url .* uses a port other than 80 and 443/,
    () => "Cette adresse utilise un port réservé : indiquez l'adresse publique de votre site, par exemple https://mon-site.fr."],
  [/^crawl_url /, () => "Cette adresse de site n'est pas valide (exemple : https://mon-site.fr)."],
  [/^documents holds 0 items/, () => 'Collez au moins un texte.'],
  [/^documents holds (\d+) items; 1 to (\d+) are allowed/,
    (m) => `Vous avez collé ${m[1]} textes : ${m[2]} au plus.`],
  [/^request body is larger than the limit of (\d+) bytes/, (m) => `Ce que vous avez saisi est trop volumineux : ${size(Number(m[1]))} au plus.`],
  // Appointments.
  [/^event_type_id .* is not a positive integer/,
    () => "Indiquez le numéro de votre type d'événement Cal.com (un nombre, par exemple 123456)."],
  [/^timezone .* is not an IANA time zone/, () => 'Fuseau horaire inconnu : indiquez un nom comme Europe/Paris.'],
  [/^provider .* is not a booking provider/, () => 'Choisissez Cal.com.'],
  // Phone verification.
  [/^code is wrong; 1 try left/, () => 'Code incorrect : il vous reste 1 essai.'],
  [/^code is wrong; (\d+) tries left/, (m) => `Code incorrect : il vous reste ${m[1]} essais.`],
  [/^code is wrong; no tries left/, () => 'Code incorrect, et plus aucun essai : demandez un nouveau code.'],
  [/^code must be (?:a string of )?(\d+) digits/, (m) => `Le code compte ${m[1]} chiffres.`],
  [/^verification .* is locked after (\d+) wrong codes/,
    (m) => `${m[1]} codes incorrects : ce code est bloqué, demandez-en un nouveau.`],
  [/^the code of verification .* expired/, () => 'Ce code a expiré : demandez-en un nouveau.'],
  [/^verification .* was cancelled when the business phone changed/,
    () => 'Le numéro a changé depuis l’envoi de ce code : demandez-en un nouveau.'],
  [/^no code was sent (?:for session|to) /, () => "Aucun code n'a encore été envoyé : demandez un code."],
  [/^a code was sent \d+ s ago; codes are sent at least (\d+) s apart/,
    (m, e, message) => `Un code vient d'être envoyé : vous pourrez en demander un autre ${retryAfter(message, e)}.`],
  [/^phone .* was sent \d+ codes in the last 24 hours/,
    (m, e, message) => `Trop de codes envoyés à ce numéro : réessayez ${retryAfter(message, e)}.`],
  [/^session .* was sent \d+ codes in the last 24 hours/,
    (m, e, message) => `Trop de codes envoyés pour cette configuration : réessayez ${retryAfter(message, e)}.`],
  [/^phone .* is not a French number/,
    () => "Les codes ne sont envoyés qu'aux numéros français (+33 et outre-mer). Enregistrez un numéro français pour le vérifier."],
  [/^phone .* codes go only to mobile, fixed and toll-free lines/,
    () => 'Ce numéro ne peut pas recevoir de code : seuls les mobiles, les lignes fixes et les numéros verts le peuvent.'],
  [/^channel 'sms' cannot reach the fixed line/, () => 'Un SMS ne peut pas joindre une ligne fixe : choisissez l’appel vocal.'],
  [/^channel 'sms' cannot reach the toll-free line/, () => 'Un SMS ne peut pas joindre un numéro vert : choisissez l’appel vocal.'],
  [/^phone .* is already verified/, () => 'Ce numéro est déjà vérifié.'],
  [/^verification .* is already used: phone .* is verified/, () => 'Ce numéro est déjà vérifié.'],
  [/^verification .* has had its (\d+) sends/,
    (m, e, message) => `Ce code a déjà été envoyé ${m[1]} fois : vous pourrez en demander un nouveau ${retryAfter(message, e)}.`],
  [/^session .* has no business phone yet/, () => "Enregistrez d'abord le numéro de votre entreprise."],
  // Completion.
  [/^session .* is missing steps: (\w+(?:, \w+)*)/,
    (m) => `Il manque encore des étapes : ${m[1].split(', ').map((s) => STEP_NAMES[s] || s).join(', ')}.`],
  // Too many requests.
  [/^too many sessions created from this address/,
    (m, e) => `Trop de configurations ont été commencées depuis votre connexion : réessayez ${delay(e.retryAfter)}.`],
  [/^too many phone codes sent from this address/,
    (m, e) => `Trop de codes ont été envoyés depuis votre connexion : vous pourrez en demander un nouveau ${delay(e.retryAfter)}.`],
  // A session an operator closed (`abandoned`; the wizard starts a new
  // one instead, the dashboard says this).
  [/^session .* is abandoned;/, () => 'Cette configuration a été close : elle ne peut plus être modifiée.'],
  [/^too many open connections/, (m, e) => `Le serveur est très sollicité : réessayez ${delay(e.retryAfter)}.`],
  [/^this address is already sending a large body/,
    (m, e) => `Un autre envoi de textes est en cours depuis votre connexion : réessayez ${delay(e.retryAfter)}.`],
  [/^the server is reading as many large bodies as it takes at once/,
    (m, e) => `Le serveur reçoit déjà beaucoup de textes : réessayez ${delay(e.retryAfter)}.`],
];

/**
 * The French text for an API error (`message`: the server's text, or the
 * part of it after a prefix the caller has said itself), or null when
 * this table does not know the message.
 */
export function french(message, error = {}) {
  for (const [pattern, say] of RULES) {
    const match = pattern.exec(message);
    if (match) return say(match, error, message);
  }
  // A server failure (`internal`, 500) has no rule: its text is a
  // developer's. The tenant reads what it means for them; sending again
  // is safe (a failed call wrote nothing).
  if (error.status >= 500 && error.code) return 'Le serveur a rencontré une erreur : réessayez dans quelques instants.';
  return null;
}

/**
 * Writes an error into `slot`: the French text, then the server's own as
 * the detail (in English, marked so), kept in the page for support but
 * never shown or read out: the pages speak French. The server's text alone
 * when there is no French one. Answers the French text (or the server's),
 * for the live region to announce.
 */
export function writeError(slot, message, error = {}, prefix = '') {
  const said = french(message, error);
  slot.replaceChildren();
  if (!said) {
    slot.textContent = `${prefix}${message}`;
    return `${prefix}${message}`;
  }
  const detail = document.createElement('span');
  detail.className = 'detail';
  // For support only (the page's source, the developer tools): English on
  // a French screen, or read by a French voice at every focus of the
  // field, helps no one.
  detail.hidden = true;
  const label = document.createElement('span');
  label.textContent = 'Détail : ';
  const text = document.createElement('span');
  text.lang = 'en';
  text.textContent = message;
  detail.append(label, text);
  slot.append(`${prefix}${said} `, detail);
  return `${prefix}${said}`;
}
