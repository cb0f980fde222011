// Node Socket.IO 4 peer: the room semantics of streamchat's fan-out benchmark.
//
//   PORT=9100 node server.js
//
// "subscribe" joins the socket to a room (and acks); "publish" broadcasts
// {room, text} as a "message" event to every socket in the room, the publisher
// excluded unless it joined, then acks. WebSocket transport only, no compression.

import { createServer } from "node:http";

import { Server } from "socket.io";

const port = Number.parseInt(process.env.PORT ?? "9100", 10);
const host = process.env.HOST ?? "127.0.0.1";

const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 64 * 1024,
});

io.on("connection", (socket) => {
  socket.on("subscribe", (room, ack) => {
    if (typeof room !== "string") return;
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
  socket.on("publish", (payload, ack) => {
    if (!payload || typeof payload.room !== "string" || typeof payload.text !== "string") return;
    io.to(payload.room).emit("message", { room: payload.room, text: payload.text });
    if (typeof ack === "function") ack(true);
  });
});

httpServer.listen(port, host, () => {
  process.stdout.write(`socket.io listening on ${host}:${port}\n`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(0));
}
