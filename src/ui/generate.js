// Generate new API key, and the one-time dialog: the only place a secret is ever written
// into the page.
"use strict";

let newRoles = null; // the new key dialog's RolePicker, made at start

function openGenerate() {
  const form = $("generate-form");
  form.reset();
  clearErrors(form);
  $("ip-rows").replaceChildren();
  newRoles.render([]);
  openDialog($("generate-dialog"));
  $("new-name").focus();
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
    fieldError($("new-name"), "new-name-error", e, "server");
    $("new-name").focus();
  } else if (field === "role" || e.reason === "grants_super_admin") {
    newRoles.refused(e);
  } else if (field === "network") {
    // The server names the entry as given, or in its canonical form.
    const said = `${e.message} ${e.detail}`;
    const culprit = ipRows().find(({ input }) => {
      const raw = input.value.trim();
      const canonical = checkNet(raw).net;
      return raw && (said.includes(raw) || (canonical && said.includes(canonical)));
    });
    if (culprit) {
      fieldError(culprit.input, culprit.errorId, e, "server");
      culprit.input.focus();
    } else {
      setError("new-ips-error", e);
      $("new-ips-error").dataset.source = "server";
    }
  } else if (field === "expires_in" || field === "expires_at") {
    fieldError($("new-expiry"), "new-expiry-error", e, "server");
  } else if (field === "actor" || e.reason === "grants_for_another") {
    fieldError($("new-person"), "new-person-error", e, "server");
  } else if (field === "external_id") {
    fieldError($("new-external-id"), "new-external-id-error", e, "server");
  } else if (field === "meta") {
    fieldError($("new-meta"), "new-meta-error", e, "server");
  } else {
    setError("generate-error", e);
    $("generate-error").dataset.source = "server";
  }
}

/** A metadata field's object; undefined (with the reason shown) if it is not JSON. */
function metaOf(input, errorId) {
  const text = input.value.trim();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    fieldError(input, errorId, "This is not JSON: write an object such as {\"plan\": \"pro\"}.", "page");
    input.focus();
    return undefined;
  }
}

async function generate(event) {
  event.preventDefault();
  clearErrors($("generate-form"));
  const roles = newRoles.roles();
  if (roles === null) return;
  const days = $("new-expiry").value;
  const body = {
    name: $("new-name").value,
    roles,
    ips: ipRows().map(({ input }) => input.value.trim()).filter((v) => v !== ""),
  };
  // Counted by the server's clock, not this computer's.
  if (days) body.expires_in = `${days}d`;
  // An admin key acts as the person named; empty, as whoever makes it (the server asks
  // a super admin to name even themself).
  const person = $("new-person").value.trim();
  if (person) body.actor = person;
  else if (roles.includes("admin") || roles.includes(SUPER_ADMIN)) body.actor = state.me.actor;
  const externalId = $("new-external-id").value.trim();
  if (externalId) body.external_id = externalId;
  const meta = metaOf($("new-meta"), "new-meta-error");
  if (meta === undefined) return;
  if (meta !== null) body.meta = meta;
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
// The one-time dialog. It closes only once the secret was copied, or the admin said twice
// that it may go: Done, Escape or any other way of closing first asks.

const secret = {
  copied: false, // the Copy button (or the browser's own copy) took it
  release: false, // the dialog may close now: copied, or the admin said to let it go
};

function showSecret(value, about) {
  secret.copied = false;
  secret.release = false;
  $("secret-for").textContent = about;
  $("secret-value").value = value;
  $("copy-status").textContent = "";
  $("secret-ask").hidden = true;
  $("secret-actions").hidden = false;
  openDialog($("secret-dialog"));
  $("secret-value").focus();
  $("secret-value").select();
}

function forgetSecret() {
  $("secret-value").value = "";
  $("copy-status").textContent = "";
  $("secret-ask").hidden = true;
  $("secret-actions").hidden = false;
}

async function copySecret() {
  const input = $("secret-value");
  try {
    await navigator.clipboard.writeText(input.value);
    secret.copied = true;
    $("copy-status").textContent = "Copied to the clipboard.";
  } catch (_) {
    input.focus();
    input.select();
    const copied = document.execCommand && document.execCommand("copy");
    secret.copied = Boolean(copied);
    $("copy-status").textContent = copied
      ? "Copied to the clipboard."
      : "This browser refused the clipboard: the key is selected, press Ctrl+C (⌘C) to copy it.";
  }
}

/** Done, or Escape: closes if the secret was copied, else asks first. */
function leaveSecret() {
  if (secret.copied) {
    closeSecret();
    return;
  }
  $("secret-actions").hidden = true;
  $("secret-ask").hidden = false;
  $("secret-back").focus();
}

/** Back from the question to the secret. */
function backToSecret() {
  $("secret-ask").hidden = true;
  $("secret-actions").hidden = false;
  $("secret-value").focus();
  $("secret-value").select();
}

/** Closes the dialog, and so forgets the secret. */
function closeSecret() {
  secret.release = true;
  $("secret-dialog").close();
}

function wireSecretDialog() {
  const dialog = $("secret-dialog");
  $("copy-secret").addEventListener("click", copySecret);
  // Ctrl+C on the selected secret counts as copying it.
  $("secret-value").addEventListener("copy", () => {
    secret.copied = true;
    $("copy-status").textContent = "Copied.";
  });
  $("secret-done").addEventListener("click", leaveSecret);
  $("secret-back").addEventListener("click", backToSecret);
  $("secret-discard").addEventListener("click", closeSecret);
  // Escape is the browser's close request: it asks first, as Done does; in the question,
  // it goes back to the secret.
  dialog.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    e.preventDefault();
    if ($("secret-ask").hidden) leaveSecret();
    else backToSecret();
  });
  dialog.addEventListener("cancel", (e) => {
    e.preventDefault();
    leaveSecret();
  });
  // Closed any other way before the admin let it go (a close request the page could not
  // stop): it opens again, asking.
  dialog.addEventListener("close", () => {
    if (secret.release || !$("secret-value").value) {
      forgetSecret();
      return;
    }
    dialog.showModal();
    leaveSecret();
  });
}
