// The load generator of bench/run.py: one Node process, many WebSocket clients.
//
//   node src/main.js SPEC.json
//
// SPEC names a scenario and its numbers (see bench/harness/loadgen.py, which
// writes it). Progress and results go to stdout as JSON lines ({"event": ...});
// the orchestrator answers on stdin: "go" starts publishing once it has seen
// "ready" (and sampled the server), "close" ends an idle hold.
//
// Scenarios:
//   traffic  subscribers in rooms, publishers at a fixed total rate, optionally
//            some subscribers that stop reading; counts every delivery and its
//            publish -> deliver latency, and publish -> ack on the publishers.
//   idle     open N subscribed connections and hold them until told to close.
//   connect  N connect + subscribe handshakes, a bounded number at a time.

import { readFileSync } from "node:fs";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { createInterface } from "node:readline";

import { Client } from "./client.js";
import { Histogram } from "./histogram.js";
import { protocols } from "./protocols.js";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const protocol = protocols[spec.protocol];
if (!protocol) throw new Error(`unknown protocol ${spec.protocol}`);
const tokens = spec.tokens_file
  ? JSON.parse(readFileSync(spec.tokens_file, "utf8"))
  : { subscribers: [], publishers: [] };

function emit(event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

const commands = [];
let commandWaiter = null;
createInterface({ input: process.stdin })
  .on("line", (line) => {
    commands.push(line.trim());
    commandWaiter?.();
  })
  .on("close", () => {
    commands.push("eof");
    commandWaiter?.();
  });

async function command() {
  while (commands.length === 0) await new Promise((resolve) => (commandWaiter = resolve));
  commandWaiter = null;
  return commands.shift();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function cpuPercent(since, wallMs) {
  const used = process.cpuUsage(since);
  return wallMs > 0 ? round((100 * (used.user + used.system)) / 1000 / wallMs) : null;
}

function cpuSplit(since, wallMs) {
  const used = process.cpuUsage(since);
  return { user: round((100 * used.user) / 1000 / wallMs), system: round((100 * used.system) / 1000 / wallMs) };
}

function round(x, digits = 1) {
  const scale = 10 ** digits;
  return Math.round(x * scale) / scale;
}

/** Per-run counters that clients report into. */
class Stats {
  constructor() {
    this.lastFrameAt = performance.now();
    this.measureFromUs = Number.POSITIVE_INFINITY;
    this.healthy = new Histogram();
    this.slow = new Histogram();
    this.acks = new Histogram();
    this.delivered = 0;
    this.firstDeliveryAt = null;
    this.lastDeliveryAt = null;
    this.acked = 0;
    this.errors = new Map();
    this.closes = new Map();
  }

  onDelivery(client, sentUs, nowUs) {
    if (!client.slow) {
      this.delivered += 1;
      this.lastDeliveryAt = nowUs;
      if (this.firstDeliveryAt === null) this.firstDeliveryAt = nowUs;
    }
    if (sentUs >= this.measureFromUs) {
      (client.slow ? this.slow : this.healthy).record((nowUs - sentUs) / 1000);
    }
  }

  onAck(_client, sentAtMs, nowMs) {
    this.acked += 1;
    if (sentAtMs * 1000 >= this.measureFromUs) this.acks.record(nowMs - sentAtMs);
  }

  onError(_client, reason) {
    this.errors.set(reason, (this.errors.get(reason) ?? 0) + 1);
  }

  onClose(_client, code) {
    this.closes.set(code, (this.closes.get(code) ?? 0) + 1);
  }
}

function sourceAddress(index) {
  const count = spec.source_ips ?? 1;
  return count > 1 ? `127.0.0.${1 + (index % count)}` : undefined;
}

/** Open clients with at most `concurrency` handshakes in flight; returns [opened, failures]. */
async function openAll(clients, concurrency, timeoutMs) {
  let next = 0;
  const failures = [];
  async function worker() {
    while (next < clients.length) {
      const client = clients[next];
      next += 1;
      try {
        await client.open(timeoutMs);
      } catch (error) {
        failures.push(String(error.message ?? error));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, clients.length) }, worker));
  return failures;
}

function subscribers(stats, count, offset = 0) {
  const rooms = spec.rooms;
  const perRoom = spec.subscribers_per_room ?? Math.ceil(count / rooms.length);
  return Array.from({ length: count }, (_, i) => {
    const index = offset + i;
    const roomIndex = Math.floor(i / perRoom) % rooms.length;
    return new Client({
      index,
      url: spec.url,
      transport: spec.transport ?? "raw",
      protocol,
      room: rooms[roomIndex],
      roomIndex,
      token: tokens.subscribers[index % Math.max(1, tokens.subscribers.length)],
      localAddress: sourceAddress(index),
      stats,
      noncePrefix: "",
    });
  });
}

function summarizeFailures(failures) {
  const counts = {};
  for (const reason of failures) counts[reason] = (counts[reason] ?? 0) + 1;
  return counts;
}

async function waitQuiet(stats, quietMs, maxMs) {
  const started = performance.now();
  while (performance.now() - started < maxMs) {
    if (performance.now() - stats.lastFrameAt >= quietMs) return true;
    await sleep(Math.max(10, quietMs / 5));
  }
  return false;
}

async function traffic() {
  const stats = new Stats();
  const rooms = spec.rooms;
  const subCount = rooms.length * spec.subscribers_per_room;
  const subs = subscribers(stats, subCount);
  const pubs = [];
  for (let p = 0; p < rooms.length * spec.publishers_per_room; p += 1) {
    const roomIndex = p % rooms.length;
    pubs.push(
      new Client({
        index: subCount + p,
        url: spec.url,
        transport: spec.transport ?? "raw",
        protocol,
        room: null,
        roomIndex,
        token: tokens.publishers[p % Math.max(1, tokens.publishers.length)],
        localAddress: sourceAddress(subCount + p),
        stats,
        noncePrefix: `${process.pid}-${p}-`,
      }),
    );
  }
  const timeout = (spec.connect_timeout_s ?? 30) * 1000;
  const connectStart = performance.now();
  const failures = [
    ...(await openAll(subs, spec.concurrency ?? 200, timeout)),
    ...(await openAll(pubs, spec.concurrency ?? 200, timeout)),
  ];
  const connectSeconds = (performance.now() - connectStart) / 1000;
  if (failures.length > 0) {
    emit("error", { message: "clients failed to connect", failures: summarizeFailures(failures) });
    return shutdown([...subs, ...pubs], 2);
  }
  emit("connected", { clients: subs.length + pubs.length, seconds: round(connectSeconds, 2) });
  // Subscribing announces joins to the room; let that traffic pass before measuring.
  const quiet = await waitQuiet(stats, 500, (spec.settle_max_s ?? 60) * 1000);
  emit("ready", { quiet });
  if ((await command()) !== "go") return shutdown([...subs, ...pubs], 2);

  const slowCount = spec.slow ?? 0;
  const slowEvery = slowCount > 0 ? Math.floor(subs.length / slowCount) : 0;
  const slowClients = [];
  for (let k = 0; k < slowCount; k += 1) slowClients.push(subs[k * slowEvery + slowEvery - 1]);
  for (const client of slowClients) client.pause();
  // The slow clients' handlers no longer run, so the healthy count is fixed from here.
  const healthy = subs.filter((client) => !client.slow);

  const rate = spec.rate;
  const published = new Array(rooms.length).fill(0);
  const padding = "x".repeat(spec.text_bytes ?? 100);
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  const startMs = performance.now();
  const measureFromMs = startMs + (spec.warmup_s ?? 1) * 1000;
  const endMs = measureFromMs + spec.duration_s * 1000;
  stats.measureFromUs = measureFromMs * 1000;
  const cpuStart = process.cpuUsage();
  let measureCpu = null;
  let sent = 0;
  let nextId = 1;
  emit("publish_start", { rate });
  loopDelay.enable();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (measureCpu === null && now >= measureFromMs) measureCpu = process.cpuUsage();
      const until = Math.min(now, endMs);
      const due = Math.floor(((until - startMs) / 1000) * rate);
      while (sent < due) {
        const publisher = pubs[sent % pubs.length];
        const sentAt = performance.now();
        const head = `~b~${Math.round(sentAt * 1000)}~${sent}~`;
        const text = head + padding.slice(0, Math.max(0, padding.length - head.length));
        publisher.publish(rooms[publisher.roomIndex], text, nextId, sentAt);
        published[publisher.roomIndex] += 1;
        nextId += 1;
        sent += 1;
      }
      if (now >= endMs) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  const publishEnd = performance.now();
  const measuredCpu = cpuPercent(measureCpu ?? cpuStart, publishEnd - Math.max(measureFromMs, startMs));
  emit("publish_end", { sent });

  const expectedOf = (client) => published[client.roomIndex];
  let expected = 0;
  for (const client of healthy) expected += expectedOf(client);
  const drainUntil = publishEnd + (spec.drain_s ?? 3) * 1000;
  while (stats.delivered < expected && performance.now() < drainUntil) await sleep(5);
  // Acks may trail the last delivery slightly.
  const ackUntil = performance.now() + 1000;
  while (stats.acked < sent && performance.now() < ackUntil) await sleep(5);
  loopDelay.disable();
  const totalCpu = cpuPercent(cpuStart, performance.now() - startMs);

  let lost = 0;
  let duplicated = 0;
  let disconnected = 0;
  for (const client of healthy) {
    const missing = expectedOf(client) - client.received;
    if (missing > 0) lost += missing;
    else duplicated -= missing;
    if (client.closed) disconnected += 1;
  }
  const healthyCloses = Object.fromEntries(stats.closes);
  const deliverySpanS =
    stats.lastDeliveryAt !== null ? (stats.lastDeliveryAt / 1000 - startMs) / 1000 : null;

  // Slow clients: read again and see whether the server has dropped them.
  let slowResult = null;
  if (slowClients.length > 0) {
    stats.closes.clear();
    for (const client of slowClients) client.resume();
    const waitUntil = performance.now() + (spec.slow_wait_s ?? 15) * 1000;
    while (slowClients.some((c) => !c.closed) && performance.now() < waitUntil) await sleep(20);
    const codes = {};
    for (const client of slowClients) {
      const key = client.closed ? String(client.closeCode) : "open";
      codes[key] = (codes[key] ?? 0) + 1;
    }
    slowResult = {
      clients: slowClients.length,
      disconnected: slowClients.filter((c) => c.closed).length,
      close_codes: codes,
      received_min: Math.min(...slowClients.map((c) => c.received)),
      received_max: Math.max(...slowClients.map((c) => c.received)),
      latency: stats.slow.summary(),
    };
  }

  const unacked = pubs.reduce((n, p) => n + p.sentAt.size, 0);
  emit("result", {
    subscribers: subs.length,
    healthy_subscribers: healthy.length,
    publishers: pubs.length,
    rate,
    sent,
    measured_seconds: spec.duration_s,
    expected_deliveries: expected,
    delivered: stats.delivered,
    lost,
    duplicated,
    disconnected,
    closes: healthyCloses,
    delivery_span_s: deliverySpanS !== null ? round(deliverySpanS, 3) : null,
    delivered_per_s: deliverySpanS ? Math.round(stats.delivered / deliverySpanS) : 0,
    latency: stats.healthy.summary(),
    acked: stats.acked,
    unacked,
    ack_latency: stats.acks.summary(),
    errors: Object.fromEntries(stats.errors),
    slow: slowResult,
    connect_seconds: round(connectSeconds, 2),
    loadgen_cpu_percent: measuredCpu,
    loadgen_cpu_percent_total: totalCpu,
    loadgen_cpu_split: cpuSplit(measureCpu ?? cpuStart, publishEnd - Math.max(measureFromMs, startMs)),
    loadgen_loop_delay_p99_ms: round(loopDelay.percentile(99) / 1e6, 2),
  });
  return shutdown([...subs, ...pubs], 0);
}

async function idle() {
  const stats = new Stats();
  const clients = subscribers(stats, spec.connections);
  const started = performance.now();
  const failures = await openAll(clients, spec.concurrency ?? 200, (spec.connect_timeout_s ?? 30) * 1000);
  const seconds = (performance.now() - started) / 1000;
  const quiet = await waitQuiet(stats, 500, (spec.settle_max_s ?? 60) * 1000);
  emit("ready", {
    connected: clients.length - failures.length,
    failed: failures.length,
    failures: summarizeFailures(failures),
    seconds: round(seconds, 2),
    quiet,
  });
  await command();
  const dropped = clients.filter((c) => c.isReady && c.closed).length;
  emit("result", {
    connected: clients.length - failures.length,
    failed: failures.length,
    dropped_while_idle: dropped,
    closes: Object.fromEntries(stats.closes),
    seconds: round(seconds, 2),
  });
  return shutdown(clients, 0);
}

async function connect() {
  const stats = new Stats();
  const total = spec.connections;
  const latency = new Histogram();
  const failures = [];
  let next = 0;
  const timeout = (spec.connect_timeout_s ?? 30) * 1000;
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  async function worker() {
    while (next < total) {
      const [client] = subscribers(stats, 1, next);
      client.room = spec.rooms[next % spec.rooms.length];
      next += 1;
      const t0 = performance.now();
      try {
        await client.open(timeout);
        latency.record(performance.now() - t0);
      } catch (error) {
        failures.push(String(error.message ?? error));
      }
      client.terminate();
    }
  }
  await Promise.all(Array.from({ length: Math.min(spec.concurrency ?? 200, total) }, worker));
  const wallMs = performance.now() - started;
  emit("result", {
    connections: total,
    succeeded: total - failures.length,
    failed: failures.length,
    failures: summarizeFailures(failures),
    seconds: round(wallMs / 1000, 3),
    per_s: Math.round(((total - failures.length) * 1000) / wallMs),
    latency: latency.summary(),
    loadgen_cpu_percent: cpuPercent(cpuStart, wallMs),
  });
  return shutdown([], 0);
}

async function shutdown(clients, code) {
  for (const client of clients) client.terminate();
  // Let the terminations reach the sockets before exiting.
  await sleep(50);
  process.exit(code);
}

const scenarios = { traffic, idle, connect };
const deadline = setTimeout(() => {
  emit("error", { message: `loadgen deadline of ${spec.deadline_s} s passed` });
  process.exit(3);
}, (spec.deadline_s ?? 300) * 1000);
deadline.unref();

const run = scenarios[spec.scenario];
if (!run) throw new Error(`unknown scenario ${spec.scenario}`);
run().catch((error) => {
  emit("error", { message: String(error.stack ?? error) });
  process.exit(1);
});
