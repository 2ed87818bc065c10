// Usage of one key (GET /v1/keys/{id}/usage): requests per hour or day, accepted and
// rejected by reason, stacked, with its tightest rate limit scaled to the bucket; and the
// same numbers as a table.
"use strict";

let usageKeyId = null;
const SVG_NS = "http://www.w3.org/2000/svg";
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 };
const BUCKET_SECONDS = { hour: 3600, day: 86400 };

// Why requests were rejected, short, for the legend; in the order they are stacked.
const REJECTED = {
  rate_limited: "rate limited",
  usage_exceeded: "out of credits",
  ip_not_whitelisted: "address not whitelisted",
  no_whitelist: "no whitelist",
  role_missing: "role missing",
  disabled: "key disabled",
  expired: "key expired",
  stale: "server out of date",
};
// Each reason its own fill (a dashed line is the limit); past the fifth, they share the last.
const REJECTED_FILLS = 5;

/** An SVG element with attributes and children. */
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  node.append(...children.filter((c) => c !== ""));
  return node;
}

/** The most requests a key's limits let through in a bucket at their sustained rate
 * (LIMIT × bucket ÷ WINDOW for each limit, the least of them), and which limit it is. */
function tightestLimit(limits, granularity) {
  let best = null;
  for (const l of limits || []) {
    const m = /^(\d+)([smhd])$/.exec(l.window);
    if (!m) continue;
    const perBucket = (l.limit * BUCKET_SECONDS[granularity]) / (Number(m[1]) * UNIT_SECONDS[m[2]]);
    if (!best || perBucket < best.perBucket) best = { perBucket, name: `${l.limit}/${l.window}` };
  }
  return best;
}

function openUsage(id) {
  usageKeyId = id;
  const key = state.keys.find((k) => k.id === id);
  $("usage-for").textContent = key ? `Key “${key.name}” (${key.id}), UTC` : id;
  openDialog($("usage-dialog"));
  loadUsage();
}

async function loadUsage() {
  const id = usageKeyId;
  const granularity = $("usage-granularity").value;
  setError("usage-error", "");
  let usage;
  try {
    usage = await api("GET", `${keyPath(id)}/usage?granularity=${granularity}`);
  } catch (e) {
    $("usage-chart").replaceChildren();
    $("usage-rows").replaceChildren();
    setError("usage-error", e);
    return;
  }
  if (id !== usageKeyId) return;
  const key = state.keys.find((k) => k.id === id);
  renderUsage(usage, tightestLimit(key && key.rate_limits, granularity));
}

const reasonWords = (r) => REJECTED[r] || r.replace(/_/g, " ");

function renderUsage(usage, limit) {
  const buckets = usage.buckets;
  const rejected = (b) => Object.values(b.rejected).reduce((a, n) => a + n, 0);
  // Every reason in this span, the known ones in their order, then others by name.
  const order = Object.keys(REJECTED);
  const reasons = [...new Set(buckets.flatMap((b) => Object.keys(b.rejected)))].sort((a, b) => {
    const [i, j] = [order.indexOf(a), order.indexOf(b)];
    return (i < 0 ? order.length : i) - (j < 0 ? order.length : j) || a.localeCompare(b);
  });
  const fill = (r) => `bar-rejected bar-rejected-${Math.min(reasons.indexOf(r), REJECTED_FILLS - 1)}`;
  const [width, height, left, bottom, top] = [720, 240, 44, 22, 10];
  const highest = Math.max(1, limit ? limit.perBucket : 0, ...buckets.map((b) => b.accepted + rejected(b)));
  const plot = height - bottom - top;
  const y = (n) => top + plot - (n / highest) * plot;
  const step = (width - left) / Math.max(1, buckets.length);
  const barWidth = Math.max(1, step * 0.7);
  const label = (b) => (usage.granularity === "day" ? b.start.slice(5, 10) : b.start.slice(11, 16));
  const bars = buckets.map((b, i) => {
    const x = left + i * step + (step - barWidth) / 2;
    const words = reasons.filter((r) => b.rejected[r]).map((r) => `${b.rejected[r]} ${reasonWords(r)}`).join(", ");
    const title = `${b.start}: ${b.accepted} accepted, ${rejected(b)} rejected${words ? ` (${words})` : ""}`;
    // Accepted at the bottom, then each reason's rejections on top, in the legend's order.
    let base = b.accepted;
    const stacked = reasons.filter((r) => b.rejected[r]).map((r) => {
      const n = b.rejected[r];
      const rect = svg("rect", { class: fill(r), x, y: y(base + n), width: barWidth, height: y(base) - y(base + n), "data-reason": r, "data-count": n });
      base += n;
      return rect;
    });
    return svg(
      "g",
      { class: "bucket", "data-start": b.start, "data-rejected": rejected(b) },
      svg("title", { text: title }),
      svg("rect", { class: "bar-accepted", x, y: y(b.accepted), width: barWidth, height: y(0) - y(b.accepted), "data-count": b.accepted }),
      ...stacked,
      i % Math.ceil(buckets.length / 8) === 0 ? svg("text", { class: "axis-label", x: x + barWidth / 2, y: height - 6, "text-anchor": "middle", text: label(b) }) : "",
    );
  });
  const parts = [
    svg("line", { class: "axis", x1: left, x2: width, y1: y(0), y2: y(0) }),
    svg("text", { class: "axis-label", x: left - 6, y: y(highest) + 4, "text-anchor": "end", text: String(Math.round(highest)) }),
    svg("text", { class: "axis-label", x: left - 6, y: y(0) + 4, "text-anchor": "end", text: "0" }),
    ...bars,
  ];
  if (limit) {
    parts.push(svg("line", { class: "limit-line", x1: left, x2: width, y1: y(limit.perBucket), y2: y(limit.perBucket), "data-per-bucket": limit.perBucket }));
  }
  const total = buckets.reduce((a, b) => a + b.accepted, 0);
  const byReason = reasons.map((r) => [r, buckets.reduce((a, b) => a + (b.rejected[r] || 0), 0)]);
  const totalRejected = byReason.reduce((a, [, n]) => a + n, 0);
  const why = byReason.map(([r, n]) => `${n} ${reasonWords(r)}`).join(", ");
  const summary = `${total} accepted and ${totalRejected} rejected requests${why ? ` (${why})` : ""}, one bar per ${usage.granularity}`;
  $("usage-chart").replaceChildren(
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary }, ...parts),
  );
  $("usage-summary").textContent = `${summary}.`;
  $("usage-reasons").replaceChildren(
    ...reasons.map((r) => el("span", { class: "legend-item", "data-reason": r },
      el("span", { class: `swatch swatch-rejected-${Math.min(reasons.indexOf(r), REJECTED_FILLS - 1)}` }), ` rejected: ${reasonWords(r)}`)),
  );
  $("usage-limit-legend").hidden = !limit;
  $("usage-limit-text").textContent = limit ? `rate limit ${limit.name}: ${+limit.perBucket.toFixed(2)} per ${usage.granularity}` : "";
  renderUsageTable(buckets, reasons);
}

/** The buckets with any request, as table rows: the chart's numbers, for reading. */
function renderUsageTable(buckets, reasons) {
  const rows = buckets
    .filter((b) => b.accepted || Object.keys(b.rejected).length)
    .map((b) => el(
      "tr",
      { "data-start": b.start },
      el("td", {}, time(b.start)),
      el("td", { text: String(b.accepted) }),
      el("td", { text: reasons.filter((r) => b.rejected[r]).map((r) => `${b.rejected[r]} ${reasonWords(r)}`).join(", ") || "0" }),
    ));
  $("usage-rows").replaceChildren(...rows);
  $("usage-table").hidden = rows.length === 0;
  $("usage-none").hidden = rows.length !== 0;
}
