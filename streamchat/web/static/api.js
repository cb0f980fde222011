// The HTTP API (README, "HTTP API"): JSON in, JSON out, errors as {"error": {code, message}}.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? null;
  }
}

async function call(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(
      response.status,
      error.code ?? "http_" + response.status,
      error.message ?? response.statusText,
      error.details,
    );
  }
  return data;
}

export const api = {
  server: () => call("GET", "/api/server"),
  session: () => call("GET", "/api/session"),
  register: (twitchId, displayName) =>
    call("POST", "/api/users", {
      twitch_id: twitchId,
      ...(displayName ? { display_name: displayName } : {}),
    }),
  login: (twitchId) => call("POST", "/api/login", { twitch_id: twitchId }),
  logout: () => call("POST", "/api/logout"),
  streamers: () => call("GET", "/api/streamers"),
  room: (login) => call("GET", `/api/rooms/${encodeURIComponent(login)}`),
  setFavorite: (login) => call("PUT", "/api/me/favorite", { streamer: login }),
  clearFavorite: () => call("DELETE", "/api/me/favorite"),
};
