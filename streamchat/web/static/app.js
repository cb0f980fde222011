// streamchat's web client: the streamer directory and the chat rooms.
//
// Routes: "#/" is the directory, "#/<login>" a streamer's room. Everything
// live comes over one WebSocket (chat.js); the directory and the account over
// the HTTP API (api.js). Text from users is only ever set as textContent.

import { api, ApiError } from "./api.js";
import { ChatError, ChatSocket, Disconnected, nonce, textLength } from "./chat.js";

const $ = (id) => document.getElementById(id);
const HISTORY_PAGE = 50;
const PRESENCE_REFRESH_MS = 30_000;
const MAX_LINES = 1000;
const LOGIN = /^[A-Za-z0-9_]{1,25}$/;
const STREAM_FIELDS = [
  "display_name",
  "live",
  "title",
  "game_id",
  "game_name",
  "viewer_count",
  "started_at",
  "language",
];
const numbers = new Intl.NumberFormat();

const state = {
  server: { auth_mode: "dev", max_text_length: 500 },
  me: null,
  streamers: new Map(), // id -> streamer, as GET /api/streamers gives them
  directory: { loaded: false, loading: null, again: false, buffer: null },
  room: null, // the open Room
  outbox: [], // publishes not yet acknowledged: [{room, text, nonce}]
};

const socket = new ChatSocket(
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
);

// -- small DOM helpers -------------------------------------------------------------

function el(tag, { cls, text, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function colour(key) {
  let hash = 0;
  for (const ch of String(key)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `c${hash % 8}`;
}

function avatar(node, streamer) {
  node.textContent = (streamer.display_name || streamer.login || "?").slice(0, 1).toUpperCase();
  node.className = `avatar ${colour(streamer.id ?? streamer.login)}`;
}

function userName(user) {
  return user?.display_name || user?.login || user?.id || "someone";
}

function streamLine(streamer) {
  if (!streamer.live) return "Offline";
  const parts = [];
  if (streamer.game_name) parts.push(streamer.game_name);
  parts.push(`${numbers.format(streamer.viewer_count ?? 0)} viewers`);
  return parts.join(" · ");
}

function liveBadge(streamer) {
  return streamer.live
    ? el("span", { cls: "badge live", text: "Live" })
    : el("span", { cls: "badge offline", text: "Offline" });
}

// -- account -----------------------------------------------------------------------

function setMe(me) {
  state.me = me;
  renderAccount();
  renderDirectory();
  renderComposer();
}

function renderAccount() {
  const me = state.me;
  const twitch = state.server.auth_mode === "twitch";
  $("whoami").hidden = me === null;
  $("whoami").textContent = me ? `Logged in as ${userName({ ...me, id: me.twitch_id })}` : "";
  $("logout").hidden = me === null;
  $("login-panel").hidden = me !== null;
  $("login-form").hidden = twitch;
  $("twitch-login").hidden = !twitch;
}

async function logIn(event) {
  event.preventDefault();
  const error = $("login-error");
  error.textContent = "";
  const twitchId = $("twitch-id").value.trim();
  const displayName = $("display-name").value.trim();
  if (!/^[0-9]{1,20}$/.test(twitchId)) {
    error.textContent = "Your Twitch ID is a number of 1 to 20 digits.";
    $("twitch-id").focus();
    return;
  }
  const button = event.submitter ?? $("login-form").querySelector("button");
  button.disabled = true;
  try {
    await api.register(twitchId, displayName || null);
    const me = await api.login(twitchId);
    $("login-form").reset();
    setMe(me);
    socket.reconnectNow(); // the socket now carries the session
    loadDirectory();
  } catch (e) {
    error.textContent = describeApiError(e);
  } finally {
    button.disabled = false;
  }
}

async function logOut() {
  try {
    await api.logout();
  } catch (e) {
    showRoomStatus(describeApiError(e));
    return;
  }
  setMe(null);
  socket.reconnectNow();
  loadDirectory();
}

const LOGIN_ERRORS = {
  login_denied: "You declined to log in with Twitch.",
  login_expired: "That login took too long or was started elsewhere: try again.",
  login_failed: "Twitch did not log you in: try again.",
  twitch_unavailable: "Twitch cannot be reached right now: try again in a minute.",
  too_many_attempts: "Too many login attempts: wait a minute and try again.",
  twitch_disabled: "Logging in with Twitch is not enabled on this server.",
};

// A failed "Log in with Twitch" comes back as /?login_error=<code>.
function showLoginError() {
  const params = new URLSearchParams(location.search);
  const code = params.get("login_error");
  if (code === null) return;
  $("login-error").textContent = LOGIN_ERRORS[code] ?? "Logging in failed: try again.";
  history.replaceState(null, "", location.pathname + location.hash);
}

function describeApiError(e) {
  if (!(e instanceof ApiError)) return String(e?.message ?? e);
  if (e.code === "too_many_attempts" && e.details?.retry_after) {
    return `Too many attempts: try again in ${Math.ceil(e.details.retry_after)} s.`;
  }
  if (e.code === "invalid_input" && Array.isArray(e.details) && e.details.length) {
    return e.details.map((d) => d.message ?? String(d)).join("; ");
  }
  return e.message || e.code;
}

// -- the streamer directory --------------------------------------------------------

async function loadDirectory() {
  const directory = state.directory;
  if (directory.loading) {
    directory.again = true; // what is being read may be from before the change
    return directory.loading;
  }
  directory.buffer = []; // changes that arrive meanwhile go on top of what is read
  directory.loading = (async () => {
    try {
      const list = await api.streamers();
      state.streamers = new Map(list.map((s) => [s.id, s]));
      directory.loaded = true;
      $("directory-status").textContent = list.length ? "" : "No streamers yet.";
    } catch (e) {
      $("directory-status").textContent = `The streamers could not be loaded: ${describeApiError(e)}`;
    }
    const buffered = directory.buffer ?? [];
    directory.buffer = null;
    for (const change of buffered) applyStreamerChange(change);
    renderDirectory();
    renderRoomHead();
  })();
  try {
    await directory.loading;
  } finally {
    directory.loading = null;
  }
  if (directory.again) {
    directory.again = false;
    await loadDirectory();
  }
}

function onStreamerChange(change) {
  if (state.directory.buffer !== null) {
    state.directory.buffer.push(change);
    return;
  }
  applyStreamerChange(change);
  renderDirectory();
  renderRoomHead();
}

function applyStreamerChange({ kind, data }) {
  if (kind === "streamer.added" || kind === "streamer.removed") {
    loadDirectory();
    return;
  }
  const streamer = state.streamers.get(data?.id);
  if (streamer === undefined) {
    if (data?.id) loadDirectory();
    return;
  }
  for (const field of STREAM_FIELDS) {
    if (field in data) streamer[field] = data[field];
  }
}

function favoriteId() {
  return state.me?.favorite?.id ?? null;
}

function sortedStreamers() {
  const favorite = favoriteId();
  return [...state.streamers.values()].sort(
    (a, b) =>
      (b.id === favorite) - (a.id === favorite) ||
      b.live - a.live ||
      (b.live ? b.viewer_count - a.viewer_count : 0) ||
      a.display_name.localeCompare(b.display_name),
  );
}

function renderDirectory() {
  const list = $("streamers");
  const focused = document.activeElement?.closest?.("#streamers [data-id]");
  const focusKey = focused
    ? [focused.dataset.id, document.activeElement.dataset.role]
    : null;
  const favorite = favoriteId();
  const items = sortedStreamers().map((streamer) => streamerItem(streamer, favorite));
  list.replaceChildren(...items);
  if (focusKey) {
    list.querySelector(`[data-id="${CSS.escape(focusKey[0])}"] [data-role="${focusKey[1]}"]`)?.focus();
  }
}

function streamerItem(streamer, favorite) {
  const isFavorite = streamer.id === favorite;
  const face = el("span", { attrs: { "aria-hidden": "true" } });
  avatar(face, streamer);
  const name = el("a", {
    cls: "name",
    text: streamer.display_name,
    attrs: { href: `#/${streamer.login}`, "data-role": "open" },
  });
  const star = el("button", {
    cls: "favorite",
    text: isFavorite ? "★" : "☆",
    attrs: {
      type: "button",
      "aria-pressed": String(isFavorite),
      "aria-label": `Favourite ${streamer.display_name}`,
      "data-role": "favorite",
      title: state.me ? "Your favourite streamer" : "Log in to pick a favourite",
    },
  });
  star.disabled = state.me === null;
  star.addEventListener("click", () => toggleFavorite(streamer, !isFavorite));
  const info = el(
    "div",
    { cls: "info" },
    el("div", { cls: "line" }, name, liveBadge(streamer)),
  );
  if (streamer.live && streamer.title) info.append(el("p", { cls: "title", text: streamer.title }));
  info.append(el("p", { cls: "meta", text: streamLine(streamer) }));
  const item = el("li", { cls: "streamer", attrs: { "data-id": streamer.id } }, face, info, star);
  if (isFavorite) item.classList.add("is-favorite");
  if (streamer.live) item.classList.add("is-live");
  return item;
}

async function toggleFavorite(streamer, on) {
  try {
    const me = on ? await api.setFavorite(streamer.login) : await api.clearFavorite();
    state.me = me;
    renderDirectory();
  } catch (e) {
    $("directory-status").textContent = describeApiError(e);
  }
}

// -- a room ------------------------------------------------------------------------

class Room {
  constructor(login) {
    this.login = login;
    this.seq = null; // the last seq received: `since` when resubscribing
    this.epoch = null;
    this.subscribed = false;
    this.gone = false; // no such room
    this.oldestShown = null;
    this.newestShown = 0;
    this.olderLoading = false;
    this.noOlder = false;
    this.shown = new Map(); // seq -> <li>
    this.presence = new Map(); // user id -> user
    this.presenceTimer = null;
    this.role = null; // the viewer's role here: broadcaster, moderator, viewer, operator
    this.streamerId = null;
    this.moderators = new Set();
    this.modes = null;
  }
}

function streamerByLogin(login) {
  for (const streamer of state.streamers.values()) {
    if (streamer.login === login) return streamer;
  }
  return null;
}

function openRoom(login) {
  if (state.room?.login === login) return;
  closeRoom();
  const room = (state.room = new Room(login));
  $("messages").replaceChildren();
  $("presence-list").replaceChildren();
  $("presence-count").textContent = "0";
  $("room-modes").textContent = "";
  $("presence").open = matchMedia("(min-width: 50rem)").matches;
  showRoomStatus("");
  $("send-error").textContent = "";
  renderRoomHead();
  renderComposer();
  room.presenceTimer = setInterval(() => refreshPresence(room), PRESENCE_REFRESH_MS);
  if (socket.isOpen) subscribe(room);
}

function closeRoom() {
  const room = state.room;
  if (room === null) return;
  clearInterval(room.presenceTimer);
  state.room = null;
  if (room.subscribed && socket.isOpen) {
    socket.request({ type: "unsubscribe", room: room.login }).catch(() => {});
  }
}

function renderRoomHead() {
  const room = state.room;
  if (room === null) return;
  const streamer = streamerByLogin(room.login);
  const title = $("room-title");
  title.textContent = streamer?.display_name ?? room.login;
  document.title = `${title.textContent} · streamchat`;
  avatar($("room-avatar"), streamer ?? { login: room.login });
  const stream = $("room-stream");
  stream.replaceChildren();
  if (streamer) {
    stream.append(liveBadge(streamer), " ");
    if (streamer.live && streamer.title) stream.append(el("span", { cls: "title", text: streamer.title }), " ");
    stream.append(el("span", { cls: "meta", text: streamer.live ? streamLine(streamer) : "" }));
  }
}

function showRoomStatus(text) {
  $("room-status").textContent = text;
}

async function subscribe(room) {
  const frame = { type: "subscribe", room: room.login };
  const resuming = room.seq !== null;
  if (resuming) Object.assign(frame, { since: room.seq, epoch: room.epoch });
  let reply;
  try {
    reply = await socket.request(frame);
  } catch (e) {
    if (state.room !== room || e instanceof Disconnected) return;
    if (e.code === "unknown_room") {
      room.gone = true;
      showRoomStatus(`There is no streamer named ${room.login}.`);
      renderComposer();
    } else {
      showRoomStatus(`Could not join the room: ${e.message}`);
    }
    return;
  }
  if (state.room !== room) {
    socket.request({ type: "unsubscribe", room: room.login }).catch(() => {});
    return;
  }
  room.subscribed = true;
  showRoomStatus("");
  setModes(room, reply.room_state);
  loadRole(room);
  const epochChanged = resuming && reply.epoch !== room.epoch;
  room.epoch = reply.epoch;
  if (resuming && !reply.recovered) {
    notice(
      reply.oldest
        ? `Messages ${room.seq + 1} to ${reply.oldest - 1} are no longer kept.`
        : "Some messages may have been missed while you were away.",
    );
  }
  if (!resuming || epochChanged) {
    if (epochChanged) {
      room.shown.clear();
      $("messages").replaceChildren();
      room.oldestShown = null;
      room.newestShown = 0;
      room.noOlder = false;
    }
    room.seq = Math.max(room.seq ?? 0, reply.seq);
    await loadOlder(room, reply.seq + 1);
    scrollToEnd();
  }
  refreshPresence(room);
}

function onMessage(frame) {
  const room = state.room;
  if (room === null || frame.room !== room.login) return;
  room.seq = Math.max(room.seq ?? 0, frame.seq);
  const stick = nearEnd();
  addMessage(room, frame);
  if (stick) {
    trim(room);
    scrollToEnd();
  }
}

function messageItem(room, frame) {
  if (frame.deleted) {
    return el(
      "li",
      { cls: "message deleted", attrs: { "data-seq": String(frame.seq) } },
      el("span", { cls: "text", text: "Message deleted" }),
    );
  }
  const name = userName(frame.user);
  const item = el(
    "li",
    { cls: "message", attrs: { "data-seq": String(frame.seq), "data-user": frame.user?.id ?? "" } },
    el("span", { cls: `author ${colour(frame.user?.id)}`, text: name }),
    el("span", { cls: "text", text: frame.text }),
  );
  const tools = el("span", { cls: "tools" });
  const target = frame.user?.login ?? frame.user?.id; // a login, or an ID where there is none
  for (const [label, action, args] of [
    [`Delete message from ${name}`, "delete", { seq: frame.seq }],
    [`Time out ${name} for 10 minutes`, "timeout", { user: target, seconds: 600 }],
    [`Ban ${name}`, "ban", { user: target }],
  ]) {
    if (action !== "delete" && !target) continue;
    const button = el("button", {
      cls: `tool ${action}`,
      text: action === "delete" ? "🗑" : action === "timeout" ? "⏱" : "⛔",
      attrs: { type: "button", "aria-label": label, title: label },
    });
    button.addEventListener("click", () => moderate(room, action, args));
    tools.append(button);
  }
  tools.hidden = !canModerate(room, frame.user?.id);
  item.append(tools);
  const time = new Date(frame.ts);
  if (!Number.isNaN(time.getTime())) item.title = time.toLocaleString();
  return item;
}

function addMessage(room, frame) {
  if (room.shown.has(frame.seq)) return;
  const item = messageItem(room, frame);
  if (room.shown.size === 0 || frame.seq > room.newestShown) {
    $("messages").append(item);
    room.newestShown = frame.seq;
  } else {
    // From history: before the first shown message with a larger seq.
    let next = null;
    let nextSeq = Infinity;
    for (const [seq, node] of room.shown) {
      if (seq > frame.seq && seq < nextSeq) [next, nextSeq] = [node, seq];
    }
    next.before(item);
  }
  room.shown.set(frame.seq, item);
  if (room.oldestShown === null || frame.seq < room.oldestShown) room.oldestShown = frame.seq;
}

// A tab left open for days keeps the newest lines; older ones can be loaded again.
function trim(room) {
  const list = $("messages");
  if (list.children.length <= MAX_LINES) return;
  while (list.children.length > MAX_LINES) {
    const first = list.firstElementChild;
    if (first.dataset.seq) room.shown.delete(Number(first.dataset.seq));
    first.remove();
  }
  const oldest = list.querySelector("[data-seq]");
  room.oldestShown = oldest ? Number(oldest.dataset.seq) : null;
  room.noOlder = false;
}

async function loadOlder(room, before = null) {
  if (room.olderLoading || room.noOlder) return;
  const from = before ?? room.oldestShown;
  if (from === null || from <= 1) {
    room.noOlder = true;
    return;
  }
  room.olderLoading = true;
  const log = $("log");
  const height = log.scrollHeight;
  try {
    const reply = await socket.request({ type: "history", room: room.login, before: from, limit: HISTORY_PAGE });
    if (state.room !== room) return;
    for (const message of reply.messages) addMessage(room, message);
    if (reply.messages.length < HISTORY_PAGE || reply.messages[0]?.seq <= 1) room.noOlder = true;
    if (before === null) log.scrollTop += log.scrollHeight - height; // stay where you were
  } catch (e) {
    if (!(e instanceof Disconnected) && state.room === room) {
      showRoomStatus(`Could not load older messages: ${e.message}`);
    }
  } finally {
    room.olderLoading = false;
  }
}

function notice(text) {
  const stick = nearEnd();
  $("messages").append(el("li", { cls: "notice", text }));
  if (stick) scrollToEnd();
}

function nearEnd() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
}

function scrollToEnd() {
  const log = $("log");
  log.scrollTop = log.scrollHeight;
}

async function refreshPresence(room) {
  if (!socket.isOpen || !room.subscribed) return;
  try {
    const reply = await socket.request({ type: "presence", room: room.login });
    if (state.room !== room) return;
    room.presence = new Map(reply.users.map((user) => [user.id, user]));
    renderPresence(room);
  } catch {
    // Asked again on the next join, leave or refresh.
  }
}

function renderPresence(room) {
  const users = [...room.presence.values()].sort((a, b) => userName(a).localeCompare(userName(b)));
  $("presence-count").textContent = numbers.format(users.length);
  $("presence-list").replaceChildren(
    ...users.map((user) => el("li", { cls: colour(user.id), text: userName(user) })),
  );
}

function onPresenceChange(frame) {
  const room = state.room;
  if (room === null || frame.room !== room.login) return;
  const self = frame.user.id === state.me?.twitch_id;
  if (frame.type === "join") {
    room.presence.set(frame.user.id, frame.user);
    if (!self) notice(`${userName(frame.user)} joined`);
  } else {
    room.presence.delete(frame.user.id);
    if (!self) notice(`${userName(frame.user)} left`);
  }
  renderPresence(room);
}

function onEvent(frame) {
  if (frame.kind?.startsWith("stream.")) onStreamerChange({ kind: frame.kind, data: frame.data });
  const room = state.room;
  if (room === null || frame.room !== room.login) return;
  const name = frame.data?.display_name || room.login;
  switch (frame.kind) {
    case "stream.online":
      notice(`${name} is live${frame.data?.title ? `: ${frame.data.title}` : ""}`);
      break;
    case "stream.offline":
      notice(`${name} went offline`);
      break;
    case "stream.update":
      break; // the header shows it
    case "broadcast":
      notice(`Announcement: ${frame.data?.text ?? ""}`);
      break;
    default:
      notice(frame.data?.text ? `${frame.kind}: ${frame.data.text}` : frame.kind);
  }
}

// -- moderation --------------------------------------------------------------------

const STAFF = new Set(["broadcaster", "moderator", "operator"]);

// The broadcaster and moderators moderate; a moderator not the broadcaster or other moderators.
function canModerate(room, authorId) {
  if (!STAFF.has(room.role) || !authorId || authorId === state.me?.twitch_id) return false;
  if (room.role === "moderator") {
    return authorId !== room.streamerId && !room.moderators.has(authorId);
  }
  return authorId !== room.streamerId;
}

async function loadRole(room) {
  try {
    const info = await api.room(room.login);
    if (state.room !== room) return;
    room.role = info.role;
    room.streamerId = info.streamer_id;
    room.moderators = new Set(info.moderators ?? []);
    setModes(room, info.modes);
  } catch {
    room.role = null;
  }
  for (const item of room.shown.values()) {
    const tools = item.querySelector(".tools");
    if (tools) tools.hidden = !canModerate(room, item.dataset.user);
  }
}

function setModes(room, modes) {
  if (!modes) return;
  room.modes = modes;
  const parts = [];
  if (modes.slow) parts.push(`Slow mode: ${modes.slow} s`);
  if (modes.unique) parts.push("Unique chat");
  $("room-modes").textContent = parts.join(" · ");
}

async function moderate(room, action, args) {
  try {
    await socket.request({ type: "moderate", room: room.login, action, ...args });
  } catch (e) {
    if (state.room === room) showRoomStatus(`Could not ${action}: ${e.message}`);
  }
}

function tombstone(room, seq) {
  const item = room.shown.get(seq);
  if (item === undefined || item.classList.contains("deleted")) return;
  const dead = messageItem(room, { seq, deleted: true });
  item.replaceWith(dead);
  room.shown.set(seq, dead);
}

function duration(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function onModeration(frame) {
  const room = state.room;
  if (room === null || frame.room !== room.login) return;
  const who = userName(frame.user);
  const by = frame.by?.id === "operator" ? "an operator" : userName(frame.by);
  switch (frame.action) {
    case "delete":
      tombstone(room, frame.seq);
      break;
    case "clear":
      for (const seq of [...room.shown.keys()]) if (seq <= frame.through) tombstone(room, seq);
      notice(`The chat was cleared by ${by}.`);
      break;
    case "ban":
    case "timeout":
      for (const [seq, item] of [...room.shown]) {
        if (item.dataset.user === frame.user?.id) tombstone(room, seq);
      }
      notice(
        frame.action === "ban"
          ? `${who} was banned by ${by}.`
          : `${who} was timed out for ${duration(frame.seconds)} by ${by}.`,
      );
      break;
    case "unban":
      notice(`${who} was unbanned by ${by}.`);
      break;
    case "untimeout":
      notice(`${who}'s timeout was lifted by ${by}.`);
      break;
    case "mod":
    case "unmod":
      notice(frame.action === "mod" ? `${who} is now a moderator.` : `${who} is no longer a moderator.`);
      loadRole(room);
      break;
    case "slow":
      notice(frame.seconds ? `Slow mode is on: one message every ${frame.seconds} s.` : "Slow mode is off.");
      break;
    case "unique":
      break; // room_state follows
    case "terms":
      notice("The room's blocked terms changed.");
      break;
  }
}

function onRoomState(frame) {
  const room = state.room;
  if (room === null || frame.room !== room.login) return;
  const before = room.modes ?? {};
  setModes(room, { slow: frame.slow, unique: frame.unique, blocked_terms: frame.blocked_terms });
  if (before.unique !== undefined && before.unique !== frame.unique) {
    notice(frame.unique ? "Unique chat is on: no repeating yourself." : "Unique chat is off.");
  }
}

// -- sending -----------------------------------------------------------------------

let cooldown = null;

function renderComposer() {
  const input = $("message");
  const length = textLength(input.value);
  const max = state.server.max_text_length;
  const counter = $("counter");
  counter.textContent = `${length}/${max}`;
  counter.classList.toggle("over", length > max);
  const room = state.room;
  $("send").disabled = room === null || room.gone;
  input.placeholder = state.me ? "Send a message" : "Log in to chat";
}

function onTyping() {
  renderComposer();
  const max = state.server.max_text_length;
  const error = $("send-error");
  if (textLength($("message").value) > max) {
    error.textContent = `Too long: at most ${max} characters.`;
  } else if (error.dataset.kind === "too-long" || error.textContent.startsWith("Too long")) {
    error.textContent = "";
  }
}

function send(event) {
  event.preventDefault();
  const room = state.room;
  const input = $("message");
  const text = input.value;
  const error = $("send-error");
  if (room === null || !text.trim()) return;
  if (state.me === null) {
    error.textContent = "You are not logged in: log in to chat.";
    return;
  }
  const max = state.server.max_text_length;
  if (textLength(text) > max) {
    error.textContent = `Too long: at most ${max} characters.`;
    return;
  }
  if (cooldown !== null) return; // the error already says how long to wait
  error.textContent = "";
  const publish = { room: room.login, text, nonce: nonce() };
  state.outbox.push(publish);
  input.value = "";
  renderComposer();
  deliver(publish);
}

async function deliver(publish) {
  if (!socket.isOpen) return; // sent again, with its nonce, once connected
  try {
    await socket.request({ type: "publish", room: publish.room, text: publish.text, nonce: publish.nonce });
  } catch (e) {
    if (e instanceof Disconnected) return;
    if (e instanceof ChatError && (e.code === "unavailable" || e.code === "timeout")) {
      setTimeout(() => deliver(publish), 2000); // the nonce makes the retry safe
      return;
    }
    forget(publish);
    refused(publish, e);
    return;
  }
  forget(publish);
}

function forget(publish) {
  state.outbox = state.outbox.filter((p) => p !== publish);
}

function refused(publish, e) {
  const input = $("message");
  if (!input.value) {
    input.value = publish.text; // not lost: edit it or send it again
    renderComposer();
  }
  const error = $("send-error");
  switch (e.code) {
    case "rate_limited": {
      const wait = Number(e.details?.retry_after ?? 1);
      startCooldown(wait, "Rate limited: you are sending messages too fast.");
      break;
    }
    case "slow_mode":
      startCooldown(Number(e.details?.retry_after ?? 1), "Slow mode is on.");
      break;
    case "timed_out":
      startCooldown(Number(e.details?.retry_after ?? 1), "You are timed out in this room.");
      break;
    case "banned":
      error.textContent = "You are banned from this room.";
      break;
    case "duplicate":
      error.textContent = "Unique chat is on: this is the same as your previous message.";
      break;
    case "blocked_term":
      error.textContent = "Not sent: your message holds a term this room blocks.";
      break;
    case "not_authenticated":
      error.textContent = "You are not logged in: log in to chat.";
      break;
    case "invalid_text":
      error.textContent = `Not sent: ${e.message}.`;
      break;
    default:
      error.textContent = `Not sent: ${e.message}`;
  }
}

function startCooldown(seconds, why) {
  const until = Date.now() + seconds * 1000;
  const error = $("send-error");
  clearInterval(cooldown);
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      clearInterval(cooldown);
      cooldown = null;
      error.textContent = "";
      return;
    }
    error.textContent = `${why} Wait ${left} s.`;
  };
  cooldown = setInterval(tick, 250);
  tick();
}

// -- the connection ----------------------------------------------------------------

const STATES = {
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline: waiting for the network",
  refused: "Disconnected: the server refused the connection",
};

function onSocketState({ detail: { state: s, retryIn } }) {
  const node = $("connection");
  node.dataset.state = s;
  node.textContent =
    s === "reconnecting" && retryIn ? `Reconnecting in ${Math.ceil(retryIn / 1000)} s…` : STATES[s];
}

function onSocketOpen() {
  socket.request({ type: "watch", feed: "streamers" }).catch(() => {});
  loadDirectory();
  const room = state.room;
  if (room !== null) {
    room.subscribed = false;
    if (!room.gone) subscribe(room);
  }
  for (const publish of state.outbox) deliver(publish);
}

function onSocketClose() {
  if (state.room) state.room.subscribed = false;
}

function onFrame({ detail: frame }) {
  switch (frame.type) {
    case "message":
      onMessage(frame);
      break;
    case "join":
    case "leave":
      onPresenceChange(frame);
      break;
    case "event":
      onEvent(frame);
      break;
    case "streamer":
      onStreamerChange(frame);
      break;
    case "moderation":
      onModeration(frame);
      break;
    case "room_state":
      onRoomState(frame);
      break;
    case "error":
      if (frame.code === "history_trimmed") notice("Some messages were pruned before they could be shown.");
      break;
  }
}

function onSessionEnded() {
  if (state.me !== null) {
    setMe(null);
    $("login-error").textContent = "Your session ended: log in again to chat.";
  }
}

// -- routing -----------------------------------------------------------------------

function route() {
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  if (path && LOGIN.test(path)) {
    $("directory-view").hidden = true;
    $("room-view").hidden = false;
    const changed = state.room?.login !== path.toLowerCase();
    openRoom(path.toLowerCase());
    if (changed) $("room-title").focus({ preventScroll: true });
  } else {
    closeRoom();
    $("room-view").hidden = true;
    $("directory-view").hidden = false;
    document.title = "streamchat";
    renderComposer();
  }
}

async function start() {
  $("login-form").addEventListener("submit", logIn);
  $("logout").addEventListener("click", logOut);
  $("send-form").addEventListener("submit", send);
  $("message").addEventListener("input", onTyping);
  $("room-title").tabIndex = -1;
  $("log").addEventListener("scroll", () => {
    if (state.room && $("log").scrollTop < 40) loadOlder(state.room);
  });
  socket.addEventListener("state", onSocketState);
  socket.addEventListener("open", onSocketOpen);
  socket.addEventListener("close", onSocketClose);
  socket.addEventListener("frame", onFrame);
  socket.addEventListener("session-ended", onSessionEnded);
  window.addEventListener("hashchange", route);

  try {
    state.server = await api.server();
  } catch {
    // The defaults above.
  }
  try {
    state.me = (await api.session()).user;
  } catch (e) {
    $("login-error").textContent = describeApiError(e);
  }
  renderAccount();
  showLoginError();
  route();
  loadDirectory();
  socket.start();
  document.body.dataset.ready = "true";
}

start();
