// The room list: rooms (a private one marked with a lock), then direct messages,
// each a button that opens the room; and the words for a room that leaves it.
// User text only ever goes in through textContent.

import { $, el, setList } from "./view.js";

const SVG = "http://www.w3.org/2000/svg";

// What the client calls a room: a direct room ("alice, bob", in ID order) by the
// other person's name, when the name shows which half is ours.
export function roomLabel(room, myName) {
  if (room.visibility !== "direct") return room.name;
  const name = room.name;
  if (name.startsWith(`${myName}, `)) return name.slice(myName.length + 2);
  if (name.endsWith(`, ${myName}`)) return name.slice(0, -(myName.length + 2));
  return name;
}

// Words under the open room's title; none for a public room.
export function roomKind(room) {
  if (room.visibility === "private") return "Private room: members only";
  if (room.visibility === "direct") return "Direct messages";
  return "";
}

// Close reasons (realtime/room_events.py) that end our time in a room.
const ENDINGS = {
  "removed from the room": (name) => `You were removed from “${name}”.`,
  "banned from the room": (name) => `You were banned from “${name}”.`,
  "left the room": (name) => `You left “${name}”.`,
  "room is private now": (name) => `“${name}” is private now, and you are not a member.`,
  "room deleted": (name) => `“${name}” has been deleted.`,
};

// What to tell the user when a socket closed this way; null: not the room's end
// (a network drop, a server restart, an ended session), so the client carries on.
export function endingWords(code, reason, name) {
  const words = (code === 1008 || code === 1001) && ENDINGS[reason];
  return words ? words(name) : null;
}

function svgNode(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function lockIcon() {
  const svg = svgNode("svg", { viewBox: "0 0 16 16", class: "lock", "aria-hidden": "true" });
  svg.append(
    svgNode("path", { d: "M5 7V5a3 3 0 0 1 6 0v2", fill: "none", stroke: "currentColor" }),
    svgNode("rect", { x: "3", y: "7", width: "10", height: "8", rx: "1.5", fill: "currentColor" }),
  );
  return svg;
}

function roomItem(room, label, current, open) {
  const button = el("button", "room-link");
  button.type = "button";
  if (room.visibility === "private") button.append(lockIcon());
  button.append(el("span", "room-name", label));
  // Read out after the name: "design (private)".
  if (room.visibility === "private") button.append(el("span", "visually-hidden", " (private)"));
  button.title = label;
  if (current) button.setAttribute("aria-current", "true");
  button.addEventListener("click", () => open(room.ID));
  const item = el("li");
  item.dataset.room = String(room.ID);
  item.dataset.visibility = room.visibility ?? "public";
  item.append(button);
  return item;
}

// rooms: the server's list; currentId: the open room's ID or null.
export function renderRooms(rooms, { currentId, myName, open }) {
  const item = (r) => roomItem(r, roomLabel(r, myName), r.ID === currentId, open);
  const directs = rooms.filter((r) => r.visibility === "direct");
  setList($("rooms"), rooms.filter((r) => r.visibility !== "direct").map(item));
  setList($("directs"), directs.map(item));
  $("directs-title").hidden = $("directs").hidden = directs.length === 0;
}
