// One room's live connection, protocol v2 (`v=2`: edits, deletes, typing, read
// markers). When it drops it reconnects with exponential backoff and jitter,
// passing since=<cursor> so the server replays whatever was missed, edits and
// deletes included (and then sends a `recovered` frame). The cursor is the largest
// message ID or eventId seen: an edit or delete has an ID of its own from the same
// sequence, so a client that saw one has seen everything before it.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export class RoomSocket {
  // handlers: cursor() -> number | null, onFrame(frame), onOpen(), onState(state, delayMs),
  // onFailure(code, reason) -> Promise<boolean> (false: stop trying, e.g. the room is gone;
  // code and reason are the close frame's, or 0 and "" when refused before the upgrade)
  constructor(roomId, token, handlers) {
    this.roomId = roomId;
    this.token = token;
    this.h = handlers;
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.stopped = false;
    // The browser tells us when the network goes and comes back: a socket may not
    // notice a dead network for a long time, so drop it now and retry at once later.
    this.goneOffline = () => this.detach("offline");
    this.backOnline = () => this.retryNow();
    window.addEventListener("offline", this.goneOffline);
    window.addEventListener("online", this.backOnline);
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.ws) return;
    if (!navigator.onLine) {
      this.h.onState("offline");
      return;
    }
    const query = new URLSearchParams({ room_id: this.roomId, jwt: this.token, v: "2" });
    const since = this.h.cursor();
    if (since !== null) query.set("since", since);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws?${query}`);
    this.ws = ws;
    let opened = false;
    this.h.onState(this.attempt ? "reconnecting" : "connecting");
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.h.onState("online");
      this.h.onOpen();
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame.Event === "string") this.h.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closed(opened ? event.code : 0, opened ? event.reason : "", opened);
    };
  }

  async closed(code, reason, opened) {
    if (this.stopped) return;
    this.h.onState("reconnecting");
    // Refused before the upgrade, or closed for a reason: the handler decides.
    if ((!opened || code === 1008 || code === 1001) && !(await this.h.onFailure(code, reason))) {
      this.stop();
      return;
    }
    this.schedule();
  }

  schedule() {
    if (this.stopped || this.timer) return;
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.h.onState("waiting", delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  detach(state) {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close(1000);
    }
    if (!this.stopped) this.h.onState(state);
  }

  retryNow() {
    clearTimeout(this.timer);
    this.timer = null;
    this.attempt = 0;
    this.connect();
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    window.removeEventListener("offline", this.goneOffline);
    window.removeEventListener("online", this.backOnline);
    this.detach("idle");
  }
}
