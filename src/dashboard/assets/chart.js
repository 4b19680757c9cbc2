// Throughput: claims and completions per minute, counted from `task_claimed` and
// `task_completed` activities, and the queue depth sampled while the page is open. Drawn as
// a small inline SVG, no library.

const WINDOW = 30; // minutes shown
const SVG = 'http://www.w3.org/2000/svg';
const minuteOf = (ms) => Math.floor(ms / 60000);

export class Throughput {
  constructor() {
    /** minute → {claims, completions} */
    this.buckets = new Map();
    /** minute → last queue depth seen in it */
    this.depth = new Map();
  }

  /** Counts one live activity. Answers whether the chart changed. */
  record(activity) {
    const kind = activity.type === 'task_claimed' ? 'claims' : activity.type === 'task_completed' ? 'completions' : null;
    if (!kind) return false;
    const minute = minuteOf(Date.parse(activity.createdAt));
    if (!(minute > minuteOf(Date.now()) - WINDOW)) return false;
    const bucket = this.buckets.get(minute) ?? { claims: 0, completions: 0 };
    bucket[kind] += 1;
    this.buckets.set(minute, bucket);
    return true;
  }

  /**
   * Folds in a fetched page of activities (newest first). Live counts and the page are both
   * lower bounds of the truth (the page holds at most 1,000, the feed may have missed
   * events before a reload), so each minute keeps the larger: nothing is counted twice.
   */
  backfill(activities) {
    const fetched = new Throughput();
    for (const activity of activities) fetched.record(activity);
    for (const [minute, counts] of fetched.buckets) {
      const mine = this.buckets.get(minute) ?? { claims: 0, completions: 0 };
      this.buckets.set(minute, {
        claims: Math.max(mine.claims, counts.claims),
        completions: Math.max(mine.completions, counts.completions),
      });
    }
  }

  sampleDepth(depth, now = Date.now()) {
    const minute = minuteOf(now);
    const changed = this.depth.get(minute) !== depth;
    this.depth.set(minute, depth);
    return changed;
  }

  prune(now = Date.now()) {
    const oldest = minuteOf(now) - WINDOW;
    for (const minute of this.buckets.keys()) if (minute <= oldest) this.buckets.delete(minute);
    for (const minute of this.depth.keys()) if (minute <= oldest) this.depth.delete(minute);
  }

  /** Draws into `box` and writes a text summary into `summary`. */
  render(box, summary, now = Date.now()) {
    this.prune(now);
    const current = minuteOf(now);
    const first = current - WINDOW + 1;
    const series = [];
    for (let m = first; m <= current; m += 1) {
      series.push({ ...(this.buckets.get(m) ?? { claims: 0, completions: 0 }), depth: this.depth.get(m) });
    }
    const width = 300;
    const height = 110;
    const top = 8;
    const bottom = 16;
    const plot = height - top - bottom;
    const slot = width / WINDOW;
    const maxRate = Math.max(1, ...series.map((s) => Math.max(s.claims, s.completions)));
    const depths = series.map((s) => s.depth).filter((d) => d !== undefined);
    const maxDepth = Math.max(1, ...depths);

    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('role', 'img');
    const add = (name, attrs, parent = svg) => {
      const node = document.createElementNS(SVG, name);
      for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
      parent.append(node);
      return node;
    };
    for (const fraction of [0, 0.5, 1]) {
      const y = top + plot * (1 - fraction);
      add('line', { x1: 0, x2: width, y1: y, y2: y, class: 'grid' });
    }
    const barWidth = Math.max(1, slot / 2 - 1);
    series.forEach((s, i) => {
      const x = i * slot + 0.5;
      const claimHeight = (plot * s.claims) / maxRate;
      const doneHeight = (plot * s.completions) / maxRate;
      if (s.claims) add('rect', { x, y: top + plot - claimHeight, width: barWidth, height: claimHeight, class: 'claims' });
      if (s.completions) {
        add('rect', { x: x + barWidth, y: top + plot - doneHeight, width: barWidth, height: doneHeight, class: 'completions' });
      }
    });
    const points = [];
    series.forEach((s, i) => {
      if (s.depth === undefined) return;
      points.push(`${(i * slot + slot / 2).toFixed(1)},${(top + plot * (1 - s.depth / maxDepth)).toFixed(1)}`);
    });
    if (points.length === 1) {
      const [x, y] = points[0].split(',');
      add('circle', { cx: x, cy: y, r: 2.5, class: 'depth-dot' });
    } else if (points.length > 1) {
      add('polyline', { points: points.join(' '), class: 'depth' });
    }
    const label = (x, text, anchor) => {
      const node = add('text', { x, y: height - 4, 'text-anchor': anchor, class: 'axis' });
      node.textContent = text;
    };
    label(0, '30 min ago', 'start');
    label(width, 'now', 'end');
    const scale = add('text', { x: 2, y: top + 8, class: 'axis' });
    scale.textContent = `${maxRate}/min`;

    const last = series[series.length - 1];
    const prev = series[series.length - 2];
    const totalClaims = series.reduce((n, s) => n + s.claims, 0);
    const totalDone = series.reduce((n, s) => n + s.completions, 0);
    const depthNow = last.depth ?? depths[depths.length - 1] ?? 0;
    const text =
      `This minute: ${last.claims} claims, ${last.completions} completions` +
      ` (last minute ${prev.claims} and ${prev.completions}); ${totalClaims} claims and ${totalDone} completions` +
      ` in 30 min; queue depth ${depthNow}.`;
    svg.setAttribute('aria-label', text);
    box.replaceChildren(svg);
    summary.textContent = `Now: ${last.claims} claims/min · ${last.completions} done/min · queue ${depthNow}`;
  }
}
