// Drawing the state. Changes only mark parts dirty; one animation frame redraws each dirty
// part once, however many events arrived, and cards are reused while they do not change.

import { state, snapshot, STATUSES, UNFINISHED, FINISHED, total, moreToLoad } from './store.js';

const PAGE = 100; // cards per column before "show more"
const AGENTS_SHOWN = 100;
const ACTIVITY_SHOWN = 60;
const AGENT_ORDER = { busy: 0, online: 1, error: 2, offline: 3 };
// Plain glyphs (no emoji font needed), coloured by kind in the style sheet.
const ACTIVITY_ICON = {
  task_created: ['+', 'new'],
  task_claimed: ['▶', 'claim'],
  task_completed: ['✓', 'done'],
  task_failed: ['✕', 'fail'],
  task_lease_expired: ['!', 'warn'],
  task_released: ['↺', 'warn'],
  task_updated: ['✎', 'new'],
  task_deleted: ['−', 'new'],
  task_unblocked: ['→', 'claim'],
  task_cancel_requested: ['⊘', 'warn'],
  task_cancelled: ['⊘', 'fail'],
  venture_created: ['+', 'claim'],
  venture_updated: ['✎', 'claim'],
  venture_deleted: ['−', 'new'],
  agent_registered: ['+', 'done'],
  agent_deleted: ['−', 'new'],
};

/** `h('p', {class: 'x', text: 'y'}, child...)`: never HTML from data. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// Formatters are made once: making one per call is slow when thousands of cards are drawn.
const WHOLE = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
// Amounts have up to six decimal places (the server keeps millionths): show them all, at
// least cents, so $0.003085 is not shown as $0.00. Rounding at six places also hides the
// float noise of sums made here (0.1 + 0.2).
const CENTS = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 6 });
const WHEN = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function money(value) {
  const n = Number(value ?? 0);
  return `$${(Number.isInteger(n) ? WHOLE : CENTS).format(n)}`;
}

const number = (n) => WHOLE.format(Number(n ?? 0));

function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hh ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

function ago(iso, now = Date.now()) {
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (!(s >= 0) || s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function leaseText(iso, now = Date.now()) {
  const left = Date.parse(iso) - now;
  return left > 0 ? `${clock(left)} left` : 'expired';
}

const since = (iso) =>
  h('time', { datetime: iso, 'data-since': iso, title: WHEN.format(new Date(iso)) }, ago(iso));

/** Text with `code` spans, as the API's error messages quote field names. */
function withCode(text) {
  return String(text)
    .split('`')
    .map((part, i) => (i % 2 ? h('code', { text: part }) : part));
}

const $ = (id) => document.getElementById(id);

export class View {
  constructor({ throughput, onRequeue, onCancel, onFilter, onMore, onOpen, onEditVenture, onPauseVenture }) {
    this.onEditVenture = onEditVenture;
    this.onPauseVenture = onPauseVenture;
    this.venturePending = new Set(); // ventures with a pause or resume in flight
    this.ventureRows = new Map(); // venture id → {sig, node}
    this.throughput = throughput;
    this.onRequeue = onRequeue;
    this.onCancel = onCancel;
    this.onFilter = onFilter;
    this.onMore = onMore;
    this.onOpen = onOpen;
    this.dirty = new Set();
    this.frame = 0;
    this.timer = 0;
    this.lastFlush = 0; // when the last redraw started, and how long it took (ms)
    this.lastCost = 0;
    this.wentLive = false; // the `board-live` mark is made
    this.filter = ''; // the venture shown, or every one
    this.filters = { status: '', agent: '', q: '' }; // the other filters of the filter bar
    this.limits = Object.fromEntries(STATUSES.map((status) => [status, PAGE]));
    this.pending = new Map(); // task id → the action in flight for it (`requeue`, `cancel`)
    this.cards = new Map(); // task id → {sig, node}
    this.activityNodes = new Map(); // activity id → node
    this.reserved = new Map();
    this.queueDepth = 0;
    this.chartMinute = 0;
    this.wire();
  }

  wire() {
    $('board').addEventListener('click', (event) => {
      const button = event.target.closest('button[data-action]');
      if (!button) {
        // A click anywhere else on a card opens its detail panel.
        const card = event.target.closest('.card');
        if (card && !window.getSelection()?.toString()) this.onOpen?.(card.dataset.id);
        return;
      }
      if (button.dataset.action === 'open') this.onOpen?.(button.dataset.id);
      if (button.dataset.action === 'requeue') this.onRequeue(button.dataset.id);
      if (button.dataset.action === 'cancel') this.onCancel(button.dataset.id);
      if (button.dataset.action === 'more') {
        this.limits[button.dataset.status] += PAGE;
        this.onMore?.(button.dataset.status);
        this.invalidate('board');
      }
    });
    $('board').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && event.target.classList?.contains('card')) this.onOpen?.(event.target.dataset.id);
    });
    $('venture-filter').addEventListener('change', (event) => this.setFilter(event.target.value));
    $('status-filter').addEventListener('change', (event) => this.setFilters({ status: event.target.value }));
    $('agent-filter').addEventListener('change', (event) => this.setFilters({ agent: event.target.value }));
    $('text-filter').addEventListener('input', (event) => this.setFilters({ q: event.target.value }));
    $('ventures').addEventListener('click', (event) => {
      const action = event.target.closest('button[data-venture-action]');
      if (action?.dataset.ventureAction === 'edit') this.onEditVenture?.(action.dataset.id);
      if (action?.dataset.ventureAction === 'pause') this.onPauseVenture?.(action.dataset.id);
      const button = event.target.closest('button[data-venture]');
      if (button) this.setFilter(this.filter === button.dataset.venture ? '' : button.dataset.venture);
    });
    setInterval(() => this.tick(), 1000);
  }

  setFilter(ventureId) {
    this.filter = ventureId;
    $('venture-filter').value = ventureId;
    for (const status of STATUSES) this.limits[status] = PAGE;
    this.onFilter?.();
    this.invalidate('board', 'ventures');
  }

  /** Changes some of the status, agent and text filters (and the controls, if not theirs). */
  setFilters(changes) {
    Object.assign(this.filters, changes);
    if ($('status-filter').value !== this.filters.status) $('status-filter').value = this.filters.status;
    this.renderAgentOptions();
    if ($('text-filter').value !== this.filters.q) $('text-filter').value = this.filters.q;
    for (const status of STATUSES) this.limits[status] = PAGE;
    this.onFilter?.();
    this.invalidate('board');
  }

  /** The agent filter's options: every agent, and the chosen one even before the lists load. */
  renderAgentOptions() {
    const select = $('agent-filter');
    const agents = [...state.agents.values()].sort((a, b) => a.name.localeCompare(b.name));
    const chosen = this.filters.agent;
    const options = agents.map((a) => [a.id, a.name]);
    if (chosen && !state.agents.has(chosen)) options.push([chosen, chosen]);
    const sig = options.flat().join('\u0001');
    if (sig !== this.agentOptionsSig) {
      this.agentOptionsSig = sig;
      select.replaceChildren(h('option', { value: '', text: 'All agents' }), ...options.map(([id, name]) => h('option', { value: id, text: name })));
    }
    if (select.value !== chosen) select.value = chosen;
  }

  /**
   * Marks parts for redrawing at the next frame. During a burst the frames are spaced so
   * that drawing takes at most about a ninth of the time: the page stays responsive however
   * many events arrive.
   */
  invalidate(...parts) {
    for (const part of parts) this.dirty.add(part);
    if (this.frame || this.timer) return;
    const wait = this.lastFlush + Math.min(1000, this.lastCost * 8) - performance.now();
    if (wait > 4) {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.frame = requestAnimationFrame(() => this.flush());
      }, wait);
    } else {
      this.frame = requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    const started = performance.now();
    this.frame = 0;
    this.lastFlush = started;
    const dirty = this.dirty;
    this.dirty = new Set();
    // The board first: it computes the reserved costs and the queue depth the others show.
    if (dirty.has('board') || dirty.has('ventures')) this.renderBoard();
    if (dirty.has('ventures')) this.renderVentures();
    if (dirty.has('agents')) this.renderAgents();
    if (dirty.has('activity')) this.renderActivity();
    if (dirty.has('chart') || dirty.has('board')) this.renderChart();
    this.lastCost = performance.now() - started;
    // "Live": the first board drawn from the loaded lists with the feed connected. The mark's
    // time counts from the start of the navigation; the browser test reads it.
    if (!this.wentLive && $('connection').dataset.state === 'live' && dirty.has('board')) {
      this.wentLive = true;
      performance.mark('board-live');
      document.body.dataset.live = 'true';
    }
  }

  // The board ---------------------------------------------------------------------------

  renderBoard() {
    // A venture that is gone (once the lists are in) is no filter.
    if (this.filter && state.ventures.size && !state.ventures.has(this.filter)) this.filter = '';
    const focused = document.activeElement?.closest?.('.card')?.dataset.id;
    const { columns, reserved, queueDepth } = snapshot({ ventureId: this.filter, ...this.filters }, this.limits);
    this.reserved = reserved;
    this.queueDepth = queueDepth;
    const shown = new Set();
    for (const status of STATUSES) {
      const column = columns[status];
      const nodes = column.shown.map((task) => {
        shown.add(task.id);
        return this.card(task);
      });
      reconcile($(`col-${status}`), nodes);
      this.renderCount(status, column);
    }
    for (const id of this.cards.keys()) if (!shown.has(id)) this.cards.delete(id);
    if (focused && (!document.activeElement || document.activeElement === document.body)) {
      const card = this.cards.get(focused)?.node;
      (card?.querySelector('button') ?? card)?.focus();
    }
  }

  /**
   * A column's count and foot. The unfinished columns hold every matching task, so their
   * count is what the filters keep. A finished column holds the newest pages of a history
   * that may be long: its count is the true number (`taskCounts`) under the venture (and
   * status) filter; under the agent or text filter, which the counts do not split by, it
   * reads "n of M": n loaded tasks match, of M in the column.
   */
  renderCount(status, column) {
    const head = $(`count-${status}`);
    const shown = column.shown.length;
    const exact = FINISHED.includes(status) ? total(status, this.filter) : null;
    if (exact === null) {
      head.textContent = number(column.count);
      head.title = '';
      this.renderFoot(status, column.count, shown, false);
      return;
    }
    // The loaded matches are a floor: the counts are refetched a moment after a task event.
    const all = this.filters.status && this.filters.status !== status ? 0 : exact;
    const more = moreToLoad(status, this.filter, this.filters.agent);
    if (this.filters.agent || this.filters.q.trim()) {
      head.textContent = `${number(column.count)} of ${number(all)}`;
      head.title = `${number(column.count)} of the loaded tasks match the filters; ${number(all)} in the column. `
        + (more ? 'Older ones load with “Load older”.' : 'Every one is loaded.');
      this.renderFoot(status, column.count, shown, all > 0 && more);
    } else {
      const count = Math.max(all, column.count);
      head.textContent = number(count);
      head.title = '';
      this.renderFoot(status, count, shown, false);
    }
  }

  /** `older`: none of the loaded tasks is hidden, but older ones may match. */
  renderFoot(status, count, shown, older) {
    const foot = $(`foot-${status}`);
    const hidden = count - shown;
    if (older && hidden <= 0) {
      foot.replaceChildren(
        h('p', { class: 'hidden-note', text: 'Older tasks are not loaded' }),
        h('button', { type: 'button', class: 'ghost small', 'data-action': 'more', 'data-status': status, text: 'Load older' }),
      );
    } else if (count === 0) {
      const filtered = this.filter || this.filters.status || this.filters.agent || this.filters.q;
      foot.replaceChildren(h('p', { class: 'empty', text: filtered ? 'No tasks match the filters' : 'No tasks' }));
    } else if (hidden > 0) {
      foot.replaceChildren(
        h('p', { class: 'hidden-note', text: `${number(hidden)} more not shown` }),
        h('button', {
          type: 'button',
          class: 'ghost small',
          'data-action': 'more',
          'data-status': status,
          text: `Show ${number(Math.min(PAGE, hidden))} more`,
        }),
      );
    } else {
      foot.replaceChildren();
    }
  }

  card(task) {
    const venture = state.ventures.get(task.ventureId);
    const agent = task.assignedTo ? state.agents.get(task.assignedTo) : null;
    const pending = this.pending.get(task.id) ?? '';
    // What a blocked task waits for, by title when the board knows the task.
    const waits = task.status === 'blocked' ? task.blockedBy.map((id) => [id, state.tasks.get(id)?.title]) : [];
    const held = task.status === 'queue' ? this.heldBy(task, venture) : '';
    const sig = [held, 
      task.updatedAt, task.status, task.title, task.priority, task.estimatedCost, task.actualCost,
      task.attempts, task.maxAttempts, task.assignedTo, task.leaseExpiresAt, task.tags, task.error,
      task.cancelRequested, task.runAt, waits.flat().join('\u0002'), venture?.name, venture?.icon, agent?.name, pending,
    ].join('\u0001');
    const cached = this.cards.get(task.id);
    if (cached && cached.sig === sig) return cached.node;
    const node = this.buildCard(task, venture, agent, pending, waits, held);
    this.cards.set(task.id, { sig, node });
    return node;
  }

  /**
   * Why the budget holds a queued task back, or '': its estimated cost is more than its
   * venture's room (budget − spent − reserved by the active tasks), when there is a budget.
   */
  heldBy(task, venture) {
    const budget = Number(venture?.capitalBudget ?? 0);
    const cost = Number(task.estimatedCost ?? 0);
    if (!(budget > 0) || !(cost > 0)) return '';
    const spent = Number(venture.capitalSpent ?? 0);
    const reserved = this.reserved.get(venture.id) ?? 0;
    const room = budget - spent - reserved;
    if (cost <= room + 1e-9) return '';
    return `Its estimated ${money(cost)} is more than the ${money(Math.max(0, room))} left in ${venture.name}’s budget `
      + `(${money(budget)} budget − ${money(spent)} spent − ${money(reserved)} reserved by active tasks): `
      + 'no agent is handed it until the budget is raised or reserved money comes free.';
  }

  buildCard(task, venture, agent, pending, waits, held) {
    const fact = (label, value) => h('div', {}, h('dt', { text: label }), h('dd', { text: value }));
    const ventureLabel = venture ? `${venture.icon} ${venture.name}` : task.venture ? `${task.venture.icon} ${task.venture.name}` : task.ventureId;
    const button = (action, label, kind = '') => h('button', {
      type: 'button',
      class: `small${kind}`,
      'data-action': action,
      'data-id': task.id,
      'aria-label': `${label}: ${task.title}`,
      disabled: Boolean(pending),
      text: pending === action ? 'Sending…' : label,
    });
    const actions = [];
    if (task.status === 'active' || task.status === 'failed' || task.status === 'cancelled') {
      actions.push(button('requeue', task.status === 'active' ? 'Back to queue' : 'Requeue'));
    }
    // An active task whose cancel was asked for shows that instead: asking again does nothing.
    if (UNFINISHED.has(task.status) && !task.cancelRequested) actions.push(button('cancel', 'Cancel', ' danger'));
    const stopping = task.status === 'active' && task.cancelRequested;
    const finished = { completed: 'Completed ', failed: 'Failed ', cancelled: 'Cancelled ' }[task.status];
    // The error says why a task failed or was cancelled; a cancel request's default says nothing new.
    const error = task.status === 'completed' || (stopping && task.error === 'cancel requested') ? null : task.error;
    // A delayed task (by its runAt, or a failed attempt's back-off) says when it runs.
    const delayed = task.status === 'blocked' && task.runAt && new Date(task.runAt) > new Date() ? task.runAt : null;
    return h('li', { class: `card prio-${task.priority}`, 'data-id': task.id, 'data-status': task.status, tabindex: '-1' },
      h('div', { class: 'card-top' },
        h('span', { class: `prio prio-${task.priority}`, text: task.priority }),
        held ? h('span', { class: 'badge badge-held', title: held, text: 'Held by budget' }) : null,
        stopping ? h('span', { class: 'badge badge-stopping', text: 'Cancel requested', title: 'The agent is asked to stop at its next heartbeat' }) : null,
        h('span', { class: 'card-venture', title: ventureLabel, text: ventureLabel })),
      h('h3', { class: 'card-title' }, h('button', {
        type: 'button',
        class: 'card-open',
        'data-action': 'open',
        'data-id': task.id,
        'aria-haspopup': 'dialog',
        title: 'Show the details',
        text: task.title,
      })),
      delayed
        ? h('p', { class: 'run-at' }, h('span', { class: 'label', text: 'Runs ' }),
          h('time', { datetime: delayed, text: WHEN.format(new Date(delayed)) }))
        : null,
      task.status === 'blocked' && (waits.length || !delayed)
        ? h('div', { class: 'waits' },
          h('span', { class: 'label', text: 'Waits for ' }),
          waits.length
            ? h('ul', { class: 'deps', 'aria-label': 'Waits for' }, waits.map(([id, title]) =>
              h('li', { 'data-dep': id, title: title ? id : 'Not on the board', text: title ?? id, class: title ? null : 'dep-id' })))
            : h('span', { class: 'muted', text: 'its dependencies' }))
        : null,
      h('p', { class: 'assignee' }, h('span', { class: 'label', text: 'Assignee ' }),
        task.assignedTo
          ? h('strong', { title: task.assignedTo, text: agent?.name ?? task.assignedTo })
          : h('span', { class: 'muted', text: 'unassigned' })),
      h('dl', { class: 'facts' },
        fact('Est.', task.estimatedCost == null ? '—' : money(task.estimatedCost)),
        fact('Actual', task.actualCost == null ? '—' : money(task.actualCost)),
        fact('Attempts', `${task.attempts}/${task.maxAttempts}`)),
      task.status === 'active' && task.leaseExpiresAt
        ? h('p', { class: 'lease' }, h('span', { class: 'label', text: 'Lease ' }),
          h('span', { 'data-lease-until': task.leaseExpiresAt, text: leaseText(task.leaseExpiresAt) }))
        : null,
      finished ? h('p', { class: 'when' }, finished, since(task.completedAt ?? task.updatedAt)) : null,
      task.tagList.length ? h('ul', { class: 'tags', 'aria-label': 'Tags' }, task.tagList.map((t) => h('li', { text: t }))) : null,
      error ? h('p', { class: 'card-error', title: error }, withCode(error)) : null,
      actions.length ? h('div', { class: 'card-actions' }, actions) : null);
  }

  // Ventures ----------------------------------------------------------------------------

  renderVentures() {
    const list = [...state.ventures.values()];
    // A row is rebuilt only when what it shows changes, so a button keeps its node (and focus).
    const focused = document.activeElement?.closest?.('#ventures button');
    const focusKey = focused ? [focused.dataset.ventureAction ?? '', focused.dataset.id ?? focused.dataset.venture] : null;
    const keep = new Set();
    const items = list.map((v) => {
      const reserved = this.reserved.get(v.id) ?? Number(v.capitalReserved ?? 0);
      const budget = Number(v.capitalBudget ?? 0);
      const spent = Number(v.capitalSpent ?? 0);
      const heldCount = budget > 0 ? Number(v.budgetHeld ?? 0) : 0;
      const sig = [v.name, v.icon, v.status, budget, spent, reserved, heldCount, this.filter === v.id, this.venturePending.has(v.id)].join('\u0001');
      keep.add(v.id);
      const cached = this.ventureRows.get(v.id);
      if (cached?.sig === sig) return cached.node;
      const node = this.ventureRow(v, reserved, budget, spent, heldCount);
      this.ventureRows.set(v.id, { sig, node });
      return node;
    });
    for (const id of this.ventureRows.keys()) if (!keep.has(id)) this.ventureRows.delete(id);
    reconcile($('ventures'), items.length ? items : [h('li', { class: 'empty', text: 'No ventures yet' })]);
    if (focusKey && (!document.activeElement || document.activeElement === document.body)) {
      const [action, id] = focusKey;
      const selector = action
        ? `button[data-venture-action="${CSS.escape(action)}"][data-id="${CSS.escape(id)}"]`
        : `button[data-venture="${CSS.escape(id)}"]`;
      $('ventures').querySelector(selector)?.focus();
    }
    this.renderVentureOptions(list);
  }

  ventureRow(v, reserved, budget, spent, heldCount) {
    const badges = [];
    if (v.status === 'paused') badges.push(['paused', 'Paused', 'Its tasks are not handed out until it is resumed']);
    if (v.status === 'completed') badges.push(['completed', 'Completed', 'Its tasks are not handed out']);
    if (budget > 0 && spent > budget) badges.push(['over', 'Over budget', `${money(spent)} spent of ${money(budget)}`]);
    else if (budget > 0 && spent >= budget) badges.push(['over', 'At budget', `${money(spent)} spent of ${money(budget)}`]);
    else if (budget > 0 && spent + reserved >= budget) badges.push(['full', 'Fully reserved', `${money(reserved)} reserved by active tasks`]);
    if (heldCount > 0) {
      const room = Math.max(0, budget - spent - reserved);
      badges.push(['held', 'Held by budget', `${heldCount} queued ${heldCount === 1 ? 'task costs' : 'tasks cost'} more than the `
        + `${money(room)} left of the budget (${money(budget)} − ${money(spent)} spent − ${money(reserved)} reserved): `
        + `${heldCount === 1 ? 'it waits' : 'they wait'} until the budget is raised or reserved money comes free`]);
    }
    const spentShare = budget > 0 ? Math.min(100, (100 * spent) / budget) : 0;
    const reservedShare = budget > 0 ? Math.min(100 - spentShare, (100 * reserved) / budget) : 0;
    const selected = this.filter === v.id;
    const moneyText = budget > 0 ? `${money(spent)} / ${money(budget)}` : `${money(spent)} · no budget`;
    const moneyTitle = budget > 0
      ? `${money(spent)} of ${money(budget)} spent, ${money(reserved)} reserved, ${money(Math.max(0, budget - spent - reserved))} free`
      : `${money(spent)} spent, ${money(reserved)} reserved; no budget set`;
    const barLabel = budget > 0
      ? `${Math.round((100 * spent) / budget)}% of the budget spent, ${Math.round((100 * reserved) / budget)}% reserved`
      : 'no budget set';
    const pending = this.venturePending.has(v.id);
    const paused = v.status === 'paused';
    return h('li', { class: `venture status-${v.status}${badges.some(([k]) => k === 'over') ? ' is-over' : ''}`, 'data-id': v.id },
      h('button', {
        type: 'button',
        class: 'venture-name',
        'data-venture': v.id,
        'aria-pressed': String(selected),
        title: selected ? 'Show all ventures' : `Show only ${v.name} on the board`,
      }, h('span', { class: 'venture-icon', 'aria-hidden': 'true', text: v.icon }), h('span', { class: 'venture-label', text: v.name })),
      h('span', { class: 'venture-badges' }, badges.map(([kind, text, title]) => h('span', { class: `badge badge-${kind}`, title, text }))),
      h('span', { class: 'venture-money', title: moneyTitle, text: moneyText }),
      h('span', { class: 'venture-actions' },
        h('button', {
          type: 'button',
          class: 'icon-button',
          'data-venture-action': 'edit',
          'data-id': v.id,
          'aria-haspopup': 'dialog',
          'aria-label': `Edit ${v.name}`,
          title: 'Edit the name, icon or budget',
          text: '✎',
        }),
        v.status === 'completed' ? null : h('button', {
          type: 'button',
          class: 'icon-button',
          'data-venture-action': 'pause',
          'data-id': v.id,
          'aria-label': `${paused ? 'Resume' : 'Pause'} ${v.name}`,
          title: paused ? 'Resume: hand its tasks out again' : 'Pause: hand none of its tasks out',
          disabled: pending,
          text: paused ? 'Resume' : 'Pause',
        })),
      h('div', { class: 'bar', role: 'img', 'aria-label': barLabel, title: moneyTitle },
        h('span', { class: 'bar-spent', style: `width:${spentShare}%` }),
        h('span', { class: 'bar-reserved', style: `width:${reservedShare}%` })));
  }

  renderVentureOptions(list) {
    const label = (v) => `${v.icon} ${v.name}${v.status === 'active' ? '' : ` (${v.status})`}`;
    // Rebuilt only when they change, so an open select is not disturbed by every event.
    const sig = list.map((v) => `${v.id}\u0001${label(v)}`).join('\u0002');
    if (sig === this.optionsSig && $('venture-filter').value === this.filter) return;
    this.optionsSig = sig;
    const filter = $('venture-filter');
    filter.replaceChildren(h('option', { value: '', text: 'All ventures' }), ...list.map((v) => h('option', { value: v.id, text: label(v) })));
    filter.value = this.filter;
    const form = $('f-venture');
    const chosen = form.value;
    form.replaceChildren(...list.map((v) => h('option', { value: v.id, text: label(v) })));
    if (list.some((v) => v.id === chosen)) form.value = chosen;
    else form.value = (list.find((v) => v.status === 'active') ?? list[0])?.id ?? '';
  }

  // Agents ------------------------------------------------------------------------------

  renderAgents() {
    const agents = [...state.agents.values()].sort(
      (a, b) => (AGENT_ORDER[a.status] ?? 9) - (AGENT_ORDER[b.status] ?? 9) || a.name.localeCompare(b.name));
    const counts = { online: 0, busy: 0, error: 0, offline: 0 };
    for (const agent of agents) counts[agent.status] = (counts[agent.status] ?? 0) + 1;
    $('agent-summary').replaceChildren(...Object.entries(counts).map(([status, n]) =>
      h('span', { class: `pill status-${status}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), `${n} ${status}`)));
    const items = agents.slice(0, AGENTS_SHOWN).map((agent) => {
      const task = agent.currentTask ? state.tasks.get(agent.currentTask) : null;
      const max = Number(agent.maxTokens ?? 0);
      const used = Number(agent.tokensUsed ?? 0);
      return h('li', { class: `agent status-${agent.status}`, 'data-id': agent.id },
        h('div', { class: 'agent-head' },
          h('span', { class: 'dot', 'aria-hidden': 'true' }),
          h('strong', { text: agent.name, title: agent.id }),
          h('span', { class: 'agent-status', text: agent.status })),
        h('p', { class: 'agent-task' }, agent.currentTask
          ? ['Working on ', h('span', { class: 'task-ref', text: task?.title ?? agent.currentTask })]
          : h('span', { class: 'muted', text: 'No current task' })),
        max > 0
          ? h('div', { class: 'tokens' },
            h('meter', { min: 0, max, value: Math.min(used, max), 'aria-label': `Tokens used by ${agent.name}` }),
            h('span', { text: `${number(used)} / ${number(max)} tokens` }))
          : h('p', { class: 'tokens', text: `${number(used)} tokens · no limit` }),
        h('p', { class: 'muted small' }, `${agent.model} · last seen `, since(agent.lastActiveAt)));
    });
    if (agents.length > AGENTS_SHOWN) items.push(h('li', { class: 'hidden-note', text: `${number(agents.length - AGENTS_SHOWN)} more agents not shown` }));
    if (!agents.length) items.push(h('li', { class: 'empty', text: 'No agents yet' }));
    $('agents').replaceChildren(...items);
    this.renderAgentOptions();
  }

  // Activity ----------------------------------------------------------------------------

  renderActivity() {
    const shown = state.activities.slice(0, ACTIVITY_SHOWN);
    const keep = new Set();
    const nodes = shown.map((a) => {
      keep.add(a.id);
      let node = this.activityNodes.get(a.id);
      if (!node) {
        node = h('li', { class: `activity-item type-${a.type}` },
          h('span', { class: `activity-icon icon-${(ACTIVITY_ICON[a.type] ?? ['', 'note'])[1]}`, 'aria-hidden': 'true', text: (ACTIVITY_ICON[a.type] ?? ['•'])[0] }),
          h('div', { class: 'activity-body' },
            h('p', { class: 'activity-title', text: a.title }),
            a.description ? h('p', { class: 'activity-desc', text: a.description.slice(0, 200) }) : null,
            h('p', { class: 'muted small' }, `${a.type} · `, since(a.createdAt))));
        this.activityNodes.set(a.id, node);
      }
      return node;
    });
    for (const id of this.activityNodes.keys()) if (!keep.has(id)) this.activityNodes.delete(id);
    const list = $('activity');
    reconcile(list, nodes.length ? nodes : [h('li', { class: 'empty', text: 'No activity yet' })]);
  }

  // Chart and clocks --------------------------------------------------------------------

  renderChart() {
    this.throughput.sampleDepth(this.queueDepth);
    this.throughput.render($('chart'), $('chart-summary'));
    this.chartMinute = Math.floor(Date.now() / 60000);
  }

  tick() {
    const now = Date.now();
    const set = (node, text) => {
      if (node.textContent !== text) node.textContent = text;
    };
    for (const node of document.querySelectorAll('[data-lease-until]')) set(node, leaseText(node.dataset.leaseUntil, now));
    for (const node of document.querySelectorAll('[data-since]')) set(node, ago(node.dataset.since, now));
    if (Math.floor(now / 60000) !== this.chartMinute) this.invalidate('chart');
  }

  // Messages ----------------------------------------------------------------------------

  toast(message, kind = 'info') {
    const box = $('toast');
    box.replaceChildren(...withCode(message));
    box.dataset.kind = kind;
    box.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => { box.hidden = true; }, kind === 'error' ? 8000 : 4000);
  }

  connection(stateName, text) {
    const node = $('connection');
    node.dataset.state = stateName;
    node.textContent = text;
  }
}

/** Puts `nodes` in `parent` in order, moving as few as possible (so focus survives). */
function reconcile(parent, nodes) {
  for (let i = 0; i < nodes.length; i += 1) {
    const at = parent.children[i];
    if (at !== nodes[i]) parent.insertBefore(nodes[i], at ?? null);
  }
  while (parent.children.length > nodes.length) parent.lastElementChild.remove();
}

export { withCode };
