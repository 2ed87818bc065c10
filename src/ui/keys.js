// The keys table, and the actions on one key: enable; delete, roll and disable after a
// confirmation; its whitelist.
"use strict";

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
    setError("keys-error", e);
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
      setError("keys-error", e);
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

/** A key's hint; an adopted secret outside keyledger's format has none (all of it is secret). */
function hintNode(k) {
  if (k.hint === "…") return el("span", { class: "none", title: "An adopted secret: all of it is secret, so none is shown" }, "none");
  return el("span", { class: "mono hint-cell", text: k.hint });
}

function keyRow(k) {
  const whitelist = k.whitelist.length
    ? k.whitelist.map((n) => netNode(n))
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
    cell(
      "Name",
      el("button", { type: "button", class: "link key-name", "data-action": "details", onclick: () => openDetails(k.id) }, k.name),
      el("span", { class: "sub mono", text: k.id }),
      k.imported && el("span", { class: "tag tag-imported", title: "Adopted from another system, not generated here" }, "imported"),
      owner(k),
    ),
    // A role may have 64 characters: a long one may wrap rather than widen the table.
    cell("Roles", k.roles.map((r) => el("span", { class: r.length > 24 ? "chip long" : "chip", text: r }))),
    cell("Whitelist", whitelist),
    cell("Created (UTC)", el("span", { class: "by" }, "by ", el("strong", { text: k.created_by })), time(k.created_at)),
    cell("Status", status),
    cell(
      "Last used (UTC)",
      k.last_used_at ? time(k.last_used_at) : el("span", { class: "none", text: "never" }),
      el("button", { type: "button", class: "small link", "data-action": "usage", "aria-label": `Usage of “${k.name}”`, onclick: () => openUsage(k.id) }, "Usage"),
    ),
    cell("Hint", hintNode(k)),
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

/** Why the signed-in actor may not change a key, in words. */
function whyNot(k) {
  if (k.status === "deleted") return "it is deleted";
  if (k.roles.includes(SUPER_ADMIN) && k.created_by === state.me.actor) return "it holds super-admin";
  return `it was created by ${k.created_by}`;
}

function actions(k) {
  if (!mayAct(k)) {
    const why = whyNot(k);
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
      error.textContent = `Not enabled. ${e.message}`;
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
      setError("confirm-error", e);
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
      netNode(net, "mono"),
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
      fieldError(input, "whitelist-add-error", e, "server");
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
      setError("whitelist-error", `${shownNet(net)} was not removed. ${e.message}`);
      return;
    }
    await loadKeys();
    renderWhitelist();
    $("whitelist-add").focus();
  });
}
