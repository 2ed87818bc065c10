// One key's dialog: everything about it, and, for a key the signed-in actor may change, its
// name, roles, external id and metadata, saved in one `PATCH /v1/keys/{id}`.
"use strict";

let detailKey = null; // the key shown, as the server last answered it
let editRoles = null; // this dialog's RolePicker, made at start

/** A JSON value with its objects' keys sorted: the server keeps metadata so. */
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical(value[k])]));
  }
  return value;
}

const sameJson = (a, b) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

/** One fact about the key: a term and what it is. */
function fact(term, ...what) {
  return [el("dt", { text: term }), el("dd", {}, ...what)];
}

function facts(k, editable) {
  const none = (text) => el("span", { class: "none", text });
  const status = [el("span", { class: `status status-${k.status}`, text: k.status })];
  if (k.status === "deleted" && k.deleted_by) status.push(" by ", k.deleted_by, " ", time(k.deleted_at));
  else if (k.expires_at) status.push(k.status === "expired" ? " at " : " until ", time(k.expires_at), " UTC");
  const list = [
    fact("Id", el("span", { class: "mono", text: k.id })),
    fact("Status", status),
    fact("Created", `by ${k.created_by} (${k.created_by_role}) `, time(k.created_at), " UTC"),
    k.acts_for && fact("Acts as", k.acts_for),
    fact("Origin", k.imported ? el("span", { class: "tag tag-imported" }, "imported") : "generated here",
      k.imported ? " (adopted from another system)" : ""),
    fact("Hint", hintNode(k)),
    fact("Last used", k.last_used_at ? [time(k.last_used_at), " UTC"] : none("never")),
    fact("Whitelist", k.whitelist.length ? k.whitelist.map((n) => netNode(n)) : none("any address")),
    fact("Rate limits", k.rate_limits.length ? k.rate_limits.map((l) => `${l.limit} per ${l.window}`).join(", ") : none("none")),
    fact("Credits", k.credits
      ? `${k.credits.remaining} left${k.credits.refill ? `, back up to ${k.credits.refill.amount} every ${k.credits.refill.every}` : ""}`
      : none("none")),
  ];
  if (!editable) {
    list.push(
      fact("Roles", k.roles.map((r) => el("span", { class: "chip", text: r }))),
      fact("External id", k.external_id ? el("span", { class: "mono", text: k.external_id }) : none("none")),
      fact("Metadata", k.meta ? el("pre", { class: "mono", text: JSON.stringify(k.meta, null, 2) }) : none("none")),
    );
  }
  return list.filter(Boolean).flat();
}

function openDetails(id) {
  detailKey = state.keys.find((x) => x.id === id);
  if (!detailKey) return;
  clearErrors($("key-form"));
  setError("key-saved", "");
  renderDetails();
  openDialog($("key-dialog"));
  if (mayAct(detailKey)) $("edit-name").focus();
  else $("key-dialog").querySelector("button.cancel").focus();
}

function renderDetails() {
  const k = detailKey;
  const editable = mayAct(k);
  $("key-title").textContent = `Key “${k.name}”`;
  $("key-facts").replaceChildren(...facts(k, editable));
  $("key-edit").hidden = !editable;
  $("key-save").hidden = !editable;
  $("key-readonly").hidden = editable;
  $("key-readonly").textContent = editable ? "" : `You may not change this key: ${whyNot(k)}.`;
  if (!editable) return;
  $("edit-name").value = k.name;
  editRoles.render(k.roles);
  $("edit-external-id").value = k.external_id || "";
  $("edit-meta").value = k.meta ? JSON.stringify(k.meta, null, 2) : "";
}

/** What the form changes, as `PATCH`'s body; null (with the reason shown) if it cannot be sent. */
function changes(k) {
  const change = {};
  const name = $("edit-name").value;
  if (name.trim() !== k.name) change.name = name;
  const roles = editRoles.roles();
  if (roles === null) return null;
  if (roles.length !== k.roles.length || roles.some((r) => !k.roles.includes(r))) change.roles = roles;
  const externalId = $("edit-external-id").value.trim();
  if (externalId !== (k.external_id || "")) change.external_id = externalId || null;
  const meta = metaOf($("edit-meta"), "edit-meta-error");
  if (meta === undefined) return null;
  if (!sameJson(meta, k.meta || null)) change.meta = meta;
  return change;
}

/** Puts the server's refusal next to what caused it. */
function showEditError(e) {
  if (e.field === "name") fieldError($("edit-name"), "edit-name-error", e, "server");
  else if (e.field === "role" || e.reason === "grants_super_admin" || e.reason === "raises_own_roles") editRoles.refused(e);
  else if (e.field === "external_id") fieldError($("edit-external-id"), "edit-external-id-error", e, "server");
  else if (e.field === "meta") fieldError($("edit-meta"), "edit-meta-error", e, "server");
  else setError("key-error", e);
}

async function saveDetails(event) {
  event.preventDefault();
  const k = detailKey;
  if (!k || !mayAct(k)) return;
  clearErrors($("key-form"));
  setError("key-saved", "");
  const change = changes(k);
  if (change === null) return;
  if (Object.keys(change).length === 0) {
    setError("key-error", "Nothing to save: no field was changed.");
    return;
  }
  await busy($("key-save"), async () => {
    try {
      detailKey = await api("PATCH", keyPath(k.id), { json: change });
    } catch (e) {
      showEditError(e);
      return;
    }
    renderDetails();
    setError("key-saved", "Saved.");
    await loadKeys();
  });
}
