// The knowledge base as both pages show it after completion: the crawl's
// status line and counters and the pages stored, from `GET …/kb`, read
// again while the crawl runs. The wizard shows it on its last step, the
// dashboard in its knowledge card; each page's elements carry its own
// prefix (`crawl-…` in the wizard, whose kb step already has `kb-…` ids).

import { get, sessionPath } from './api.js';
import { $, text } from './page.js';

/** How often the crawl's progress is read while it runs, at first. */
const POLL_MS = 2000;
/** The longest gap between two reads, and the most reads (about an hour). */
const MAX_POLL_MS = 30000;
const MAX_POLLS = 130;
/** The longest a crawl waits for its site: the library's hour. */
const MAX_WAIT_MS = 3600000;

const JOB_STATUS = {
  queued: 'en attente',
  running: 'en cours',
  done: 'terminée',
  failed: 'en échec',
};

export const KB_METHOD = {
  website: 'votre site web',
  documents: 'les textes collés',
  assistant: "l'assistant",
  skip: 'aucune source (à compléter plus tard)',
};

/**
 * Why a crawl ended short, or why its last attempt failed (the job's
 * error_code). The page shows it after completion, when the site's address
 * and the knowledge step can no longer be changed: it says what happened
 * and what the tenant keeps, never to edit what cannot be edited.
 */
const JOB_ERROR = {
  dns: "l'adresse du site est introuvable",
  unreachable: 'le site ne répond pas',
  robots_disallowed: 'le fichier robots.txt du site interdit son exploration',
  robots_unavailable: 'le fichier robots.txt du site est inaccessible',
  private_address: "l'adresse du site n'est pas publique",
  timeout: "le temps d'exploration est écoulé ; les pages lues sont gardées",
  too_large: 'la taille maximale est atteinte ; les pages lues sont gardées',
  no_content: 'aucune page ne contient de texte à garder',
  js_required: 'le site est construit en JavaScript et ses pages sont vides sans lui',
};

/** The status line of a crawl job, as both pages word it. */
export function jobStatus(job) {
  let status = `Exploration de ${job.url} : ${JOB_STATUS[job.status] || job.status}`;
  if (job.error_code) {
    let why = JOB_ERROR[job.error_code] || job.error_code;
    // The worker retries a whole-site failure (up to 3 attempts): the
    // job is queued again, then running, with its last attempt's error;
    // a `failed` one is not tried again.
    if (job.status === 'queued') why += ' ; une nouvelle tentative est prévue';
    else if (job.status === 'running') why += ' au dernier essai ; nouvelle tentative en cours';
    status += ` (${why})`;
  } else if (job.status === 'queued' && job.started_at && job.next_attempt_at) {
    // Started, then given back to the queue because the site asked the
    // crawler to wait (a long Retry-After): when it resumes, in the
    // browser's time zone; once that time has passed, it resumes as soon
    // as a crawler is free.
    const at = new Date(job.next_attempt_at);
    const when =
      at.getTime() > Date.now()
        ? `vers ${at.toLocaleTimeString('fr-FR', { hour: '2-digit', minute: '2-digit' })}`
        : 'imminente';
    status += ` (le site a demandé une pause ; reprise ${when})`;
  }
  return `${status}.`;
}

/**
 * Shows `GET …/kb`'s answer in the elements `${prefix}-status`,
 * `${prefix}-counters` (`-found`, `-stored`, `-skipped`, `-failed`),
 * `h-${prefix}-documents` and `${prefix}-documents`.
 */
export function renderKnowledge(kb, prefix) {
  const status = $(`${prefix}-status`);
  const line = kb.job ? jobStatus(kb.job) : `Source : ${KB_METHOD[kb.method] || '—'}.`;
  // Written only when it changes: the region is a live one, and each write
  // is announced again.
  if (status.textContent !== line) status.textContent = line;
  $(`${prefix}-counters`).hidden = !kb.job;
  if (kb.job) {
    text(`${prefix}-found`, kb.job.pages_found);
    text(`${prefix}-stored`, kb.job.pages_stored);
    text(`${prefix}-skipped`, kb.job.pages_skipped);
    text(`${prefix}-failed`, kb.job.pages_failed);
  }
  const list = $(`${prefix}-documents`);
  list.replaceChildren();
  for (const doc of kb.documents || []) {
    const item = document.createElement('li');
    // <bdi>: a crawled page's title may hold a right-to-left override,
    // which must not reorder its address after it.
    const title = document.createElement('bdi');
    title.className = 'doc-title';
    title.textContent = doc.title;
    item.append(title);
    if (doc.url) {
      const url = document.createElement('bdi');
      url.className = 'doc-url';
      url.textContent = doc.url;
      item.append(' ', url);
    }
    list.append(item);
  }
  $(`h-${prefix}-documents`).hidden = !(kb.documents && kb.documents.length);
}

const running = (job) => job && (job.status === 'queued' || job.status === 'running');

/**
 * How long until a queued job is due again (its backoff, or its site's
 * wait, an hour at most), 0 when it is due: the next read is then, not
 * counted among the reads, so that a crawl that waits an hour is still
 * followed when it resumes.
 */
export function dueIn(job) {
  if (job.status !== 'queued' || !job.next_attempt_at) return 0;
  const left = Date.parse(job.next_attempt_at) - Date.now();
  return Number.isFinite(left) ? Math.min(Math.max(left, 0), MAX_WAIT_MS) : 0;
}

/**
 * Reads and shows the session's knowledge base, then reads it again while
 * its crawl is queued or running: every 2 s at first, then less often, so
 * that a job no worker takes (a server run with `--crawl-workers 0`) is not
 * asked about forever. Each later read runs through `guard`, the page's
 * way of showing a failure and offering a retry. Answers the first read,
 * and throws what it throws.
 */
export async function followKnowledge(id, prefix, guard, polls = 0) {
  const kb = await get(sessionPath(id, 'kb'));
  renderKnowledge(kb, prefix);
  if (running(kb.job) && polls < MAX_POLLS) {
    const due = dueIn(kb.job);
    // Bounded: a read not counted comes after the job's due time, which
    // the library moves a few times at most (3 attempts, 5 waits).
    const wait = due > POLL_MS ? due + POLL_MS : Math.min(POLL_MS * 1.25 ** polls, MAX_POLL_MS);
    const next = due > POLL_MS ? polls : polls + 1;
    setTimeout(() => guard(() => followKnowledge(id, prefix, guard, next)), wait);
  }
  return kb;
}
