// The API client both pages share: JSON in and out on this origin, the
// server's error body turned into an ApiError, and the failures worth
// retrying (no network, 503, 429) retried a few times before giving up
// with a NetworkError, so the page can offer "Réessayer".

export const BASE = '/api/v1/onboarding';

/**
 * An answer of the server that is not a success: its JSON error body, and
 * the seconds its Retry-After asks to wait (a 429), if any.
 */
export class ApiError extends Error {
  constructor(status, body, retryAfter = null) {
    super(body && typeof body.error === 'string' ? body.error : `Le serveur a répondu par une erreur (HTTP ${status}).`);
    this.status = status;
    this.code = body && body.code;
    this.field = body && body.field;
    this.retryAfter = retryAfter;
  }
}

/** The server could not be reached (or stayed busy) after the retries. */
export class NetworkError extends Error {}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * How long an answer may take, from the request sent to its body read: a
 * server that accepts the connection and never answers (stopped, or behind
 * a proxy that hangs) left a save waiting for ever, its button busy and
 * "Précédent" turned away. 30 s, and a second more for each 64 KiB sent:
 * pasted texts reach 23 MiB, which a slow uplink takes minutes to send.
 */
const answerTimeoutMs = (bytesSent) => 30_000 + Math.ceil(bytesSent / 65_536) * 1000;

/**
 * The server's clock less this browser's, in ms, from the `Date` header of
 * the server's last answer; 0 before any.
 */
let serverOffsetMs = 0;

/**
 * The server's time now, as this browser reckons it from the server's last
 * answer: never ahead of the server's own (the header drops the
 * milliseconds, and the answer took some time to come), so a wait counted
 * to a time the server set ends no sooner than the server's.
 */
export const serverNow = () => Date.now() + serverOffsetMs;

/**
 * Sends one request and answers the JSON body of a success.
 *
 * `retries` is how many more attempts a failure worth retrying gets: the
 * steps are safe to send twice (a step edits its data, a second completion
 * answers the first one's result); a code's send and its check are not, and
 * go through `postOnce`. `headers`: more request headers (an
 * `Idempotency-Key`).
 */
export async function request(method, path, body, { retries = 3, headers = {} } = {}) {
  const sent = Date.now();
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const timeout = answerTimeoutMs(init.body ? init.body.length : 0);
  for (let attempt = 0; ; attempt += 1) {
    let response;
    let json = null;
    // Past the timeout the request is given up, not tried again: the page
    // offers "Réessayer" at once rather than after minutes of retries.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    try {
      try {
        response = await fetch(path, { ...init, signal: controller.signal });
      } catch {
        if (controller.signal.aborted) throw new NetworkError('timeout');
        if (attempt < retries) {
          await wait(500 * 2 ** attempt);
          continue;
        }
        throw new NetworkError('network');
      }
      try {
        json = await response.json();
      } catch {
        if (controller.signal.aborted) throw new NetworkError('timeout');
        json = null;
      }
    } finally {
      clearTimeout(timer);
    }
    const date = Date.parse(response.headers.get('Date'));
    if (Number.isFinite(date)) serverOffsetMs = date - Date.now();
    if (response.ok) {
      if (json !== null && typeof json === 'object') {
        // A write done: what a call left unanswered before it would do
        // has changed (another number saved, a code verified).
        if (method !== 'GET') forgetKeysBefore(sent);
        return json;
      }
      // Every success of the API is a JSON object: a success without one
      // is an answer cut short (the connection dropped mid-way). What was
      // asked may have been done, or not, so it is a network failure,
      // retried where sending twice is safe, else offered as "Réessayer".
      if (attempt < retries) {
        await wait(500 * 2 ** attempt);
        continue;
      }
      throw new NetworkError('network');
    }
    // Busy or rate-limited: worth another try after the delay the server
    // asks for, when that delay is short enough to wait for on screen.
    const after = Number(response.headers.get('Retry-After'));
    if ((response.status === 503 || response.status === 429) && attempt < retries && after <= 5) {
      await wait(Math.max(after, 0.5) * 1000);
      continue;
    }
    if (response.status === 503) {
      throw new NetworkError('busy');
    }
    throw new ApiError(response.status, json, Number.isFinite(after) && after > 0 ? after : null);
  }
}

export const get = (path, options) => request('GET', path, undefined, options);
export const post = (path, body, options) => request('POST', path, body, options);

export const sessionPath = (id, action) =>
  `${BASE}/session/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;

/**
 * Whether an error is the server saying it has no such route, or not with
 * this method: a server older than this page.
 */
export const isMissingRoute = (error) =>
  error instanceof ApiError &&
  ((error.status === 404 && /^no route for /.test(error.message)) || error.status === 405);

/**
 * A create's `Idempotency-Key`: 32 random hex digits (getRandomValues works
 * on a plain-http address too, where randomUUID does not).
 */
export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The `Idempotency-Key` of each call sent whose answer has not come (a
 * network failure, retries spent), by path: the same body sent again to
 * the same path ("Réessayer") goes under the same key, for a minute from
 * when the failure was shown, and until another write is done. Later, or
 * after another write (a new phone number saved), the same click is a new
 * call: its first answer would say what no longer holds (a code sent to
 * the old number, or one a resend has replaced since).
 */
const unanswered = new Map();

/** How long a lost call's key is kept for its "Réessayer". */
const KEY_KEPT_MS = 60 * 1000;

/**
 * A write sent at `sent` is done: the keys of the calls left unanswered
 * before it go; those of calls still being sent or retried stay.
 */
function forgetKeysBefore(sent) {
  for (const [path, call] of unanswered) {
    if (!call.sending && call.at < sent) unanswered.delete(path);
  }
}

/**
 * A POST not safe to send twice (a code's send, a code's check), under an
 * `Idempotency-Key`: its retries, and a "Réessayer" of the same body after
 * they were spent, get the first answer if the first request ran (a code
 * goes out once, a wrong code counts once). Once the server has answered,
 * the next call is a new one (a resend, a code typed again), with a new key.
 */
export async function postOnce(path, body) {
  const text = JSON.stringify(body);
  let call = unanswered.get(path);
  if (!call || call.text !== text || Date.now() - call.at > KEY_KEPT_MS) {
    call = { text, key: newIdempotencyKey(), at: Date.now() };
    unanswered.set(path, call);
  }
  call.sending = true;
  try {
    const answer = await post(path, body, { headers: { 'Idempotency-Key': call.key } });
    unanswered.delete(path);
    return answer;
  } catch (error) {
    if (error instanceof NetworkError) {
      // Kept for its "Réessayer", a minute from now: the failure may have
      // taken long to show (a connection hanging before it drops).
      call.at = Date.now();
    } else {
      // Refused: answered, the next click is a new call.
      unanswered.delete(path);
    }
    throw error;
  } finally {
    call.sending = false;
  }
}

/** Where the pages keep the session id: the onboarding's only credential. */
export const SESSION_KEY = 'onboarding.session_id';

/**
 * Whether a kept session id has the shape of one: `onb_` and at most 128 id
 * characters. Anything else (changed by hand, or long enough to make the
 * request's headers too large) is no session the server could know: the
 * pages treat it as an unknown id without asking.
 */
export const looksLikeSessionId = (id) => /^onb_[A-Za-z0-9_-]{1,128}$/.test(id);

export const CHANNEL_LABELS = {
  phone: 'Téléphone',
  sms: 'SMS',
  whatsapp: 'WhatsApp',
  email: 'E-mail',
};

export const GENDER_LABELS = { female: 'voix féminine', male: 'voix masculine' };
