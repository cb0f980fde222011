// One WebSocket client: a subscriber of one room, or a publisher.
//
// Subscribers sit on the hot path: every frame they receive once subscribed is
// scanned for chat deliveries with Buffer.indexOf (native) and never decoded.
// The transport is either the minimal client in rawsocket.js (the default: it
// reads without streams or per-message events) or the `ws` package (a full
// implementation, kept to cross-check the raw one).

import { performance } from "node:perf_hooks";

import WebSocket from "ws";

import { RawSocket } from "./rawsocket.js";

// Every chat text starts with this marker, then the publish time in µs
// (performance.now() of this process), then "~".
export const MARKER = Buffer.from("~b~");
const TILDE = 0x7e;

export class Client {
  constructor({ index, url, transport, protocol, room, roomIndex, token, localAddress, stats, noncePrefix }) {
    this.index = index;
    this.transport = transport;
    this.url = url;
    this.protocol = protocol;
    this.room = room;
    this.roomIndex = roomIndex;
    this.token = token;
    this.localAddress = localAddress;
    this.stats = stats;
    this.noncePrefix = noncePrefix;
    this.ws = null;
    this.isReady = false;
    this.received = 0;
    this.slow = false;
    this.closeCode = null;
    this.closedAt = null;
    this.sentAt = new Map();
    this.errors = [];
    this._settle = null;
  }

  /** Connect (and subscribe, for a subscriber); resolves when usable. */
  open(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._settle = null;
        reject(new Error("timed out connecting"));
        this.terminate();
      }, timeoutMs);
      this._settle = (error) => {
        clearTimeout(timer);
        this._settle = null;
        if (error) reject(error);
        else resolve(this);
      };
      const headers = this.token ? { Cookie: `streamchat_session=${this.token}` } : {};
      if (this.transport === "ws") this._openWs(headers, timeoutMs);
      else this._openRaw(headers, timeoutMs);
    });
  }

  _openRaw(headers, timeoutMs) {
    this.ws = new RawSocket(
      this.url,
      { headers, localAddress: this.localAddress, timeoutMs },
      {
        onOpen: () => this.protocol.onOpen(this),
        onText: (data, start, end) => this._onMessage(data, start, end),
        onError: (error) => this._settle?.(error),
        onClose: (code) => this._onClose(code),
      },
    );
  }

  _openWs(headers, timeoutMs) {
    const ws = new WebSocket(this.url, {
      headers,
      perMessageDeflate: false,
      skipUTF8Validation: true,
      localAddress: this.localAddress,
      handshakeTimeout: timeoutMs,
    });
    this.ws = ws;
    ws.on("open", () => this.protocol.onOpen(this));
    ws.on("message", (data) => this._onMessage(data, 0, data.length));
    ws.on("error", (error) => this._settle?.(error));
    ws.on("close", (code) => this._onClose(code));
  }

  _onClose(code) {
    this.closeCode = code;
    this.closedAt = performance.now();
    this.stats.onClose(this, code);
    this._settle?.(new Error(`closed with ${code} before it was ready`));
  }

  ready() {
    if (this.isReady) return;
    this.isReady = true;
    this._settle?.(null);
  }

  failed(id, reason) {
    if (!this.isReady) {
      this._settle?.(new Error(reason));
      return;
    }
    if (id !== null && id !== undefined) this.sentAt.delete(id);
    this.errors.push(reason);
    this.stats.onError(this, reason);
  }

  acked(id) {
    const sent = this.sentAt.get(id);
    if (sent === undefined) return;
    this.sentAt.delete(id);
    this.stats.onAck(this, sent, performance.now());
  }

  publish(room, text, id, sentAt) {
    this.sentAt.set(id, sentAt);
    this.protocol.publish(this, room, text, id);
  }

  pause() {
    this.slow = true;
    this.ws.pause();
  }

  resume() {
    this.ws.resume();
  }

  terminate() {
    this.ws?.terminate();
  }

  get closed() {
    return this.closeCode !== null;
  }

  _onMessage(data, start, end) {
    const stats = this.stats;
    stats.lastFrameAt = performance.now();
    if (this.isReady && this.room !== null) {
      if (this.protocol.isPing?.(data, start, end)) {
        this.ws.send("3");
      } else if (scan(data, start, end, this, stats) === 0) {
        this.protocol.onControl(this, data.subarray(start, end));
      }
      return;
    }
    this.protocol.onControl(this, data.subarray(start, end));
    // A `subscribed` reply may share its frame with the first deliveries.
    if (this.isReady && this.room !== null) scan(data, start, end, this, stats);
  }
}

/** Count the chat deliveries in data[start:end] and record their latency; returns how many. */
function scan(data, start, end, client, stats) {
  let at = data.indexOf(MARKER, start);
  if (at === -1 || at >= end) return 0;
  const now = performance.now() * 1000;
  let found = 0;
  while (at !== -1 && at < end) {
    let i = at + MARKER.length;
    let sentUs = 0;
    for (let c = data[i]; c !== TILDE && i < end; c = data[++i]) {
      sentUs = sentUs * 10 + (c - 0x30);
    }
    found += 1;
    stats.onDelivery(client, sentUs, now);
    at = data.indexOf(MARKER, i);
  }
  client.received += found;
  return found;
}
