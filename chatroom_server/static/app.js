// The chat client: sign-in, rooms, one open room with history, live messages,
// presence and reconnection. Uses only the public REST API and websocket (v2).
// members.js draws the open room's people, roomlist.js the list of rooms,
// unread.js its badges; edits.js edits and deletes messages, typing.js says who types.

import { api, loadSession, saveSession } from "./api.js";
import { onSignIn } from "./auth.js";
import { Composer } from "./composer.js";
import { MessageEdits } from "./edits.js";
import { MemberPanel } from "./members.js";
import { endingWords, renderRooms, roomKind, roomLabel } from "./roomlist.js";
import { RoomSocket } from "./socket.js";
import { TypingLine } from "./typing.js";
import { Unread } from "./unread.js";
import { $, el, messageItem, presenceItem, setList, setStatus, systemItem } from "./view.js";

const PAGE = 50;
const ROOM_POLL_MS = 5000;

let session = loadSession(); // { token, user }
let rooms = [];
let shownRooms = "";
let roomPoll = null;
let room = null; // the open room: { id, name, visibility, socket, ids, oldest, newest, ... }

const list = $("messages");
const scroller = $("scroller");
const unread = new Unread();
const typing = new TypingLine($("typing"));
const composer = new Composer({
  room: () => room,
  me: () => session.user,
  append: (item) => list.append(item),
  scrollToEnd,
});
const edits = new MessageEdits(list, {
  authed,
  me: () => session.user,
  role: () => room?.role ?? null,
  error: showRoomError,
});

// ---------------------------------------------------------------- session

function showAuth(message = "") {
  closeRoom();
  clearInterval(roomPoll);
  $("chat-view").hidden = true;
  $("auth-view").hidden = false;
  $("logout").hidden = $("me").hidden = true;
  $("auth-error").textContent = message;
  $("auth-email").focus();
}

function showChat() {
  $("auth-view").hidden = true;
  $("chat-view").hidden = false;
  $("me").textContent = `Signed in as ${session.user.UserName}`;
  $("logout").hidden = $("me").hidden = false;
  refreshRooms().then(() => {
    const wanted = Number(/^#room-(\d+)$/.exec(location.hash)?.[1]);
    if (wanted) openRoom(wanted);
  });
  roomPoll = setInterval(() => refreshRooms().then(() => members.refresh()), ROOM_POLL_MS);
}

function logOut(message = "") {
  session = null;
  saveSession(null);
  history.replaceState(null, "", location.pathname);
  showAuth(message);
}

// Any API call made with our token: a 401 means the session is over.
async function authed(call, onError) {
  try {
    return await call(session.token);
  } catch (error) {
    if (error.status === 401) logOut(error.message);
    else if (onError) onError(error.message);
    return null;
  }
}

onSignIn((signedIn) => {
  session = signedIn;
  saveSession(session);
  showChat();
});

// Ends the session on the server too (its token stops working on every host);
// logged out here even when the server cannot be reached.
$("logout").addEventListener("click", async () => {
  const token = session?.token;
  if (token) await api.logout(token).catch(() => {});
  logOut();
});

// ---------------------------------------------------------------- rooms

async function refreshRooms() {
  if (!session) return;
  const data = await authed((t) => api.rooms(t), (m) => ($("room-error").textContent = m));
  if (!data) return;
  rooms = data.chatRooms;
  // Promoted or demoted in the open room: its messages' actions follow.
  const info = room && rooms.find((r) => r.ID === room.id);
  if (info && info.role !== room.role) {
    room.role = info.role;
    edits.refresh();
  }
  // Re-render only on a change, so a keyboard user's focus stays where it is.
  const shape = JSON.stringify([room?.id, rooms.map((r) => [r.ID, r.name, r.visibility])]);
  if (shape !== shownRooms) {
    shownRooms = shape;
    const myName = session.user.UserName;
    renderRooms(rooms, { currentId: room?.id ?? null, myName, open: openRoom });
  }
  unread.fromRooms(rooms);
}

$("room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("room-name");
  const error = $("room-error");
  const name = input.value;
  if (!name.trim()) return void (error.textContent = "Give the room a name.");
  error.textContent = "";
  const isPrivate = $("room-private").checked;
  const data = await authed(
    (t) => api.createRoom(t, name, isPrivate),
    (m) => (error.textContent = m),
  );
  if (!data) return;
  if (input.value === name) input.value = "";
  $("room-private").checked = false;
  await refreshRooms();
  openRoom(data.chatRoom.ID);
});

// who: { userName } or { userId }. Opens the direct room, made on the first ask.
async function openDirect(who, onError) {
  const data = await authed((t) => api.direct(t, who), onError);
  if (!data) return false;
  await refreshRooms();
  openRoom(data.chatRoom.ID);
  return true;
}

$("direct-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("direct-name");
  const error = $("direct-error");
  const userName = input.value.trim();
  if (!userName) return void (error.textContent = "Whom? Enter their user name.");
  error.textContent = "";
  if (await openDirect({ userName }, (m) => (error.textContent = m))) input.value = "";
});

// ---------------------------------------------------------------- the open room

const members = new MemberPanel({
  authed,
  me: () => session.user,
  openDirect: (who) => openDirect(who, (m) => members.note(m, true)),
  left: (left) => endRoom(left, `You left “${left.name}”.`),
});

function closeRoom() {
  if (room) room.socket?.stop();
  room = null;
  unread.setOpen(null);
  typing.clear();
  members.hide();
  list.replaceChildren();
  setList($("online"), []);
  $("room-title").textContent = "Pick a room";
  $("room-kind").hidden = true;
  setStatus("idle");
  $("load-older").hidden = true;
  $("room-status").textContent = "";
  composer.enable(false);
  $("chat-view").classList.remove("room-open");
}

async function openRoom(id) {
  const info = rooms.find((r) => r.ID === id);
  closeRoom();
  if (!info) {
    $("room-error").textContent = "That room does not exist (any more).";
    history.replaceState(null, "", location.pathname);
    return;
  }
  const name = roomLabel(info, session.user.UserName);
  const current = { id, name, visibility: info.visibility, ids: new Set(), oldest: null };
  Object.assign(current, { newest: null, hasMore: false, pending: new Map(), socket: null });
  // role: the caller's, for the messages' actions; readTo: the read marker; lastEvent:
  // the newest edit or delete seen (its eventId), for the cursor.
  Object.assign(current, { role: info.role, readTo: info.lastReadId ?? 0, lastEvent: null });
  room = current;
  unread.setOpen(id);
  history.replaceState(null, "", `#room-${id}`);
  $("notice").textContent = "";
  $("room-title").textContent = name;
  $("room-kind").textContent = roomKind(info);
  $("room-kind").hidden = !roomKind(info);
  $("chat-view").classList.add("room-open");
  members.show(current);
  refreshRooms();
  const page = await authed((t) => api.history(t, id, { limit: PAGE }), showRoomError);
  if (room !== current) return;
  if (page) {
    page.messages.forEach(addMessage);
    setOlder(page.hasMore);
  }
  scrollToEnd();
  current.socket = new RoomSocket(id, session.token, {
    cursor: () => Math.max(current.newest ?? 0, current.lastEvent ?? 0),
    onFrame: (frame) => room === current && onFrame(frame),
    onOpen: () => room === current && onOpen(),
    onState: (state, delay) => room === current && setStatus(state, delay),
    onFailure: (code, reason) => socketClosed(current, code, reason),
  });
  composer.enable(true);
  $("message").focus();
}

function showRoomError(message) {
  $("room-status").textContent = message;
}

function socketClosed(current, code, reason) {
  const words = endingWords(code, reason, current.name);
  if (!words) return probeRoom(current);
  endRoom(current, words);
  return false;
}

function endRoom(current, words) {
  if (room === current) {
    closeRoom();
    history.replaceState(null, "", location.pathname);
  }
  $("notice").textContent = words;
  refreshRooms();
}

// Refused, or closed for another reason (or none): is the token or the room gone?
async function probeRoom(current) {
  try {
    await api.history(session.token, current.id, { limit: 1 });
    return true;
  } catch (error) {
    if (error.status === 401) logOut(error.message);
    else if (error.status === 404) {
      endRoom(current, `“${current.name}” is gone, or you are no longer a member.`);
    } else if (error.status === 403) endRoom(current, error.message); // banned
    else return true; // the network or the server: keep trying
    return false;
  }
}

function onOpen() {
  $("room-status").textContent = "";
  refreshPresence();
  unread.markRead(room);
  composer.resend(room);
}

function onFrame({ Event: event, Body: body }) {
  if (event === "message") {
    const nearEnd = isNearEnd();
    const own = composer.confirmed(room, body);
    addMessage(body);
    typing.stopped(body.chatUserId);
    unread.markRead(room);
    if (nearEnd || own) scrollToEnd();
  } else if (event === "edit" || event === "delete") {
    room.lastEvent = Math.max(room.lastEvent ?? 0, body.eventId ?? 0);
    if (event === "edit") edits.applyEdit(body);
    else edits.applyDelete(body.ID);
  } else if (event === "typing") {
    if (body.user.ID !== session.user.ID) typing.heard(body.user);
  } else if (event === "read") {
    // This user read a room in another tab (this one, or any other).
    if (body.chatRoomId === room.id) room.readTo = Math.max(room.readTo, body.lastReadId);
    unread.read(body.chatRoomId, body.lastReadId);
  } else if (event === "join" || event === "leave") {
    const nearEnd = isNearEnd();
    // body.chatMessage ("alice joined") is for seed-era clients: ours draws the line
    // from the user's name alone.
    if (body.user) placeAtEnd(presenceItem(event, body.user.UserName));
    if (body.user && event === "leave") typing.stopped(body.user.ID);
    if (nearEnd) scrollToEnd();
    refreshPresence();
    members.refresh(); // someone new may have been invited
  } else if (event === "recovered") {
    // v2 counts the edits and deletes replayed too.
    if (body.count > 0) placeAtEnd(systemItem(`Caught up on ${body.count} missed updates.`));
    if (!body.complete) backfill(room, room.newest);
    scrollToEnd();
  } else if (event === "error") {
    composer.failed(room, body.chatMessage);
    // A muted user reads on; the server's words say why nothing was sent.
    showRoomError(body.code === "muted" ? `Muted: ${body.chatMessage}` : body.chatMessage);
  }
}

// More was missed than the server replays: page through the history API.
async function backfill(current, after) {
  let cursor = after ?? 0;
  for (;;) {
    const page = await authed((t) => api.history(t, current.id, { after: cursor, limit: 200 }));
    if (!page || room !== current) return;
    page.messages.forEach(addMessage);
    if (!page.hasMore || !page.messages.length) return;
    cursor = page.messages[page.messages.length - 1].ID;
  }
}

function addMessage(msg) {
  if (room.ids.has(msg.ID)) return;
  room.ids.add(msg.ID);
  const item = messageItem(msg, msg.chatUserId === session.user.ID);
  edits.decorate(item);
  if (room.newest === null || msg.ID > room.newest) {
    placeAtEnd(item);
  } else {
    // Older than what we show: before the first message with a larger ID.
    const later = [...list.querySelectorAll("li[data-id]")].find((li) => +li.dataset.id > msg.ID);
    later.before(item);
  }
  room.newest = Math.max(room.newest ?? msg.ID, msg.ID);
  room.oldest = Math.min(room.oldest ?? msg.ID, msg.ID);
}

// At the bottom, but above our own messages that are still on their way.
function placeAtEnd(item) {
  const firstPending = list.querySelector("li.pending");
  if (firstPending) firstPending.before(item);
  else list.append(item);
}

// ---------------------------------------------------------------- older history

function setOlder(hasMore) {
  room.hasMore = hasMore;
  $("load-older").hidden = !hasMore;
}

async function loadOlder() {
  const current = room;
  if (!current || !current.hasMore || current.loadingOlder || current.oldest === null) return;
  current.loadingOlder = true;
  const button = $("load-older");
  button.disabled = true;
  const query = { before: current.oldest, limit: PAGE };
  const page = await authed((t) => api.history(t, current.id, query), showRoomError);
  current.loadingOlder = false;
  button.disabled = false;
  if (!page || room !== current) return;
  const height = scroller.scrollHeight;
  page.messages.forEach(addMessage);
  scroller.scrollTop += scroller.scrollHeight - height; // keep what the reader was looking at
  setOlder(page.hasMore);
}

$("load-older").addEventListener("click", loadOlder);
scroller.addEventListener("scroll", () => scroller.scrollTop < 40 && loadOlder());

// ---------------------------------------------------------------- presence

async function refreshPresence() {
  const current = room;
  const data = await authed((t) => api.presence(t, current.id));
  if (!data || room !== current) return;
  const me = session.user.ID;
  const names = data.users.map((u) => (u.ID === me ? `${u.UserName} (you)` : u.UserName));
  setList($("online"), names.sort((a, b) => a.localeCompare(b)).map((n) => el("li", "", n)));
  members.setOnline(data.users);
}

// ---------------------------------------------------------------- the page

// Back on this tab: what arrived meanwhile has been seen now.
document.addEventListener("visibilitychange", () => room?.socket && unread.markRead(room));

$("back").addEventListener("click", () => $("chat-view").classList.remove("room-open"));

function isNearEnd() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd() {
  scroller.scrollTop = scroller.scrollHeight;
}

if (session) showChat();
else showAuth();
