// The tenant's dashboard, pre-filled from what completion synced
// (`GET session`'s `omnichannel` part), the phone number's verification
// for a number not verified yet or no longer routed (`POST …/phone/verification` and
// `…/phone/verify`), the knowledge base's pages and crawl progress
// (`GET …/kb`, followed while the crawl runs) and a search box over it
// (`GET …/kb/search`).

import {
  BASE,
  ApiError,
  NetworkError,
  SESSION_KEY,
  looksLikeSessionId,
  CHANNEL_LABELS,
  GENDER_LABELS,
  get,
  postOnce,
  sessionPath,
  isMissingRoute,
} from './api.js';
import { KB_METHOD, followKnowledge, jobStatus } from './knowledge.js';
import { writeError } from './messages.js';
import {
  $,
  ALREADY_VERIFIED,
  announce,
  announceError,
  bookingLine,
  DEAD_CODE,
  TAKEN_ELSEWHERE,
  BACKGROUND_RETRY_MS,
  check,
  defaultChannel,
  dismissBanner,
  held,
  holdAfterRefusal,
  holdSend,
  holdUntil,
  offlineReason,
  offlineText,
  requestsBanner,
  resendWait,
  sentNote,
  showPreviousCode,
  text,
  typedCode,
  unverifiable,
  verifiable,
} from './page.js';

// Every status the schema allows (sql/001_init.sql), not only those the
// onboarding sets: the runtime may set the others.
const PHONE_STATUS = {
  pending_verification: 'En attente de vérification',
  verified: 'Vérifié',
  rejected: 'Refusé',
};
const CAMPAIGN_STATUS = { active: 'Active', paused: 'En pause', archived: 'Archivée' };

let id = null;
let retryAction = null;
/** Whether the agent takes calls (the phone channel is on): what a verified number's line says. */
let takesCalls = true;

/**
 * `text` in a `<bdi>`: a name or a crawled page's title written into a line
 * of ours keeps its own direction, and a right-to-left override left open
 * in it (a hostile page's title) cannot reorder what follows.
 */
function isolated(text) {
  const bdi = document.createElement('bdi');
  bdi.textContent = text;
  return bdi;
}

/**
 * Runs `action`, a read of the page's data, and shows its failure: a
 * network failure as the banner with "Réessayer", an API error in the
 * loading line. `focus`: whether the banner takes the focus. It does when
 * the page itself cannot load (the banner is then the only way on); a
 * read in the background (the crawl's progress) must not take the focus
 * from where the tenant is typing: the banner, an alert, is announced
 * without it. `land`: the heading of what `action` shows, where the focus
 * goes when "Réessayer" succeeds (the button it was on hides with the
 * banner).
 */
async function guarded(action, { focus = true, land = 'title', shown = null } = {}) {
  // A read in the background leaves the banner of a form's request alone
  // (hiding it, or taking its "Réessayer", lost a code that was never
  // sent): it is the form's until its "Réessayer" or its next request.
  const formsBanner = () => !focus && requestsBanner(retryAction);
  // `shown`: the banner of this read's earlier failure, which a try on its
  // own leaves up until a read works (hidden for each try, it blinked).
  const ownBanner = () => Boolean(shown) && retryAction === shown;
  if (!formsBanner() && !ownBanner()) $('offline').hidden = true;
  try {
    await action();
    if (ownBanner()) {
      $('offline').hidden = true;
      retryAction = null;
    }
  } catch (error) {
    // A server error (500) is offered "Réessayer" like a network failure:
    // what failed was a read, and the next one may well succeed; shown in
    // the loading line, it left a reload as the only way on.
    const serverFault = error instanceof ApiError && error.status >= 500;
    if ((error instanceof NetworkError || serverFault) && formsBanner()) {
      // Tried again on its own a moment later.
      setTimeout(() => guarded(action, { focus, land }), BACKGROUND_RETRY_MS);
      return;
    }
    if ((error instanceof NetworkError || serverFault) && ownBanner() && !$('offline').hidden) {
      setTimeout(() => ownBanner() && guarded(action, { focus, land, shown }), BACKGROUND_RETRY_MS);
      return;
    }
    if (error instanceof NetworkError || serverFault) {
      $('offline-text').textContent = serverFault
        ? `Le serveur a rencontré une erreur (HTTP ${error.status}).`
        : offlineReason(error);
      $('offline').hidden = false;
      const retry = { run: () => guarded(action, { focus, land }), land, background: !focus };
      retryAction = retry;
      if (focus) {
        $('retry').focus();
      } else {
        // A read in the background (the crawl's progress) is tried again
        // on its own while its banner stays: a server back after a restart
        // took it up again only once "Réessayer" was clicked.
        setTimeout(() => retryAction === retry && guarded(action, { focus, land, shown: retry }), BACKGROUND_RETRY_MS);
      }
      return;
    }
    if (error instanceof ApiError && error.code === 'not_found' && !isMissingRoute(error)) {
      notReady("Aucune configuration n'a été retrouvée sur ce navigateur.");
      return;
    }
    if (!(error instanceof ApiError)) console.error(error);
    $('loading').hidden = false;
    let said = 'Une erreur inattendue est survenue.';
    if (error instanceof ApiError) said = writeError($('loading'), error.message, error);
    else $('loading').textContent = said;
    // The loading line is no live region (its "Chargement…" would be
    // read at every load): its error is announced on its own.
    announceError(said);
  }
}

function notReady(message) {
  $('loading').hidden = true;
  $('panels').hidden = true;
  $('not-ready-text').textContent = message;
  $('not-ready').hidden = false;
}

async function load() {
  const [session, types, voices] = await Promise.all([
    get(sessionPath(id)),
    get(`${BASE}/agent-types`),
    get(`${BASE}/voices`),
  ]);
  if (session.status === 'abandoned') {
    notReady('Votre configuration a été close : recommencez-en une nouvelle depuis la page de configuration.');
    return;
  }
  if (session.status !== 'completed' || !session.omnichannel) {
    notReady("Votre configuration n'est pas terminée : reprenez-la là où vous l'aviez laissée.");
    return;
  }
  const o = session.omnichannel;
  const tenant = o.tenant || {};
  const company = tenant.company_name || tenant.name;
  $('title').replaceChildren('Tableau de bord – ', isolated(company));
  document.title = `Tableau de bord – ${company}`;
  text('company-name', tenant.company_name || tenant.name);
  text('company-sector', tenant.sector);
  text('company-email', tenant.email);
  text('company-phone', tenant.phone);
  showAgent(o.agent_config, types.agent_types, voices.voices);
  showPhone(o.phone_mapping);
  prepareVerification(o.phone_mapping, session.phone_verification);
  showCampaign(o.campaign);
  $('loading').hidden = true;
  $('panels').hidden = false;
  await showKnowledge(session);
}

function showAgent(agent, types, voices) {
  $('agent-none').hidden = !!agent;
  $('agent-details').hidden = !agent;
  // `channels_config` lists every channel with whether it is on.
  const config = (agent && agent.channels_config) || {};
  const channels = Object.keys(CHANNEL_LABELS).filter((c) => config[c] && config[c].enabled);
  takesCalls = Boolean(agent) && channels.includes('phone');
  const list = $('channels-list');
  list.replaceChildren();
  for (const channel of channels) {
    const item = document.createElement('li');
    item.textContent = CHANNEL_LABELS[channel] || channel;
    list.append(item);
  }
  if (!agent) return;
  const type = types.find((t) => t.id === agent.agent_type);
  const voice = voices.find((v) => v.provider_voice_id === agent.voice_id);
  text('agent-name', agent.agent_name);
  text('agent-type', type ? type.name : agent.agent_type);
  text('agent-voice', voice ? `${voice.name}, ${GENDER_LABELS[voice.gender] || voice.gender}` : agent.voice_id);
  text('agent-language', agent.voice_language === 'fr-FR' ? 'Français' : agent.voice_language);
  text('agent-greeting', agent.greeting_message);
}

function showPhone(mapping) {
  $('phone-none').hidden = !!mapping;
  $('phone-details').hidden = !mapping;
  if (!mapping) return;
  text('phone-number', mapping.phone_number);
  text('phone-status', PHONE_STATUS[mapping.status] || mapping.status);
  // A verified number is inactive when another account routes it, or, when
  // none does, once it was deactivated outside the onboarding (its reason
  // says which). Without an agent on the phone channel no call is taken,
  // whatever the number's state: an active mapping only reserves the number.
  let active = 'Non, pas encore';
  if (!takesCalls) active = 'Non : le téléphone ne fait pas partie des canaux de votre agent';
  else if (mapping.is_active) active = 'Oui';
  else if (mapping.status === 'verified') {
    active = TAKEN_ELSEWHERE.test(mapping.reason || '')
      ? 'Non : ce numéro est déjà actif pour un autre compte'
      : "Non : ce numéro a été désactivé, et aucun compte ne reçoit ses appels";
  }
  text('phone-active', active);
}

// ------------------------------------------------------ phone verification

/**
 * A number still `pending_verification` can be verified here, as in the
 * wizard: a code sent by SMS or call, typed in; the number then routes
 * calls to the agent, unless another account routes it already. So can a
 * verified number no account routes any more.
 */
function prepareVerification(mapping, verification) {
  // A verified number left inactive that no account routes now (released
  // by the runtime or an operator): a new code routes it here again.
  const unrouted =
    !!mapping && mapping.status === 'verified' && !mapping.is_active && !TAKEN_ELSEWHERE.test(mapping.reason || '');
  const pending = !!mapping && (mapping.status === 'pending_verification' || unrouted);
  // A foreign number gets no code, and the steps cannot change any more:
  // said instead of a send the server would refuse.
  const foreign = pending && !verifiable(mapping.phone_number);
  if (foreign) {
    const { why } = unverifiable(mapping.phone_number);
    // Without an agent on the phone channel no calls are said of.
    const calls = takesCalls ? ', et votre agent ne prend pas ses appels' : '';
    $('verify-foreign').textContent = `${why[0].toUpperCase()}${why.slice(1)} : ce numéro ne peut pas l’être${calls}.`;
  }
  $('verify-foreign').hidden = !foreign;
  $('phone-verify').hidden = !pending || foreign;
  if (!pending || foreign) return;
  // Without an agent on the phone channel no calls are taken, verified or
  // not: nothing is said of them.
  if (unrouted) {
    $('verify-intro').textContent = takesCalls
      ? 'Prouvez de nouveau que ce numéro est le vôtre : votre agent reprendra ses appels.'
      : 'Prouvez de nouveau que ce numéro est le vôtre pour le réactiver.';
  } else {
    $('verify-intro').textContent = takesCalls
      ? "Votre agent ne prend les appels de ce numéro qu'une fois que vous avez prouvé qu'il est le vôtre."
      : 'Prouvez que ce numéro est le vôtre.';
  }
  // A code sent before (here or in the wizard) can still be typed in.
  const live = verification && verification.status === 'pending' && verification.phone_number === mapping.phone_number;
  check('channel', live && verification.channel ? verification.channel : defaultChannel(mapping.phone_number));
  if (live) codeSent(verification);
  const mine = verification && verification.phone_number === mapping.phone_number;
  // A code that can no longer be used is said so, as in the wizard.
  showPreviousCode(mine ? verification : null);
  // A page (re)loaded after a send of this number's code waits out what is
  // left of its wait.
  if (mine) holdUntil($('send-code'), $('send-wait'), verification.resend_after);
}

function codeSent(v) {
  $('sent-note').textContent = sentNote(v);
  $('form-verify').hidden = false;
  $('send-code').textContent = 'Renvoyer un code';
}

async function sendCode() {
  const channel = document.querySelector('input[name="channel"]:checked');
  let sent;
  try {
    sent = await postOnce(sessionPath(id, 'phone/verification'), channel ? { channel: channel.value } : {});
  } catch (error) {
    holdAfterRefusal(error);
    // Too soon: a code went out that this page does not know of (sent
    // from another tab, or before a reload). The session says which,
    // and its code field comes back with the refusal.
    if (error instanceof ApiError && error.status === 429) {
      const known = !$('form-verify').hidden;
      await showSavedVerification();
      // A code this page did not know of is the one to type (one it knew
      // of leaves the focus by "Renvoyer", beside the refusal).
      if (!known && !$('phone-verify').hidden && !$('form-verify').hidden) $('code').focus();
    }
    // The note on the code sent before gives way to this refusal (the
    // session read again above may have shown it).
    $('send-previous').hidden = true;
    // Verified already (from another tab): shown so.
    if (error instanceof ApiError && error.status === 409 && ALREADY_VERIFIED.test(error.message)) {
      const mapping = await showSavedVerification();
      if (mapping && mapping.status === 'verified') {
        showVerified(mapping);
        return;
      }
    }
    throw error;
  }
  $('send-previous').hidden = true;
  codeSent(sent);
  holdSend($('send-code'), $('send-wait'), resendWait(sent));
  $('code').focus();
  announce($('sent-note').textContent);
}

/**
 * Reads the session again and shows its number as it is now: the code
 * field of a pending code, or the number verified. Answers the number's
 * mapping, or null when the read failed (the step is left as it was).
 */
async function showSavedVerification() {
  let session;
  try {
    session = await get(sessionPath(id));
  } catch {
    return null;
  }
  const mapping = (session.omnichannel && session.omnichannel.phone_mapping) || null;
  showPhone(mapping);
  prepareVerification(mapping, session.phone_verification);
  return mapping;
}

async function verifyCode() {
  let answer;
  try {
    answer = await postOnce(sessionPath(id, 'phone/verify'), { code: typedCode($('code').value) });
  } catch (error) {
    // A code that can no longer work (no tries left, locked, expired):
    // the way on is a new one, so the code field goes and the message
    // shows by "Renvoyer", as in the wizard.
    if (error instanceof ApiError && DEAD_CODE.test(error.message)) {
      $('form-verify').hidden = true;
      $('code').value = '';
      const slot = $('send-error');
      announceError(writeError(slot, error.message, error));
      slot.hidden = false;
      $('send-code').focus();
      return;
    }
    // Verified already: from another tab, or by this very code typed
    // there. The number as the session has it now is shown.
    if (!(error instanceof ApiError) || error.status !== 409 || !ALREADY_VERIFIED.test(error.message)) throw error;
    const mapping = await showSavedVerification();
    if (!mapping || mapping.status !== 'verified') throw error;
    answer = mapping;
  }
  showVerified(answer);
}

/** The number verified (`answer`: the verify answer, or the session's mapping). */
function showVerified(answer) {
  showPhone({ phone_number: answer.phone_number, status: answer.status, is_active: answer.is_active, reason: answer.reason });
  $('phone-verify').hidden = true;
  $('code').value = '';
  let done = answer.is_active
    ? `Numéro ${answer.phone_number} vérifié : votre agent prend ses appels.`
    : `Numéro ${answer.phone_number} vérifié, mais il est déjà actif pour un autre compte : votre agent ne prend pas ses appels.`;
  // Without the phone channel the agent takes no calls at all.
  if (!takesCalls) {
    done = answer.is_active
      ? `Numéro ${answer.phone_number} vérifié.`
      : `Numéro ${answer.phone_number} vérifié, mais il est déjà actif pour un autre compte.`;
  }
  $('verify-done').textContent = done;
  // A number another account routes is no success: told as a note, as
  // the wizard does.
  $('verify-done').className = answer.is_active ? 'success' : 'note';
  $('verify-done').hidden = false;
  // The form the focus was in is gone: the focus goes to what replaced it.
  $('verify-done').focus();
  announce(done);
}

/**
 * Runs a form's request: a refused field's message goes beside it, any
 * other failure in the form, and nothing typed is lost.
 */
async function submit(form, action) {
  if (form.getAttribute('aria-busy') === 'true') return;
  form.setAttribute('aria-busy', 'true');
  for (const slot of $('phone-verify').querySelectorAll('.field-error, .form-error')) {
    slot.hidden = true;
    slot.textContent = '';
  }
  for (const input of $('phone-verify').querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  retryAction = dismissBanner(retryAction);
  try {
    await action();
  } catch (error) {
    if (error instanceof NetworkError) {
      const button = form.querySelector('button[type="submit"]');
      offerRetry(error, () => submit(form, action), button.id);
      return;
    }
    if (!(error instanceof ApiError)) console.error(error);
    let message = 'Une erreur inattendue est survenue.';
    const field = error instanceof ApiError && error.field && $(error.field);
    const slot = field && form.contains(field) ? $(`${error.field}-error`) : form.querySelector('.form-error');
    if (error instanceof ApiError) message = writeError(slot, error.message, error);
    else slot.textContent = message;
    slot.hidden = false;
    if (field && form.contains(field)) {
      const input = field.matches('input') ? field : field.querySelector('input');
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
    announceError(message);
  } finally {
    form.removeAttribute('aria-busy');
  }
}

function showCampaign(campaign) {
  $('campaign-none').hidden = !!campaign;
  $('campaign-details').hidden = !campaign;
  if (!campaign) return;
  text('campaign-name', campaign.name);
  text('campaign-status', CAMPAIGN_STATUS[campaign.status] || campaign.status);
  text('campaign-channels', (campaign.channels || []).map((c) => CHANNEL_LABELS[c] || c).join(', '));
  const s = campaign.settings || {};
  text('campaign-settings', s.provider ? bookingLine(s) : null);
}

// The knowledge base: the job and the pages from `GET …/kb`, read again
// while a crawl runs; an older server without that route shows what the
// session itself knows (the queued job).
async function showKnowledge(session) {
  try {
    await followKnowledge(id, 'kb', (read) => guarded(read, { focus: false, land: 'h-kb' }));
  } catch (error) {
    if (!isMissingRoute(error)) throw error;
    const job = session.omnichannel.kb_crawl_job;
    const method = session.steps.kb && session.steps.kb.method;
    $('kb-status').textContent = job ? jobStatus(job) : `Source : ${KB_METHOD[method] || '—'}.`;
    return;
  }
  // Without a source (skipped, or left for later) nothing can be found: no
  // search box answering "Aucun résultat." to every question. A site, even
  // one still waiting for its crawl, has pages to come.
  const method = session.steps.kb && session.steps.kb.method;
  $('search').hidden = method !== 'website' && method !== 'documents';
}

/**
 * A snippet as a person reads it: the search answers the stored Markdown
 * line, so a table row's cells are joined ("Samedi · 9h00 – 18h00"), a
 * list item's or heading's marker and emphasis marks are dropped, a link or
 * an image is its text (its address may hold parentheses, as an
 * encyclopaedia's do), and a character the Markdown escaped (`\[`, `\*`,
 * `\_`, `\<` before a letter, `\=` opening a line: written as such on the
 * page) is shown as itself.
 */
export function readable(line) {
  let text = line.trim();
  if (text.startsWith('|')) {
    // A cell's escaped bar is its text: the row splits on the others. (No
    // lookbehind in these patterns: Safari before 16.4 refuses the module.)
    text = text
      .replace(/\\\|/g, '\u0001')
      .split('|')
      .map((cell) => cell.trim().replace(/\u0001/g, '\\|'))
      .filter((cell) => cell !== '')
      .join(' · ');
  }
  return text
    .replace(/^(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)/, '')
    .replace(
      /!?\[((?:\\.|[^\]\\])*)\]\((?:<[^>]*>|(?:[^()\s]|\([^()\s]*\))*)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g,
      '$1',
    )
    // Emphasis marks go; an escaped character stays as it is, for now.
    .replace(/\\.|\*\*|__|`/g, (mark) => (mark[0] === '\\' && mark.length === 2 ? mark : ''))
    .replace(/\\([\\`*_{}[\]()#+\-.!|<>=~])/g, '$1');
}

/**
 * A form's request that did not reach the server: the banner with
 * "Réessayer", which sends the form again as it is then (nothing typed is
 * lost), and the focus on it; done, the focus goes back to the form's
 * button (`land`), which the banner's button hid from under it.
 */
function offerRetry(error, run, land) {
  $('offline-text').textContent = offlineText(error);
  $('offline').hidden = false;
  retryAction = { run, land };
  $('retry').focus();
}

async function search(event) {
  if (event) event.preventDefault();
  retryAction = dismissBanner(retryAction);
  const query = $('q').value;
  $('q-error').hidden = true;
  $('q').removeAttribute('aria-invalid');
  try {
    const answer = await get(`${sessionPath(id, 'kb/search')}?q=${encodeURIComponent(query)}&limit=5`);
    const list = $('search-results');
    list.replaceChildren();
    for (const result of answer.results) {
      const item = document.createElement('li');
      const heading = document.createElement('p');
      heading.className = 'result-title';
      heading.append(isolated(result.title));
      if (result.heading && result.heading !== result.title) {
        heading.append(' › ', isolated(readable(result.heading)));
      }
      const snippet = document.createElement('p');
      snippet.className = 'snippet';
      snippet.textContent = readable(result.snippet);
      item.append(heading, snippet);
      list.append(item);
    }
    const n = answer.results.length;
    $('search-status').textContent = n === 0 ? 'Aucun résultat.' : n === 1 ? '1 résultat.' : `${n} résultats.`;
  } catch (error) {
    // The results of an earlier query would read as this one's.
    $('search-results').replaceChildren();
    if (error instanceof ApiError && error.field) {
      const said = writeError($('q-error'), error.message, error);
      $('q-error').hidden = false;
      $('q').setAttribute('aria-invalid', 'true');
      $('search-status').textContent = `Erreur : ${said}`;
      $('q').focus();
      return;
    }
    if (error instanceof NetworkError) {
      $('search-status').textContent = '';
      offerRetry(error, () => search(), 'search-button');
      return;
    }
    if (error instanceof ApiError) writeError($('search-status'), error.message, error);
    else $('search-status').textContent = 'Une erreur inattendue est survenue.';
  }
}

function start() {
  $('retry').addEventListener('click', async () => {
    const retry = retryAction;
    retryAction = null;
    if (!retry) return;
    await retry.run();
    // Failed again: the banner is back, and so is the focus. Done: the
    // button hid under the focus, which would fall to the page's start;
    // it goes to the heading of what was read, unless the tenant has
    // moved it meanwhile.
    if (!$('offline').hidden) $('retry').focus();
    else if (document.activeElement === document.body || !document.activeElement) $(retry.land).focus();
  });
  $('search').addEventListener('submit', search);
  $('form-send').addEventListener('submit', (event) => {
    event.preventDefault();
    // Held until the server takes another code: nothing to send yet, and
    // the wait said again to screen readers.
    if (held($('send-code'))) {
      announce($('send-wait').textContent);
      return;
    }
    submit($('form-send'), sendCode);
  });
  $('form-verify').addEventListener('submit', (event) => {
    event.preventDefault();
    submit($('form-verify'), verifyCode);
  });
  id = localStorage.getItem(SESSION_KEY);
  if (!id) {
    notReady("Aucune configuration n'a été commencée sur ce navigateur.");
    return;
  }
  if (!looksLikeSessionId(id)) {
    notReady("Aucune configuration n'a été retrouvée sur ce navigateur.");
    return;
  }
  guarded(load);
}

start();
