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
  return data;
}

export const api = {
  signup: (user_name, email, password) =>
    request("/v1/api/auth/signup", { method: "POST", body: { user_name, email, password } }),
  login: (email, password) =>
    request("/v1/api/auth/login", { method: "POST", body: { email, password } }),
  logout: (token) => request("/v1/api/auth/logout", { method: "POST", token }),
  rooms: (token) => request("/v1/api/chat/rooms", { token }),
  createRoom: (token, name) =>
    request("/v1/api/chat/create", { method: "POST", body: { name }, token }),
  history: (token, roomId, params) =>
    request(`/v1/api/chat/rooms/${roomId}/messages?${new URLSearchParams(params)}`, { token }),
  presence: (token, roomId) => request(`/v1/api/chat/rooms/${roomId}/presence`, { token }),
};
