// keyledger's admins' page: Settings › API Keys and the audit trail, over the /v1 admin API.
//
// Classic scripts sharing one global scope, loaded in order (index.html): base.js (the
// state and the DOM helpers), api.js (the API and its errors in words), net.js (whitelist
// entries), roles.js, keys.js, generate.js, detail.js, usage.js, audit.js, and app.js
// (signing in, navigation, and the wiring, which starts the page).
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
  auditQuery: "", // the audit trail's query shown
  auditAsked: "", // the one asked last
  auditNext: null,
  auditRefused: false,
};

const $ = (id) => document.getElementById(id);

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

/**
 * Shows an error in the element `id`: a string, or an ApiError in words, with what the
 * server said under it when that adds something. Empty clears it.
 */
function setError(id, error) {
  const node = $(id);
  if (!error) {
    node.replaceChildren();
    return;
  }
  if (typeof error === "string") {
    node.textContent = error;
    return;
  }
  node.replaceChildren(error.message);
  if (error.detail) node.append(el("span", { class: "detail", text: `The server said: ${error.detail}` }));
}

/** Shows an error next to an input and marks the input invalid (or clears both). */
function fieldError(input, errorId, error, source) {
  setError(errorId, error);
  if (source) $(errorId).dataset.source = source;
  else delete $(errorId).dataset.source;
  if (error) input.setAttribute("aria-invalid", "true");
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

/** Clears a form's errors and invalid marks. */
function clearErrors(form) {
  for (const error of form.querySelectorAll(".error")) {
    error.replaceChildren();
    delete error.dataset.source;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}
