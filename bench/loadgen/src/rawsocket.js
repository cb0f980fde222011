// A minimal RFC 6455 client for the receiving hot path.
//
// `ws` is a complete WebSocket implementation, and its completeness costs:
// every frame goes through a stream, a parser state machine and an event per
// message. Counting deliveries needs none of that. This client reads straight
// from the TCP socket into one shared buffer (net's `onread`, which bypasses
// streams), walks the frame headers in place and hands each text payload's
// byte range to a callback. It answers pings and close frames, masks what it
// sends (as clients must) and checks the handshake's accept key. No
// extensions, no fragmentation on send; received fragments are fine.

import { createHash, randomBytes, randomFillSync } from "node:crypto";
import net from "node:net";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const HEADER_END = Buffer.from("\r\n\r\n");

// One read buffer for every socket: each read is handled to the end before the
// next one, and a frame split across reads is copied out into `pending`.
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);
const MASK = Buffer.allocUnsafe(4);

export class RawSocket {
  /**
   * @param {string} url ws://host:port/path?query
   * @param {{headers?: object, localAddress?: string, timeoutMs: number}} options
   * @param {{onOpen(), onText(buf, start, end), onClose(code), onError(err)}} handler
   */
  constructor(url, options, handler) {
    const target = new URL(url);
    this.handler = handler;
    this.readyState = 0;
    this.pending = null;
    this.closeCode = null;
    this._handshake = Buffer.alloc(0);
    const key = randomBytes(16).toString("base64");
    this._accept = createHash("sha1").update(key + GUID).digest("base64");
    const lines = [
      `GET ${target.pathname}${target.search} HTTP/1.1`,
      `Host: ${target.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
    ];
    for (const [name, value] of Object.entries(options.headers ?? {})) lines.push(`${name}: ${value}`);
    this.socket = net.connect({
      host: target.hostname,
      port: Number(target.port),
      localAddress: options.localAddress,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n, buf) => this._onRead(n, buf) },
    });
    this.socket.setTimeout(options.timeoutMs, () => {
      if (this.readyState === 0) this._fail(new Error("handshake timed out"));
    });
    this.socket.on("connect", () => this.socket.write(`${lines.join("\r\n")}\r\n\r\n`));
    this.socket.on("error", (error) => this._fail(error));
    this.socket.on("close", () => this._closed(this.closeCode ?? 1006));
  }

  send(text) {
    if (this.readyState !== 1) return;
    const payload = Buffer.from(text);
    const length = payload.length;
    const headerLength = length < 126 ? 6 : length < 65536 ? 8 : 14;
    const frame = Buffer.allocUnsafe(headerLength + length);
    frame[0] = 0x80 | OP_TEXT;
    if (length < 126) {
      frame[1] = 0x80 | length;
    } else if (length < 65536) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(length, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(length), 2);
    }
    randomFillSync(MASK);
    MASK.copy(frame, headerLength - 4);
    for (let i = 0; i < length; i += 1) frame[headerLength + i] = payload[i] ^ MASK[i & 3];
    this.socket.write(frame);
  }

  pause() {
    this.socket.pause();
  }

  resume() {
    this.socket.resume();
  }

  terminate() {
    this.readyState = 3;
    this.socket.destroy();
  }

  _sendControl(opcode, payload) {
    const frame = Buffer.allocUnsafe(6 + payload.length);
    frame[0] = 0x80 | opcode;
    frame[1] = 0x80 | payload.length;
    randomFillSync(MASK);
    MASK.copy(frame, 2);
    for (let i = 0; i < payload.length; i += 1) frame[6 + i] = payload[i] ^ MASK[i & 3];
    this.socket.write(frame);
  }

  _onRead(nread, buf) {
    if (this.readyState === 0) {
      this._readHandshake(Buffer.from(buf.subarray(0, nread)));
      return;
    }
    // A view bounded by this read, so that searches never run into stale bytes.
    let data = buf.subarray(0, nread);
    if (this.pending !== null) {
      data = Buffer.concat([this.pending, data]);
      this.pending = null;
    }
    this._parse(data, 0, data.length);
  }

  _readHandshake(chunk) {
    this._handshake = Buffer.concat([this._handshake, chunk]);
    const at = this._handshake.indexOf(HEADER_END);
    if (at === -1) return;
    const head = this._handshake.subarray(0, at).toString("latin1");
    const rest = this._handshake.subarray(at + HEADER_END.length);
    this._handshake = null;
    const status = head.slice(0, head.indexOf("\r\n"));
    if (!/^HTTP\/1\.1 101 /.test(status)) {
      this._fail(new Error(`handshake refused: ${status}`));
      return;
    }
    const accept = /\r\nsec-websocket-accept:\s*(\S+)/i.exec(head);
    if (!accept || accept[1] !== this._accept) {
      this._fail(new Error("handshake: bad Sec-WebSocket-Accept"));
      return;
    }
    this.readyState = 1;
    this.socket.setTimeout(0);
    this.handler.onOpen();
    if (rest.length > 0) this._parse(rest, 0, rest.length);
  }

  _parse(data, start, end) {
    let at = start;
    while (at < end) {
      if (end - at < 2) break;
      const b0 = data[at];
      let length = data[at + 1] & 0x7f;
      let header = 2;
      if (length === 126) {
        if (end - at < 4) break;
        length = data.readUInt16BE(at + 2);
        header = 4;
      } else if (length === 127) {
        if (end - at < 10) break;
        length = Number(data.readBigUInt64BE(at + 2));
        header = 10;
      }
      if (end - at < header + length) break;
      const from = at + header;
      const to = from + length;
      const opcode = b0 & 0x0f;
      if (opcode === OP_TEXT || opcode === OP_CONTINUATION || opcode === OP_BINARY) {
        this.handler.onText(data, from, to);
      } else if (opcode === OP_PING) {
        this._sendControl(0xa, Buffer.from(data.subarray(from, to)));
      } else if (opcode === OP_CLOSE) {
        this.closeCode = length >= 2 ? data.readUInt16BE(from) : 1005;
        if (this.readyState === 1) this._sendControl(OP_CLOSE, Buffer.from(data.subarray(from, Math.min(to, from + 2))));
        this.readyState = 2;
        this.socket.end();
        return;
      }
      if (this.readyState > 1) return;
      at = to;
    }
    if (at < end) this.pending = Buffer.from(data.subarray(at, end));
  }

  _fail(error) {
    if (this.readyState === 3) return;
    this.handler.onError(error);
    this.socket.destroy();
  }

  _closed(code) {
    if (this.readyState === 4) return;
    this.readyState = 4;
    this.handler.onClose(code);
  }
}
