// The API client both pages share: JSON in and out on this origin, the
// server's error body turned into an ApiError, and the failures worth
// retrying (no network, 503, 429) retried a few times before giving up
// with a NetworkError, so the page can offer "Réessayer".

export const BASE = '/api/v1/onboarding';

/** An answer of the server that is not a success: its JSON error body. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && typeof body.error === 'string' ? body.error : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.field = body && body.field;
  }
}

/** The server could not be reached (or stayed busy) after the retries. */
export class NetworkError extends Error {}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends one request and answers the JSON body of a success.
 *
 * `retries` is how many more attempts a failure worth retrying gets: the
 * steps are safe to send twice (a step edits its data, a second completion
 * answers the first one's result), a verification code is not, so its
 * callers pass 0.
 */
export async function request(method, path, body, { retries = 3 } = {}) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      if (attempt < retries) {
        await wait(500 * 2 ** attempt);
        continue;
      }
      throw new NetworkError('network');
    }
    let json = null;
    try {
      json = await response.json();
    } catch {
      json = null;
    }
    if (response.ok) {
      return json;
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
    throw new ApiError(response.status, json);
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

/** Where the pages keep the session id: the onboarding's only credential. */
export const SESSION_KEY = 'onboarding.session_id';

export const CHANNEL_LABELS = {
  phone: 'Téléphone',
  sms: 'SMS',
  whatsapp: 'WhatsApp',
  email: 'E-mail',
};

export const GENDER_LABELS = { female: 'voix féminine', male: 'voix masculine' };

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
