// The onboarding wizard. Each step's form is saved through the API when the
// user moves on ("Suivant", "Précédent", or the browser's back button); the
// session id stays in localStorage, so a reload or a return the next day
// resumes at the step the user was on, with every field filled from `GET
// session`, and what was typed but not saved yet (a draft, also in
// localStorage) over it. A failed request leaves the page as it is (nothing
// typed is lost) and offers "Réessayer".

import {
  BASE,
  ApiError,
  NetworkError,
  SESSION_KEY,
  looksLikeSessionId,
  CHANNEL_LABELS,
  GENDER_LABELS,
  get,
  post,
  postOnce,
  sessionPath,
  isMissingRoute,
  newIdempotencyKey,
} from './api.js';
import { followKnowledge } from './knowledge.js';
import { french, writeError } from './messages.js';
import {
  $,
  ALREADY_VERIFIED,
  DEAD_CODE,
  TAKEN_ELSEWHERE,
  announce,
  announceError,
  BACKGROUND_RETRY_MS,
  bookingLine,
  offlineReason,
  check,
  defaultChannel,
  dismissBanner,
  held,
  heldFor,
  holdAfterRefusal,
  holdSend,
  holdUntil,
  offlineText,
  requestsBanner,
  resendWait,
  SEND_SPACING_S,
  sentNote,
  showPreviousCode,
  typedCode,
  unverifiable,
  verifiable,
} from './page.js';

/** The step the user was on, so a reload shows that one again. */
const STEP_KEY = 'onboarding.step';
/** What was typed in a step and not saved yet: `onboarding.draft.<step>`. */
const DRAFT_KEY = 'onboarding.draft.';

const STEPS = ['welcome', 'business', 'channels', 'phone', 'kb', 'appointments', 'verification', 'complete'];
const TITLES = {
  welcome: 'Bienvenue',
  business: 'Votre entreprise',
  channels: 'Vos canaux',
  phone: 'Votre agent vocal',
  kb: 'Base de connaissances',
  appointments: 'Prise de rendez-vous',
  verification: 'Vérification de votre numéro',
  complete: 'Tout est prêt',
};
const KB_LABELS = { website: 'Site web', documents: 'Textes collés', assistant: 'Assistant', skip: 'Plus tard' };
const MAX_DOCUMENTS = 20;

const state = {
  id: null,
  /** The page is reading its stored session at load (nothing typed yet). */
  loading: false,
  /** The last `GET session` answer (its `steps` kept up to date on save). */
  session: null,
  /** The channels as saved, or the server's default before that. */
  channels: ['phone'],
  /** Agent types and voices, loaded once when the phone step first shows. */
  catalog: null,
  current: null,
  busy: false,
  documentSeq: 0,
  /** The text boxes the last kb save sent, in the order the server numbers them. */
  sentDocuments: [],
  /** The fields of the step the last save sent, as sent (`saveStep`). */
  sent: null,
  /** Whether the knowledge base's reads after completion have started. */
  followingKnowledge: false,
  /** Per step, its fields as first shown since it was last saved (`fieldsOf`). */
  shown: {},
  /** Steps whose draft waits for them to be shown (see `start`). */
  pendingDrafts: new Set(),
  /** The page's own step down the history, not the user's Back. */
  ignoreNextPop: false,
  /** Steps (as the API names them) saved since the session was last read. */
  unconfirmed: new Set(),
  /** An error shown without a form (`formError`), cleared at the next action. */
  looseError: null,
  /** The `Idempotency-Key` of the create under way, until it answers. */
  createKey: null,
  /** When this page last had a code sent (`Date.now()`), for the spacing of sends. */
  sentAt: null,
  /** The number the verification step last showed (`undefined`: never shown). */
  verifyingNumber: undefined,
};

// ---------------------------------------------------------------- steps

const applies = (name) => name !== 'phone' || state.channels.includes('phone');
/** The API's name of a page's step: the phone step saves `vapi`. */
const apiStep = (name) => (name === 'phone' ? 'vapi' : name);
const visibleSteps = () => STEPS.filter(applies);

function neighbour(name, delta) {
  const order = visibleSteps();
  return order[Math.min(Math.max(order.indexOf(name) + delta, 0), order.length - 1)];
}

async function show(name) {
  // A step's form is shown as the server holds it: read now, so that a
  // save made in another tab since shows (see `refreshSession`), and so
  // that a step saved since the session was read has its draft taken
  // against what the server holds.
  if (state.id && state.session && (DRAFTED.includes(name) || state.unconfirmed.has(apiStep(name)))) {
    try {
      await refreshSession({ retries: 0 });
    } catch {
      // Still unread (no retry: the step shows at once as the page has
      // it): a draft of it says so (see `saveDraft`).
    }
  }
  // A step another tab made inapplicable since the way here was chosen
  // (the phone channel dropped): the next one in the direction taken.
  if (!applies(name)) {
    const at = STEPS.indexOf(name);
    name = STEPS.indexOf(state.current) < at
      ? STEPS.slice(at + 1).find(applies)
      : STEPS.slice(0, at).reverse().find(applies);
  }
  // The summary names the agent type and the voice as the phone step does,
  // also when the page was reloaded past that step.
  if (name === 'phone' || (name === 'complete' && applies('phone'))) await loadCatalog();
  if (name === 'verification' || name === 'complete') await refreshSession();
  // The voice agent's step, made necessary since by another tab (the phone
  // channel added) and never saved: shown before the completion would
  // refuse for want of it.
  if ((name === 'verification' || name === 'complete') && state.session.status !== 'completed'
      && applies('phone') && !state.session.steps.vapi) {
    name = 'phone';
    await loadCatalog();
  }
  if (name === 'verification') prepareVerification();
  if (name === 'complete') {
    // Drawn again from the session just read: a change it announced is
    // in it now.
    $('summary-changed').hidden = true;
    renderSummary();
  }
  for (const section of document.querySelectorAll('.step')) {
    section.hidden = section.dataset.step !== name;
  }
  $('loading').hidden = true;
  // (`announce` below clears an error of the step left: no longer true here.)
  state.current = name;
  state.changed = false;
  if (state.id) localStorage.setItem(STEP_KEY, name);
  guardHistory();
  const order = visibleSteps();
  const position = `étape ${order.indexOf(name) + 1} sur ${order.length}`;
  document.title = `${TITLES[name]} (${position}) – Configuration de votre agent`;
  $(`h-${name}`).focus();
  announce(`${TITLES[name]}, ${position}`);
  // What the step showed first since it was last saved: the draft's changes
  // are counted from there.
  if (!(name in state.shown)) state.shown[name] = fieldsOf(name);
  // A draft put aside at load comes back with its step.
  if (state.pendingDrafts.delete(name) && applyDraft(name)) state.changed = true;
}

/**
 * The browser's back button, inside the wizard, goes to the step before as
 * "Précédent" does. One history entry is kept above the page's own while a
 * step after the welcome is shown; going back pops it, and the page puts
 * it back and goes to the step before. On the welcome step, and once the
 * onboarding is completed, back leaves the page as usual.
 */
function guardHistory() {
  const onGuard = history.state && history.state.wizard;
  if (guarding()) {
    if (onGuard) return;
    history.replaceState({ wizardPage: true }, '');
    history.pushState({ wizard: true }, '');
  } else if (onGuard) {
    // Back is the browser's again: step down to the page's own entry.
    state.ignoreNextPop = true;
    history.back();
  }
}

const guarding = (name = state.current) =>
  name && name !== 'welcome' && !(state.session && state.session.status === 'completed');

function onHistoryBack(event) {
  // Only a Back onto the page's own entry (not a jump to an anchor).
  if (!(event.state && event.state.wizardPage)) return;
  if (state.ignoreNextPop) {
    state.ignoreNextPop = false;
    return;
  }
  if (!guarding()) return;
  // Put back at once: the step may stay (a save in flight makes its own
  // move, a save that fails keeps the step); the welcome step, if that is
  // where this leads, steps down from it (`guardHistory`).
  history.pushState({ wizard: true }, '');
  const back = document.querySelector(`.step[data-step="${state.current}"] .back`);
  if (!state.busy && back && !back.hidden) back.click();
}

/** The step to resume at: where the user was, unless a required step before it is missing. */
function resumeStep(session) {
  const steps = session.steps || {};
  const required = [
    ['business', steps.business],
    ['channels', steps.channels],
    ['phone', steps.vapi],
    ['kb', steps.kb],
  ].filter(([name]) => applies(name));
  const missing = required.find(([, data]) => !data);
  const furthest = missing ? missing[0] : 'complete';
  const order = visibleSteps();
  const stored = localStorage.getItem(STEP_KEY);
  if (stored && order.includes(stored) && order.indexOf(stored) <= order.indexOf(furthest)) {
    return stored;
  }
  if (missing) return furthest;
  // No step kept by this browser (another one, or its storage cleared):
  // the session says how far the user went. Past the knowledge base come
  // the appointments, saved or not (declining them saves nothing), then
  // the verification, once appointments are saved or a code was sent.
  return steps.appointments || session.phone_verification ? 'verification' : 'appointments';
}

// ------------------------------------------------------ saving and errors

/**
 * Runs `action` (which reads the form when it runs, so a retry sends what is
 * typed then) and shows what went wrong beside the field, in the form, or as
 * the "Réessayer" banner.
 */
async function act(form, action) {
  if (state.busy) return;
  state.busy = true;
  if (form) form.setAttribute('aria-busy', 'true');
  clearErrors(form);
  retryAction = dismissBanner(retryAction);
  // A save that takes a while says so, to the eye and to screen readers:
  // another process holding the database can keep it waiting for seconds.
  const slow = form
    ? setTimeout(() => {
        form.dataset.slow = 'true';
        announce('Enregistrement en cours…');
      }, 1000)
    : null;
  try {
    await action();
  } catch (error) {
    failed(form, action, error);
  } finally {
    clearTimeout(slow);
    state.busy = false;
    if (form) {
      form.removeAttribute('aria-busy');
      delete form.dataset.slow;
    }
  }
}

function failed(form, action, error) {
  if (error instanceof NetworkError) {
    // The session still loading: nothing typed yet to speak of.
    $('offline-text').textContent = offlineText(error, !state.loading);
    $('offline').hidden = false;
    // Done, the action shows its step (whose heading takes the focus).
    retryAction = { run: () => act(form, action), land: () => document.querySelector('.step:not([hidden]) h1') };
    $('retry').focus();
    return;
  }
  if (error instanceof ApiError && error.status === 404 && error.code === 'not_found' && !isMissingRoute(error)) {
    sessionLost();
    return;
  }
  if (error instanceof ApiError && error.status === 409 && /^session '[^']*' is abandoned;/.test(error.message)) {
    sessionLost(true);
    return;
  }
  // Completed meanwhile (in another tab): its steps are closed, and the
  // page goes to the completion it missed, with the dashboard's link,
  // rather than quote the session's id, its only credential.
  if (error instanceof ApiError && error.status === 409 && /^session '[^']*' is completed;/.test(error.message)) {
    // What this page tried to save was not: said on the completion, not
    // left for the user to discover on the dashboard.
    $('complete-elsewhere').hidden = false;
    setTimeout(() => act(null, () => show('complete')));
    return;
  }
  if (!(error instanceof ApiError)) {
    console.error(error);
  }
  if (!(error instanceof ApiError)) {
    formError(form, 'Une erreur inattendue est survenue.');
    return;
  }
  const field = error.field || conflictField(error);
  if (form && field === 'documents' && documentError(error)) {
    return;
  }
  if (form && field && fieldError(form, field, error)) {
    return;
  }
  // The completion refusing a field of an earlier step: the email another
  // account took since the business step saved it. That step is shown
  // with the error beside its field; left on the completion, the tenant
  // had to guess which step to go back to. (Only there: the verification's
  // refusal of the business phone, which may be the business's real
  // number, stays beside the send button.)
  const earlier = field && $(field) && $(field).closest('.step');
  if (form && form.id === 'form-complete' && earlier && !earlier.contains(form) && $(`form-${earlier.dataset.step}`)) {
    const name = earlier.dataset.step;
    setTimeout(() => act(null, async () => {
      await show(name);
      fieldError($(`form-${name}`), field, error);
    }));
    return;
  }
  formError(form, error.message, error);
}

/**
 * The field a `409 conflict` is about: the server names no field there, but
 * its "email already used" text starts with the field's name, as every
 * validation message does.
 */
function conflictField(error) {
  return error.code === 'conflict' && /^email '/.test(error.message) ? 'email' : null;
}

let retryAction = null;

/** Shows the server's `error` under the field named `field`, if this form has it. */
function fieldError(form, field, error) {
  const control = $(field);
  const slot = $(`${field}-error`);
  if (!control || !slot || !form.contains(control)) return false;
  const message = writeError(slot, error.message, error);
  slot.hidden = false;
  const inputs = control.matches('input, textarea, select') ? [control] : [...control.querySelectorAll('input, textarea')];
  for (const input of inputs) {
    input.setAttribute('aria-invalid', 'true');
    // A group's message (the channels', the pasted texts') describes the
    // group; each of its inputs is described by it too, so that coming
    // back to one says why it is invalid, not only that it is.
    const own = input.getAttribute('aria-describedby') || '';
    if (input !== control && !own.split(' ').includes(slot.id)) {
      input.dataset.describedBefore = own;
      input.setAttribute('aria-describedby', `${own} ${slot.id}`.trim());
    }
  }
  (inputs[0] || control).focus();
  announceError(message);
  return true;
}

/**
 * A pasted text the server refused. It numbers the texts it was sent from
 * 0, and empty boxes are not sent, while the page says "Texte 1, 2…": the
 * message names the text as the page does, and goes beside the title or
 * content it is about (its description), which takes the focus; about the
 * whole text, under the text's content.
 */
function documentError(error) {
  const message = error.message;
  const match = /^documents\[(\d+)\](?:\.(title|content))?\s*/.exec(message);
  const box = match && state.sentDocuments[Number(match[1])];
  if (!box || !box.isConnected) return false;
  const n = [...document.querySelectorAll('#document-list .document')].indexOf(box) + 1;
  const part = match[2] === 'title' ? 'titre' : match[2] === 'content' ? 'contenu' : null;
  const prefix = `Texte ${n}${part ? `, ${part}` : ''} : `;
  // The rule, said of the title or content ("Le titre est obligatoire.").
  const rule = `${match[2] || 'content'} ${message.slice(match[0].length)}`;
  const control = box.querySelector(match[2] === 'title' ? 'input' : 'textarea');
  const slot = $(`${control.id}-error`);
  const said = french(rule, error);
  let text;
  if (said) {
    // The French rule names the title or the content itself.
    text = writeError(slot, rule, error, `Texte ${n} : `);
    // The detail quotes the server as it spoke, numbering from 0.
    slot.querySelector('[lang="en"]').textContent = message;
  } else {
    text = `${prefix}${message.slice(match[0].length)}`;
    slot.textContent = text;
  }
  slot.hidden = false;
  control.setAttribute('aria-invalid', 'true');
  control.focus();
  announceError(text);
  return true;
}

/** Shows `message` (the server's, when `error` is given) above the form's buttons. */
function formError(form, message, error = null) {
  // Without a form, the message takes the loading line's place while the
  // page loads, and else goes above the buttons of the step on screen
  // ("Précédent", or the verification's "Suivant", refused by the server):
  // an error said only to screen readers would leave the eye with a
  // button that does nothing.
  const slot = form ? form.querySelector('.form-error') : $('loading').hidden ? shownFormError() : $('loading');
  if (!form && slot && slot !== $('loading')) state.looseError = slot;
  let said = message;
  if (slot) {
    if (error) said = writeError(slot, message, error);
    else slot.textContent = message;
    slot.hidden = false;
  } else if (error) {
    said = french(message, error) || message;
  }
  announceError(said);
}

/**
 * The error line nearest the buttons of the step on screen: the last one
 * shown (the verification step has its own under its two forms).
 */
function shownFormError() {
  return [...document.querySelectorAll('.step:not([hidden]) .form-error')]
    .filter((slot) => !slot.parentElement.closest('[hidden]'))
    .pop();
}

function clearErrors(form) {
  if (state.looseError) {
    state.looseError.hidden = true;
    state.looseError.textContent = '';
    state.looseError = null;
  }
  if (!form) return;
  const section = form.closest('.step') || form;
  for (const slot of section.querySelectorAll('.field-error, .form-error')) {
    slot.hidden = true;
    slot.textContent = '';
  }
  for (const input of section.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  for (const input of section.querySelectorAll('[data-described-before]')) {
    const own = input.dataset.describedBefore;
    if (own) input.setAttribute('aria-describedby', own);
    else input.removeAttribute('aria-describedby');
    delete input.dataset.describedBefore;
  }
}

function setProgress(percentage) {
  if (typeof percentage !== 'number') return;
  $('progress').value = percentage;
  $('progress').textContent = `${percentage}\u00a0%`;
  $('progress-label').textContent = `Progression : ${percentage}\u00a0%`;
}

function sessionLost(closed = false, atLoad = state.loading) {
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(STEP_KEY);
  clearDrafts();
  state.pendingDrafts.clear();
  state.id = null;
  state.session = null;
  // What the page holds stays: a session lost mid-way (the server's
  // database replaced) costs the user no typing, and the new session saves
  // each step again as it is left. A page just loaded holds the defaults.
  // A session an operator closed (`abandoned`) takes no step any more:
  // the way on is the same, a new one. Found so at load, what it held
  // fills the forms (what was typed and not saved is dropped with it).
  const previous = closed
    ? 'Votre configuration précédente a été close.'
    : "Votre configuration précédente n'a pas été retrouvée.";
  let kept = ' : ce que vous avez saisi est conservé.';
  if (atLoad) kept = closed ? ", à partir de ce qu'elle contenait." : '.';
  $('welcome-note').textContent = `${previous} Vous pouvez en commencer une nouvelle${kept}`;
  state.loading = false;
  $('welcome-note').hidden = false;
  setProgress(0);
  show('welcome');
}

/** Saves one step: its answer moves the progress bar; the session keeps the data for the summary. */
async function saveStep(step, payload) {
  // What the step's fields are as this is sent (the form has put them in
  // the form it sends: a scheme before a site's address): what was typed
  // after is not saved by it (`clearDraft`).
  state.sent = { step: state.current, fields: fieldsOf(state.current) };
  const answer = await post(sessionPath(state.id, step), payload);
  setProgress(answer.progress_percentage);
  if (state.session) state.session.steps[step] = payload;
  // The server keeps the step in its own form (the phone in E.164, the
  // address normalised), which a later draft of it is taken against: read
  // when the step is next shown, which most steps never are.
  state.unconfirmed.add(step);
  return answer;
}

// ------------------------------------------------------------ drafts

/** The steps whose typing is kept as a draft until they are saved. */
const DRAFTED = ['business', 'channels', 'phone', 'kb', 'appointments'];

/**
 * The values of step `name`'s fields by key: `#id` for a text field,
 * `choice:name` for a group of choices (the values ticked, as JSON),
 * `documents` for the pasted texts (as JSON).
 */
function fieldsOf(name) {
  const section = document.querySelector(`.step[data-step="${name}"]`);
  const fields = {};
  if (!section) return fields;
  const choices = {};
  for (const input of section.querySelectorAll('input, textarea, select')) {
    if (input.closest('#document-list')) continue;
    if (input.type === 'radio' || input.type === 'checkbox') {
      choices[input.name] = choices[input.name] || [];
      if (input.checked) choices[input.name].push(input.value);
    } else if (input.id) {
      fields[`#${input.id}`] = input.value;
    }
  }
  for (const [group, ticked] of Object.entries(choices)) fields[`choice:${group}`] = JSON.stringify(ticked);
  if (name === 'kb') {
    fields.documents = JSON.stringify([...document.querySelectorAll('#document-list .document')].map(documentOf));
  }
  return fields;
}

/** The step's data as the server keeps it (the phone step is `vapi` there), as JSON. */
const savedData = (name) =>
  JSON.stringify((state.session && state.session.steps && state.session.steps[apiStep(name)]) || null);

/**
 * Keeps what was changed on the step shown, until it is saved: each field
 * changed since the step was first shown after its last save, and the
 * step's data as the server had it then, so that a draft never undoes a
 * save made since in another tab or on another device. A reload, a closed
 * tab or a crash of the browser then loses nothing typed.
 */
function saveDraft(name) {
  const shown = state.shown[name];
  if (!state.id || name !== state.current || !DRAFTED.includes(name) || !shown) return;
  const changes = {};
  for (const [key, typed] of Object.entries(fieldsOf(name))) {
    if (shown[key] !== undefined && typed !== shown[key]) changes[key] = typed;
  }
  let kept = true;
  try {
    if (Object.keys(changes).length) {
      // `saved` null: the server's form of the step is unknown here, and
      // the draft is put back without that check.
      const saved = state.unconfirmed.has(apiStep(name)) ? null : savedData(name);
      localStorage.setItem(DRAFT_KEY + name, JSON.stringify({ session: state.id, saved, changes }));
    } else {
      localStorage.removeItem(DRAFT_KEY + name);
    }
  } catch {
    // Storage full (pasted texts can pass the browser's few megabytes) or
    // refused: the page still holds what was typed, but the draft kept
    // before would come back over it at a reload, so it goes too.
    kept = false;
    try {
      localStorage.removeItem(DRAFT_KEY + name);
    } catch {
      // Refused altogether: there is no draft to come back.
    }
  }
  // Said where it happens: only pasted texts are that large.
  if (name === 'kb') $('documents-unkept').hidden = kept;
}

/**
 * Puts step `name`'s draft back into its fields when the server still
 * holds the step as it did when the draft was taken (else the draft is
 * dropped: what was saved since stands); answers whether it did.
 */
function applyDraft(name) {
  let draft = null;
  try {
    draft = JSON.parse(localStorage.getItem(DRAFT_KEY + name));
  } catch {
    draft = null;
  }
  if (!draft || draft.session !== state.id || !draft.changes || typeof draft.changes !== 'object') return false;
  if (draft.saved !== null && draft.saved !== savedData(name)) {
    clearDraft(name);
    return false;
  }
  let applied = false;
  for (const [key, typed] of Object.entries(draft.changes)) {
    if (typeof typed !== 'string') continue;
    try {
      setField(key, typed);
      applied = true;
    } catch {
      // A draft this page cannot read: what is shown stays.
    }
  }
  if (applied) {
    showKbPanels();
    showBookingFields();
  }
  return applied;
}

/** Sets the field `key` of `fieldsOf` to `value`. */
function setField(key, value) {
  if (key.startsWith('#')) {
    const control = $(key.slice(1));
    if (control) control.value = value;
  } else if (key.startsWith('choice:')) {
    const ticked = JSON.parse(value);
    for (const input of document.querySelectorAll(`input[name="${CSS.escape(key.slice(7))}"]`)) {
      input.checked = ticked.includes(input.value);
    }
  } else if (key === 'documents') {
    const documents = JSON.parse(value);
    $('document-list').replaceChildren();
    for (const doc of (documents.length ? documents : [{}]).slice(0, MAX_DOCUMENTS)) {
      addDocument(doc.title, doc.content);
    }
  }
}

let draftTimer = null;

/** Saves the draft a moment after the typing stops (pasted texts can be megabytes). */
function scheduleDraft(name) {
  clearTimeout(draftTimer);
  draftTimer = setTimeout(() => saveDraft(name), 300);
}

/**
 * The step was saved with the fields `sent` (by default, what it shows
 * now): its draft goes, and its changes count from those (also while the
 * page stays on it, the next step failing to load). What was typed while
 * the save was in flight was not sent: it stays a draft, where counting
 * it as saved lost it at the next reload.
 */
function clearDraft(name, sent = fieldsOf(name)) {
  if (!DRAFTED.includes(name)) return;
  clearTimeout(draftTimer);
  localStorage.removeItem(DRAFT_KEY + name);
  state.shown[name] = sent;
  saveDraft(name);
}

/**
 * The fields of step `name` as its last save sent them (the fields stay
 * editable while it is in flight), or `undefined` when it sent nothing.
 */
function sentFields(name) {
  return state.sent && state.sent.step === name ? state.sent.fields : undefined;
}

function clearDrafts() {
  for (const name of DRAFTED) clearDraft(name);
}

async function refreshSession(options = {}) {
  const known = state.session && state.session.steps;
  const session = await get(sessionPath(state.id), options);
  // A step saved in another tab or on another device since this page read
  // it shows what the server holds, as a reload would: left as it was, its
  // next "Suivant" would put back what this page last saw over the other
  // save, and the steps and the summary would follow channels no longer
  // chosen. A step this page saved since its last read is taken as the
  // server holds it (its own form: the phone in E.164, the address
  // normalised) without touching its fields: the page reads the session
  // on its way to each step, so a save elsewhere after that read is seen
  // at the next.
  if (known) {
    for (const [step, fill] of Object.entries(FILL)) {
      if (state.unconfirmed.has(step)) continue;
      if (JSON.stringify(known[step] ?? null) === JSON.stringify(session.steps[step] ?? null)) continue;
      fill(session.steps);
      // Its changes count from what it shows now.
      const name = step === 'vapi' ? 'phone' : step;
      if (name in state.shown) state.shown[name] = fieldsOf(name);
    }
  }
  state.session = session;
  setProgress(session.progress_percentage);
  state.unconfirmed.clear();
}

// ------------------------------------------------------------ the forms

const value = (id) => $(id).value;
const checked = (name) => {
  const input = document.querySelector(`input[name="${name}"]:checked`);
  return input ? input.value : undefined;
};

const FORMS = {
  async welcome() {
    if (!state.id) {
      // Retried like a step, under one key until a session is made (the
      // "Réessayer" banner's attempts too): a create whose answer was lost
      // answers the same session again instead of leaving a second behind.
      state.createKey = state.createKey || newIdempotencyKey();
      const created = await post(`${BASE}/session`, {}, { headers: { 'Idempotency-Key': state.createKey } });
      state.createKey = null;
      state.id = created.session_id;
      localStorage.setItem(SESSION_KEY, state.id);
      state.session = { steps: {}, progress_percentage: 0 };
      $('welcome-note').hidden = true;
    }
  },
  async business() {
    await saveStep('business', {
      company_name: value('company_name'),
      industry: value('industry'),
      phone: value('phone'),
      email: value('email'),
    });
  },
  async channels() {
    const channels = [...document.querySelectorAll('input[name="channels"]:checked')].map((c) => c.value);
    await saveStep('channels', { channels });
    state.channels = channels;
  },
  async phone() {
    const payload = { assistant_name: value('assistant_name') };
    if (checked('agent_type')) payload.agent_type = checked('agent_type');
    if (checked('voice')) payload.voice = checked('voice');
    await saveStep('vapi', payload);
  },
  async kb() {
    const method = checked('method');
    const payload = method ? { method } : {};
    if (method === 'website') payload.crawl_url = siteAddress();
    if (method === 'documents') {
      const boxes = filledDocuments();
      state.sentDocuments = boxes;
      payload.documents = boxes.map(documentOf);
    }
    await saveStep('kb', payload);
  },
  async appointments() {
    // Saving the step says the tenant takes appointments. "None" saves
    // nothing, unless this step saved Cal.com before: then it says so, and
    // that clears it (booking settings set on the account otherwise stay).
    if (checked('booking') !== 'cal_com') {
      if (takesAppointments(state.session && state.session.steps.appointments)) {
        await saveStep('appointments', { enabled: false });
      }
      return;
    }
    const payload = { provider: 'cal_com', event_type_id: value('event_type_id').trim() };
    if (value('timezone').trim()) payload.timezone = value('timezone');
    await saveStep('appointments', payload);
  },
  async verification() {},
};

/** The appointments step's saved settings, unless it said "no appointments". */
const takesAppointments = (data) => (data && data.enabled !== false ? data : null);

function fillForms(session) {
  const steps = session.steps || {};
  for (const fill of Object.values(FILL)) fill(steps);
}

/** Each step's fields (by the API's name of the step) from the session's `steps`. */
const FILL = {
  business(steps) {
    const business = steps.business || {};
    for (const field of ['company_name', 'industry', 'phone', 'email']) {
      $(field).value = business[field] || '';
    }
  },
  channels(steps) {
    state.channels = (steps.channels && steps.channels.channels) || ['phone'];
    for (const input of document.querySelectorAll('input[name="channels"]')) {
      input.checked = state.channels.includes(input.value);
    }
  },
  vapi(steps) {
    const vapi = steps.vapi || {};
    $('assistant_name').value = vapi.assistant_name || 'Sara';
    // The choices exist once the catalogue is loaded, which checks them.
    if (state.catalog) checkAgentChoices(vapi);
  },
  kb(steps) {
    const kb = steps.kb || {};
    // `assistant`, a method of the API the wizard does not offer, is shown
    // when a session saved it (through the API), so that it can be kept.
    $('choice-assistant').hidden = kb.method !== 'assistant';
    check('method', kb.method);
    $('crawl_url').value = kb.crawl_url || '';
    $('document-list').replaceChildren();
    const documents = Array.isArray(kb.documents) && kb.documents.length ? kb.documents : [{}];
    for (const doc of documents) addDocument(doc.title, doc.content);
    showKbPanels();
  },
  appointments(steps) {
    const booking = takesAppointments(steps.appointments);
    check('booking', booking ? 'cal_com' : 'none');
    $('event_type_id').value = (booking && booking.event_type_id) || '';
    $('timezone').value = (booking && booking.timezone) || 'Europe/Paris';
    showBookingFields();
  },
};

/** The agent type and voice saved in `vapi`, or the defaults. */
function checkAgentChoices(vapi) {
  check('agent_type', vapi.agent_type || 'multi_purpose');
  check('voice', (catalogVoice(vapi.voice) || {}).id || 'sara');
}

// The phone step's choices come from the catalogue routes.
async function loadCatalog() {
  if (state.catalog) return;
  const [types, voices] = await Promise.all([get(`${BASE}/agent-types`), get(`${BASE}/voices`)]);
  state.catalog = { agentTypes: types.agent_types, voices: voices.voices };
  const list = $('agent-type-list');
  list.replaceChildren();
  for (const type of state.catalog.agentTypes) {
    list.append(choice('radio', 'agent_type', type.id, type.name, type.description));
  }
  const voiceList = $('voice-list');
  voiceList.replaceChildren();
  for (const voice of state.catalog.voices) {
    voiceList.append(choice('radio', 'voice', voice.id, `${voice.name}, ${GENDER_LABELS[voice.gender] || voice.gender}`));
  }
  checkAgentChoices((state.session && state.session.steps.vapi) || {});
  // The assistant's name follows the voice while it is a voice's name (the
  // default "Sara"): a male voice was left introducing itself as Sara. A
  // name the user typed stays.
  voiceList.addEventListener('change', (event) => {
    const voice = catalogVoice(event.target.value);
    const name = $('assistant_name');
    const voiceNames = state.catalog.voices.map((v) => v.name);
    if (voice && voiceNames.includes(name.value.trim())) name.value = voice.name;
  });
}

/** The catalogue's voice saved as `id`: named, or `female`/`male` for the voice of that gender. */
function catalogVoice(id) {
  const voices = state.catalog ? state.catalog.voices : [];
  return voices.find((v) => v.id === id) || voices.find((v) => v.default_for === id);
}

function choice(type, name, value, label, description) {
  const id = `${name}-${value}`;
  const box = document.createElement('div');
  box.className = 'choice';
  const input = document.createElement('input');
  Object.assign(input, { type, name, value, id });
  const text = document.createElement('label');
  text.htmlFor = id;
  text.textContent = label;
  box.append(input, text);
  if (description) {
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.id = `${id}-hint`;
    hint.textContent = description;
    input.setAttribute('aria-describedby', hint.id);
    box.append(hint);
  }
  return box;
}

// The kb step: a site, or texts pasted (1 to 20), or later.
function showKbPanels() {
  const method = checked('method');
  $('kb-website').hidden = method !== 'website';
  $('kb-documents').hidden = method !== 'documents';
}

function addDocument(title = '', content = '') {
  const n = (state.documentSeq += 1);
  const box = document.createElement('fieldset');
  box.className = 'document';
  const legend = document.createElement('legend');
  const titleField = field('input', `document-${n}-title`, 'Titre', title);
  // No maxlength: a longer pasted title would be cut without a word; the
  // server refuses it beside the field, saying by how much (as the
  // assistant's name).
  const contentField = field('textarea', `document-${n}-content`, 'Contenu', content);
  contentField.querySelector('textarea').rows = 8;
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'remove';
  remove.addEventListener('click', () => {
    box.remove();
    // A removal fires no input event: "Précédent" must save it too.
    state.changed = true;
    numberDocuments();
    saveDraft('kb');
    $('add-document').focus();
  });
  box.append(legend, titleField, contentField, remove);
  $('document-list').append(box);
  numberDocuments();
  return box;
}

function field(tag, id, label, text) {
  const box = document.createElement('div');
  box.className = 'field';
  const labelElement = document.createElement('label');
  labelElement.htmlFor = id;
  labelElement.textContent = label;
  const control = document.createElement(tag);
  control.id = id;
  control.value = text || '';
  // Its error goes beside it, and is its description, as for every field.
  const error = document.createElement('p');
  error.className = 'field-error';
  error.id = `${id}-error`;
  error.hidden = true;
  control.setAttribute('aria-describedby', error.id);
  box.append(labelElement, control, error);
  return box;
}

function numberDocuments() {
  const boxes = [...document.querySelectorAll('#document-list .document')];
  boxes.forEach((box, i) => {
    box.querySelector('legend').textContent = `Texte ${i + 1}`;
    const remove = box.querySelector('.remove');
    remove.textContent = `Retirer le texte ${i + 1}`;
    remove.hidden = boxes.length === 1;
  });
  $('add-document').hidden = boxes.length >= MAX_DOCUMENTS;
}

const documentOf = (box) => ({
  title: box.querySelector('input').value,
  content: box.querySelector('textarea').value,
});

/**
 * The site's address as typed, with `https://` in front when it was typed
 * without a scheme (`mon-site.fr`, as people write it); the field shows
 * what is sent.
 */
function siteAddress() {
  const typed = value('crawl_url').trim();
  // A scheme (`https://`, or `http:` however it goes on) is the server's
  // to read or refuse; `mon-site.fr:443` has none. Text with a space in
  // it is no address: sent as typed, for the server's refusal to quote
  // what the tenant wrote, not an `https://` the page put before it.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/|^https?:/i;
  if (typed && !/\s/.test(typed) && !scheme.test(typed)) $('crawl_url').value = `https://${typed}`;
  return value('crawl_url');
}

/** The text boxes with something typed in: the empty ones are not sent. */
function filledDocuments() {
  return [...document.querySelectorAll('#document-list .document')].filter((box) => {
    const d = documentOf(box);
    return d.title.trim() || d.content.trim();
  });
}

function showBookingFields() {
  $('booking-fields').hidden = checked('booking') !== 'cal_com';
}

// ------------------------------------------------------ phone verification

/** The state of the session's latest verification, as `GET session` shows it. */
const verificationOf = (session) => (session && session.phone_verification) || null;

/** Shows the verification step as the session has it; answers the saved number's verification, or null. */
function prepareVerification() {
  const business = state.session.steps.business || {};
  introduceVerification(business.phone || '');
  // A number no code can reach (foreign, special-rate) is said so here,
  // as on the summary and the dashboard, instead of a send the server
  // would always refuse.
  const foreign = !verifiable(business.phone);
  if (foreign) {
    const { why, instead } = unverifiable(business.phone);
    $('verify-foreign').textContent = `${why[0].toUpperCase()}${why.slice(1)} : ce numéro ne peut pas l’être. Enregistrez ${instead} à l’étape « Votre entreprise » pour le vérifier, ou poursuivez sans.`;
  }
  $('verify-foreign').hidden = !foreign;
  // The introduction offers a proof no code can make: the note says why.
  $('verify-intro').hidden = foreign;
  // Only a verification of the number as saved counts: a changed business
  // phone needs a code of its own.
  const latest = verificationOf(state.session);
  const verification = latest && latest.phone_number === business.phone ? latest : null;
  // Another number than the one last shown here: what was said of the
  // last one's code (no tries left, expired) is not this one's, and a
  // first code for it is sent, not sent again.
  if (state.verifyingNumber !== undefined && state.verifyingNumber !== business.phone) {
    clearErrors($('form-send'));
    if (!verification) $('send-code').textContent = 'Envoyer le code';
  }
  state.verifyingNumber = business.phone;
  // The wait held for the last send's number may be its own (five sends
  // of its verification); a new number waits out only the spacing of two
  // sends to the session, the rest told by the server's 429 if any.
  if (!verification && held($('send-code')) && state.sentAt) {
    const spacing = SEND_SPACING_S - (Date.now() - state.sentAt) / 1000;
    holdSend($('send-code'), $('send-wait'), Math.min(spacing, heldFor($('send-code'))));
  }
  if (verification && verification.status === 'verified') {
    verified(verification);
    return verification;
  }
  // A code that can no longer be used is said so (its refusal, shown when
  // it happened, is gone with a reload), and the next send is a new code.
  showPreviousCode(verification);
  // A page reloaded after a send waits out what is left of its wait.
  if (verification) holdUntil($('send-code'), $('send-wait'), verification.resend_after);
  $('verify-done').hidden = true;
  $('form-send').hidden = foreign || $('verify-unavailable').hidden === false;
  if (verification && verification.status === 'pending' && verification.channel) {
    // A code already sent: a resend goes the same way.
    check('channel', verification.channel);
  } else if (!checked('channel') || (checked('channel') === 'sms' && defaultChannel(business.phone) !== 'sms')) {
    // The way chosen may not reach the number as saved now (an SMS chosen
    // for a mobile, the number since changed to a fixed line, here or in
    // another tab before a reload): its own default. A call reaches any
    // number, and a way that still reaches it stays as chosen.
    check('channel', defaultChannel(business.phone));
  }
  // A code sent before a reload can still be typed in.
  if (verification && verification.status === 'pending') {
    codeSent(verification);
  } else {
    $('form-verify').hidden = true;
  }
  return verification;
}

async function sendCode() {
  let sent;
  try {
    sent = await postOnce(sessionPath(state.id, 'phone/verification'), { channel: checked('channel') });
  } catch (error) {
    if (isMissingRoute(error)) {
      $('verify-unavailable').hidden = false;
      $('form-send').hidden = true;
      $('verification-next').focus();
      return;
    }
    holdAfterRefusal(error);
    // Too soon: a code went out that this page does not know of (sent
    // from another tab, or before a reload). The session says which,
    // and its code field comes back with the refusal.
    if (error instanceof ApiError && error.status === 429) {
      const known = !$('form-verify').hidden;
      const shown = await showSavedVerification();
      // A code this page did not know of is the one to type (one it knew
      // of leaves the focus by "Renvoyer", beside the refusal).
      if (!known && shown && shown.status === 'pending') $('code').focus();
    }
    // The note on the code sent before gives way to this refusal (the
    // session read again above may have shown it).
    $('send-previous').hidden = true;
    // Verified already (from another tab): shown so.
    if (await verifiedMeanwhile(error)) return;
    throw error;
  }
  state.sentAt = Date.now();
  $('send-previous').hidden = true;
  codeSent(sent);
  holdSend($('send-code'), $('send-wait'), resendWait(sent));
  $('code').focus();
  announce($('sent-note').textContent);
}

function codeSent(v) {
  $('sent-note').textContent = sentNote(v);
  $('form-verify').hidden = false;
  $('send-code').textContent = 'Renvoyer un code';
}

/**
 * Reads the session again and shows its verification as it is: the code
 * field of a pending code, or the verified state. Answers the verification
 * of the saved number, or null (none, or the read failed: the step is then
 * left as it was).
 */
async function showSavedVerification() {
  try {
    await refreshSession();
  } catch {
    return null;
  }
  return prepareVerification();
}

/**
 * Whether `error` says the number is verified already (from another tab,
 * by the code this page was sent) and the session, read
 * again, shows it so, verified state and focus on "Suivant". Otherwise the
 * refusal is the caller's to show.
 */
async function verifiedMeanwhile(error) {
  if (!(error instanceof ApiError) || error.status !== 409 || !ALREADY_VERIFIED.test(error.message)) return false;
  const shown = await showSavedVerification();
  if (!shown || shown.status !== 'verified') return false;
  $('verification-next').focus();
  return true;
}

async function verifyCode() {
  let answer;
  try {
    answer = await postOnce(sessionPath(state.id, 'phone/verify'), { code: typedCode(value('code')) });
  } catch (error) {
    // Verified already: from another tab, or by this very code typed
    // there.
    if (await verifiedMeanwhile(error)) return;
    if (!(error instanceof ApiError) || !DEAD_CODE.test(error.message)) throw error;
    $('form-verify').hidden = true;
    $('code').value = '';
    formError($('form-send'), error.message, error);
    $('send-code').focus();
    return;
  }
  verified(answer);
  // Done here: the next thing to do is to move on.
  $('verification-next').focus();
}

/**
 * The step's introduction, with the number: what proving it gives. Only
 * the phone channel makes the agent take the number's calls; without it
 * nothing is said of calls, as the verified line says nothing of them.
 */
function introduceVerification(number) {
  const strong = document.createElement('strong');
  strong.id = 'verify-number';
  strong.textContent = number;
  const [before, after] = state.channels.includes('phone')
    ? ['Votre agent ne reçoit les appels de ', " qu'une fois que vous avez prouvé que ce numéro est le vôtre."]
    : ['Prouvez que ', ' est bien le vôtre.'];
  $('verify-intro').replaceChildren(before, strong, after);
}

/**
 * The verified state, from the verify answer or from `GET session` (whose
 * verification says the same `is_active` and `reason`): a number verified
 * before completion takes calls once it is done, unless another account
 * already routes it, which completion does not change.
 */
function verified(answer) {
  const number = answer.phone_number || $('verify-number').textContent;
  const taken = !answer.is_active && TAKEN_ELSEWHERE.test(answer.reason || '');
  let text = `Numéro ${number} vérifié : votre agent prendra ses appels dès la fin de la configuration.`;
  if (answer.is_active) text = `Numéro ${number} vérifié : votre agent prend ses appels.`;
  if (taken) {
    text = `Numéro ${number} vérifié, mais il est déjà actif pour un autre compte : votre agent ne prendra pas ses appels.`;
  }
  // Without the phone channel the agent takes no calls at all: nothing is
  // said of them.
  if (!state.channels.includes('phone')) {
    text = taken ? `Numéro ${number} vérifié, mais il est déjà actif pour un autre compte.` : `Numéro ${number} vérifié.`;
  }
  $('verify-done').textContent = text;
  $('verify-done').className = taken ? 'note' : 'success';
  $('verify-done').hidden = false;
  $('form-send').hidden = true;
  $('form-verify').hidden = true;
  $('code').value = '';
  announce(text);
}

// ------------------------------------------------------------ completion

function renderSummary() {
  const steps = state.session.steps || {};
  const business = steps.business || {};
  const rows = [
    ['Entreprise', business.company_name],
    ["Secteur d'activité", business.industry],
    ['Téléphone', business.phone],
    ['E-mail', business.email],
    ['Canaux', state.channels.map((c) => CHANNEL_LABELS[c] || c).join(', ')],
  ];
  if (applies('phone') && steps.vapi) {
    rows.push(['Agent', `${steps.vapi.assistant_name} (${agentTypeName(steps.vapi.agent_type)}), voix ${voiceName(steps.vapi.voice)}`]);
  }
  // The agent takes the number's calls only once it is verified: said
  // before "Terminer", not left for the dashboard to reveal.
  if (applies('phone')) {
    const verification = verificationOf(state.session);
    const verified = Boolean(verification) && verification.status === 'verified' && verification.phone_number === business.phone;
    let said = 'Non : votre agent ne prendra les appels de ce numéro qu’une fois celui-ci vérifié (possible ensuite depuis le tableau de bord)';
    // A foreign number gets no code, now or from the dashboard, where the
    // steps can no longer change: said while it still can.
    if (!verifiable(business.phone)) {
      const { why, instead } = unverifiable(business.phone);
      said = `Non, et il ne pourra pas l’être : ${why}, et votre agent ne prendra pas ses appels. Enregistrez ${instead} avant de terminer pour le vérifier.`;
    }
    // Verified, but routed by another account: the agent will not take its
    // calls, as the verification step said; "Oui" alone said otherwise.
    const taken = verified && verification.is_active === false && TAKEN_ELSEWHERE.test(verification.reason || '');
    if (verified) {
      said = taken ? 'Oui, mais il est déjà actif pour un autre compte : votre agent ne prendra pas ses appels' : 'Oui';
    }
    rows.push(['Numéro vérifié', said]);
  }
  const kb = steps.kb || {};
  let kbText = KB_LABELS[kb.method] || '—';
  if (kb.method === 'website') kbText += ` : ${kb.crawl_url}`;
  if (kb.method === 'documents' && Array.isArray(kb.documents)) {
    const n = kb.documents.length;
    kbText = n > 1 ? `${n} textes collés` : `${n} texte collé`;
  }
  rows.push(['Base de connaissances', kbText]);
  const booking = takesAppointments(steps.appointments);
  rows.push(['Rendez-vous', booking ? bookingLine(booking) : 'Non']);
  const list = $('summary');
  list.replaceChildren();
  for (const [term, detail] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = detail || '—';
    list.append(dt, dd);
  }
  const done = state.session.status === 'completed';
  $('complete-pending').hidden = done;
  $('complete-done').hidden = !done;
  if (done && !$('complete-message').textContent) {
    $('complete-message').textContent = 'Votre configuration est terminée.';
  }
  if (done) {
    showPhoneTaken(state.session.omnichannel && state.session.omnichannel.phone_mapping);
    showKnowledge();
  }
}

/**
 * On the completion, a declared number that another account routes: the
 * agent is created, but that number's calls do not reach it.
 */
function showPhoneTaken(mapping) {
  const taken = Boolean(mapping) && mapping.is_active === false && TAKEN_ELSEWHERE.test(mapping.reason || '');
  $('complete-phone').hidden = !taken;
  if (taken) {
    $('complete-phone').textContent = state.channels.includes('phone')
      ? `Le numéro ${mapping.phone_number} est déjà actif pour un autre compte : votre agent ne prend pas ses appels.`
      : `Le numéro ${mapping.phone_number} est déjà actif pour un autre compte.`;
  }
}

function agentTypeName(id) {
  const type = state.catalog && state.catalog.agentTypes.find((t) => t.id === id);
  return type ? type.name : id;
}

function voiceName(id) {
  const voice = catalogVoice(id);
  return voice ? voice.name : id;
}

/**
 * Leaving step `name` backwards: what was changed there is saved, as
 * "Suivant" saves it, when the server takes it. Fields it refuses do not
 * hold the user back: they stay typed in the page, and "Suivant" shows
 * why. A network failure does: leaving would lose the changes at the next
 * reload, so the step stays, with "Réessayer" (which saves, then goes
 * back).
 */
async function saveOnLeaving(name) {
  if (!state.changed || !state.id || !FORMS[name] || name === 'welcome') return;
  try {
    state.sent = null;
    await FORMS[name]();
    clearDraft(name, sentFields(name));
  } catch (error) {
    // Refused, the changes stay as a draft, written now: the one due a
    // moment after the last keystroke is only written for the step on
    // screen, which this one is no longer about to be.
    saveDraft(name);
    if (!(error instanceof ApiError)) throw error;
  }
}

async function finish() {
  // Another tab may have saved other settings since this summary was drawn
  // (another name, a channel fewer): read again, a summary that changed is
  // shown for checking instead of completed with what it did not say.
  const drawn = $('summary').textContent;
  await refreshSession();
  if (state.session.status !== 'completed') {
    renderSummary();
    if ($('summary').textContent !== drawn) {
      $('summary-changed').hidden = false;
      announce($('summary-changed').textContent);
      $('summary-changed').focus();
      return;
    }
  }
  $('summary-changed').hidden = true;
  const answer = await post(sessionPath(state.id, 'complete'), {});
  setProgress(100);
  state.session.status = 'completed';
  $('complete-message').textContent = answer.message;
  showPhoneTaken(answer.synced && answer.synced.phone_mapping);
  $('complete-pending').hidden = true;
  $('complete-done').hidden = false;
  localStorage.removeItem(STEP_KEY);
  clearDrafts();
  guardHistory();
  const phoneNote = $('complete-phone').hidden ? '' : ` ${$('complete-phone').textContent}`;
  announce(answer.message + phoneNote);
  $('to-dashboard').focus();
  showKnowledge();
}

/**
 * After completion, what the knowledge base holds: a site's crawl followed
 * while it runs (its status, its counters, the pages found), or the texts
 * stored. Started once; the dashboard shows the same.
 */
function showKnowledge() {
  const method = state.session.steps.kb && state.session.steps.kb.method;
  if (state.followingKnowledge || (method !== 'website' && method !== 'documents')) return;
  state.followingKnowledge = true;
  $('crawl').hidden = false;
  watch(() => followKnowledge(state.id, 'crawl', watch));
}

/**
 * Runs one read of the knowledge base. It does not go through `act`, which
 * a save in progress would turn away: a read that fails offers
 * "Réessayer", or shows the server's message in the status line.
 */
async function watch(read, shown = null) {
  try {
    await read();
    // The banner a failed read showed goes with the read that worked.
    if (shown && retryAction === shown) {
      $('offline').hidden = true;
      retryAction = null;
    }
  } catch (error) {
    if (error instanceof NetworkError) {
      // A save's banner stays, with its "Réessayer" (taking it over made
      // "Réessayer" read the crawl instead of saving): this read is tried
      // again on its own a moment later.
      if (requestsBanner(retryAction)) {
        setTimeout(() => watch(read), BACKGROUND_RETRY_MS);
        return;
      }
      // Its banner shown already: left as it is, tried again later.
      if (shown && retryAction === shown && !$('offline').hidden) {
        retryOnItsOwn(read, shown);
        return;
      }
      $('offline-text').textContent = offlineReason(error);
      $('offline').hidden = false;
      const retry = {
        run: () => {
          // Not a save's banner shown since (run later by `dismissBanner`).
          if (!retryAction || retryAction.background) $('offline').hidden = true;
          return watch(read);
        },
        land: () => $('h-crawl'),
        background: true,
      };
      retryAction = retry;
      retryOnItsOwn(read, retry);
      return;
    }
    if (!(error instanceof ApiError)) console.error(error);
    if (error instanceof ApiError) writeError($('crawl-status'), error.message, error);
    else $('crawl-status').textContent = 'Une erreur inattendue est survenue.';
  }
}

/**
 * A background read whose failure shows the banner is tried again on its
 * own every few seconds while that banner stays: a server back after a
 * restart took the crawl's progress up again only once "Réessayer" was
 * clicked.
 */
function retryOnItsOwn(read, retry) {
  setTimeout(() => {
    if (retryAction === retry) watch(read, retry);
  }, BACKGROUND_RETRY_MS);
}

// ------------------------------------------------------------ start

function wire() {
  for (const name of STEPS) {
    const form = $(`form-${name}`);
    if (!form) continue;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (name === 'complete') {
        act(form, finish);
        return;
      }
      act(form, async () => {
        state.sent = null;
        await FORMS[name]();
        clearDraft(name, sentFields(name));
        await show(neighbour(name, 1));
      });
    });
  }
  for (const button of document.querySelectorAll('.step .back')) {
    const name = button.closest('.step').dataset.step;
    button.addEventListener('click', () => act(null, async () => {
      await saveOnLeaving(name);
      // Left (the save passed, or was refused without a word): what the
      // step said of its fields is about values the save may have
      // replaced, not shown again beside them when the step is. A save
      // that did not reach the server keeps the page here, errors and all.
      clearErrors(button.closest('.step'));
      await show(neighbour(name, -1));
    }));
  }
  // A step's fields changed since it was shown: "Précédent" saves them.
  for (const form of document.querySelectorAll('.step form')) {
    const mark = () => {
      state.changed = true;
      scheduleDraft(form.closest('.step').dataset.step);
    };
    form.addEventListener('input', mark);
    form.addEventListener('change', mark);
  }
  // The skip link moves the focus without a history entry (a jump to
  // `#main` would count as a Back).
  const skip = document.querySelector('.skip-link');
  if (skip) {
    skip.addEventListener('click', (event) => {
      event.preventDefault();
      $('main').focus();
    });
  }
  // Leaving the page (a reload, a closed tab) keeps a draft not written yet.
  window.addEventListener('pagehide', () => {
    if (state.changed && state.current) saveDraft(state.current);
  });
  window.addEventListener('popstate', onHistoryBack);
  $('verification-next').addEventListener('click', () => act(null, () => show(neighbour('verification', 1))));
  $('form-send').addEventListener('submit', (event) => {
    event.preventDefault();
    // Held until the server takes another code: nothing to send yet, and
    // the wait said again to screen readers.
    if (held($('send-code'))) {
      announce($('send-wait').textContent);
      return;
    }
    act($('form-send'), sendCode);
  });
  $('form-verify').addEventListener('submit', (event) => {
    event.preventDefault();
    act($('form-verify'), verifyCode);
  });
  for (const input of document.querySelectorAll('input[name="method"]')) {
    input.addEventListener('change', showKbPanels);
  }
  for (const input of document.querySelectorAll('input[name="booking"]')) {
    input.addEventListener('change', showBookingFields);
  }
  $('add-document').addEventListener('click', () => {
    addDocument().querySelector('input').focus();
  });
  $('retry').addEventListener('click', async () => {
    const retry = retryAction;
    retryAction = null;
    if (!retry) return;
    await retry.run();
    // Failed again: the banner is back, and so is the focus. Done: the
    // button hid under the focus, which would fall to the page's start;
    // it goes to the heading of what was done or read, unless something
    // (a step shown, the tenant) has placed it meanwhile.
    if (!$('offline').hidden) $('retry').focus();
    else if (document.activeElement === document.body || !document.activeElement) {
      const heading = retry.land();
      if (heading) heading.focus();
    }
  });
}

async function start() {
  wire();
  state.id = localStorage.getItem(SESSION_KEY);
  // The defaults first (a text box, the phone channel, Sara…): a session
  // read below fills over them, a stale one leaves them in place.
  fillForms({ steps: {} });
  if (!state.id) {
    await show('welcome');
    return;
  }
  state.loading = true;
  if (!looksLikeSessionId(state.id)) {
    sessionLost();
    return;
  }
  await act(null, async () => {
    const session = await get(sessionPath(state.id));
    state.session = session;
    setProgress(session.progress_percentage);
    state.loading = false;
    fillForms(session);
    if (session.status === 'completed') {
      clearDrafts();
      await show('complete');
      return;
    }
    if (session.status === 'abandoned') {
      // Said as found at load: the forms hold what it held, not typing.
      sessionLost(true, true);
      return;
    }
    // What was typed and not saved goes over the saved data, each step's
    // when it is shown (a step left with a refused field, or typed in from
    // another tab, keeps its draft): the step is then changed, and is saved
    // when left.
    state.pendingDrafts = new Set(DRAFTED);
    await show(resumeStep(session));
  });
}

start();
