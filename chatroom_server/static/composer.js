// The composer and the messages on their way. Enter (or Send) shows a message at
// once as "sending…" and sends it with a clientMessageId; the server's echo takes
// its place, an error frame marks the oldest one not sent, and after a reconnect
// whatever still waits goes out again (the server ignores repeats). Typing in the
// box sends `typing` frames (typing.js). The pending messages are the open room's
// (`room.pending`: clientMessageId -> { text, item }), in the order they were sent.

import { TypingSignal } from "./typing.js";
import { $, markFailed, pendingItem } from "./view.js";

function newClientId() {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

export class Composer {
  // hooks: room() -> the open room or null, me() -> USER, append(item) to the list,
  // scrollToEnd().
  constructor(hooks) {
    this.h = hooks;
    this.typing = new TypingSignal((frame) => this.h.room()?.socket?.send(frame) ?? false);
    const input = $("message");
    $("send-form").addEventListener("submit", (event) => this.submit(event));
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("send-form").requestSubmit();
      }
    });
    input.addEventListener("input", () => this.h.room() && input.value.trim() && this.typing.typed());
  }

  enable(enabled) {
    $("message").disabled = !enabled;
    $("send-form").querySelector("button").disabled = !enabled;
  }

  submit(event) {
    event.preventDefault();
    const room = this.h.room();
    const input = $("message");
    const text = input.value;
    if (!room || !text.trim()) return;
    const clientMessageId = newClientId();
    const item = pendingItem(text, this.h.me().UserName);
    this.h.append(item);
    room.pending.set(clientMessageId, { text, item });
    room.socket?.send({ chatRoomId: room.id, chatMessage: text, clientMessageId });
    this.typing.reset();
    input.value = "";
    this.h.scrollToEnd();
  }

  // The socket is open (again): what was typed while it was not goes out now.
  resend(room) {
    for (const [clientMessageId, entry] of room.pending) {
      room.socket.send({ chatRoomId: room.id, chatMessage: entry.text, clientMessageId });
    }
  }

  // A `message` frame: if it is one of ours on its way, its line goes (the caller
  // draws the stored one). Whether it was ours.
  confirmed(room, body) {
    const own = room.pending.get(body.clientMessageId);
    if (!own) return false;
    own.item.remove();
    room.pending.delete(body.clientMessageId);
    return true;
  }

  // Frames are handled in order: an error answers our oldest unconfirmed message.
  failed(room, words) {
    const [oldest] = room.pending;
    if (!oldest) return;
    markFailed(oldest[1].item, words);
    room.pending.delete(oldest[0]);
  }
}
