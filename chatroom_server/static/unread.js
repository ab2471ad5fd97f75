// Unread badges in the room list, and marking the open room read (SPEC 12).
//
// The counts are the room list's `unread`, refreshed on its poll. A `read` event
// (this user read a room in another tab; it reaches every v2 socket of theirs, in
// any room) clears that room's badge at once. The open room shows no badge: it is
// marked read with the v2 `read` frame, naming the newest message shown, when it
// opens, when messages arrive while the tab is visible, and when the tab is shown
// again. Counts and names are ours or numbers: no user text here.

import { el } from "./view.js";

const READ_DELAY_MS = 300; // a burst (a replay after a reconnect) sends one frame
const TITLE = document.title;

export class Unread {
  constructor() {
    this.counts = new Map(); // room ID -> unread messages
    // room ID -> a read marker the server has (or is about to have) that a room
    // list fetched before it does not show yet: that list's count is stale.
    this.readTo = new Map();
    this.openId = null;
  }

  // The room list's counts. A count from before a read we know of is taken as
  // read (once: the next poll asks after the read, and is right).
  fromRooms(rooms) {
    this.counts.clear();
    for (const r of rooms) {
      const known = this.readTo.get(r.ID);
      this.readTo.delete(r.ID);
      const stale = known !== undefined && (r.lastReadId ?? 0) < known;
      this.counts.set(r.ID, stale ? 0 : r.unread ?? 0);
    }
    this.paint();
  }

  // The room was read up to `lastReadId`: here, or elsewhere (a `read` event).
  read(roomId, lastReadId) {
    this.readTo.set(roomId, Math.max(this.readTo.get(roomId) ?? 0, lastReadId));
    this.counts.set(roomId, 0);
    this.paint();
  }

  setOpen(roomId) {
    this.openId = roomId;
    if (roomId !== null) this.counts.set(roomId, 0);
    this.paint();
  }

  // room: the open room ({ id, newest, readTo, socket }). Marks it read up to the
  // newest message shown, if the user can see it and it is not read that far yet.
  markRead(room) {
    if (document.visibilityState !== "visible" || room.readTimer) return;
    room.readTimer = setTimeout(() => {
      room.readTimer = null;
      const newest = room.newest;
      if (newest === null || newest <= room.readTo || this.openId !== room.id) return;
      if (room.socket?.send({ type: "read", lastReadId: newest })) {
        room.readTo = newest;
        this.read(room.id, newest);
      }
    }, READ_DELAY_MS);
  }

  // The badges on the list as drawn now (renderRooms draws it again on a change).
  paint() {
    let total = 0;
    for (const item of document.querySelectorAll("#rooms li, #directs li")) {
      const id = Number(item.dataset.room);
      const count = id === this.openId ? 0 : this.counts.get(id) ?? 0;
      total += count;
      setBadge(item, id, count);
    }
    document.title = total ? `(${total}) ${TITLE}` : TITLE;
  }
}

// A badge beside the room's button, and its words read out after the room's name
// (aria-describedby: the button's name stays the room's name).
function setBadge(item, id, count) {
  const button = item.querySelector("button");
  let badge = item.querySelector(".badge");
  if (!count) {
    badge?.remove();
    button.removeAttribute("aria-describedby");
    return;
  }
  if (!badge) {
    badge = el("span", "badge");
    badge.id = `unread-${id}`;
    item.append(badge);
    button.setAttribute("aria-describedby", badge.id);
  }
  const shown = count > 99 ? "99+" : String(count);
  if (badge.dataset.count === shown) return;
  badge.dataset.count = shown;
  badge.replaceChildren(shown, el("span", "visually-hidden", " unread"));
}
