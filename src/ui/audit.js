// The audit trail (newest first, a page at a time), filtered by key, actor, event and
// days; and the refused attempts.
"use strict";

function renderAuditKeyChoices() {
  const select = $("audit-key");
  const current = select.value;
  const options = state.keys.map((k) => el("option", { value: k.id, text: `${k.name} (${k.id})` }));
  select.replaceChildren(el("option", { value: "", text: "Any key" }), ...options);
  select.value = state.keys.some((k) => k.id === current) ? current : "";
}

/**
 * The days chosen, as the server's times: from the first instant of "From" to the last of
 * "To", UTC. Null, with the reason shown, if "To" comes before "From".
 */
function auditDays() {
  const since = $("audit-since").value;
  const until = $("audit-until").value;
  if (since && until && until < since) {
    fieldError($("audit-until"), "audit-dates-error", "“To” is before “From”: choose a later day.", "page");
    return null;
  }
  fieldError($("audit-until"), "audit-dates-error", "");
  return {
    since: since ? `${since}T00:00:00Z` : null,
    until: until ? `${until}T23:59:59.999999999Z` : null,
  };
}

/** The audit trail's query for the filters chosen: newest first, a page at a time. */
function auditQuery(refused, days) {
  const params = new URLSearchParams();
  if ($("audit-key").value) params.set("key", $("audit-key").value);
  if ($("audit-actor").value.trim()) params.set("actor", $("audit-actor").value.trim());
  if (!refused && $("audit-kind").value) params.set("kind", $("audit-kind").value);
  if (days.since) params.set("since", days.since);
  if (days.until) params.set("until", days.until);
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
  const days = auditDays();
  if (!days) return;
  const query = auditQuery(refused, days);
  // A later choice of filters, asked while this one was, wins.
  state.auditAsked = query;
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
    setError("audit-error", e);
    return;
  }
  if (query !== state.auditAsked) return;
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
      setError("audit-error", e);
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
        cell("Why refused", refusedWhy(a)),
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

// Why a command was refused (its rule), short; the server's words for a rule not listed.
const REFUSED_WHY = {
  not_an_admin: () => "the key is not an admin key",
  grants_super_admin: () => "only a super admin may grant super-admin",
  not_owner: (a) => `the key was created by ${a.owner || "another admin"}`,
  outranks_actor: () => "the key holds super-admin",
  admin_key_revoked: () => "the admin key had been revoked",
  grants_for_another: (a) => `an admin key for ${a.person || "someone else"}: only a super admin may`,
  revokes_person: () => "only a super admin may revoke a person",
  raises_own_roles: () => "an admin key may not raise its own roles",
};

function refusedWhy(a) {
  return REFUSED_WHY[a.reason] ? REFUSED_WHY[a.reason](a) : a.message || a.reason;
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
  if (e.kind === "updated" && e.changes) return changed(e.changes);
  if (e.kind === "limits_changed" && e.rate_limits) {
    return e.rate_limits.length ? `rate limits ${e.rate_limits.map((l) => `${l.limit}/${l.window}`).join(", ")}` : "rate limits removed";
  }
  if (e.kind === "credits_set") return e.credits ? `credits set to ${e.credits.remaining}` : "credits removed";
  if (e.kind === "credits_added" && e.credits_added !== null) return `${e.credits_added} credits added`;
  return "";
}

/** What an `updated` entry changed, in words. */
function changed(c) {
  const parts = [];
  if ("name" in c) parts.push(`name “${c.name}”`);
  if ("roles" in c) parts.push(`roles ${c.roles.join(", ")}`);
  if ("external_id" in c) parts.push(c.external_id === null ? "external id removed" : `external id ${c.external_id}`);
  if ("meta" in c) parts.push(c.meta === null ? "metadata removed" : "metadata changed");
  return parts.join("; ");
}
