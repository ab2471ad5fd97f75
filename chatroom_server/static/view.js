// Small DOM helpers. User text only ever goes in through textContent.

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function parseTime(ts) {
  // Microseconds are more than Date needs: keep milliseconds.
  const date = new Date(String(ts).replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(date.getTime()) ? null : date;
}

function timeElement(ts) {
  const node = el("time", "time");
  const date = parseTime(ts);
  if (!date) return node;
  const sameDay = date.toDateString() === new Date().toDateString();
  const clock = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  node.textContent = sameDay ? clock : `${date.toLocaleDateString()} ${clock}`;
  node.dateTime = date.toISOString();
  node.title = date.toLocaleString();
  return node;
}

export function messageItem(msg, own) {
  const item = el("li", own ? "msg own" : "msg");
  item.dataset.id = String(msg.ID);
  item.dataset.user = String(msg.chatUserId);
  const meta = el("div", "meta");
  meta.append(el("span", "author", msg.chatUser), timeElement(msg.ChatMessageTs));
  item.append(meta, el("p", "text", msg.chatMessage));
  if (msg.EditedAt) markEdited(item, msg.EditedAt);
  return item;
}

// "(edited)" after the message's time, its title saying when.
export function markEdited(item, editedAt) {
  let mark = item.querySelector(".edited");
  if (!mark) {
    mark = el("span", "edited", "(edited)");
    item.querySelector(".meta .time").after(mark);
  }
  const date = parseTime(editedAt);
  if (date) mark.title = `Edited ${date.toLocaleString()}`;
}

export function pendingItem(text, author) {
  const item = el("li", "msg own pending");
  const meta = el("div", "meta");
  meta.append(el("span", "author", author), el("span", "time", "sending…"));
  item.append(meta, el("p", "text", text));
  return item;
}

export function markFailed(item, reason) {
  item.classList.replace("pending", "failed");
  item.querySelector(".time").textContent = `not sent: ${reason}`;
}

// Lines of the client's own words (never text from the server or a user).
export function systemItem(text) {
  return el("li", "system", text);
}

// A join or leave line, built here from the frame's structured fields: the name is
// set apart in its own element and the words are ours, so neither a message nor a
// name like "Server: session expired, log in at ..." can pass for a system line.
export function presenceItem(event, name) {
  const item = el("li", "system presence");
  const words = event === "join" ? " joined" : " left";
  item.append(el("span", "who", name), document.createTextNode(words));
  return item;
}

export function setList(list, items) {
  list.replaceChildren(...items);
}

const STATUS = {
  idle: "Not connected",
  connecting: "Connecting…",
  online: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline: will reconnect when the network is back",
};

// The connection line in the top bar; `delay` (ms) for "waiting".
export function setStatus(state, delay) {
  const node = $("status");
  node.dataset.state = state;
  node.textContent =
    state === "waiting" ? `Disconnected: retrying in ${Math.ceil(delay / 1000)} s` : STATUS[state];
}
