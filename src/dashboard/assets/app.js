// Mission Control's dashboard. The lists are loaded once; from then on the page changes only
// through the live feed `GET /api/events` (and the API's own answers to what the page asks).
// A `reload` event, or a feed that cannot resume, re-fetches the lists once.

import { request, getJson, eventsUrl } from './api.js';
import * as store from './store.js';
import { Throughput } from './chart.js';
import { View, withCode, money } from './view.js';
import { Detail } from './detail.js';

const EVENTS = ['task', 'venture', 'agent', 'activity', 'task_deleted', 'venture_deleted', 'agent_deleted'];
const $ = (id) => document.getElementById(id);

const throughput = new Throughput();
const view = new View({
  throughput,
  onRequeue: (id) => askRequeue(id),
  onCancel: askCancel,
  onFilter: () => {
    writeUrl();
    loadFinishedColumns();
  },
  onMore: (status) => loadOlder(status),
  onOpen: (id) => detail.open(id),
  onEditVenture: (id) => openVentureForm(id),
  onPauseVenture: (id) => toggleVenture(id),
});
const detail = new Detail({ onUrl: writeUrl, onCancel: askCancel, onRequeue: askRequeue });

// The URL: the filters and the open task ---------------------------------------------------

const FILTER_PARAMS = ['venture', 'status', 'agent', 'q'];

/** Writes the filters and the open task into the query, replacing the history entry. */
function writeUrl() {
  const params = new URLSearchParams(location.search);
  const values = { venture: view.filter, ...view.filters, task: detail.id };
  for (const name of [...FILTER_PARAMS, 'task']) {
    if (values[name]) params.set(name, values[name]);
    else params.delete(name);
  }
  const query = params.toString();
  const url = `${location.pathname}${query ? `?${query}` : ''}${location.hash}`;
  if (url !== `${location.pathname}${location.search}${location.hash}`) history.replaceState(null, '', url);
}

/** Restores the filters and the open task from the URL (`#task=<id>` works too). */
function readUrl() {
  const params = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  view.filter = params.get('venture') ?? '';
  $('venture-filter').value = view.filter;
  view.setFilters({ status: params.get('status') ?? '', agent: params.get('agent') ?? '', q: params.get('q') ?? '' });
  const task = params.get('task') ?? hash.get('task');
  if (hash.has('task')) history.replaceState(null, '', `${location.pathname}${location.search}`);
  if (task) detail.open(task);
}

// A link to `#task=<id>` followed from this page opens that task too.
window.addEventListener('hashchange', () => {
  const task = new URLSearchParams(location.hash.slice(1)).get('task');
  if (!task) return;
  history.replaceState(null, '', `${location.pathname}${location.search}`);
  detail.open(task);
});

let source = null; // the current EventSource
let buffer = null; // events held while the lists load; null once they are applied as they come
let lastEventId = '';
let retries = 0;
let retryTimer = 0;

// The live feed ----------------------------------------------------------------------------

/**
 * Opens the feed. `fresh`: a new subscription, after which the lists are fetched (events that
 * arrive meanwhile are held and applied on top). Otherwise it resumes after `lastEventId`.
 */
function connect(fresh) {
  source?.close();
  clearTimeout(retryTimer);
  if (fresh) {
    buffer = [];
    lastEventId = '';
  }
  const es = new EventSource(eventsUrl(fresh ? '' : lastEventId));
  source = es;
  view.connection('connecting', fresh && !store.state.tasks.size ? 'Connecting…' : 'Reconnecting…');
  let opened = false;
  es.addEventListener('open', () => {
    if (es !== source) return;
    retries = 0;
    const reopened = opened;
    opened = true;
    if (reopened && !lastEventId) {
      // The browser reconnected by itself with no event id to resume from (none had come
      // yet): what happened meanwhile is unknown, so load the lists again.
      buffer = [];
      loadLists(es);
    } else if (buffer && !reopened) {
      // The subscription exists now, so lists fetched from here on miss nothing.
      loadLists(es);
    } else if (!buffer) {
      view.connection('live', 'Live');
    }
    // Otherwise the browser resumed after `lastEventId` while the lists load: that load holds.
  });
  for (const type of EVENTS) es.addEventListener(type, (event) => receive(es, type, event));
  es.addEventListener('reload', () => {
    if (es === source) connect(true);
  });
  es.addEventListener('error', () => {
    if (es !== source) return;
    // The browser retries by itself (sending Last-Event-ID) unless the server answered an
    // error status; then the feed is closed and it is up to us.
    if (es.readyState === EventSource.CLOSED) scheduleReconnect();
    else view.connection('reconnecting', 'Reconnecting…');
  });
}

function receive(es, type, event) {
  if (es !== source) return;
  if (event.lastEventId) lastEventId = event.lastEventId;
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  if (buffer) buffer.push([type, data]);
  else applyEvent(type, data, null);
}

function applyEvent(type, data, alreadyCounted) {
  const parts = store.apply(type, data);
  // Live events carry no `budgetHeld`, `capitalReserved` nor `taskCounts`: the venture listing has them.
  if (type === 'task' || type === 'venture' || type === 'task_deleted') refreshVentures();
  detail.notice(type, data);
  if (type === 'activity' && !alreadyCounted?.has(data.id) && throughput.record(data)) parts.push('chart');
  if (parts.length) view.invalidate(...parts);
}

/**
 * The task fields the board shows: a light listing, without every `output` and `description`.
 * `dependsOn` and `onDependencyFailure` tell the cancel dialog which tasks a cancel takes along.
 * Not `venture`: the venture listing has its name and icon once, not once per task (with
 * 10,000 finished tasks that is a tenth of the download, and 10,000 objects fewer to hold).
 */
const BOARD_FIELDS = [
  'id', 'title', 'status', 'priority', 'estimatedCost', 'actualCost', 'tags', 'error', 'assignedTo', 'ventureId',
  'attempts', 'maxAttempts', 'leaseExpiresAt', 'claimedAt', 'createdAt', 'updatedAt', 'completedAt',
  'dependsOn', 'blockedBy', 'onDependencyFailure', 'cancelRequested', 'runAt',
].join(',');

/** Tasks per page of a finished column: what the column shows before "Show more". */
const FINISHED_PAGE = 100;

/** The listing of a page of a finished column: newest first, after the cursor. */
function finishedUrl(status, ventureId, agent, after) {
  const params = new URLSearchParams({ status, order: 'desc', limit: String(FINISHED_PAGE) });
  if (ventureId) params.set('ventureId', ventureId);
  if (agent) params.set('assignedTo', agent);
  if (after) params.set('after', after);
  return `/api/tasks?${params}&fields=${BOARD_FIELDS}`;
}

/** Notes a page of a finished column as loaded: where the next one starts, or that none does. */
function notePage(key, tasks) {
  store.state.pages.set(key, { after: tasks.at(-1)?.id ?? '', done: tasks.length < FINISHED_PAGE, busy: false });
}

/**
 * Loads the next page of a finished column under the venture and agent filters (the text
 * filter is the board's own), unless it is loaded to the end or on its way.
 */
async function loadPage(status, ventureId, agent) {
  const key = store.pageKey(status, ventureId, agent);
  const page = store.state.pages.get(key) ?? { after: '', done: false, busy: false };
  if (page.done || page.busy) return;
  page.busy = true;
  store.state.pages.set(key, page);
  const answer = await request('GET', finishedUrl(status, ventureId, agent, page.after));
  page.busy = false;
  // The lists were loaded again meanwhile: this page belongs to the old ones.
  if (store.state.pages.get(key) !== page) return;
  if (!answer.ok) {
    // The cursor's task was deleted: start the column over (pages already loaded stay).
    if (answer.status === 404) page.after = '';
    view.toast(`Cannot load older ${status} tasks: ${answer.data?.error ?? answer.status}`, 'error');
    return;
  }
  for (const task of answer.data) store.offerTask(task);
  notePage(key, answer.data);
  view.invalidate('board');
}

/** The first page of each finished column under the current filters, once the lists are in. */
function loadFinishedColumns() {
  if (buffer || !store.state.ventures.size) return;
  for (const status of store.FINISHED) {
    if (!store.state.pages.has(store.pageKey(status, view.filter, view.filters.agent))) {
      loadPage(status, view.filter, view.filters.agent);
    }
  }
}

/** "Show more" on a finished column: the next page, when fewer are loaded than it shows. */
function loadOlder(status) {
  if (!store.FINISHED.includes(status)) return;
  const { filter: ventureId, filters: { agent } } = view;
  let loaded = 0;
  for (const task of store.state.tasks.values()) {
    if (task.status === status && (!ventureId || task.ventureId === ventureId) && (!agent || task.assignedTo === agent)) {
      loaded += 1;
    }
  }
  if (loaded < view.limits[status]) loadPage(status, ventureId, agent);
}

let loads = 0;

async function loadLists(es) {
  const load = ++loads;
  view.connection('connecting', 'Loading…');
  // Every unfinished task (the scheduler's memory: bounded by the work, not the history),
  // and the newest page of each finished column under the filters; the true numbers of
  // finished tasks come with the ventures.
  const { filter: ventureId, filters: { agent } } = view;
  try {
    const [ventures, agents, activities, ...lists] = await Promise.all([
      getJson('/api/ventures'),
      getJson('/api/agents'),
      getJson('/api/activities?limit=1000'),
      ...[...store.UNFINISHED].map((status) => getJson(`/api/tasks?status=${status}&fields=${BOARD_FIELDS}`)),
      ...store.FINISHED.map((status) => getJson(finishedUrl(status, ventureId, agent, ''))),
    ]);
    if (es !== source || load !== loads) return;
    store.load({ ventures, tasks: lists.flat(), agents, activities });
    store.FINISHED.forEach((status, i) => {
      notePage(store.pageKey(status, ventureId, agent), lists[store.UNFINISHED.size + i]);
    });
    throughput.backfill(activities);
    const fetched = new Set(activities.map((a) => a.id));
    const held = buffer;
    buffer = null;
    for (const [type, data] of held) applyEvent(type, data, fetched);
    view.invalidate('board', 'ventures', 'agents', 'activity', 'chart');
    if (es.readyState === EventSource.OPEN) view.connection('live', 'Live');
    // The filters may have changed while the lists loaded.
    loadFinishedColumns();
  } catch (error) {
    if (es !== source || load !== loads) return;
    view.toast(`Cannot load the lists: ${error.message}`, 'error');
    scheduleReconnect();
  }
}

// The venture listing, fetched again (at most every so often) after venture and task events:
// it carries `taskCounts`, the true number of tasks per status, which the finished columns show.
const VENTURES_EVERY = 400; // ms
let venturesTimer = 0;
let venturesAsked = 0; // the number of the last listing asked for
let venturesLast = 0; // when it was asked for

function refreshVentures() {
  if (venturesTimer) return;
  const wait = Math.max(50, venturesLast + VENTURES_EVERY - performance.now());
  venturesTimer = setTimeout(async () => {
    venturesTimer = 0;
    venturesLast = performance.now();
    const asked = ++venturesAsked;
    const answer = await request('GET', '/api/ventures');
    // A later listing may have been asked for meanwhile: only the newest counts.
    if (!answer.ok || asked !== venturesAsked || buffer) return;
    store.loadVentures(answer.data);
    view.invalidate('ventures', 'board');
  }, wait);
}

function scheduleReconnect() {
  source?.close();
  clearTimeout(retryTimer);
  const delay = Math.min(30000, 1000 * 2 ** retries);
  retries += 1;
  view.connection('offline', `Offline · retrying in ${Math.round(delay / 1000)} s`);
  retryTimer = setTimeout(async () => {
    // A cheap probe: it asks for the token if the server now wants one (EventSource cannot
    // tell a 401 from any other failure).
    const probe = await request('GET', '/api/activities?limit=1');
    if (!probe.ok) {
      scheduleReconnect();
      return;
    }
    connect(!lastEventId || buffer !== null);
  }, delay);
}

// Actions ---------------------------------------------------------------------------------

/** Active, failed or cancelled → queue. The card moves when the server says so, not before. */
async function requeue(id) {
  if (view.pending.has(id)) return;
  view.pending.set(id, 'requeue');
  view.invalidate('board');
  const answer = await request('PATCH', `/api/tasks/${encodeURIComponent(id)}`, { status: 'queue' });
  view.pending.delete(id);
  if (answer.ok) {
    store.offerTask(answer.data);
    view.invalidate('board', 'ventures', 'agents');
  } else {
    view.toast(answer.data?.error ?? `The server answered ${answer.status}`, 'error');
    view.invalidate('board');
  }
}

// Requeueing from the detail panel: it asks first, saying what the requeue costs -------------

const requeueDialog = $('requeue-dialog');
let requeueing = '';

function askRequeue(id, full) {
  const task = full ?? store.state.tasks.get(id);
  if (!task || view.pending.has(id)) return;
  requeueing = id;
  $('requeue-title').textContent = `Put “${task.title}” back in the queue?`;
  const cost = task.estimatedCost ? ` Each claim may spend up to its estimated ${money(task.estimatedCost)} again.` : '';
  if (task.status === 'active') {
    const agent = store.state.agents.get(task.assignedTo)?.name ?? task.assignedTo ?? 'its agent';
    $('requeue-message').textContent = `It is taken from ${agent}: attempt ${task.attempts} ends “released”, `
      + 'the agent’s further heartbeats and reports are refused, and another claim starts the work over.'
      + ` It keeps ${Math.max(0, task.maxAttempts - task.attempts)} claims of its allowance`
      + `${task.cancelRequested ? ', and the cancel asked for is withdrawn' : ''}.${cost}`;
  } else {
    $('requeue-message').textContent = `It has used ${task.attempts} of ${task.maxAttempts} claims. The requeue grants a fresh `
      + `allowance of 3 claims (up to attempt ${task.attempts + 3}); it waits in the queue again, or in Blocked `
      + `while a dependency is unfinished.${cost}`;
  }
  requeueDialog.showModal();
  $('requeue-keep').focus();
}

$('requeue-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = requeueing;
  requeueDialog.close();
  if (id) requeue(id);
});
$('requeue-keep').addEventListener('click', () => requeueDialog.close());
requeueDialog.addEventListener('close', () => {
  requeueing = '';
});

// Cancelling: the card's button asks first, saying what the cancel does --------------------

const cancelDialog = $('cancel-dialog');
let cancelling = ''; // the id of the task the dialog asks about

function askCancel(id) {
  const task = store.state.tasks.get(id);
  if (!task || view.pending.has(id)) return;
  cancelling = id;
  const active = task.status === 'active';
  $('cancel-title').textContent = `Cancel “${task.title}”?`;
  if (active) {
    const agent = store.state.agents.get(task.assignedTo)?.name ?? task.assignedTo ?? 'Its agent';
    $('cancel-message').textContent = `${agent} is working on it. It is asked to stop at its next heartbeat, `
      + 'and the task ends cancelled when the agent reports (or its lease runs out).';
  } else {
    $('cancel-message').textContent = task.status === 'blocked'
      ? 'It stops waiting for its dependencies and is cancelled at once.'
      : 'It leaves the queue and is cancelled at once; no agent will claim it.';
  }
  const cascade = store.cancelCascade(id);
  const names = cascade.slice(0, 5).map((t) => `“${t.title}”`).join(', ');
  const more = cascade.length > 5 ? ` and ${cascade.length - 5} more` : '';
  $('cancel-dependents').textContent = cascade.length
    ? `${cascade.length === 1 ? 'A task depends' : `${cascade.length} tasks depend`} on it and ${cascade.length === 1 ? 'says' : 'say'} `
      + `to cancel when a dependency fails; ${cascade.length === 1 ? 'it is' : 'they are'} cancelled too`
      + `${active ? ' when it ends' : ''}: ${names}${more}.`
    : 'No other task is cancelled with it.';
  $('f-reason').value = '';
  cancelDialog.showModal();
  $('cancel-keep').focus();
}

async function cancel(id, reason) {
  if (!id || view.pending.has(id)) return;
  view.pending.set(id, 'cancel');
  view.invalidate('board');
  const body = { taskId: id };
  if (reason) body.reason = reason;
  const answer = await request('POST', '/api/tasks/cancel', body);
  view.pending.delete(id);
  if (answer.ok) {
    store.offerTask(answer.data);
    view.invalidate('board', 'ventures', 'agents');
    view.toast(answer.data.status === 'cancelled'
      ? `Cancelled “${answer.data.title}”`
      : `Asked the agent to stop “${answer.data.title}”; it is cancelled when the agent reports`);
  } else {
    view.toast(answer.data?.error ?? `The server answered ${answer.status}`, 'error');
    view.invalidate('board');
  }
}

$('cancel-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = cancelling;
  const reason = $('f-reason').value.trim();
  cancelDialog.close();
  cancel(id, reason);
});
$('cancel-keep').addEventListener('click', () => cancelDialog.close());
cancelDialog.addEventListener('close', () => {
  cancelling = '';
});

// The "+" form ----------------------------------------------------------------------------

const dialog = $('create-dialog');
const form = $('create-form');
const INPUTS = {
  title: 'f-title',
  description: 'f-description',
  ventureId: 'f-venture',
  priority: 'f-priority',
  estimatedCost: 'f-cost',
  tags: 'f-tags',
};

function clearErrors() {
  for (const node of form.querySelectorAll('[data-error-for]')) node.replaceChildren();
  for (const id of Object.values(INPUTS)) $(id).removeAttribute('aria-invalid');
  $('form-error').hidden = true;
  $('form-error').replaceChildren();
}

/** Shows an error beside the field it names, or above the form if it names none we show. */
function showError(field, message) {
  const slot = field && form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
  if (slot) {
    slot.replaceChildren(...withCode(message));
    const input = $(INPUTS[field]);
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  } else {
    $('form-error').replaceChildren(...withCode(message));
    $('form-error').hidden = false;
  }
}

$('new-task').addEventListener('click', () => {
  clearErrors();
  if (view.filter) $('f-venture').value = view.filter;
  dialog.showModal();
  $('f-title').focus();
});
$('create-cancel').addEventListener('click', () => dialog.close());

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearErrors();
  const cost = $('f-cost');
  if (cost.validity.badInput) {
    showError('estimatedCost', 'Enter a number, such as 2.50.');
    return;
  }
  const body = { title: $('f-title').value, ventureId: $('f-venture').value, priority: $('f-priority').value };
  const description = $('f-description').value;
  if (description.trim()) body.description = description;
  if (cost.value !== '') body.estimatedCost = Number(cost.value);
  const tags = $('f-tags').value.split(',').map((t) => t.trim()).filter(Boolean);
  if (tags.length) body.tags = tags;
  const submit = $('create-submit');
  submit.disabled = true;
  form.setAttribute('aria-busy', 'true');
  const answer = await request('POST', '/api/tasks', body);
  submit.disabled = false;
  form.removeAttribute('aria-busy');
  if (answer.ok) {
    // The card itself comes through the live feed.
    dialog.close();
    form.reset();
    view.toast(`Created “${answer.data.title}”`);
  } else {
    showError(answer.data?.field, answer.data?.error ?? `The server answered ${answer.status}`);
  }
});

// Ventures: the "+ Venture" form (also the edit form) and pause/resume ------------------

const ventureDialog = $('venture-dialog');
const ventureForm = $('venture-form');
const VENTURE_INPUTS = { name: 'v-name', icon: 'v-icon', capitalBudget: 'v-budget' };
let editing = ''; // the venture the form edits, or '' for a new one

function clearVentureErrors() {
  for (const node of ventureForm.querySelectorAll('[data-error-for]')) node.replaceChildren();
  for (const id of Object.values(VENTURE_INPUTS)) $(id).removeAttribute('aria-invalid');
  $('venture-form-error').hidden = true;
  $('venture-form-error').replaceChildren();
}

function showVentureError(field, message) {
  const slot = field && VENTURE_INPUTS[field] && ventureForm.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
  if (slot) {
    slot.replaceChildren(...withCode(message));
    const input = $(VENTURE_INPUTS[field]);
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  } else {
    $('venture-form-error').replaceChildren(...withCode(message));
    $('venture-form-error').hidden = false;
  }
}

function openVentureForm(id) {
  const venture = id ? store.state.ventures.get(id) : null;
  if (id && !venture) return;
  editing = venture ? id : '';
  clearVentureErrors();
  ventureForm.reset();
  $('venture-title').textContent = venture ? `Edit ${venture.name}` : 'New venture';
  $('venture-submit').textContent = venture ? 'Save' : 'Create venture';
  if (venture) {
    $('v-name').value = venture.name;
    $('v-icon').value = venture.icon ?? '';
    $('v-budget').value = String(venture.capitalBudget ?? 0);
  }
  ventureDialog.showModal();
  $('v-name').focus();
}

$('new-venture').addEventListener('click', () => openVentureForm(''));
$('venture-cancel').addEventListener('click', () => ventureDialog.close());

ventureForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearVentureErrors();
  const budget = $('v-budget');
  if (budget.validity.badInput) {
    showVentureError('capitalBudget', 'Enter a number, such as 250.');
    return;
  }
  const body = { name: $('v-name').value };
  const icon = $('v-icon').value.trim();
  if (icon) body.icon = icon;
  if (budget.value !== '') body.capitalBudget = Number(budget.value);
  const id = editing;
  const submit = $('venture-submit');
  submit.disabled = true;
  ventureForm.setAttribute('aria-busy', 'true');
  const answer = id
    ? await request('PATCH', `/api/ventures/${encodeURIComponent(id)}`, body)
    : await request('POST', '/api/ventures', body);
  submit.disabled = false;
  ventureForm.removeAttribute('aria-busy');
  if (answer.ok) {
    ventureDialog.close();
    ventureForm.reset();
    store.offerVenture(answer.data);
    view.invalidate('ventures', 'board');
    refreshVentures();
    view.toast(id ? `Saved “${answer.data.name}”` : `Created “${answer.data.name}”`);
  } else {
    showVentureError(answer.data?.field, answer.data?.error ?? `The server answered ${answer.status}`);
  }
});

/** Pauses an active venture (its tasks are not handed out) or resumes a paused one. */
async function toggleVenture(id) {
  const venture = store.state.ventures.get(id);
  if (!venture || view.venturePending.has(id)) return;
  const status = venture.status === 'paused' ? 'active' : 'paused';
  view.venturePending.add(id);
  view.invalidate('ventures');
  const answer = await request('PATCH', `/api/ventures/${encodeURIComponent(id)}`, { status });
  view.venturePending.delete(id);
  if (answer.ok) {
    store.offerVenture(answer.data);
    refreshVentures();
    view.toast(status === 'paused' ? `Paused “${answer.data.name}”: its tasks are not handed out` : `Resumed “${answer.data.name}”`);
  } else {
    view.toast(answer.data?.error ?? `The server answered ${answer.status}`, 'error');
  }
  view.invalidate('ventures', 'board');
}

// Start -----------------------------------------------------------------------------------

async function start() {
  // Asks for the token first if the server wants one: the feed needs it in its URL.
  await request('GET', '/api/activities?limit=1');
  readUrl();
  connect(true);
}

start();
