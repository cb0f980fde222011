// The two wire protocols the load generator speaks.
//
// - "json": streamchat's room protocol (docs/protocol.md): JSON objects in text
//   frames, several per frame separated by "\n". The bare aiohttp peer speaks
//   the same subset (subscribe / subscribed, publish / ack, message).
// - "socketio": Engine.IO v4 over a WebSocket with Socket.IO v5 packets on top,
//   spoken directly so no socket.io-client sits in the measurement:
//   server "0{...}" open, client "40", server "40{...}", events '42["name",data]',
//   acks "43<id>[...]", and the server's ping "2" answered with "3".
//
// A protocol turns intents (subscribe, publish) into frames and handles every
// frame that is not a chat delivery; deliveries are counted by the caller
// straight from the bytes (see scan.js), whatever the protocol.

const ASCII_0 = 0x30;
const ASCII_2 = 0x32;
const ASCII_3 = 0x33;
const ASCII_4 = 0x34;

export const json = {
  name: "json",

  onOpen(client) {
    if (client.room !== null) {
      client.ws.send(JSON.stringify({ type: "subscribe", id: 1, room: client.room }));
    } else {
      client.ready();
    }
  },

  onControl(client, data) {
    const text = data.toString();
    for (const line of text.split("\n")) {
      if (line.length === 0) continue;
      // Most frames a subscriber sees here are `join`s; only parse what matters.
      if (line.includes('"type":"ack"')) {
        const frame = JSON.parse(line);
        client.acked(frame.id);
      } else if (line.includes('"type":"subscribed"')) {
        client.ready();
      } else if (line.includes('"type":"error"')) {
        const frame = JSON.parse(line);
        client.failed(frame.id, `${frame.code}: ${frame.reason}`);
      }
    }
  },

  publish(client, room, text, id) {
    client.ws.send(
      `{"type":"publish","id":${id},"room":${JSON.stringify(room)},` +
        `"text":${JSON.stringify(text)},"nonce":"${client.noncePrefix}${id}"}`,
    );
  },
};

export const socketio = {
  name: "socketio",

  onOpen() {
    // Engine.IO speaks first ("0{...}"); nothing to send yet.
  },

  isPing(data, start, end) {
    return end - start === 1 && data[start] === ASCII_2;
  },

  onControl(client, data) {
    if (data.length === 0) return;
    const kind = data[0];
    if (kind === ASCII_2 && data.length === 1) {
      client.ws.send("3");
    } else if (kind === ASCII_0) {
      client.ws.send("40");
    } else if (kind === ASCII_4 && data.length > 1) {
      const packet = data[1];
      if (packet === ASCII_0) {
        // Connected to the namespace.
        if (client.room !== null) {
          client.ws.send(`420${JSON.stringify(["subscribe", client.room])}`);
        } else {
          client.ready();
        }
      } else if (packet === ASCII_3) {
        const text = data.toString();
        const id = Number.parseInt(text.slice(2, text.indexOf("[")), 10);
        if (id === 0 && !client.isReady) client.ready();
        else client.acked(id);
      } else if (packet === ASCII_4) {
        client.failed(null, `connect_error: ${data.toString().slice(2)}`);
      }
    }
  },

  publish(client, room, text, id) {
    client.ws.send(`42${id}${JSON.stringify(["publish", { room, text }])}`);
  },
};

export const protocols = { json, socketio };
