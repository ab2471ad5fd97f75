// The open room's people: members with their roles (and, in a public room, who
// else is online there), an invite box for a private room's owner and moderators,
// per-person actions where the caller's role allows them, and the Leave button.
// The buttons follow the caller's role in the room; the server checks again, and
// a refusal (403) is shown in its words.

import { api } from "./api.js";
import { $, el, setList } from "./view.js";

const ROLE_ORDER = { owner: 0, moderator: 1, member: 2 };

// What a caller with role `mine` may do to someone whose role is `theirs` (null:
// not a member, only seen online in a public room), as SPEC 10 says.
export function allowedOver(mine, theirs) {
  const staff = mine === "owner" || mine === "moderator";
  return {
    moderate: staff && theirs !== "owner" && (mine === "owner" || theirs !== "moderator"),
    setRole: mine === "owner" && theirs !== "owner",
  };
}

export class MemberPanel {
  // hooks: authed(call, onError), me() -> USER, openDirect({ userId } | { userName }),
  // left(room): the caller has left `room`.
  constructor(hooks) {
    this.h = hooks;
    this.room = null; // { id, name, visibility }
    this.members = [];
    this.online = [];
    this.shown = "";
    $("invite-form").addEventListener("submit", (event) => this.invite(event));
    $("leave").addEventListener("click", () => this.leave());
    $("members-toggle").addEventListener("click", () => this.fold());
  }

  show(room) {
    this.room = room;
    this.members = [];
    this.online = [];
    this.shown = "";
    this.note("");
    setList($("members"), []);
    $("members-panel").hidden = false;
    this.refresh();
  }

  hide() {
    this.room = null;
    setList($("members"), []);
    $("members-panel").hidden = true;
    $("leave").hidden = $("invite-form").hidden = true;
    this.fold(false);
    this.note("");
  }

  // Phone width: the list folds away behind the Members button.
  fold(open = !$("chat-view").classList.contains("members-open")) {
    $("chat-view").classList.toggle("members-open", open);
    $("members-toggle").setAttribute("aria-expanded", String(open));
  }

  setOnline(users) {
    this.online = users;
    this.render();
  }

  async refresh() {
    const current = this.room;
    if (!current) return;
    const data = await this.h.authed((t) => api.members(t, current.id), (m) => this.note(m, true));
    if (!data || this.room !== current) return;
    this.members = data.members;
    this.render();
  }

  myRole() {
    const me = this.h.me().ID;
    return this.members.find((m) => m.user.ID === me)?.role ?? null;
  }

  note(text, isError = false) {
    const node = $("members-note");
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  // Everyone to list: members by role, then (public rooms) the others online, by name.
  people() {
    const known = new Set(this.members.map((m) => m.user.ID));
    const sorted = [...this.members].sort(
      (a, b) =>
        ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || a.user.UserName.localeCompare(b.user.UserName),
    );
    const visitors = this.online
      .filter((u) => !known.has(u.ID))
      .sort((a, b) => a.UserName.localeCompare(b.UserName))
      .map((u) => ({ user: { ID: u.ID, UserName: u.UserName }, role: null }));
    return this.room.visibility === "public" ? [...sorted, ...visitors] : sorted;
  }

  render() {
    if (!this.room) return;
    const mine = this.myRole();
    const people = this.people();
    // Re-render only on a change, so an open action menu and the focus stay put.
    const shape = JSON.stringify([mine, people.map((p) => [p.user.ID, p.user.UserName, p.role])]);
    if (shape === this.shown) return;
    this.shown = shape;
    const list = $("members");
    const open = new Set([...list.querySelectorAll("details[open]")].map((d) => d.dataset.user));
    setList(list, people.map((p) => this.item(p, mine, open.has(String(p.user.ID)))));
    const { visibility } = this.room;
    $("invite-form").hidden = !(visibility === "private" && ["owner", "moderator"].includes(mine));
    // Not the owner (who deletes instead), and not a public room's visitor: the
    // server would answer 204 and change nothing. Nobody leaves a direct room.
    $("leave").hidden = !(visibility !== "direct" && ["member", "moderator"].includes(mine));
  }

  item({ user, role }, mine, wasOpen) {
    const item = el("li", "member");
    const space = () => document.createTextNode(" ");
    const line = [el("span", "who", user.UserName), space(), el("span", "role", role ?? "visitor")];
    if (user.ID === this.h.me().ID) {
      item.append(...line, space(), el("span", "you", "(you)"));
      return item;
    }
    const actions = this.actions(user, role, mine);
    if (!actions.length) {
      item.append(...line);
      return item;
    }
    const details = el("details");
    details.dataset.user = String(user.ID);
    details.open = wasOpen;
    const summary = el("summary");
    summary.append(...line);
    const box = el("div", "member-actions");
    box.append(...actions);
    details.append(summary, box);
    item.append(details);
    return item;
  }

  actions(user, role, mine) {
    if (this.room.visibility === "direct") return []; // the two of you, nothing to do
    const name = user.UserName;
    const id = this.room.id;
    const button = (label, onClick, danger = false) => {
      const node = el("button", danger ? "small danger" : "small", label);
      node.type = "button";
      node.setAttribute("aria-label", `${label} ${name}`);
      node.addEventListener("click", onClick);
      return node;
    };
    const act = (label, call, words, danger = false) =>
      button(label, () => this.act(call, words), danger);
    const may = allowedOver(mine, role);
    const found = [button("Message", () => this.h.openDirect({ userId: user.ID }))];
    if (may.moderate) {
      found.push(
        act("Kick", (t) => api.removeMember(t, id, user.ID), `${name} was removed.`, true),
        act("Ban", (t) => api.ban(t, id, user.ID), `${name} is banned.`, true),
        act("Mute", (t) => api.mute(t, id, user.ID), `${name} is muted.`),
      );
    }
    if (may.setRole) {
      const next = role === "moderator" ? "member" : "moderator";
      const label = next === "moderator" ? "Make moderator" : "Make member";
      found.push(act(label, (t) => api.setRole(t, id, user.ID, next), `${name} is a ${next} now.`));
    }
    return found;
  }

  // One moderation call; `words` go in the note once the server agreed.
  async act(call, words) {
    const current = this.room;
    this.note("");
    if (!(await this.h.authed(call, (m) => this.note(m, true)))) return;
    if (this.room !== current) return;
    this.note(words);
    this.refresh();
  }

  async invite(event) {
    event.preventDefault();
    const current = this.room;
    const input = $("invite-name");
    const name = input.value.trim();
    if (!current || !name) return;
    this.note("");
    const data = await this.h.authed(
      (t) => api.invite(t, current.id, name),
      (m) => this.note(m, true),
    );
    if (!data || this.room !== current) return;
    if (input.value.trim() === name) input.value = "";
    this.note(`${data.member.user.UserName} is a member now.`);
    this.refresh();
  }

  async leave() {
    const current = this.room;
    if (!current) return;
    const me = this.h.me().ID;
    const done = await this.h.authed(
      (t) => api.removeMember(t, current.id, me),
      (m) => this.note(m, true),
    );
    if (done) this.h.left(current);
  }
}
