// What both pages share beyond the API: writing values into the page,
// radio choices, the live regions that announce what changed, and the
// phone code's wording.

import { serverNow } from './api.js';
import { delay } from './messages.js';

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

/**
 * Says `message` through the polite live region `#announce`. An error said
 * before is over by then (the action that failed was done, or another one
 * was): a screen reader browsing the page must not find it still.
 */
export function announce(message) {
  $('announce-error').textContent = '';
  $('announce').textContent = message;
}

/**
 * The server's texts for a code that can no longer work (no tries left,
 * locked, expired, or cancelled by a new business phone): the way on is a
 * new code, so the code field goes and the message shows by "Renvoyer".
 */
export const DEAD_CODE = /no tries left|is locked after|expired at|was cancelled when/;

/**
 * What a page reloaded (or come back to) says of a code sent before that
 * can no longer be used, by its verification's status in `GET session`
 * (the refusal shown when it happened went with the page).
 */
const PREVIOUS_CODE = {
  expired: 'Le code envoyé a expiré (il est valable 10 minutes) : demandez-en un nouveau.',
  failed: 'Le code envoyé est bloqué après 5 essais erronés : demandez-en un nouveau.',
};

/**
 * Says above the send form whether the code of `verification` (the
 * number's latest, or null) can no longer be used, unless a refusal shows
 * there already; the next send is then a new code.
 */
export function showPreviousCode(verification) {
  const previous = (verification && PREVIOUS_CODE[verification.status]) || '';
  $('send-previous').textContent = previous;
  $('send-previous').hidden = !previous || !$('send-error').hidden;
  if (previous) $('send-code').textContent = 'Envoyer un nouveau code';
}

/** The reason a verified number stays inactive: another account routes it. */
export const TAKEN_ELSEWHERE = /already active for another tenant/;

/** The server's texts for a code sent for a number verified already. */
export const ALREADY_VERIFIED = /^phone .* is already verified|^verification .* is already used: phone .* is verified/;

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
/**
 * Whether codes go to `phone` (E.164): the server sends them to French
 * numbers only, +33 and the overseas departments (+262, +590, +594, +596),
 * and not to a shared-cost or premium-rate 08 number (a numéro vert, 0800
 * to 0805, takes a call).
 */
export const verifiable = (phone) =>
  /^\+(33|262|590|594|596)/.test(phone || '') && !/^\+338(?!0[0-5])/.test(phone || '');

/**
 * Why no code goes to `phone` (not `verifiable`), as a sentence that ends
 * before its full stop, and the number to save instead: a French
 * special-rate number is refused for its rate, any other for its country.
 */
export function unverifiable(phone) {
  return /^\+338/.test(phone || '')
    ? { why: 'les numéros à tarif spécial (08, hors numéros verts 0800 à 0805) ne sont pas vérifiés', instead: 'un autre numéro' }
    : { why: 'seuls les numéros français (+33 et outre-mer) sont vérifiés', instead: 'un numéro français' };
}

export function defaultChannel(phone) {
  const mobile = /^\+33[67]|^\+262(69|639)|^\+590(69[01])|^\+594694|^\+596(69[67])/;
  return mobile.test(phone || '') ? 'sms' : 'voice';
}

/** A tenant's booking settings in words; settings saved without an event type (through the API) say so, not "null". */
export function bookingLine(booking) {
  const event = booking.event_type_id ? `événement ${booking.event_type_id}` : 'aucun événement choisi';
  return `Cal.com, ${event}, ${booking.timezone}`;
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

/** The contract's spacing of two sends to a session, in seconds. */
export const SEND_SPACING_S = 60;

/** The longest hold: the daily limits' day, and a minute to spare. */
const MAX_HOLD_S = 86460;

/**
 * The seconds from a send to the next one the server takes, from the
 * send's answer alone: its `resend_after` past the send, which was a code's
 * validity before `expires_at`. Not from this browser's clock, which may
 * be minutes off the server's. NaN when the answer lacks either.
 */
export const resendWait = (v) => (Date.parse(v.resend_after) - Date.parse(v.expires_at)) / 1000 + CODE_VALID_S;

const holds = new WeakMap();

/** Whether `button` is held by [`holdSend`]: a click sends nothing. */
export const held = (button) => button.getAttribute('aria-disabled') === 'true';

/**
 * Holds the send button for `seconds`, the wait the server asks between
 * two codes (60 s, or more after five sends or ten a day): `aria-disabled`,
 * not `disabled`, so that it keeps the focus a click or Enter gave it,
 * its name unchanged; the wait is told beside it (`note`, which describes
 * it), counting down, and again to screen readers at a held click; its
 * end is told to a user whose focus waits on the button. `onFree` runs
 * then. A wait that is not a number, or none, frees the button now.
 * Counted on `Date.now()`, which goes on while a device sleeps.
 */
export function holdSend(button, note, seconds, onFree = () => {}) {
  clearTimeout((holds.get(button) || {}).timer);
  holds.delete(button);
  const free = () => {
    const was = held(button);
    button.removeAttribute('aria-disabled');
    note.hidden = true;
    note.textContent = '';
    if (was) onFree();
    if (was && document.activeElement === button) announce('Vous pouvez demander un nouveau code.');
  };
  if (!Number.isFinite(seconds) || seconds <= 0) {
    free();
    return;
  }
  const end = Date.now() + Math.min(seconds, MAX_HOLD_S) * 1000;
  const tick = () => {
    const left = (end - Date.now()) / 1000;
    if (left <= 0) {
      holds.delete(button);
      free();
      return;
    }
    button.setAttribute('aria-disabled', 'true');
    const text = `Vous pourrez demander un autre code ${delay(left)}.`;
    if (note.textContent !== text) note.textContent = text;
    note.hidden = false;
    // At the next whole second of the wait.
    holds.set(button, { timer: setTimeout(tick, (end - Date.now()) % 1000 || 1000), end });
  };
  tick();
}

/**
 * After a send refused as too soon (a 429: a code sent before a reload, or
 * from another page), the send button waits as long as the server asks,
 * and the refusal's message goes with the wait.
 */
export function holdAfterRefusal(error) {
  if (error.status !== 429 || !error.retryAfter) return;
  holdSend($('send-code'), $('send-wait'), error.retryAfter, () => {
    $('send-error').hidden = true;
    $('send-error').textContent = '';
  });
}

/**
 * Holds the send button of a page (re)loaded for what is left of the wait
 * the server set on the number's verification (its `resend_after`),
 * counted on the server's clock (`serverNow`), not this browser's, which
 * may be minutes off. A button this page holds already keeps its hold:
 * that one was counted from the send's own answer.
 */
export function holdUntil(button, note, resendAfter) {
  if (held(button) || !resendAfter) return;
  holdSend(button, note, (Date.parse(resendAfter) - serverNow()) / 1000);
}

/** The seconds `button` is still held for, 0 when free. */
export const heldFor = (button) => Math.max(0, (((holds.get(button) || {}).end || 0) - Date.now()) / 1000);

/**
 * The code as the server wants it, six digits: a code typed in two groups
 * ("655 378", as people read digits out) or pasted with the space around
 * it (narrow or non-breaking ones too) has its white space dropped, not
 * sent. So the field has no maxlength, which would cut such a code short.
 */
export const typedCode = (value) => value.replace(/\s+/g, '');

/**
 * The "Réessayer" banner's text for a request that did not reach the
 * server (a `NetworkError`: `busy` for a 503); `typed`: on a page where
 * something was typed, which it says is kept.
 */
export const offlineText = (error, typed = true) =>
  offlineReason(error) + (typed ? ' Ce que vous avez saisi est conservé.' : '');

/**
 * Why a request did not get its answer (a `NetworkError`): the server busy
 * (a 503), silent past the wait (`timeout`), or not reached.
 */
export const offlineReason = (error) =>
  ({ busy: 'Le serveur est occupé.', timeout: 'Le serveur ne répond pas.' })[error.message] ||
  'Connexion au serveur impossible.';

/** The wait before a read in the background, which met another banner, is tried again. */
export const BACKGROUND_RETRY_MS = 5000;

/**
 * Whether the "Réessayer" banner is up for a request the tenant made (a
 * save, a code sent; `retry`, the page's retry), not for a read in the
 * background: such a read leaves it alone and tries again on its own.
 */
export const requestsBanner = (retry) => !$('offline').hidden && Boolean(retry) && !retry.background;

/**
 * Hides the "Réessayer" banner for a new request, and answers the page's
 * retry left (`retry`, or none). A read in the background whose banner it
 * was (`retry.background`) is tried again a moment later: its "Réessayer"
 * hidden, the crawl's progress stopped there until a reload.
 */
export function dismissBanner(retry) {
  const banner = $('offline');
  if (!banner.hidden && retry && retry.background) {
    setTimeout(retry.run, BACKGROUND_RETRY_MS);
    retry = null;
  }
  banner.hidden = true;
  return retry;
}
