// The page's copy of the server's state: loaded once from the lists, then kept current by
// the events of `GET /api/events`. Nothing here touches the DOM.

export const PRIORITY_RANK = { high: 0, medium: 1, low: 2 };
/** The board's columns, left to right. */
export const STATUSES = ['blocked', 'queue', 'active', 'completed', 'failed', 'cancelled'];
/** The statuses a task can still leave: its card has a cancel button. */
export const UNFINISHED = new Set(['blocked', 'queue', 'active']);
/**
 * The finished statuses. The server holds every unfinished task in memory and the board loads
 * them all; of the finished ones (the whole history) it loads only the newest pages it shows,
 * and takes their true numbers from the venture listing's `taskCounts`.
 */
export const FINISHED = ['completed', 'failed', 'cancelled'];
/** Activities kept for the feed (newest first). */
const ACTIVITY_KEEP = 200;

export const state = {
  ventures: new Map(),
  tasks: new Map(),
  agents: new Map(),
  /** Newest first. */
  activities: [],
  activityIds: new Set(),
  /**
   * What is loaded of each finished column, by `pageKey`: the cursor after the last page
   * (`after`), whether the listing has no more (`done`), and whether a page is on its way.
   */
  pages: new Map(),
};

/** The key of a finished column's pages under a venture and an agent filter ('' for any). */
export const pageKey = (status, ventureId, agent) => `${status}\u0001${ventureId}\u0001${agent}`;

/** Whether older tasks of a finished column may be on the server, not loaded yet. */
export function moreToLoad(status, ventureId, agent) {
  return !state.pages.get(pageKey(status, ventureId, agent))?.done;
}

/**
 * The true number of tasks of a status: over every venture, or one. `null` from a server
 * whose venture listing has no `taskCounts`.
 */
export function total(status, ventureId) {
  let sum = 0;
  for (const venture of state.ventures.values()) {
    if (ventureId && venture.id !== ventureId) continue;
    if (!venture.taskCounts) return null;
    sum += venture.taskCounts[status] ?? 0;
  }
  return sum;
}

const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** Claim order, as the server hands tasks out: priority, then oldest, then id. */
export const claimOrder = (a, b) =>
  (PRIORITY_RANK[a.priority] ?? 1) - (PRIORITY_RANK[b.priority] ?? 1) ||
  compare(a.createdAt, b.createdAt) ||
  compare(a.id, b.id);

const newestClaimFirst = (a, b) => compare(b.claimedAt ?? '', a.claimedAt ?? '') || compare(b.id, a.id);
const finishedAt = (t) => t.completedAt ?? t.updatedAt ?? '';
const newestFinishFirst = (a, b) => compare(finishedAt(b), finishedAt(a)) || compare(b.id, a.id);
export const ORDER = {
  blocked: claimOrder,
  queue: claimOrder,
  active: newestClaimFirst,
  completed: newestFinishFirst,
  failed: newestFinishFirst,
  cancelled: newestFinishFirst,
};

/** The `k` first items in `cmp` order without sorting them all: O(n log k) for the usual case. */
export function topK(items, k, cmp) {
  if (items.length <= k) return items.sort(cmp);
  const out = [];
  for (const item of items) {
    if (out.length === k && cmp(item, out[k - 1]) >= 0) continue;
    let lo = 0;
    let hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(item, out[mid]) < 0) hi = mid;
      else lo = mid + 1;
    }
    out.splice(lo, 0, item);
    if (out.length > k) out.pop();
  }
  return out;
}

/** `tags` arrives as a string holding a JSON array (or null). */
function tagList(tags) {
  if (Array.isArray(tags)) return tags;
  if (typeof tags !== 'string' || !tags) return [];
  try {
    const parsed = JSON.parse(tags);
    return Array.isArray(parsed) ? parsed.map(String) : [];
  } catch {
    return [tags];
  }
}

function putTask(task) {
  task.tagList = tagList(task.tags);
  // Absent from servers without task graphs.
  task.blockedBy ??= [];
  task.dependsOn ??= [];
  state.tasks.set(task.id, task);
}

/** Replaces everything with freshly fetched lists. */
export function load({ ventures, tasks, agents, activities }) {
  state.ventures = new Map(ventures.map((v) => [v.id, v]));
  state.tasks = new Map();
  state.pages = new Map();
  for (const task of tasks) putTask(task);
  state.agents = new Map(agents.map((a) => [a.id, a]));
  // Keep what the feed already showed, merged with the fetched page, newest first.
  const merged = new Map(state.activities.map((a) => [a.id, a]));
  for (const activity of activities) merged.set(activity.id, activity);
  state.activities = [...merged.values()]
    .sort((a, b) => compare(b.createdAt, a.createdAt) || compare(b.id, a.id))
    .slice(0, ACTIVITY_KEEP);
  state.activityIds = new Set(state.activities.map((a) => a.id));
}

/**
 * Applies one event. Answers what it touched, so the view redraws only that:
 * a set of `board`, `ventures`, `agents`, `activity`.
 */
export function apply(type, data) {
  switch (type) {
    case 'task':
      putTask(data);
      return ['board', 'ventures', 'agents'];
    case 'task_deleted':
      state.tasks.delete(data.id);
      return ['board', 'ventures', 'agents'];
    case 'venture':
      putVenture(data);
      return ['board', 'ventures'];
    case 'venture_deleted':
      state.ventures.delete(data.id);
      // The server removes a venture's tasks with it.
      for (const [id, task] of state.tasks) if (task.ventureId === data.id) state.tasks.delete(id);
      return ['board', 'ventures', 'agents'];
    case 'agent':
      state.agents.set(data.id, data);
      return ['agents', 'board'];
    case 'agent_deleted':
      state.agents.delete(data.id);
      return ['agents', 'board'];
    case 'activity':
      return addActivity(data) ? ['activity'] : [];
    default:
      return [];
  }
}

/**
 * A venture record from an event: it lacks the listing's `budgetHeld`, `capitalReserved`
 * and `taskCounts`, so those are kept (a new venture has no tasks yet).
 */
function putVenture(venture) {
  const current = state.ventures.get(venture.id);
  state.ventures.set(venture.id, {
    budgetHeld: current?.budgetHeld,
    capitalReserved: current?.capitalReserved,
    taskCounts: current?.taskCounts ?? {},
    ...venture,
  });
}

/** Replaces the ventures with a fresh listing (which has `budgetHeld`, `capitalReserved` and `taskCounts`). */
export function loadVentures(ventures) {
  state.ventures = new Map(ventures.map((v) => [v.id, v]));
}

/** Takes a venture the API answered with, unless the feed already brought one as new or newer. */
export function offerVenture(venture) {
  const current = state.ventures.get(venture.id);
  if (current && compare(current.updatedAt, venture.updatedAt) > 0) return false;
  putVenture(venture);
  return true;
}

function addActivity(activity) {
  if (state.activityIds.has(activity.id)) return false;
  state.activities.unshift(activity);
  state.activityIds.add(activity.id);
  while (state.activities.length > ACTIVITY_KEEP) state.activityIds.delete(state.activities.pop().id);
  return true;
}

/**
 * Takes a task the API answered with (after a PATCH), unless the feed already brought
 * something as new or newer. Answers whether it changed anything.
 */
export function offerTask(task) {
  const current = state.tasks.get(task.id);
  if (current && compare(current.updatedAt, task.updatedAt) >= 0) return false;
  putTask({ ...task, venture: null });
  return true;
}

/**
 * The unfinished tasks that a cancel of `id` would cancel too: those that depend on it and
 * say `cancel` on a failed dependency, and theirs in turn. One pass over the tasks to index
 * the dependents, made only when someone is about to cancel.
 */
export function cancelCascade(id) {
  const dependents = new Map();
  for (const task of state.tasks.values()) {
    if (!UNFINISHED.has(task.status) || task.onDependencyFailure === 'ignore') continue;
    for (const dependency of task.dependsOn ?? []) {
      if (!dependents.has(dependency)) dependents.set(dependency, []);
      dependents.get(dependency).push(task);
    }
  }
  const found = new Map();
  const stack = [id];
  while (stack.length) {
    for (const task of dependents.get(stack.pop()) ?? []) {
      if (task.id === id || found.has(task.id)) continue;
      found.set(task.id, task);
      stack.push(task.id);
    }
  }
  return [...found.values()];
}

/**
 * Everything the board and the venture bars need, in one pass over the tasks:
 * per status the count and the first `limits[status]` cards of those the filter keeps
 * (`ventureId`, `status`, `agent`: the assignee, `q`: in the title, any case; each if
 * given); per venture the reserved cost (estimated cost of its active tasks); the whole
 * queue's depth.
 */
export function snapshot({ ventureId = '', status: only = '', agent = '', q = '' } = {}, limits) {
  const text = q.trim().toLowerCase();
  const lists = Object.fromEntries(STATUSES.map((status) => [status, []]));
  const reserved = new Map();
  let queueDepth = 0;
  for (const task of state.tasks.values()) {
    if (task.status === 'queue') queueDepth += 1;
    if (task.status === 'active' && task.estimatedCost) {
      reserved.set(task.ventureId, (reserved.get(task.ventureId) ?? 0) + task.estimatedCost);
    }
    if (ventureId && task.ventureId !== ventureId) continue;
    if (only && task.status !== only) continue;
    if (agent && task.assignedTo !== agent) continue;
    if (text && !task.title.toLowerCase().includes(text)) continue;
    lists[task.status]?.push(task);
  }
  const columns = {};
  for (const status of STATUSES) {
    const list = lists[status];
    columns[status] = { count: list.length, shown: topK(list, limits[status], ORDER[status]) };
  }
  return { columns, reserved, queueDepth };
}
