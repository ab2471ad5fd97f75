// The REST API, as any client uses it. Errors become ApiError with a sentence.

const TOKEN_KEY = "chatroom.session";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(TOKEN_KEY) || "null");
    return saved && saved.token && saved.user ? saved : null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  if (session) localStorage.setItem(TOKEN_KEY, JSON.stringify(session));
  else localStorage.removeItem(TOKEN_KEY);
}

function explain(status, message, retryAfter) {
  if (status === 401 && /invalid login/i.test(message)) return "Wrong email or password.";
  if (status === 401) return "Your session has expired. Please log in again.";
  if (status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again later.";
    return `Too many attempts.${wait}`;
  }
  if (status === 413) return "That is too large to send.";
  if (status >= 500) return `The server had a problem (${message || status}). Try again later.`;
  return message || `The request failed (HTTP ${status}).`;
}

export async function request(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Cannot reach the server. Check your connection.");
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    // Not JSON: described by the status below.
  }
  if (!res.ok) {
    const message = data && typeof data.message === "string" ? data.message : "";
    throw new ApiError(res.status, explain(res.status, message, res.headers.get("Retry-After")));
  }
  return data ?? {}; // 204: done, nothing to say (callers read null as a failure)
}

const room = (id, rest = "") => `/v1/api/chat/rooms/${id}${rest}`;

export const api = {
  signup: (user_name, email, password) =>
    request("/v1/api/auth/signup", { method: "POST", body: { user_name, email, password } }),
  login: (email, password) =>
    request("/v1/api/auth/login", { method: "POST", body: { email, password } }),
  logout: (token) => request("/v1/api/auth/logout", { method: "POST", token }),
  rooms: (token) => request("/v1/api/chat/rooms", { token }),
  // A public room is asked for the seed's way, with the name alone.
  createRoom: (token, name, isPrivate = false) =>
    request("/v1/api/chat/create", {
      method: "POST",
      body: isPrivate ? { name, visibility: "private" } : { name },
      token,
    }),
  history: (token, roomId, params) =>
    request(room(roomId, `/messages?${new URLSearchParams(params)}`), { token }),
  // The author edits ({ message } back, with EditedAt); the author, the room's owner
  // and moderators (and site admins) delete (204).
  editMessage: (token, id, chatMessage) =>
    request(`/v1/api/chat/messages/${id}`, { method: "PATCH", body: { chatMessage }, token }),
  deleteMessage: (token, id) => request(`/v1/api/chat/messages/${id}`, { method: "DELETE", token }),
  presence: (token, roomId) => request(room(roomId, "/presence"), { token }),
  members: (token, roomId) => request(room(roomId, "/members"), { token }),
  invite: (token, roomId, userName) =>
    request(room(roomId, "/members"), { method: "POST", body: { userName }, token }),
  setRole: (token, roomId, userId, role) =>
    request(room(roomId, `/members/${userId}`), { method: "PUT", body: { role }, token }),
  // Kick, or leave with one's own ID.
  removeMember: (token, roomId, userId) =>
    request(room(roomId, `/members/${userId}`), { method: "DELETE", token }),
  ban: (token, roomId, userId) =>
    request(room(roomId, "/bans"), { method: "POST", body: { userId }, token }),
  mute: (token, roomId, userId) =>
    request(room(roomId, "/mutes"), { method: "POST", body: { userId }, token }),
  // who: { userId } or { userName }; the same room from either side, made on first ask.
  direct: (token, who) => request("/v1/api/chat/direct", { method: "POST", body: who, token }),
};
