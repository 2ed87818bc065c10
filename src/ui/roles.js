// Choosing a key's roles (in the new key dialog and the key's own dialog): the roles in use
// as checkboxes, and another one typed in. Only roles the signed-in actor may grant are
// offered: `super-admin` to a super admin only, as the server decides.
"use strict";

const ROLE_RE = /^[a-z0-9_-]{1,64}$/;
const SUPER_ADMIN = "super-admin";

/** Whether the signed-in actor may give a key this role. */
function mayGrant(role) {
  return role !== SUPER_ADMIN || (state.me !== null && state.me.actor_role === SUPER_ADMIN);
}

/** Why `role` cannot be added, in words, or null. */
function roleProblem(role) {
  if (!role) return "Type a role to add.";
  if (!ROLE_RE.test(role)) return `${JSON.stringify(role)} may only use a-z, 0-9, - and _ (1 to 64 characters).`;
  if (!mayGrant(role)) return "Only a super admin may give a key the super-admin role.";
  return null;
}

class RolePicker {
  /**
   * `ids`: the element ids of the dropdown (`details`), its `summary`, the `options`
   * box, the typed role's `input`, its `add` button, its `error`, and the error about
   * the roles as a whole (`listError`); `prefix` names the checkboxes.
   */
  constructor(ids) {
    this.ids = ids;
    $(ids.add).addEventListener("click", () => this.add(false));
    $(ids.input).addEventListener("input", () => this.check());
    $(ids.input).addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.add(false);
      }
    });
  }

  /** The roles in use that the actor may grant, as checkboxes; `checked` stay checked. */
  render(checked) {
    const roles = new Set(checked);
    for (const k of state.keys) {
      if (k.status === "deleted") continue;
      for (const r of k.roles) if (mayGrant(r)) roles.add(r);
    }
    const options = [...roles].sort().map((role) => {
      const id = `${this.ids.prefix}-${role}`;
      return el(
        "div",
        { class: "field check" },
        el("input", { type: "checkbox", id, value: role, checked: checked.includes(role), onchange: () => this.summarize() }),
        el("label", { for: id, text: role }),
      );
    });
    $(this.ids.options).replaceChildren(...options);
    if (!options.length) $(this.ids.options).append(el("p", { class: "hint", text: "No roles in use yet: add one below." }));
    $(this.ids.input).value = "";
    fieldError($(this.ids.input), this.ids.error, "");
    this.summarize();
  }

  selected() {
    return [...$(this.ids.options).querySelectorAll("input:checked")].map((i) => i.value);
  }

  summarize() {
    const roles = this.selected();
    $(this.ids.summary).textContent = roles.length ? `${roles.join(", ")} (${roles.length} selected)` : "Select roles";
    if (roles.length) setError(this.ids.listError, "");
  }

  /** Checks the role as it is typed. */
  check() {
    const role = $(this.ids.input).value.trim();
    const problem = role ? roleProblem(role) : null;
    fieldError($(this.ids.input), this.ids.error, problem || "", problem ? "client" : null);
  }

  /**
   * Adds the typed role, checked, and (unless `saving`) stays there for another; false
   * (with the reason shown) if it cannot be.
   */
  add(saving) {
    const input = $(this.ids.input);
    const role = input.value.trim();
    const problem = roleProblem(role);
    if (problem) {
      fieldError(input, this.ids.error, problem, "client");
      input.focus();
      return false;
    }
    this.render([...new Set([...this.selected(), role])]);
    if (!saving) {
      $(this.ids.dropdown).open = true;
      input.focus();
    }
    return true;
  }

  /**
   * The roles to save: those checked, and one typed but not added yet (whoever typed it
   * meant it). Null, with the reason shown, if that typed one cannot be used.
   */
  roles() {
    if ($(this.ids.input).value.trim() && !this.add(true)) return null;
    return this.selected();
  }

  /** Shows the server's refusal of the roles. */
  refused(error) {
    setError(this.ids.listError, error);
    $(this.ids.listError).dataset.source = "server";
    $(this.ids.dropdown).open = true;
    $(this.ids.summary).focus();
  }
}
