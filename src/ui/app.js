// keyledger's admins' page: Settings › API Keys and the audit trail, over the /v1 admin API.
//
// The admin key lives in sessionStorage only (never a cookie, the URL or localStorage), and
// goes out only in the x-api-key header. A generated or rolled secret is written into the
// page only inside the one-time dialog, and is wiped when that dialog closes. Every node is
// built with textContent: nothing the server sends is ever parsed as HTML. The server
// enforces every rule; this page only hides what the API would refuse.
"use strict";

const STORAGE_KEY = "keyledger.admin-key";

// Keys and audit entries are asked a page at a time (the server's filters, newest first),
// and "Show more" follows the page's cursor: the page never holds more than it was shown.
const PAGE = 100;

const state = {
  me: null, // {actor, actor_role, key_id}: who the admin key acts as (GET /v1/whoami)
  keys: [], // the pages of keys loaded so far, for the search and status asked
  keysQuery: "", // the query those pages answer
  keysNext: null, // the cursor of the next page, or null at the end
  auditQuery: "",
  auditNext: null,
  auditRefused: false,
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------
// The API

/** An answer of the admin API other than 2xx, or no answer at all. */
class ApiError extends Error {
  constructor(status, body) {
    super(describeError(status, body));
    this.status = status;
    this.field = body && body.field;
    this.reason = body && body.reason;
  }
}

// Reasons the key check gives without a message (the tower layer's codes), in words.
const REASONS = {
  header_missing: "No admin key was sent.",
  header_not_ascii: "This is not a well-formed key: it holds characters keys never hold.",
  malformed_length: "This is not a well-formed key: it has the wrong length.",
  malformed_character: "This is not a well-formed key: it has a character keys never hold.",
  malformed_prefix: "This is not a well-formed key: it does not start with klk_.",
  malformed_checksum: "This is not a well-formed key: its checksum is wrong (a typo?).",
  unknown_key: "This key is not known: it was never issued, or it was deleted.",
  expired: "This key has expired.",
  disabled: "This key is disabled.",
  ip_not_whitelisted: "This key is not whitelisted for the address you connect from.",
  no_whitelist: "This key has no whitelist, and the server requires one.",
  client_address_unknown: "The server could not tell which address you connect from.",
  role_missing: "This key holds neither the admin nor the super-admin role.",
  not_an_admin: "This key holds neither the admin nor the super-admin role.",
};

function describeError(status, body) {
  if (status === 0) return "The server could not be reached. Check your connection and try again.";
  if (body && typeof body.message === "string" && body.message) return body.message;
  if (body && REASONS[body.reason]) return REASONS[body.reason];
  if (body && body.reason) return `Refused (${body.reason}).`;
  if (body && body.error) return `Refused (${body.error}).`;
  return `The server answered ${status} without saying why.`;
}

/**
 * Calls the admin API with the signed-in key. `json` is the request body; `lines` reads a
 * JSON Lines answer. Throws ApiError; a 401 also signs out, since the key no longer works.
 */
async function api(method, path, { json, lines, key } = {}) {
  const headers = { "x-api-key": key || sessionStorage.getItem(STORAGE_KEY) || "" };
  if (json !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch (_) {
    throw new ApiError(0, null);
  }
  const text = await response.text();
  if (!response.ok) {
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = null;
    }
    const error = new ApiError(response.status, body);
    if (response.status === 401 && !key) signOut(`Signed out: ${error.message}`);
    throw error;
  }
  if (lines) {
    return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
  }
  return text ? JSON.parse(text) : null;
}

const keyPath = (id) => `/v1/keys/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------------------------------
// Whitelist entries, checked as the server checks them (keyledger::parse_net): an IPv4 or
// IPv6 address, or a CIDR range with its host bits zero; IPv4-mapped IPv6 counts as IPv4.

/** IPv4 octets; `strict` refuses leading zeros, as Rust's address parser does. */
function parseV4(s, strict) {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = [];
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p) || (strict && p.length > 1 && p[0] === "0")) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/** Eight 16-bit groups, or null. An IPv4 tail may stand in for the last two groups. */
function parseV6(s, strict) {
  const groups = (part, allowV4) => {
    if (part === "") return [];
    const out = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const g = items[i];
      if (allowV4 && i === items.length - 1 && g.includes(".")) {
        const v4 = parseV4(g, strict);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
        out.push(parseInt(g, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const halves = s.split("::");
  if (halves.length > 2) return null;
  if (halves.length === 1) {
    const all = groups(s, true);
    return all && all.length === 8 ? all : null;
  }
  const head = groups(halves[0], false);
  const tail = groups(halves[1], true);
  if (!head || !tail || head.length + tail.length > 7) return null;
  return [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
}

function v6Text(g) {
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `::ffff:${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`;
  }
  // The longest run of two or more zero groups becomes "::" (RFC 5952).
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = (xs) => xs.map((x) => x.toString(16)).join(":");
  if (best.at < 0) return hex(g);
  return `${hex(g.slice(0, best.at))}::${hex(g.slice(best.at + best.len))}`;
}

function truncate(bytesOrGroups, bits, width) {
  return bytesOrGroups.map((x, i) => {
    const keep = Math.max(0, Math.min(width, bits - i * width));
    const mask = keep === 0 ? 0 : ((0xffff << (width - keep)) & ((1 << width) - 1));
    return x & mask;
  });
}

/** A whitelist entry's canonical text (`10.0.0.0/8`, `2001:db8::1/128`), or an error in words. */
function checkNet(input) {
  const s = input.trim();
  const bad = { error: `${JSON.stringify(s)} is not an IP address or CIDR range` };
  if (s === "") return { error: "Enter an address or a CIDR range." };
  let family;
  let parts;
  let len;
  const slash = s.indexOf("/");
  if (slash >= 0) {
    const addr = s.slice(0, slash);
    const prefix = s.slice(slash + 1);
    if ((parts = parseV4(addr, false)) && /^[0-9]{1,2}$/.test(prefix) && Number(prefix) <= 32) {
      family = 4;
    } else if ((parts = parseV6(addr, false)) && /^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= 128) {
      family = 6;
    } else {
      return bad;
    }
    len = Number(prefix);
  } else if ((parts = parseV4(s, true))) {
    family = 4;
    len = 32;
  } else if ((parts = parseV6(s, true))) {
    family = 6;
    len = 128;
  } else {
    return bad;
  }
  if (family === 6 && len >= 96 && parts.slice(0, 5).every((x) => x === 0) && parts[5] === 0xffff) {
    family = 4;
    parts = [parts[6] >> 8, parts[6] & 255, parts[7] >> 8, parts[7] & 255];
    len -= 96;
  }
  const text = (p) => (family === 4 ? `${p.join(".")}/${len}` : `${v6Text(p)}/${len}`);
  const trunc = truncate(parts, len, family === 4 ? 8 : 16);
  if (trunc.some((x, i) => x !== parts[i])) {
    return { error: `${text(parts)} has host bits set; did you mean ${text(trunc)}?` };
  }
  return { net: text(parts) };
}

/** A whitelist entry as people type it: a single address without its /32 or /128. */
function shownNet(net) {
  return net.replace(/\/32$/, "").replace(/\/128$/, "");
}

const ROLE_RE = /^[a-z0-9_-]{1,64}$/;

// ---------------------------------------------------------------------------------------
// Small DOM helpers

/** An element with attributes and children; strings become text, never HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** An RFC 3339 time in UTC as its date and its time to the minute. */
function dateAndClock(iso) {
  return iso.replace(/:\d\d(\.\d+)?Z$/, "").split("T");
}

/** A time to the minute, in UTC; it may wrap between the date and the time, never inside. */
function time(iso) {
  if (!iso) return null;
  const [date, clock] = dateAndClock(iso);
  return el("time", { datetime: iso, title: iso }, el("span", { text: date }), " ", el("span", { text: clock }));
}

/** A table cell; its label heads it when rows become cards on a phone. */
function cell(label, ...children) {
  return el("td", { "data-label": label }, el("div", {}, ...children));
}

function setError(id, message) {
  $(id).textContent = message || "";
}

/** Shows a message next to an input and marks the input invalid (or clears both). */
function fieldError(input, errorId, message, source) {
  setError(errorId, message);
  if (source) $(errorId).dataset.source = source;
  else delete $(errorId).dataset.source;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

/** Runs `work` with `button` disabled; a second click meanwhile does nothing. */
async function busy(button, work) {
  if (button.disabled) return;
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}

function openDialog(dialog) {
  if (!dialog.open) dialog.showModal();
}

// ---------------------------------------------------------------------------------------
// Signing in and out

async function signIn(event) {
  event.preventDefault();
  const input = $("admin-key");
  const key = input.value.trim();
  // The key leaves the DOM at once; from here on it is only in sessionStorage.
  input.value = "";
  if (!key) {
    fieldError(input, "admin-key-error", "Paste an admin key.");
    return;
  }
  const button = event.submitter || $("sign-in-form").querySelector("button");
  await busy(button, async () => {
    try {
      state.me = await identify(key);
    } catch (e) {
      fieldError(input, "admin-key-error", e.message);
      input.focus();
      return;
    }
    fieldError(input, "admin-key-error", "");
    sessionStorage.setItem(STORAGE_KEY, key);
    await enter();
  });
}

function signOut(message) {
  sessionStorage.removeItem(STORAGE_KEY);
  state.me = null;
  state.keys = [];
  for (const dialog of document.querySelectorAll("dialog")) {
    if (dialog.open) dialog.close();
  }
  $("keys-table").tBodies[0].replaceChildren();
  $("audit-table").tBodies[0].replaceChildren();
  $("refused-table").tBodies[0].replaceChildren();
  showSignIn();
  if (message) setError("admin-key-error", message);
}

function showSignIn() {
  $("session").hidden = true;
  $("nav").hidden = true;
  $("keys").hidden = true;
  $("audit").hidden = true;
  $("sign-in").hidden = false;
  $("admin-key").focus();
}

/** After signing in, or on reload with a key still in this tab's sessionStorage. */
async function enter() {
  if (!state.me) {
    try {
      state.me = await identify(sessionStorage.getItem(STORAGE_KEY));
    } catch (e) {
      if (e.status !== 401) signOut(e.message);
      return;
    }
  }
  $("whoami").textContent = `Signed in as ${state.me.actor} (${state.me.actor_role})`;
  $("session").hidden = false;
  $("nav").hidden = false;
  $("sign-in").hidden = true;
  $("admin-key-error").textContent = "";
  await route(false);
}

/**
 * Who `key` acts as, as the server decides it (KeyStore::acting_through): `{actor,
 * actor_role, key_id}` from `GET /v1/whoami`. Also proves the key works: it answers 401
 * or 403 if it does not.
 */
async function identify(key) {
  return api("GET", "/v1/whoami", { key });
}

/** Whether the signed-in actor may change this key: the API's rule, to hide what it refuses. */
function mayAct(key) {
  if (!state.me || key.status === "deleted") return false;
  if (state.me.actor_role === "super-admin") return true;
  // An admin may not change a key that holds super-admin, even one made under its own id.
  return key.created_by === state.me.actor && !key.roles.includes("super-admin");
}

// ---------------------------------------------------------------------------------------
// Navigation: #keys and #audit

async function route(moveFocus) {
  if (!state.me) return;
  const view = location.hash === "#audit" ? "audit" : "keys";
  $("keys").hidden = view !== "keys";
  $("audit").hidden = view !== "audit";
  for (const name of ["keys", "audit"]) {
    const link = $(`nav-${name}`);
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (moveFocus) $("main").focus();
  await loadKeys();
  if (view === "audit") await loadAudit();
}

// ---------------------------------------------------------------------------------------
// The keys table

/** The keys listing's query for the search and status chosen, newest first. */
function keysQuery() {
  const params = new URLSearchParams({ order: "newest", limit: String(PAGE) });
  const q = $("key-search").value.trim();
  if (q) params.set("q", q);
  const status = $("key-status").value;
  if (status === "all") params.set("all", "true");
  else if (status !== "live") params.set("status", status);
  return params.toString();
}

/** The first page of keys for the search and status chosen (the server filters). */
async function loadKeys() {
  const query = keysQuery();
  let page;
  try {
    page = await api("GET", `/v1/keys?${query}`);
    setError("keys-error", "");
  } catch (e) {
    setError("keys-error", `The keys could not be loaded: ${e.message}`);
    return;
  }
  // A later search was typed while this one was asked: its answer wins.
  if (query !== keysQuery()) return;
  state.keys = page.keys;
  state.keysQuery = query;
  state.keysNext = page.next;
  renderKeys();
  renderAuditKeyChoices();
}

/** The next page of keys, after those shown. */
async function loadMoreKeys(event) {
  if (!state.keysNext) return;
  await busy(event.currentTarget, async () => {
    const query = state.keysQuery;
    let page;
    try {
      page = await api("GET", `/v1/keys?${query}&cursor=${encodeURIComponent(state.keysNext)}`);
      setError("keys-error", "");
    } catch (e) {
      setError("keys-error", `More keys could not be loaded: ${e.message}`);
      return;
    }
    if (query !== state.keysQuery) return;
    state.keys.push(...page.keys);
    state.keysNext = page.next;
    const rows = page.keys.map(keyRow);
    $("keys-table").tBodies[0].append(...rows);
    showKeyCount();
    renderAuditKeyChoices();
  });
}

let searchTimer = null;

/** Asks the server again once typing pauses. */
function searchKeys() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(loadKeys, 200);
}

function renderKeys() {
  // Newest first, as the server gave them: a key just generated is at the top.
  const rows = state.keys.map(keyRow);
  $("keys-table").tBodies[0].replaceChildren(...rows);
  showKeyCount();
}

function showKeyCount() {
  const shown = state.keys.length;
  $("keys-table").hidden = shown === 0;
  $("keys-empty").hidden = shown !== 0;
  $("keys-more").hidden = !state.keysNext;
  $("keys-caption").textContent = `API keys: ${shown} shown${state.keysNext ? ", more to show" : ""}`;
}

function keyRow(k) {
  const whitelist = k.whitelist.length
    ? k.whitelist.map((n) => el("span", { class: "net mono", text: shownNet(n) }))
    : el("span", { class: "none", text: "any address" });
  const status = [el("span", { class: `status status-${k.status}`, text: k.status })];
  if (k.status === "deleted" && k.deleted_by) {
    status.push(el("span", { class: "sub" }, `by ${k.deleted_by} `, time(k.deleted_at)));
  } else if (k.expires_at) {
    status.push(el("span", { class: "sub" }, k.status === "expired" ? "at " : "until ", time(k.expires_at)));
  }
  return el(
    "tr",
    { "data-key-id": k.id },
    cell("Name", el("span", { class: "key-name", text: k.name }), el("span", { class: "sub mono", text: k.id }), owner(k)),
    cell("Roles", k.roles.map((r) => el("span", { class: "chip", text: r }))),
    cell("Whitelist", whitelist),
    cell("Created (UTC)", el("span", { class: "by" }, "by ", el("strong", { text: k.created_by })), time(k.created_at)),
    cell("Status", status),
    cell(
      "Last used (UTC)",
      k.last_used_at ? time(k.last_used_at) : el("span", { class: "none", text: "never" }),
      el("button", { type: "button", class: "small link", "data-action": "usage", "aria-label": `Usage of “${k.name}”`, onclick: () => openUsage(k.id) }, "Usage"),
    ),
    cell("Hint", el("span", { class: "mono hint-cell", text: k.hint })),
    cell("Actions", actions(k)),
  );
}

/** A key's external id and metadata, under its name: nothing for a key without either. */
function owner(k) {
  const parts = [];
  if (k.external_id) {
    parts.push(el("span", { class: "sub external-id" }, "owner ", el("span", { class: "mono", text: k.external_id })));
  }
  if (k.meta) {
    parts.push(el("details", { class: "sub meta" }, el("summary", { text: "metadata" }),
      el("pre", { class: "mono", text: JSON.stringify(k.meta, null, 2) })));
  }
  return parts;
}

function actions(k) {
  if (!mayAct(k)) {
    const why = k.status === "deleted" ? "deleted"
      : k.roles.includes("super-admin") && k.created_by === state.me.actor ? "holds super-admin"
      : `created by ${k.created_by}`;
    return el("span", { class: "none", title: `No actions: ${why}` }, "—", el("span", { class: "visually-hidden", text: ` no actions: ${why}` }));
  }
  const button = (action, text, onclick, cls) =>
    el("button", { type: "button", class: `small ${cls || ""}`, "data-action": action, "aria-label": `${text} “${k.name}”`, onclick }, text);
  const live = k.status === "active" || k.status === "disabled";
  return el(
    "div",
    {},
    el(
      "div",
      { class: "row-actions" },
      live && button("whitelist", "Whitelist", () => openWhitelist(k.id)),
      live && button("roll", "Roll", () => confirmAction(k, "roll")),
      k.status === "active" && button("disable", "Disable", () => confirmAction(k, "disable")),
      k.status === "disabled" && button("enable", "Enable", (e) => enable(k, e.currentTarget)),
      button("delete", "Delete", () => confirmAction(k, "delete"), "danger"),
    ),
    el("p", { class: "row-error", "aria-live": "polite" }),
  );
}

async function enable(k, button) {
  const error = button.closest("td").querySelector(".row-error");
  await busy(button, async () => {
    try {
      await api("POST", `${keyPath(k.id)}/enable`);
    } catch (e) {
      error.textContent = `Not enabled: ${e.message}`;
      return;
    }
    await loadKeys();
  });
}

// ---------------------------------------------------------------------------------------
// Delete, roll and disable, after a confirmation

let pending = null; // {key, action}

const CONFIRM = {
  delete: {
    title: (k) => `Delete “${k.name}”?`,
    text: () => "The key stops working at once, everywhere. This cannot be undone; the audit trail keeps it.",
    ok: "Delete key",
    danger: true,
  },
  roll: {
    title: (k) => `Roll “${k.name}”?`,
    text: () => "The key gets a new secret, shown once. Its name, roles, whitelist and expiry stay.",
    ok: "Roll key",
  },
  disable: {
    title: (k) => `Disable “${k.name}”?`,
    text: () => "The key is refused until it is enabled again.",
    ok: "Disable key",
    danger: true,
  },
};

function confirmAction(key, action) {
  pending = { key, action };
  const c = CONFIRM[action];
  $("confirm-title").textContent = c.title(key);
  $("confirm-text").textContent = c.text();
  $("confirm-ok").textContent = c.ok;
  $("confirm-ok").className = c.danger ? "primary danger" : "primary";
  $("grace-field").hidden = action !== "roll";
  $("grace").value = "0s";
  setError("confirm-error", "");
  openDialog($("confirm-dialog"));
}

async function confirmed(event) {
  event.preventDefault();
  if (!pending) return;
  const { key, action } = pending;
  await busy($("confirm-ok"), async () => {
    let answer;
    try {
      if (action === "delete") await api("DELETE", keyPath(key.id));
      else if (action === "disable") await api("POST", `${keyPath(key.id)}/disable`);
      else answer = await api("POST", `${keyPath(key.id)}/roll`, { json: { grace: $("grace").value } });
    } catch (e) {
      setError("confirm-error", e.message);
      return;
    }
    pending = null;
    $("confirm-dialog").close();
    await loadKeys();
    if (action === "roll") {
      const until = dateAndClock(answer.previous_valid_until).join(" ");
      showSecret(answer.key, `New secret for “${key.name}” (${key.id}). ` +
        ($("grace").value === "0s" ? "The previous one stopped working." : `The previous one works until ${until} UTC.`));
    }
  });
}

// ---------------------------------------------------------------------------------------
// Whitelist of one key

let whitelistKeyId = null;

function openWhitelist(id) {
  whitelistKeyId = id;
  $("whitelist-add").value = "";
  fieldError($("whitelist-add"), "whitelist-add-error", "");
  setError("whitelist-error", "");
  $("allow-any").checked = false;
  renderWhitelist();
  openDialog($("whitelist-dialog"));
  $("whitelist-add").focus();
}

function renderWhitelist() {
  const key = state.keys.find((k) => k.id === whitelistKeyId);
  if (!key) return;
  $("whitelist-for").textContent = `Key “${key.name}” (${key.id})`;
  const items = key.whitelist.map((net) =>
    el(
      "li",
      {},
      el("span", { class: "mono", text: shownNet(net) }),
      el("button", { type: "button", class: "small danger", "data-net": net, "aria-label": `Remove ${shownNet(net)}`, onclick: (e) => removeNet(key, net, e.currentTarget) }, "Remove"),
    ),
  );
  $("whitelist-entries").replaceChildren(...items);
  $("whitelist-any").hidden = items.length !== 0;
  $("allow-any-field").hidden = items.length !== 1;
}

async function addNet(event) {
  event.preventDefault();
  const input = $("whitelist-add");
  const value = input.value.trim();
  await busy($("whitelist-add-button"), async () => {
    try {
      await api("POST", `${keyPath(whitelistKeyId)}/whitelist`, { json: { ips: [value] } });
    } catch (e) {
      fieldError(input, "whitelist-add-error", e.message, "server");
      return;
    }
    input.value = "";
    fieldError(input, "whitelist-add-error", "");
    await loadKeys();
    renderWhitelist();
  });
}

async function removeNet(key, net, button) {
  setError("whitelist-error", "");
  const body = { ips: [net] };
  if ($("allow-any").checked) body.allow_any_address = true;
  await busy(button, async () => {
    try {
      await api("DELETE", `${keyPath(key.id)}/whitelist`, { json: body });
    } catch (e) {
      setError("whitelist-error", `${shownNet(net)} was not removed: ${e.message}`);
      return;
    }
    await loadKeys();
    renderWhitelist();
    $("whitelist-add").focus();
  });
}

// ---------------------------------------------------------------------------------------
// Generate new API key

function openGenerate() {
  const form = $("generate-form");
  form.reset();
  for (const error of form.querySelectorAll(".error")) error.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  $("ip-rows").replaceChildren();
  renderRoleOptions([]);
  openDialog($("generate-dialog"));
  $("new-name").focus();
}

/** The roles already in use, as checkboxes; `checked` stay checked, and are listed too. */
function renderRoleOptions(checked) {
  const roles = new Set(checked);
  for (const k of state.keys) if (k.status !== "deleted") for (const r of k.roles) roles.add(r);
  const options = [...roles].sort().map((role) => {
    const id = `role-${role}`;
    return el(
      "div",
      { class: "field check" },
      el("input", { type: "checkbox", id, value: role, checked: checked.includes(role), onchange: updateRoleSummary }),
      el("label", { for: id, text: role }),
    );
  });
  $("role-options").replaceChildren(...options);
  if (!options.length) $("role-options").append(el("p", { class: "hint", text: "No roles in use yet: add one below." }));
  updateRoleSummary();
}

function selectedRoles() {
  return [...$("role-options").querySelectorAll("input:checked")].map((i) => i.value);
}

function updateRoleSummary() {
  const roles = selectedRoles();
  $("roles-summary").textContent = roles.length ? `${roles.join(", ")} (${roles.length} selected)` : "Select roles";
  if (roles.length) setError("new-roles-error", "");
}

function checkRoleInput() {
  const input = $("new-role");
  const role = input.value.trim();
  if (role && !ROLE_RE.test(role)) {
    fieldError(input, "new-role-error", `${JSON.stringify(role)} may only use a-z, 0-9, - and _ (1 to 64 characters)`, "client");
  } else {
    fieldError(input, "new-role-error", "");
  }
}

function addRole() {
  const input = $("new-role");
  const role = input.value.trim();
  if (!ROLE_RE.test(role)) {
    fieldError(input, "new-role-error", role ? `${JSON.stringify(role)} may only use a-z, 0-9, - and _ (1 to 64 characters)` : "Type a role to add.", "client");
    input.focus();
    return;
  }
  renderRoleOptions([...new Set([...selectedRoles(), role])]);
  input.value = "";
  fieldError(input, "new-role-error", "");
  $("roles-dropdown").open = true;
  input.focus();
}

let ipRowCount = 0;

function addIpRow() {
  ipRowCount += 1;
  const id = `ip-${ipRowCount}`;
  const errorId = `${id}-error`;
  const input = el("input", { id, type: "text", class: "ip", autocomplete: "off", spellcheck: "false", placeholder: "10.0.0.0/8", "aria-describedby": errorId });
  input.addEventListener("input", checkIpRows);
  const row = el(
    "li",
    {},
    el("label", { for: id }),
    el(
      "div",
      { class: "row" },
      input,
      el("button", { type: "button", class: "small", "aria-label": "Remove this IP", onclick: () => {
        row.remove();
        numberIpRows();
        checkIpRows();
        $("add-ip").focus();
      } }, "Remove"),
    ),
    el("p", { id: errorId, class: "error ip-error", "aria-live": "polite" }),
  );
  $("ip-rows").append(row);
  numberIpRows();
  input.focus();
}

function numberIpRows() {
  [...$("ip-rows").children].forEach((row, i) => {
    row.querySelector("label").textContent = `Whitelisted IP ${i + 1}`;
  });
}

function ipRows() {
  return [...$("ip-rows").children].map((row) => ({
    input: row.querySelector("input"),
    errorId: row.querySelector(".error").id,
  }));
}

/** Checks every row as the user types: syntax, host bits, and an entry given twice. */
function checkIpRows() {
  const seen = new Map();
  for (const { input, errorId } of ipRows()) {
    if (input.value.trim() === "") {
      fieldError(input, errorId, "");
      continue;
    }
    const checked = checkNet(input.value);
    if (checked.error) {
      fieldError(input, errorId, checked.error, "client");
    } else if (seen.has(checked.net)) {
      fieldError(input, errorId, `${checked.net} is given twice`, "client");
    } else {
      seen.set(checked.net, input);
      fieldError(input, errorId, "");
    }
  }
  setError("new-ips-error", "");
}

/** Puts the server's refusal next to what caused it. */
function showGenerateError(e) {
  const field = e.field || "";
  if (field === "name") {
    fieldError($("new-name"), "new-name-error", e.message, "server");
    $("new-name").focus();
  } else if (field === "role" || e.reason === "grants_super_admin") {
    setError("new-roles-error", e.message);
    $("new-roles-error").dataset.source = "server";
    $("roles-dropdown").open = true;
    $("roles-summary").focus();
  } else if (field === "network") {
    // The message names the entry as given, or in its canonical form.
    const culprit = ipRows().find(({ input }) => {
      const raw = input.value.trim();
      const canonical = checkNet(raw).net;
      return raw && (e.message.includes(raw) || (canonical && e.message.includes(canonical)));
    });
    if (culprit) {
      fieldError(culprit.input, culprit.errorId, e.message, "server");
      culprit.input.focus();
    } else {
      setError("new-ips-error", e.message);
      $("new-ips-error").dataset.source = "server";
    }
  } else if (field === "expires_in" || field === "expires_at") {
    fieldError($("new-expiry"), "new-expiry-error", e.message, "server");
  } else if (field === "actor" || e.reason === "grants_for_another") {
    fieldError($("new-person"), "new-person-error", e.message, "server");
  } else if (field === "external_id") {
    fieldError($("new-external-id"), "new-external-id-error", e.message, "server");
  } else if (field === "meta") {
    fieldError($("new-meta"), "new-meta-error", e.message, "server");
  } else {
    setError("generate-error", e.message);
    $("generate-error").dataset.source = "server";
  }
}

async function generate(event) {
  event.preventDefault();
  for (const error of $("generate-form").querySelectorAll(".error")) error.textContent = "";
  const days = $("new-expiry").value;
  const body = {
    name: $("new-name").value,
    roles: selectedRoles(),
    ips: ipRows().map(({ input }) => input.value.trim()).filter((v) => v !== ""),
  };
  // Counted by the server's clock, not this computer's.
  if (days) body.expires_in = `${days}d`;
  const person = $("new-person").value.trim();
  if (person) body.actor = person;
  const externalId = $("new-external-id").value.trim();
  if (externalId) body.external_id = externalId;
  const meta = $("new-meta").value.trim();
  if (meta) {
    try {
      body.meta = JSON.parse(meta);
    } catch {
      fieldError($("new-meta"), "new-meta-error", "is not JSON", "page");
      $("new-meta").focus();
      return;
    }
  }
  // The server decides: even an entry this page flags is sent, so its reason is the one shown.
  await busy($("save"), async () => {
    let created;
    try {
      created = await api("POST", "/v1/keys", { json: body });
    } catch (e) {
      showGenerateError(e);
      return;
    }
    $("generate-dialog").close();
    $("generate-form").reset();
    $("ip-rows").replaceChildren();
    showSecret(created.key, `For “${created.name}” (${created.id}), with roles ${created.roles.join(", ")}.`);
    await loadKeys();
  });
}

// ---------------------------------------------------------------------------------------
// The one-time dialog: the only place a secret is ever written into the page

function showSecret(secret, about) {
  $("secret-for").textContent = about;
  $("secret-value").value = secret;
  $("copy-status").textContent = "";
  openDialog($("secret-dialog"));
  $("secret-value").focus();
  $("secret-value").select();
}

function forgetSecret() {
  $("secret-value").value = "";
  $("copy-status").textContent = "";
}

async function copySecret() {
  const input = $("secret-value");
  try {
    await navigator.clipboard.writeText(input.value);
    $("copy-status").textContent = "Copied to the clipboard.";
  } catch (_) {
    input.focus();
    input.select();
    const copied = document.execCommand && document.execCommand("copy");
    $("copy-status").textContent = copied
      ? "Copied to the clipboard."
      : "This browser refused the clipboard: the key is selected, press Ctrl+C (⌘C) to copy it.";
  }
}

// ---------------------------------------------------------------------------------------
// The audit trail

function renderAuditKeyChoices() {
  const select = $("audit-key");
  const current = select.value;
  const options = state.keys.map((k) => el("option", { value: k.id, text: `${k.name} (${k.id})` }));
  select.replaceChildren(el("option", { value: "", text: "Any key" }), ...options);
  select.value = state.keys.some((k) => k.id === current) ? current : "";
}

/** The audit trail's query for the filters chosen: newest first, a page at a time. */
function auditQuery(refused) {
  const params = new URLSearchParams();
  if ($("audit-key").value) params.set("key", $("audit-key").value);
  if ($("audit-actor").value.trim()) params.set("actor", $("audit-actor").value.trim());
  if (!refused && $("audit-kind").value) params.set("kind", $("audit-kind").value);
  // The security trail is short (the server keeps its latest attempts): it comes whole.
  if (refused) params.set("refused", "true");
  if (refused) params.set("unpaged", "true");
  else {
    params.set("order", "newest");
    params.set("limit", String(PAGE));
  }
  return params.toString();
}

async function loadAudit(event) {
  if (event) event.preventDefault();
  const refused = $("audit-refused").checked;
  const query = auditQuery(refused);
  let entries;
  let next = null;
  try {
    if (refused) {
      entries = (await api("GET", `/v1/audit?${query}`, { lines: true })).reverse();
    } else {
      const page = await api("GET", `/v1/audit?${query}`);
      entries = page.entries;
      next = page.next;
    }
    setError("audit-error", "");
  } catch (e) {
    setError("audit-error", `The audit trail could not be loaded: ${e.message}`);
    return;
  }
  if (query !== auditQuery(refused)) return;
  state.auditQuery = query;
  state.auditNext = next;
  state.auditRefused = refused;
  const rows = auditRows(entries, refused);
  const [shown, hidden] = refused ? ["refused-table", "audit-table"] : ["audit-table", "refused-table"];
  $(shown).tBodies[0].replaceChildren(...rows);
  $(shown).hidden = rows.length === 0;
  $(hidden).hidden = true;
  $("audit-empty").hidden = rows.length !== 0;
  $("audit-more").hidden = !next;
}

/** The next page of the audit trail, older than the entries shown. */
async function loadMoreAudit(event) {
  if (!state.auditNext || state.auditRefused) return;
  await busy(event.currentTarget, async () => {
    const query = state.auditQuery;
    let page;
    try {
      page = await api("GET", `/v1/audit?${query}&cursor=${encodeURIComponent(state.auditNext)}`);
      setError("audit-error", "");
    } catch (e) {
      setError("audit-error", `More entries could not be loaded: ${e.message}`);
      return;
    }
    if (query !== state.auditQuery) return;
    state.auditNext = page.next;
    $("audit-table").tBodies[0].append(...auditRows(page.entries, false));
    $("audit-more").hidden = !page.next;
  });
}

/** Table rows for audit entries, or for refused attempts. */
function auditRows(entries, refused) {
  const names = new Map(state.keys.map((k) => [k.id, k.name]));
  const keyCell = (label, id, name) =>
    cell(label, id ? [name || names.get(id) || "", el("span", { class: "sub mono", text: id })] : el("span", { class: "none", text: "(a new key)" }));
  const actorCell = (label, actor, role) => cell(label, actor, el("span", { class: "sub", text: role }));
  // A person's revocation names a person, not a key.
  const personCell = (label, person) => cell(label, [person || "", el("span", { class: "sub", text: "(a person)" })]);
  const via = (label, id) =>
    cell(label, id ? [names.get(id) || "", el("span", { class: "sub mono", text: id })] : el("span", { class: "none", text: "—" }));
  if (refused) {
    return entries.map((a) =>
      el(
        "tr",
        {},
        cell("Time (UTC)", time(a.at)),
        actorCell("Actor", a.actor, a.actor_role),
        cell("Tried", a.action),
        a.action === "revoke_actor" ? personCell("Key", a.person) : keyCell("Key", a.key_id),
        cell("Why refused", a.message || a.reason),
        via("Via key", a.via),
      ),
    );
  }
  return entries.map((e) =>
    el(
      "tr",
      { "data-kind": e.kind },
      cell("#", String(e.seq)),
      cell("Time (UTC)", time(e.at)),
      actorCell("Actor", e.actor, e.actor_role),
      cell("Event", e.kind),
      e.kind === "actor_revoked" ? personCell("Key", e.person) : keyCell("Key", e.key_id, e.key_name),
      cell("Detail", auditDetail(e)),
      via("Via key", e.via),
    ),
  );
}

function auditDetail(e) {
  if (e.kind === "actor_revoked") {
    return `revoked ${e.person}: their admin keys${e.with_keys ? " and every key they made" : ""}`;
  }
  if (e.person && e.person !== e.actor) return `admin key for ${e.person}`;
  if (e.kind === "whitelisted" && e.ip) return `added ${shownNet(e.ip)}`;
  if (e.kind === "unwhitelisted" && e.ip) return `removed ${shownNet(e.ip)}`;
  if (e.kind === "rolled" && e.previous_valid_until) {
    return e.previous_valid_until === e.at
      ? "previous secret stopped at once"
      : el("span", {}, "previous secret until ", time(e.previous_valid_until));
  }
  return "";
}

// ---------------------------------------------------------------------------------------
// Usage of one key: requests per hour or day, accepted and rejected, and its tightest
// rate limit scaled to the bucket

let usageKeyId = null;
const SVG_NS = "http://www.w3.org/2000/svg";
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 };
const BUCKET_SECONDS = { hour: 3600, day: 86400 };

/** An SVG element with attributes and children. */
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  node.append(...children);
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
    setError("usage-error", `The usage could not be loaded: ${e.message}`);
    return;
  }
  if (id !== usageKeyId) return;
  const key = state.keys.find((k) => k.id === id);
  renderUsage(usage, tightestLimit(key && key.rate_limits, granularity));
}

function renderUsage(usage, limit) {
  const buckets = usage.buckets;
  const rejected = (b) => Object.values(b.rejected).reduce((a, n) => a + n, 0);
  const [width, height, left, bottom, top] = [720, 240, 44, 22, 10];
  const highest = Math.max(1, limit ? limit.perBucket : 0, ...buckets.map((b) => b.accepted + rejected(b)));
  const plot = height - bottom - top;
  const y = (n) => top + plot - (n / highest) * plot;
  const step = (width - left) / Math.max(1, buckets.length);
  const barWidth = Math.max(1, step * 0.7);
  const label = (b) => (usage.granularity === "day" ? b.start.slice(5, 10) : b.start.slice(11, 16));
  const bars = buckets.map((b, i) => {
    const x = left + i * step + (step - barWidth) / 2;
    const no = rejected(b);
    const reasons = Object.entries(b.rejected).map(([r, n]) => `${n} ${r}`).join(", ");
    const title = `${b.start}: ${b.accepted} accepted, ${no} rejected${reasons ? ` (${reasons})` : ""}`;
    return svg(
      "g",
      { class: "bucket", "data-start": b.start },
      svg("title", { text: title }),
      svg("rect", { class: "bar-accepted", x, y: y(b.accepted), width: barWidth, height: y(0) - y(b.accepted), "data-count": b.accepted }),
      svg("rect", { class: "bar-rejected", x, y: y(b.accepted + no), width: barWidth, height: y(b.accepted) - y(b.accepted + no), "data-count": no }),
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
  const totalRejected = buckets.reduce((a, b) => a + rejected(b), 0);
  const summary = `${total} accepted and ${totalRejected} rejected requests, one bar per ${usage.granularity}`;
  $("usage-chart").replaceChildren(
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary }, ...parts),
  );
  $("usage-summary").textContent = `${summary}.`;
  $("usage-limit-legend").hidden = !limit;
  $("usage-limit-text").textContent = limit ? `rate limit ${limit.name}: ${+limit.perBucket.toFixed(2)} per ${usage.granularity}` : "";
}

// ---------------------------------------------------------------------------------------

function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", () => route(true));

  $("key-search").addEventListener("input", searchKeys);
  $("key-status").addEventListener("change", loadKeys);
  $("keys-more").addEventListener("click", loadMoreKeys);
  $("audit-more").addEventListener("click", loadMoreAudit);
  $("key-filters").addEventListener("submit", (e) => e.preventDefault());

  $("generate").addEventListener("click", openGenerate);
  $("generate-form").addEventListener("submit", generate);
  $("add-role").addEventListener("click", addRole);
  $("new-role").addEventListener("input", checkRoleInput);
  $("new-role").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      addRole();
    }
  });
  $("new-name").addEventListener("input", () => fieldError($("new-name"), "new-name-error", ""));
  $("add-ip").addEventListener("click", addIpRow);

  $("confirm-form").addEventListener("submit", confirmed);
  $("whitelist-form").addEventListener("submit", addNet);
  $("whitelist-add").addEventListener("input", () => {
    const value = $("whitelist-add").value;
    const checked = value.trim() ? checkNet(value) : {};
    fieldError($("whitelist-add"), "whitelist-add-error", checked.error || "", checked.error ? "client" : null);
  });

  $("copy-secret").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", () => {
    forgetSecret();
    $("secret-dialog").close();
  });
  // Closing the one-time dialog by any other means (Escape) forgets the secret too.
  $("secret-dialog").addEventListener("close", forgetSecret);

  for (const dialog of document.querySelectorAll("dialog")) {
    for (const cancel of dialog.querySelectorAll("button.cancel")) {
      cancel.addEventListener("click", () => dialog.close());
    }
  }
  $("confirm-dialog").addEventListener("close", () => {
    pending = null;
  });

  $("usage-granularity").addEventListener("change", loadUsage);

  $("audit-filters").addEventListener("submit", loadAudit);
  $("audit-refused").addEventListener("change", () => {
    $("audit-kind").disabled = $("audit-refused").checked;
    loadAudit();
  });
  for (const id of ["audit-key", "audit-kind"]) $(id).addEventListener("change", () => loadAudit());

  if (sessionStorage.getItem(STORAGE_KEY)) enter();
  else showSignIn();
}

start();
