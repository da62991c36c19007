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

/** How long a code is valid, in seconds: the contract's ten minutes. */
const CODE_VALID_S = 600;

/**
 * The seconds from a send to the next one the server takes, from the
 * send's answer alone: its `resend_after` past the send, which was a code's
 * validity before `expires_at`. Not from this browser's clock, which may
 * be minutes off the server's.
 */
export const resendWait = (v) => (Date.parse(v.resend_after) - Date.parse(v.expires_at)) / 1000 + CODE_VALID_S;

/** A wait as the button says it: « 42 s », « 10 min », « 24 h ». */
const waitText = (seconds) => {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 3600) return `${Math.ceil(seconds / 60)} min`;
  return `${Math.ceil(seconds / 3600)} h`;
};

const holds = new WeakMap();

/** Whether `button` is held by [`holdSend`]: a click sends nothing. */
export const held = (button) => button.getAttribute('aria-disabled') === 'true';

/**
 * Holds the send button for `seconds`, the wait the server asks between
 * two codes (60 s, or more after five sends or ten a day): it reads
 * « Renvoyer un code dans 42 s » counting down, and is `aria-disabled`,
 * not `disabled`, so that it keeps the focus a click or Enter gave it.
 * `label` is what it reads once free again.
 */
export function holdSend(button, seconds, label) {
  clearTimeout(holds.get(button));
  const end = performance.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((end - performance.now()) / 1000);
    if (left <= 0) {
      holds.delete(button);
      button.removeAttribute('aria-disabled');
      button.textContent = label;
      return;
    }
    button.setAttribute('aria-disabled', 'true');
    button.textContent = `${label} dans ${waitText(left)}`;
    // At the next whole second of the wait.
    holds.set(button, setTimeout(tick, (end - performance.now()) % 1000 || 1000));
  };
  tick();
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
