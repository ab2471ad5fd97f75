// "alice is typing…" under the open room's messages, and the composer's half: a
// `typing` frame while the user types. The server relays at most one per user and
// room every 2 s and never to the typist's own tabs; a name shows for a few
// seconds after its last event, or until that person's message arrives.
// Names are user text: they go in through textContent, set apart from our words.

import { el } from "./view.js";

const SEND_EVERY_MS = 2000; // the server's own period: sending more often is wasted
const SHOW_MS = 4000; // two periods: a steady typist never blinks out

export class TypingLine {
  constructor(node) {
    this.node = node;
    this.typists = new Map(); // user ID -> { name, timer }, in the order they began
  }

  heard(user) {
    const known = this.typists.get(user.ID);
    if (known) clearTimeout(known.timer);
    const timer = setTimeout(() => this.stopped(user.ID), SHOW_MS);
    this.typists.set(user.ID, { name: user.UserName, timer });
    if (!known || known.name !== user.UserName) this.render();
  }

  // Their message arrived, they left, or it has been a while.
  stopped(userId) {
    const known = this.typists.get(userId);
    if (!known) return;
    clearTimeout(known.timer);
    this.typists.delete(userId);
    this.render();
  }

  clear() {
    for (const { timer } of this.typists.values()) clearTimeout(timer);
    this.typists.clear();
    this.render();
  }

  render() {
    const names = [...this.typists.values()].map((t) => t.name);
    const who = (name) => el("span", "who", name);
    const words = (text) => document.createTextNode(text);
    const parts = [];
    if (names.length === 1) parts.push(who(names[0]), words(" is typing…"));
    else if (names.length === 2) {
      parts.push(who(names[0]), words(" and "), who(names[1]), words(" are typing…"));
    } else if (names.length === 3) {
      parts.push(who(names[0]), words(", "), who(names[1]), words(" and "), who(names[2]));
      parts.push(words(" are typing…"));
    } else if (names.length > 3) {
      parts.push(who(names[0]), words(", "), who(names[1]));
      parts.push(words(` and ${names.length - 2} others are typing…`));
    }
    this.node.replaceChildren(...parts);
  }
}

// The composer's side: call typed() on every keystroke that leaves text in the box.
export class TypingSignal {
  constructor(send) {
    this.send = send; // send(frame) -> whether the socket took it
    this.lastSent = 0;
  }

  typed() {
    const now = Date.now();
    if (now - this.lastSent < SEND_EVERY_MS) return;
    if (this.send({ type: "typing" })) this.lastSent = now;
  }

  // A message went out: the next keystroke starts a new burst.
  reset() {
    this.lastSent = 0;
  }
}
