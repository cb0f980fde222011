// The room protocol over one WebSocket (docs/protocol.md), kept connected.
//
// ChatSocket numbers requests and matches replies by `id`; frames the server
// sends unasked are dispatched as "frame" events. When the connection drops it
// reconnects by itself, with backoff, and dispatches "open" again: whoever
// listens resubscribes (with `since`) from there.

export class ChatError extends Error {
  constructor(code, reason, details) {
    super(reason);
    this.code = code;
    this.details = details ?? null;
  }
}

export class Disconnected extends Error {
  constructor() {
    super("the connection was lost");
    this.code = "disconnected";
  }
}

// Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes").
const FATAL = new Set([4003]);
const SESSION_ENDED = 4001;
const HEARTBEAT_MS = 20_000;
const HEARTBEAT_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;
const MAX_BACKOFF_MS = 10_000;

export class ChatSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.state = "connecting";
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._attempts = 0;
    this._retryTimer = null;
    this._heartbeat = null;
    this._stopped = false;
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this._drop("offline"));
  }

  get isOpen() {
    return this._ws !== null && this._ws.readyState === WebSocket.OPEN;
  }

  start() {
    this._stopped = false;
    this._connect();
  }

  // Drop the current connection (if any) and connect again at once: after
  // logging in or out, the new connection carries the new session cookie.
  reconnectNow() {
    if (this._stopped) return;
    clearTimeout(this._retryTimer);
    this._attempts = 0;
    if (this._ws !== null) {
      const ws = this._ws;
      this._detach(ws);
      ws.close(1000, "reconnecting");
      this._closed(1000);
    }
    this._connect();
  }

  // Send one request; resolves with its reply, rejects with ChatError or Disconnected.
  request(frame) {
    if (!this.isOpen) return Promise.reject(new Disconnected());
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ChatError("timeout", "the server did not answer"));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  _connect() {
    if (!navigator.onLine) {
      this._setState("offline");
      return;
    }
    this._setState(this._attempts === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this._retry();
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      this._attempts = 0;
      this._setState("open");
      this._startHeartbeat();
      this.dispatchEvent(new Event("open"));
    };
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._detach(ws);
      this._closed(event.code);
      if (event.code === SESSION_ENDED) {
        this.dispatchEvent(new Event("session-ended"));
      }
      if (FATAL.has(event.code)) {
        this._stopped = true;
        this._setState("refused");
        return;
      }
      this._retry();
    };
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (this._ws === ws) this._ws = null;
  }

  _closed(code) {
    clearInterval(this._heartbeat);
    this._heartbeat = null;
    const pending = this._pending;
    this._pending = new Map();
    for (const { reject, timer } of pending.values()) {
      clearTimeout(timer);
      reject(new Disconnected());
    }
    this.dispatchEvent(new CustomEvent("close", { detail: { code } }));
  }

  // The network went away: close now instead of waiting for a heartbeat to fail.
  _drop(state) {
    clearTimeout(this._retryTimer);
    if (this._ws !== null) {
      const ws = this._ws;
      this._detach(ws);
      ws.close(1000, "offline");
      this._closed(1006);
    }
    this._setState(state);
  }

  _retry() {
    if (this._stopped) return;
    if (!navigator.onLine) {
      this._setState("offline");
      return;
    }
    this._attempts += 1;
    // 0.5 s, 1 s, 2 s … at most 10 s, each between half and all of it.
    const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (this._attempts - 1));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this._setState("reconnecting", delay);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _startHeartbeat() {
    clearInterval(this._heartbeat);
    this._heartbeat = setInterval(() => {
      const ws = this._ws;
      const timer = setTimeout(() => {
        // No pong: the connection is dead even if the browser has not noticed.
        if (this._ws === ws && ws !== null) {
          this._detach(ws);
          ws.close(4000, "no heartbeat");
          this._closed(1006);
          this._retry();
        }
      }, HEARTBEAT_TIMEOUT_MS);
      this.request({ type: "ping" }).then(
        () => clearTimeout(timer),
        () => clearTimeout(timer),
      );
    }, HEARTBEAT_MS);
  }

  _receive(data) {
    for (const line of String(data).split("\n")) {
      if (!line.trim()) continue;
      let frame;
      try {
        frame = JSON.parse(line);
      } catch {
        continue;
      }
      const waiting = frame.id === undefined ? undefined : this._pending.get(frame.id);
      if (waiting !== undefined) {
        this._pending.delete(frame.id);
        clearTimeout(waiting.timer);
        if (frame.type === "error") {
          waiting.reject(new ChatError(frame.code, frame.reason, frame.details));
        } else {
          waiting.resolve(frame);
        }
        continue;
      }
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    }
  }

  _setState(state, retryIn = null) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, retryIn } }));
  }
}

// A fresh random nonce: a publish retried with it is stored once.
export function nonce() {
  // getRandomValues, unlike randomUUID, works on plain http:// too (a LAN address).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The length the server counts: code points, not UTF-16 units.
export function textLength(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}
