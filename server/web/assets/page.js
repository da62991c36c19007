// What both pages share beyond the API: writing values into the page,
// radio choices, the live regions that announce what changed, and the
// phone code's wording.

export const $ = (id) => document.getElementById(id);

/** Writes `value` into the element `elementId`, or a dash for nothing. */
export const text = (elementId, value) => {
  $(elementId).textContent = value === null || value === undefined || value === '' ? '—' : String(value);
};

/** Checks the radio of group `name` whose value is `wanted` (and no other). */
export const check = (name, wanted) => {
  for (const input of document.querySelectorAll(`input[name="${name}"]`)) {
    input.checked = input.value === wanted;
  }
};

/** Says `message` through the polite live region `#announce`. */
export function announce(message) {
  $('announce').textContent = message;
}

/** Says an error through the assertive live region `#announce-error`. */
export function announceError(message) {
  // A change of text is what a live region announces: clear it first so the
  // same message twice is announced twice.
  const region = $('announce-error');
  region.textContent = '';
  requestAnimationFrame(() => {
    region.textContent = `Erreur : ${message}`;
  });
}

/**
 * The channel a code goes by unless the user picks one: an SMS reaches a
 * mobile (in France or overseas: Réunion and Mayotte 69x and 639,
 * Guadeloupe 690-691, Guyane 694, Martinique 696-697), a fixed line gets a
 * call, as the server decides it.
 */
export function defaultChannel(phone) {
  const mobile = /^\+33[67]|^\+262(69|639)|^\+590(69[01])|^\+594694|^\+596(69[67])/;
  return mobile.test(phone || '') ? 'sms' : 'voice';
}

const clock = (iso) =>
  iso ? new Date(iso).toLocaleTimeString('fr-FR', { hour: '2-digit', minute: '2-digit' }) : '';

/** What the page says once a code is sent (`v`: the send's answer, or the session's pending verification). */
export function sentNote(v) {
  const how = v.channel === 'voice' ? 'par appel vocal' : 'par SMS';
  return `Code envoyé ${how} au ${v.phone_number}. Il est valable jusqu'à ${clock(v.expires_at)}.`;
}

/**
 * The code as the server wants it, six digits: a code typed in two groups
 * ("655 378", as people read digits out) or pasted with the space around
 * it (narrow or non-breaking ones too) has its white space dropped, not
 * sent. So the field has no maxlength, which would cut such a code short.
 */
export const typedCode = (value) => value.replace(/\s+/g, '');

/**
 * The "Réessayer" banner's text for a request that did not reach the
 * server (a `NetworkError`: `busy` for a 503), on a page where something
 * was typed.
 */
export const offlineText = (error) =>
  error.message === 'busy'
    ? 'Le serveur est occupé. Ce que vous avez saisi est conservé.'
    : 'Connexion au serveur impossible. Ce que vous avez saisi est conservé.';
