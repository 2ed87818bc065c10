// Signing in and out, navigation between #keys and #audit, and the wiring: loaded last, it
// starts the page.
"use strict";

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
      fieldError(input, "admin-key-error", e);
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
  // A secret on show stays (a 401 can come while it is): it goes as it always does, once
  // copied or let go.
  for (const dialog of document.querySelectorAll("dialog")) {
    if (dialog.open && dialog.id !== "secret-dialog") dialog.close();
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
  setError("admin-key-error", "");
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
  if (state.me.actor_role === SUPER_ADMIN) return true;
  // An admin may not change a key that holds super-admin, even one made under its own id.
  return key.created_by === state.me.actor && !key.roles.includes(SUPER_ADMIN);
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

function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", () => route(true));

  $("key-search").addEventListener("input", searchKeys);
  $("key-status").addEventListener("change", loadKeys);
  $("keys-more").addEventListener("click", loadMoreKeys);
  $("audit-more").addEventListener("click", loadMoreAudit);
  $("key-filters").addEventListener("submit", (e) => e.preventDefault());

  newRoles = new RolePicker({
    prefix: "role", dropdown: "roles-dropdown", summary: "roles-summary", options: "role-options",
    input: "new-role", add: "add-role", error: "new-role-error", listError: "new-roles-error",
  });
  editRoles = new RolePicker({
    prefix: "edit-role", dropdown: "edit-roles-dropdown", summary: "edit-roles-summary", options: "edit-role-options",
    input: "edit-role", add: "edit-add-role", error: "edit-role-error", listError: "edit-roles-error",
  });
  $("generate").addEventListener("click", openGenerate);
  $("generate-form").addEventListener("submit", generate);
  $("new-name").addEventListener("input", () => fieldError($("new-name"), "new-name-error", ""));
  $("add-ip").addEventListener("click", addIpRow);
  $("key-form").addEventListener("submit", saveDetails);

  $("confirm-form").addEventListener("submit", confirmed);
  $("whitelist-form").addEventListener("submit", addNet);
  $("whitelist-add").addEventListener("input", () => {
    const value = $("whitelist-add").value;
    const checked = value.trim() ? checkNet(value) : {};
    fieldError($("whitelist-add"), "whitelist-add-error", checked.error || "", checked.error ? "client" : null);
  });

  wireSecretDialog();

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
  for (const id of ["audit-key", "audit-kind", "audit-since", "audit-until"]) $(id).addEventListener("change", () => loadAudit());

  if (sessionStorage.getItem(STORAGE_KEY)) enter();
  else
    signedInByProxy().then((named) => {
      if (named === true) return enter();
      showSignIn();
      if (named) setError("admin-key-error", named);
    });
}

/**
 * Whether a trusted proxy in front names the admin (serve --admin-user-header): then the
 * page needs no key, and `GET /v1/whoami` answers who they are, with no key id. `true`;
 * else `false`, or why the server refused the person the proxy named (a 403).
 */
async function signedInByProxy() {
  try {
    const me = await api("GET", "/v1/whoami", { probe: true });
    if (me && me.key_id === null) {
      state.me = me;
      return true;
    }
  } catch (e) {
    // 401: no proxy names anyone here (no key either): the sign-in form, as always.
    if (e.status === 403) return e.message;
  }
  return false;
}

start();
