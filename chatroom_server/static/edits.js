// Editing and deleting messages in the open room. One's own messages get Edit (a
// box in place of the text: Enter saves, Shift+Enter is a new line, Escape
// cancels) and Delete; the room's owner and moderators get Delete on everyone's.
// Deleting asks first, in place (a page dialog would block every tab's socket).
// The server decides (the edit window, a mute, a role that changed meanwhile) and a
// refusal is shown in its words. Edits and deletes go through the REST API, so each
// answer belongs to its action; the `edit` and `delete` events that follow (from
// anyone) change the list by message ID, and IDs not shown are ignored.
// User text only ever goes in through textContent.

import { api } from "./api.js";
import { el, markEdited } from "./view.js";

const MAX_CHARS = 4000;
const STAFF = new Set(["owner", "moderator"]);

// What the caller (with `role` in the room) may do to a message by `authorId`, as
// SPEC 12 says; site admins may delete too, but the client does not know who is one.
export function allowedOn(authorId, myId, role) {
  const own = authorId === myId;
  return { edit: own, delete: own || STAFF.has(role) };
}

function smallButton(label, onClick, className = "small") {
  const node = el("button", className, label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

export class MessageEdits {
  // list: the <ol> of messages. hooks: authed(call, onError), me() -> USER,
  // role() -> the caller's role in the open room, or null; error(text): say why a
  // delete was refused.
  constructor(list, hooks) {
    this.list = list;
    this.h = hooks;
  }

  item(id) {
    return this.list.querySelector(`li.msg[data-id="${Number(id)}"]`);
  }

  // The actions a message of the open room gets now; again when the role changes.
  decorate(item) {
    item.querySelector(".msg-actions")?.remove();
    item.querySelector(".confirm")?.remove();
    const may = allowedOn(Number(item.dataset.user), this.h.me().ID, this.h.role());
    if (!may.edit && !may.delete) return;
    const box = el("span", "msg-actions");
    if (may.edit) box.append(smallButton("Edit", () => this.startEdit(item)));
    if (may.delete) box.append(smallButton("Delete", () => this.ask(item), "small danger"));
    box.hidden = item.classList.contains("editing");
    item.querySelector(".meta").append(box);
  }

  refresh() {
    this.list.querySelectorAll("li.msg[data-id]").forEach((item) => this.decorate(item));
  }

  // An `edit` event, or the server's answer to ours: the message's new text. Events
  // carry eventId: one older than what the line shows (a replay) changes nothing.
  applyEdit(msg) {
    const item = this.item(msg.ID);
    if (!item) return;
    const seen = Number(item.dataset.event || 0);
    if (msg.eventId !== undefined && msg.eventId <= seen) return;
    if (msg.eventId !== undefined) item.dataset.event = String(msg.eventId);
    item.querySelector(".text").textContent = msg.chatMessage;
    if (msg.EditedAt) markEdited(item, msg.EditedAt);
  }

  // A `delete` event, or our own delete done: the line goes.
  applyDelete(id) {
    this.item(id)?.remove();
  }

  // ---------------------------------------------------------------- edit

  startEdit(item) {
    const open = item.querySelector(".edit-box textarea");
    if (open) return void open.focus();
    const text = item.querySelector(".text");
    const form = el("form", "edit-box");
    const box = el("textarea");
    box.value = text.textContent;
    box.maxLength = MAX_CHARS;
    box.rows = Math.min(8, Math.max(2, box.value.split("\n").length));
    box.setAttribute("aria-label", "Edit message");
    const error = el("p", "edit-error");
    error.setAttribute("role", "alert");
    const row = el("div", "edit-row");
    const save = el("button", "small", "Save");
    save.type = "submit";
    row.append(
      save,
      smallButton("Cancel", () => this.stopEdit(item)),
      el("span", "edit-hint", "Enter to save, Escape to cancel"),
    );
    form.append(box, row, error);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save(item, form, box.value);
    });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.stopEdit(item);
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    item.classList.add("editing");
    text.hidden = true;
    const actions = item.querySelector(".msg-actions");
    if (actions) actions.hidden = true;
    text.after(form);
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  stopEdit(item) {
    item.querySelector(".edit-box")?.remove();
    item.classList.remove("editing");
    item.querySelector(".text").hidden = false;
    const actions = item.querySelector(".msg-actions");
    if (actions) actions.hidden = false;
    if (item.isConnected) actions?.querySelector("button")?.focus();
  }

  async save(item, form, value) {
    const error = form.querySelector(".edit-error");
    if (!value.trim()) {
      error.textContent = "A message needs some text; delete it instead.";
      return;
    }
    if (value === item.querySelector(".text").textContent) return this.stopEdit(item);
    const controls = form.querySelectorAll("textarea, button");
    controls.forEach((c) => (c.disabled = true));
    error.textContent = "";
    const id = Number(item.dataset.id);
    const data = await this.h.authed(
      (t) => api.editMessage(t, id, value),
      (m) => (error.textContent = m),
    );
    controls.forEach((c) => (c.disabled = false));
    if (!data) return void form.querySelector("textarea").focus();
    this.applyEdit(data.message);
    this.stopEdit(item);
  }

  // ---------------------------------------------------------------- delete

  ask(item) {
    const actions = item.querySelector(".msg-actions");
    if (!actions || item.querySelector(".confirm")) return;
    const confirm = el("span", "confirm");
    confirm.setAttribute("role", "group");
    confirm.setAttribute("aria-label", "Confirm delete");
    const cancel = () => {
      confirm.remove();
      actions.hidden = false;
      actions.querySelector("button.danger")?.focus();
    };
    const keep = smallButton("Cancel", cancel);
    confirm.append(
      el("span", "confirm-words", "Delete for everyone?"),
      smallButton("Yes, delete", () => this.remove(item, confirm, cancel), "small danger"),
      keep,
    );
    confirm.addEventListener("keydown", (event) => event.key === "Escape" && cancel());
    actions.hidden = true;
    actions.after(confirm);
    keep.focus();
  }

  async remove(item, confirm, cancel) {
    confirm.querySelectorAll("button").forEach((b) => (b.disabled = true));
    const id = Number(item.dataset.id);
    const done = await this.h.authed((t) => api.deleteMessage(t, id), this.h.error);
    if (done) this.applyDelete(id);
    else if (item.isConnected) cancel();
  }
}
