// The task detail panel: everything about one task, fetched in full when it opens (the board
// holds a light listing), with its attempts and its activity. The panel is addressable:
// `?task=<id>` opens it; closing it clears that.

import { request } from './api.js';
import { state, UNFINISHED } from './store.js';
import { h, money, withCode } from './view.js';

const OUTPUT_SHOWN = 64 * 1024;
const WHEN = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const $ = (id) => document.getElementById(id);
const when = (iso) => (iso ? h('time', { datetime: iso, text: WHEN.format(new Date(iso)) }) : h('span', { class: 'muted', text: '—' }));

export class Detail {
  /** `onUrl(taskId)` records the open task in the URL; `onCancel`/`onRequeue` act on it. */
  constructor({ onUrl, onCancel, onRequeue }) {
    this.onUrl = onUrl;
    this.onCancel = onCancel;
    this.onRequeue = onRequeue;
    this.dialog = $('detail-dialog');
    this.body = $('detail-body');
    this.id = '';
    this.loads = 0;
    this.opener = null;
    this.refreshTimer = 0;
    this.fullOutput = false;
    $('detail-close').addEventListener('click', () => this.dialog.close());
    this.dialog.addEventListener('close', () => {
      const opener = this.opener;
      this.id = '';
      this.opener = null;
      clearTimeout(this.refreshTimer);
      this.onUrl('');
      if (opener?.isConnected) opener.focus();
    });
    // A click on the backdrop (outside the panel's box) closes it too.
    this.dialog.addEventListener('click', (event) => {
      if (event.target === this.dialog) {
        const box = this.dialog.getBoundingClientRect();
        const inside = event.clientX >= box.left && event.clientX <= box.right
          && event.clientY >= box.top && event.clientY <= box.bottom;
        if (!inside) this.dialog.close();
      }
    });
    this.body.addEventListener('click', (event) => {
      const link = event.target.closest('a[data-task]');
      if (link && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
        event.preventDefault();
        this.open(link.dataset.task);
        return;
      }
      const button = event.target.closest('button[data-action]');
      if (!button) return;
      if (button.dataset.action === 'cancel') this.onCancel(this.id);
      if (button.dataset.action === 'requeue') this.onRequeue(this.id, this.task);
      if (button.dataset.action === 'all-output') {
        this.fullOutput = true;
        this.render();
      }
    });
  }

  /** Opens the panel on task `id` (or moves it there). */
  open(id) {
    if (!id) return;
    if (!this.dialog.open) {
      this.opener = document.activeElement;
      this.dialog.showModal();
    }
    if (this.id !== id) {
      this.id = id;
      this.task = state.tasks.get(id) ?? null;
      this.attempts = null;
      this.activities = null;
      this.error = '';
      this.fullOutput = false;
      this.render();
      this.onUrl(id);
    }
    $('detail-close').focus();
    this.load();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /** The feed said something about a task: refresh if it is ours (a burst refreshes once). */
  notice(type, data) {
    if (!this.id) return;
    const ours = type === 'activity' ? data.taskId === this.id : data.id === this.id;
    if (!ours) return;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.load(), 150);
  }

  async load() {
    const id = this.id;
    const load = ++this.loads;
    const path = `/api/tasks/${encodeURIComponent(id)}`;
    const [task, attempts, activities] = await Promise.all([
      request('GET', path),
      request('GET', `${path}/attempts`),
      request('GET', `/api/activities?taskId=${encodeURIComponent(id)}&limit=100`),
    ]);
    if (load !== this.loads || id !== this.id) return;
    if (task.ok) {
      this.task = task.data;
      this.error = '';
    } else {
      this.error = task.status === 404 ? 'There is no such task (it may have been deleted).' : task.data?.error ?? `The server answered ${task.status}`;
    }
    this.attempts = attempts.ok ? attempts.data : [];
    this.activities = activities.ok ? activities.data : [];
    this.render();
  }

  render() {
    const task = this.task;
    $('detail-title').textContent = task?.title ?? this.id;
    this.dialog.setAttribute('aria-busy', String(this.attempts === null));
    this.dialog.dataset.id = this.id;
    if (!task) {
      this.body.replaceChildren(h('p', { class: this.error ? 'form-error' : 'muted', text: this.error || 'Loading…' }));
      return;
    }
    const agentName = (id) => state.agents.get(id)?.name ?? id;
    const taskLink = (id) => h('li', {}, h('a', {
      href: `?task=${encodeURIComponent(id)}`,
      'data-task': id,
      title: id,
      text: state.tasks.get(id)?.title ?? id,
    }));
    const links = (label, ids) => fact(label, ids.length
      ? h('ul', { class: 'detail-links', 'aria-label': label }, ids.map(taskLink))
      : h('span', { class: 'muted', text: 'none' }));
    const fact = (label, value) => h('div', {}, h('dt', { text: label }), h('dd', {}, value));
    const venture = state.ventures.get(task.ventureId) ?? task.venture;
    const dependents = [...state.tasks.values()].filter((t) => t.dependsOn?.includes(task.id)).map((t) => t.id);
    const delayed = task.runAt && new Date(task.runAt) > new Date();
    const output = task.output ?? '';
    const cut = !this.fullOutput && output.length > OUTPUT_SHOWN;
    const actions = [];
    if (['active', 'failed', 'cancelled'].includes(task.status)) {
      actions.push(h('button', { type: 'button', class: 'small', 'data-action': 'requeue', text: task.status === 'active' ? 'Back to queue…' : 'Requeue…' }));
    }
    if (UNFINISHED.has(task.status) && !task.cancelRequested) {
      actions.push(h('button', { type: 'button', class: 'small danger', 'data-action': 'cancel', text: 'Cancel…' }));
    }
    this.body.replaceChildren(...[
      this.error ? h('p', { class: 'form-error', role: 'alert', text: this.error }) : null,
      h('p', { class: 'detail-head' },
        h('span', { class: `status status-${task.status}`, 'data-field': 'status', text: task.status }),
        h('span', { class: `prio prio-${task.priority}`, text: task.priority }),
        task.cancelRequested ? h('span', { class: 'badge badge-stopping', text: 'Cancel requested' }) : null,
        h('code', { class: 'muted', text: task.id })),
      actions.length ? h('div', { class: 'card-actions' }, actions) : null,
      h('dl', { class: 'detail-facts' },
        fact('Venture', venture ? `${venture.icon ?? ''} ${venture.name}`.trim() : task.ventureId),
        fact('Estimated cost', task.estimatedCost == null ? '—' : money(task.estimatedCost)),
        fact('Actual cost', task.actualCost == null ? '—' : money(task.actualCost)),
        fact('Attempts', `${task.attempts}/${task.maxAttempts}`),
        fact('Assignee', task.assignedTo ? h('span', { title: task.assignedTo, text: agentName(task.assignedTo) }) : h('span', { class: 'muted', text: 'unassigned' })),
        task.leaseExpiresAt ? fact('Lease until', when(task.leaseExpiresAt)) : null,
        delayed ? fact('Runs at', when(task.runAt)) : null,
        fact('Created', when(task.createdAt)),
        task.completedAt ? fact('Finished', when(task.completedAt)) : null,
        links('Depends on', task.dependsOn ?? []),
        task.blockedBy?.length ? links('Blocked by', task.blockedBy) : null,
        links('Dependents', dependents)),
      h('section', { 'aria-labelledby': 'detail-h-description' },
        h('h3', { id: 'detail-h-description', text: 'Description' }),
        task.description ? h('p', { class: 'detail-text', 'data-field': 'description', text: task.description }) : h('p', { class: 'muted', text: 'None' })),
      task.error ? h('section', { 'aria-labelledby': 'detail-h-error' },
        h('h3', { id: 'detail-h-error', text: 'Error' }),
        h('p', { class: 'card-error', 'data-field': 'error' }, withCode(task.error))) : null,
      h('section', { 'aria-labelledby': 'detail-h-output' },
        h('h3', { id: 'detail-h-output', text: 'Output' }),
        output
          ? h('pre', { class: 'detail-output', 'data-field': 'output', tabindex: '0', text: cut ? output.slice(0, OUTPUT_SHOWN) : output })
          : h('p', { class: 'muted', text: 'None yet' }),
        cut ? h('button', { type: 'button', class: 'ghost small', 'data-action': 'all-output', text: `Show all (${Math.ceil(output.length / 1024)} KiB)` }) : null),
      h('section', { 'aria-labelledby': 'detail-h-attempts' },
        h('h3', { id: 'detail-h-attempts', text: 'Attempts' }),
        this.attempts === null ? h('p', { class: 'muted', text: 'Loading…' })
          : this.attempts.length ? h('table', { class: 'detail-attempts' },
            h('thead', {}, h('tr', {}, ['#', 'Agent', 'Claimed', 'Ended', 'Outcome', 'Error', 'Cost'].map((c) => h('th', { scope: 'col', text: c })))),
            h('tbody', {}, this.attempts.map((a) => h('tr', { 'data-attempt': a.attempt },
              h('td', { text: String(a.attempt) }),
              h('td', { title: a.agentId, text: agentName(a.agentId) }),
              h('td', {}, when(a.claimedAt)),
              h('td', {}, when(a.endedAt)),
              h('td', { class: `outcome outcome-${a.outcome}`, text: a.outcome }),
              h('td', { text: a.error ?? '' }),
              h('td', { text: a.actualCost == null ? '—' : money(a.actualCost) })))))
            : h('p', { class: 'muted', text: 'Never claimed' })),
      h('section', { 'aria-labelledby': 'detail-h-activity' },
        h('h3', { id: 'detail-h-activity', text: 'Activity' }),
        this.activities === null ? h('p', { class: 'muted', text: 'Loading…' })
          : this.activities.length ? h('ol', { class: 'detail-activity' }, this.activities.map((a) =>
            h('li', {}, h('strong', { text: a.title }), a.description ? ` · ${a.description.slice(0, 300)}` : '',
              h('span', { class: 'muted small' }, ` · ${a.type} · `, when(a.createdAt)))))
            : h('p', { class: 'muted', text: 'None' })),
    ].filter(Boolean));
  }
}
