// A read-only board over the JSON API. It refreshes every few seconds.
const COLUMN_LIMIT = 200;
const RANK = { high: 0, medium: 1, low: 2 };
const money = (x) => `$${Number(x ?? 0).toFixed(2).replace(/\.00$/, '')}`;
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

async function api(path) {
  const headers = {};
  const token = localStorage.getItem('mc-token');
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    const given = prompt('This server needs its API token:');
    if (given) { localStorage.setItem('mc-token', given); return api(path); }
  }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function taskCard(task) {
  const lease = task.leaseExpiresAt ? ` · lease ${Math.max(0, Math.round((Date.parse(task.leaseExpiresAt) - Date.now()) / 1000))}s` : '';
  return el('article', { className: 'card' },
    el('div', {}, task.title),
    el('div', { className: 'meta' },
      `${task.venture?.icon ?? ''} ${task.venture?.name ?? task.ventureId} · ${task.priority}`
      + (task.assignedTo ? ` · ${task.assignedTo}` : '')
      + ` · est ${money(task.estimatedCost)}` + (task.actualCost != null ? ` · spent ${money(task.actualCost)}` : '')
      + ` · attempt ${task.attempts}/${task.maxAttempts}${lease}`));
}

function fill(id, nodes, hidden) {
  const box = document.getElementById(id);
  box.replaceChildren(...nodes);
  if (hidden > 0) box.append(el('p', { className: 'muted' }, `${hidden} more not shown`));
}

async function refresh() {
  try {
    const [ventures, tasks, agents, activity] = await Promise.all([
      api('/api/ventures'), api('/api/tasks'), api('/api/agents'), api('/api/activities?limit=20')]);
    const by = (status) => tasks.filter((t) => t.status === status);
    const queue = by('queue').sort((a, b) => RANK[a.priority] - RANK[b.priority] || a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    const recent = (list) => list.sort((a, b) => (b.completedAt ?? b.updatedAt).localeCompare(a.completedAt ?? a.updatedAt));
    for (const [id, list] of [['col-queue', queue], ['col-active', by('active')], ['col-completed', recent(by('completed'))], ['col-failed', recent(by('failed'))]]) {
      fill(id, list.slice(0, COLUMN_LIMIT).map(taskCard), list.length - COLUMN_LIMIT);
    }
    fill('ventures', ventures.map((v) => {
      const share = v.capitalBudget > 0 ? Math.min(100, (100 * v.capitalSpent) / v.capitalBudget) : 0;
      const over = v.capitalBudget > 0 && v.capitalSpent >= v.capitalBudget;
      return el('li', {}, `${v.icon} ${v.name} (${v.status})`,
        el('div', { className: 'muted' }, `${money(v.capitalSpent)} / ${money(v.capitalBudget)} spent · ${money(v.capitalReserved)} reserved`),
        el('div', { className: over ? 'bar over' : 'bar', role: 'img', ariaLabel: `${Math.round(share)}% of budget spent` }, el('span', { style: `width:${share}%` })));
    }), 0);
    fill('agents', agents.map((a) => el('li', {}, `${a.name} · ${a.status}`,
      el('div', { className: 'muted' }, `${a.currentTask ?? 'idle'} · tokens ${a.tokensUsed}${a.maxTokens ? ` / ${a.maxTokens}` : ''}`))), 0);
    fill('activity', activity.map((a) => el('li', {}, a.title, el('div', { className: 'muted' }, `${a.type} · ${new Date(a.createdAt).toLocaleTimeString()}`))), 0);
    document.getElementById('status').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    document.getElementById('status').textContent = `cannot reach the API: ${error.message}`;
  }
}

refresh();
setInterval(refresh, 5000);
