// The admin API, and its refusals in words.
//
// Every error answer is JSON: {"error": KIND, "message", "field"?, "reason"?, "id"?}. The
// page says what happened from the kind, the reason and the field (and what it sent),
// never by showing the server's message as it is; the message's own reason is kept only
// where it says something the page cannot (why a name or an address was refused).
"use strict";

/** An answer of the admin API other than 2xx, or no answer at all, in words. */
class ApiError extends Error {
  constructor(status, body, request) {
    const b = body && typeof body === "object" ? body : {};
    const said = explain(status, b, request || {});
    super(said.sentence);
    this.status = status;
    this.kind = b.error || null;
    this.field = b.field || null;
    this.reason = b.reason || null;
    this.id = b.id || null;
    this.detail = said.detail || "";
  }
}

// Why the key check refused an admin key (the tower layer's codes), in words.
const KEY_REFUSALS = {
  header_missing: "No admin key was sent.",
  header_repeated: "The admin key was sent twice.",
  header_not_ascii: "This is not a well-formed key: it holds characters keys never hold.",
  header_padded: "This is not a well-formed key: it has spaces around it.",
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
  role_missing: "This key is not an admin key: it holds neither the admin nor the super-admin role.",
  stale: "This server has lost touch with its fleet and refuses keys until it catches up: try again shortly.",
  rate_limited: "This admin key is past one of its rate limits: wait a moment and try again.",
  usage_exceeded: "This admin key has no credits left.",
  unavailable: "The server cannot check keys right now: try again shortly.",
};

// Which rule refused an admin's command (permission_denied's reason), in words; a function
// says it with what the page sent.
const DENIALS = {
  not_an_admin:
    "This key is not an admin key: it holds neither the admin nor the super-admin role, so it " +
    "cannot sign in here (even if whoever made it is an admin). Paste an admin key.",
  grants_super_admin: "Only a super admin may give a key the super-admin role.",
  not_owner: "Only the admin who created this key, or a super admin, may change it.",
  outranks_actor: "This key holds the super-admin role: only a super admin may change it.",
  admin_key_revoked:
    "Your admin key was deleted, disabled or expired, or lost its admin role, so nothing was " +
    "changed. Sign out and sign in with a working admin key.",
  grants_for_another: (json) =>
    `Only a super admin may make an admin key for someone else${json.actor ? ` (here ${json.actor})` : ""}: ` +
    "leave “For person” empty to make one for yourself.",
  revokes_person: "Only a super admin may revoke a person.",
  raises_own_roles: "An admin key may not give itself a role it does not hold.",
};

// What each input the page sends is called, to say which one was refused.
const FIELDS = {
  name: "This name",
  role: "These roles",
  network: "This whitelist entry",
  expires_in: "This expiry",
  expires_at: "This expiry",
  actor: "This person",
  external_id: "This external id",
  meta: "This metadata",
  grace: "This grace period",
  since: "This start date",
  until: "This end date",
  granularity: "This bucket size",
};

// Kinds that mean the store cannot serve at all, whatever was asked.
const STORE_DOWN = new Set([
  "chain_key_mismatch", "locked", "io", "storage", "corrupt", "not_a_store", "witness_mismatch",
  "unsupported_version", "entropy", "stream_unavailable", "stream_diverged", "fleet_halted",
  "stream_changed", "closed", "unsafe_file",
]);

/** The server's reason for a bad input, without its "invalid FIELD: " opening. */
function reasonOf(body) {
  const message = typeof body.message === "string" ? body.message : "";
  const opening = `invalid ${body.field}: `;
  return message.startsWith(opening) ? message.slice(opening.length) : message;
}

/** A clause as a sentence: capital first letter, closing stop. */
function sentence(text) {
  const s = text.trim();
  if (!s) return s;
  const closed = /[.?!]$/.test(s) ? s : `${s}.`;
  return closed[0].toUpperCase() + closed.slice(1);
}

/** A bad input in words, from what the page sent where it can tell more than the server. */
function badInput(body, request) {
  const json = request.json || {};
  const field = body.field;
  const reason = reasonOf(body);
  if (field === "name" && typeof json.name === "string") {
    const n = [...json.name.trim()].length;
    if (n === 0) return "Enter a name for the key.";
    if (n > 100) return `This name has ${n} characters: a name has at most 100.`;
  }
  if (field === "role") {
    const roles = json.roles || json.add_roles;
    if (Array.isArray(roles) && roles.length === 0) return "Choose at least one role: a key needs one.";
  }
  // The server's words for an address are the ones the page shows as it is typed.
  if (field === "network") return sentence(reason);
  if (FIELDS[field]) return `${FIELDS[field]} cannot be used: ${sentence(reason).replace(/^./, (c) => c.toLowerCase())}`;
  return `The server cannot take this request: ${field ? `${field} ` : ""}${sentence(reason).replace(/^./, (c) => c.toLowerCase())}`;
}

/** What a refusal means for the admin: `{sentence, detail}`. */
function explain(status, body, request) {
  const kind = body.error;
  const path = request.path || "";
  const method = request.method || "GET";
  const server = typeof body.message === "string" ? body.message : "";
  if (status === 0) return { sentence: "The server could not be reached. Check your connection and try again." };
  if (kind === "invalid_input") return { sentence: badInput(body, request) };
  if (kind === "unauthorized" || kind === "forbidden") {
    if (KEY_REFUSALS[body.reason]) return { sentence: KEY_REFUSALS[body.reason] };
    return {
      sentence: "This key was refused: it is unknown, expired or disabled, or not valid from your address.",
    };
  }
  if (kind === "permission_denied") {
    const denial = DENIALS[body.reason];
    if (typeof denial === "function") return { sentence: denial(request.json || {}) };
    if (denial) return { sentence: denial };
    return { sentence: "You may not do this.", detail: server };
  }
  if (kind === "key_not_found") return { sentence: "This key does not exist: reload the page to see the keys as they are." };
  if (kind === "key_deleted") return { sentence: "This key has been deleted: a deleted key cannot be changed." };
  if (kind === "whitelist_unchanged") {
    return {
      sentence: method === "DELETE"
        ? "This entry is not on the key's whitelist (any more)."
        : "This entry is already on the key's whitelist.",
    };
  }
  if (kind === "state_unchanged") {
    if (path.endsWith("/enable")) return { sentence: "The key is already enabled." };
    if (path.endsWith("/disable")) return { sentence: "The key is already disabled." };
    if (method === "PATCH") return { sentence: "Nothing to save: the key already has these values." };
    return { sentence: "Nothing changed: the key is already so." };
  }
  if (kind === "last_whitelist_entry") {
    return {
      sentence: "This is the key's last whitelist entry: without it, any address could use the key. " +
        "Tick “Let any address use the key…” to remove it anyway.",
    };
  }
  if (kind === "too_many_requests") {
    return { sentence: "Your admin key is past its rate limit or out of credits: wait a moment and try again." };
  }
  if (kind === "overloaded") return { sentence: "The server is busy with other admin requests: try again in a moment." };
  if (kind === "timeout") return { sentence: "The request took too long to reach the server: try again." };
  if (kind === "internal") return { sentence: "The request failed inside the server: its log says why." };
  if (STORE_DOWN.has(kind)) return { sentence: "The key store cannot take this request right now.", detail: server };
  if (kind === "not_found" || kind === "method_not_allowed") {
    return { sentence: "This server does not offer what the page asked: is it an older keyledger?", detail: server };
  }
  return { sentence: `The server refused this request (HTTP ${status}).`, detail: server || kind || "" };
}

/**
 * Calls the admin API with the signed-in key, or none when a trusted proxy names the
 * admin (serve --admin-user-header): every request carries x-keyledger-csrf, which the
 * server requires of those (a page of another site cannot make a browser send it), and
 * the proxy's own credentials (cookies, basic auth) go with it. `json` is the request
 * body; `lines` reads a JSON Lines answer. Throws ApiError; a 401 also signs out, since
 * the key no longer works, unless `probe` (asking whether the proxy names anyone).
 */
async function api(method, path, { json, lines, key, probe } = {}) {
  const headers = { "x-keyledger-csrf": "1" };
  const admin = key || sessionStorage.getItem(STORAGE_KEY);
  if (admin) headers["x-api-key"] = admin;
  if (json !== undefined) headers["content-type"] = "application/json";
  const request = { method, path, json };
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      cache: "no-store",
      credentials: "same-origin",
      referrerPolicy: "no-referrer",
    });
  } catch (_) {
    throw new ApiError(0, null, request);
  }
  const text = await response.text();
  if (!response.ok) {
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = null;
    }
    const error = new ApiError(response.status, body, request);
    if (response.status === 401 && !key && !probe) signOut(`Signed out: ${error.message}`);
    throw error;
  }
  if (lines) {
    return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
  }
  return text ? JSON.parse(text) : null;
}

const keyPath = (id) => `/v1/keys/${encodeURIComponent(id)}`;
