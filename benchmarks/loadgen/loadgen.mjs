// Websocket load generator for the chatroom-server benchmarks (driven by benchmarks/run.py).
//
//   node loadgen.mjs '<config JSON>'        (or the config JSON on stdin)
//
// Config: {"mode": "rooms"|"idle"|"storm", "url": "ws://127.0.0.1:PORT/ws",
//          "tokens": [...], "rooms": [ids], "rate": 20,
//          "clients_per_room": 10, "connections": 5000, "warmup": 2, "duration": 10,
//          "drain_timeout": 10, "connect_concurrency": 200, "fast_reader": true,
//          "senders": 10, "after": 3, "recovery": true, "storm_timeout": 120}
//
// The one-room modes (throughput, rate) live in fanout.c, compiled: at millions of
// frames a second this process would be the bottleneck.
//
// - rooms: every client of every room sends `rate` messages/s and receives its room.
// - idle: open `connections`, print {"event":"connected",...}, hold them until a line
//   arrives on stdin, close them.
// - storm: open `connections` over the rooms, print {"event":"connected",...}; on the
//   line "go" the first `senders` clients (one a room) send `rate` messages/s. run.py
//   then restarts the server: every client reconnects as soon as it is closed, retrying
//   with a capped backoff, and all waiting clients retry at once on the line "up" (the
//   server answers again). With `recovery`, a client reconnects with since=<the last
//   message ID it saw> and is caught up at its `recovered` frame. Once all are, the
//   senders go on for `after` seconds and stop; when every sent message came back,
//   {"event":"sent_done"} is printed and run.py answers with one line
//   {"truth": {room: [every stored message ID, oldest first]}}: each client must have
//   received its room's messages exactly once each, in that order.
//
// stdout: event lines ({"event":"measure_start"}, {"event":"measure_end"},
// {"event":"connected",...}) and, last, ONE result line {"event":"result",...}.
// Progress goes to stderr.
//
// Cheap per frame on purpose (the server, not this, must be the bottleneck): received
// frames are never JSON-parsed (the message number is read after the marker
// `"chatMessage":"bench ` straight from the bytes), receivers read their sockets
// through a minimal frame reader (see "fast frame reader"), and latencies go into a
// fixed histogram.

import { readFileSync } from "node:fs";
import net from "node:net";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import WebSocket from "ws";

// ------------------------------------------------------------------ config

function readConfig() {
  const raw = process.argv[2] ?? readFileSync(0, "utf8");
  const cfg = JSON.parse(raw);
  return {
    mode: cfg.mode,
    url: cfg.url,
    tokens: cfg.tokens?.length ? cfg.tokens : ["x"],
    rooms: cfg.rooms?.length ? cfg.rooms : [1],
    rate: cfg.rate ?? 20,
    clientsPerRoom: cfg.clients_per_room ?? 10,
    connections: cfg.connections ?? 5000,
    warmup: cfg.warmup ?? 2,
    duration: cfg.duration ?? 10,
    drainTimeout: cfg.drain_timeout ?? 10,
    connectConcurrency: cfg.connect_concurrency ?? 200,
    closeTimeout: cfg.close_timeout ?? 10,
    fastReader: cfg.fast_reader ?? true,
    senders: cfg.senders ?? 10,
    after: cfg.after ?? 3,
    recovery: cfg.recovery ?? true,
    stormTimeout: cfg.storm_timeout ?? 120,
  };
}

const cfg = readConfig();
const log = (msg) => process.stderr.write(`[loadgen ${cfg.mode}] ${msg}\n`);
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// ------------------------------------------------------------------ frame parsing

const MARK = Buffer.from('"chatMessage":');
const BENCH = Buffer.from('"bench ');
const ERROR_EVENT = Buffer.from('"Event":"error"');
const NOT_OURS = -1;
const ERROR_FRAME = -2;

// Where MARK starts in buf[start, end), or -1: Boyer-Moore-Horspool in plain JS, which
// beats Buffer#indexOf (a native call, and memchr on '"', frequent in JSON) on small frames.
const MARK_LAST = MARK.length - 1;
const MARK_SKIP = new Uint8Array(256).fill(MARK.length);
for (let k = 0; k < MARK_LAST; k++) MARK_SKIP[MARK[k]] = MARK_LAST - k;

let markHint = 0;

function findMark(buf, start, end) {
  let i = start + MARK_LAST;
  while (i < end) {
    let j = MARK_LAST;
    let k = i;
    while (buf[k] === MARK[j]) {
      if (j === 0) return k;
      j--;
      k--;
    }
    i += MARK_SKIP[buf[i]];
  }
  return -1;
}

// The message number of the benchmark message frame in buf[start, end), NOT_OURS, or
// ERROR_FRAME.
function parseMsgno(buf, start, end) {
  // Frames look alike: try where the marker was in the previous one first.
  let at = start + markHint;
  let j = MARK_LAST;
  if (at + MARK_LAST < end) while (j >= 0 && buf[at + j] === MARK[j]) j--;
  if (j >= 0) {
    at = findMark(buf, start, end);
    if (at >= 0) markHint = at - start;
  }
  if (at >= 0) {
    let pos = at + MARK.length;
    if (buf[pos] === 0x20) pos++; // tolerate `"chatMessage": "bench 1"`
    let ok = pos + BENCH.length < end;
    for (let i = 0; ok && i < BENCH.length; i++) ok = buf[pos + i] === BENCH[i];
    if (ok) {
      pos += BENCH.length;
      let n = 0;
      let digits = 0;
      for (let c = buf[pos]; pos < end && c >= 0x30 && c <= 0x39; c = buf[++pos]) {
        n = n * 10 + (c - 0x30);
        digits++;
      }
      if (digits > 0) return n;
    }
  }
  const err = buf.indexOf(ERROR_EVENT, start);
  return err >= 0 && err < end ? ERROR_FRAME : NOT_OURS;
}

// ------------------------------------------------------------------ fast frame reader
//
// Receivers get many small frames, about one per socket read. Node's and ws's receive
// path (a fresh 64 KiB buffer a read, a Readable and a Writable stream, frame objects,
// two event emits a frame) costs about as much as the server's send. So receivers'
// sockets are created with `onread` (every read lands in one static buffer, handed to a
// callback: no stream, no allocation) and, once open, a minimal reader of the server's
// unmasked frames takes them. ws still does the handshake, all sending, pongs and the
// close handshake: the reader hands the socket back to ws at a close frame or anything
// unusual, and before the upgrade the callback feeds the stream as usual.

const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_PING = 0x9;
const OP_PONG = 0xa;
const kFast = Symbol("fastReader");
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024); // one thread: one shared read buffer

// ws's createConnection option: a TCP socket whose reads go to sock[kFast] when set.
function fastConnection(options) {
  const sock = net.connect({
    ...options,
    path: undefined,
    onread: {
      buffer: READ_BUFFER,
      callback(nread, buf) {
        const feed = sock[kFast];
        if (feed) feed(buf.subarray(0, nread));
        else sock.push(Buffer.from(buf.subarray(0, nread))); // handshake: the stream way
      },
    },
  });
  sock[kFast] = null;
  return sock;
}

// After 'open': take the socket's reads from ws. Returns false if that is not possible.
function attachFastReader(conn, onPayload) {
  const sock = conn.ws._socket;
  const wsListeners = sock.listeners("data");
  if (!(kFast in sock) || wsListeners.length !== 1) return false;
  const wsOnData = wsListeners[0];
  let pending = null;
  const handBack = (rest) => {
    sock[kFast] = null;
    sock.on("data", wsOnData);
    if (rest.length > 0) sock.push(rest);
  };
  // chunk may be the shared read buffer: nothing of it is kept without a copy.
  const feed = (chunk) => {
    const now = performance.now(); // one clock read per socket read: its frames came together
    let buf = chunk;
    if (pending !== null) {
      buf = Buffer.concat([pending, chunk]);
      pending = null;
    }
    const n = buf.length;
    let i = 0;
    while (n - i >= 2) {
      const b0 = buf[i];
      const b1 = buf[i + 1];
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (n - i < 4) break;
        len = (buf[i + 2] << 8) | buf[i + 3];
        hdr = 4;
      } else if (len === 127) {
        if (n - i < 10) break;
        len = buf.readUInt32BE(i + 6) + buf.readUInt32BE(i + 2) * 2 ** 32;
        hdr = 10;
      }
      const opcode = b0 & 0x0f;
      const simple = opcode === OP_TEXT || opcode === OP_BINARY || opcode === OP_PONG;
      if ((b0 & 0x80) === 0 || (b1 & 0x80) !== 0 || !(simple || opcode === OP_PING)) {
        handBack(Buffer.from(buf.subarray(i))); // close, fragments, masked: ws's business
        return;
      }
      const end = i + hdr + len;
      if (end > n) break;
      if (opcode === OP_TEXT) onPayload(buf, i + hdr, end, now);
      else if (opcode === OP_PING) conn.ws.pong(Buffer.from(buf.subarray(i + hdr, end)));
      i = end;
    }
    if (i < n) pending = Buffer.from(buf.subarray(i));
  };
  sock.removeListener("data", wsOnData);
  sock[kFast] = feed;
  // Bytes that came with the upgrade response, or since, wait in the stream: read them.
  for (let head = sock.read(); head !== null; head = sock.read()) feed(head);
  return true;
}

// ------------------------------------------------------------------ latency histogram

const BUCKET_MS = 0.01; // 10 µs
const NBUCKETS = 1_000_000; // up to 10 s; the last bucket holds everything above
const hist = new Uint32Array(NBUCKETS);
let latCount = 0;
let latSum = 0;
let latMax = 0;

function recordLatency(ms) {
  let b = Math.floor(ms / BUCKET_MS);
  if (b >= NBUCKETS) b = NBUCKETS - 1;
  else if (b < 0) b = 0;
  hist[b]++;
  latCount++;
  latSum += ms;
  if (ms > latMax) latMax = ms;
}

function percentiles(ps) {
  const out = {};
  if (latCount === 0) {
    for (const p of ps) out[p] = null;
    return out;
  }
  const targets = ps.map((p) => Math.max(1, Math.ceil(p * latCount)));
  let cum = 0;
  let k = 0;
  for (let b = 0; b < NBUCKETS && k < ps.length; b++) {
    cum += hist[b];
    while (k < ps.length && cum >= targets[k]) {
      // Upper edge of the bucket, never above the exact maximum.
      out[ps[k]] = Math.min((b + 1) * BUCKET_MS, latMax);
      k++;
    }
  }
  return out;
}

const round3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);

// ------------------------------------------------------------------ message bookkeeping

let sendTime = new Float64Array(1 << 16); // msgno -> performance.now() at send
let recvCount = new Uint32Array(1 << 16); // msgno -> frames received by counted receivers
let expectCount = new Uint16Array(1 << 16); // msgno -> receivers that should get it
let nextMsgno = 1;

function ensureCapacity(no) {
  if (no < sendTime.length) return;
  let size = sendTime.length;
  while (size <= no) size *= 2;
  const grow = (Old, arr) => {
    const a = new Old(size);
    a.set(arr);
    return a;
  };
  sendTime = grow(Float64Array, sendTime);
  recvCount = grow(Uint32Array, recvCount);
  expectCount = grow(Uint16Array, expectCount);
}

// Measured messages: msgno in [m0, m1). Frames arriving in the window: windowFrames.
let m0 = Infinity;
let m1 = Infinity;
let measuring = false;
let windowFrames = 0;
let pendingMeasured = 0; // measured frames expected but not yet received
let drainResolve = null;
let errorFrames = 0;
let sending = false;
let closing = false;
const unexpectedCodes = {};
let unexpectedCount = 0;
let openNow = 0;
let fastReaders = 0;

function sendMessage(conn) {
  if (conn.ws.readyState !== WebSocket.OPEN) return false;
  const no = nextMsgno++;
  ensureCapacity(no);
  if (no >= m0 && no < m1) {
    const expected = conn.roomState ? conn.roomState.open : 0;
    expectCount[no] = expected;
    pendingMeasured += expected;
  }
  sendTime[no] = performance.now();
  conn.ws.send(`{"chatRoomId":${conn.room},"chatMessage":"bench ${no}"}`);
  return true;
}

// A counted receiver got a frame at `now`: its text is buf[start, end).
function onReceiverFrame(buf, start, end, now) {
  const no = parseMsgno(buf, start, end);
  if (no < 0) {
    if (no === ERROR_FRAME) errorFrames++;
    return no;
  }
  if (measuring) windowFrames++;
  if (no >= m0 && no < m1 && no < sendTime.length) {
    recordLatency(now - sendTime[no]);
    recvCount[no]++;
    if (recvCount[no] <= expectCount[no]) {
      pendingMeasured--;
      if (pendingMeasured === 0 && drainResolve !== null) drainResolve();
    }
  }
  return no;
}

// ------------------------------------------------------------------ connections

const roomStates = new Map(); // room id -> {open: counted receivers open in the room}

function roomState(room) {
  let s = roomStates.get(room);
  if (s === undefined) {
    s = { open: 0 };
    roomStates.set(room, s);
  }
  return s;
}

let tokenIndex = 0;

// spec: {room, counted (is a receiver), onFrame(conn, data)}
function openOne(spec) {
  return new Promise((resolve, reject) => {
    const token = cfg.tokens[tokenIndex++ % cfg.tokens.length];
    const url = `${cfg.url}?room_id=${spec.room}&jwt=${encodeURIComponent(token)}`;
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: 30_000,
      ...(spec.fast && cfg.fastReader ? { createConnection: fastConnection } : {}),
    });
    const conn = {
      ws,
      room: spec.room,
      counted: spec.counted,
      roomState: spec.counted ? roomState(spec.room) : null,
      opened: false,
    };
    ws.on("message", (data) => spec.onFrame(conn, data));
    ws.on("open", () => {
      conn.opened = true;
      openNow++;
      if (conn.counted) conn.roomState.open++;
      if (spec.fast && cfg.fastReader) {
        conn.fast = attachFastReader(conn, onReceiverFrame);
        if (conn.fast) fastReaders++;
      }
      resolve(conn);
    });
    ws.on("unexpected-response", (_req, res) => {
      reject(new Error(`HTTP ${res.statusCode}`));
      res.resume();
      ws.terminate();
    });
    ws.on("error", (err) => {
      if (!conn.opened) reject(err);
    });
    ws.on("close", (code) => {
      if (!conn.opened) return;
      conn.opened = false;
      openNow--;
      if (conn.counted) conn.roomState.open--;
      if (!closing) {
        unexpectedCount++;
        unexpectedCodes[code] = (unexpectedCodes[code] ?? 0) + 1;
      }
      if (conn.onClose) conn.onClose();
    });
  });
}

async function openAll(specs) {
  const conns = [];
  const failures = {};
  let failed = 0;
  let next = 0;
  const started = performance.now();
  async function worker() {
    while (next < specs.length) {
      const spec = specs[next++];
      try {
        conns.push(await openOne(spec));
      } catch (err) {
        failed++;
        const key = err?.code ?? err?.message ?? String(err);
        failures[key] = (failures[key] ?? 0) + 1;
      }
      const done = conns.length + failed;
      if (done % 1000 === 0) log(`${done}/${specs.length} connections`);
    }
  }
  const workers = Math.min(cfg.connectConcurrency, specs.length);
  await Promise.all(Array.from({ length: workers }, worker));
  const seconds = (performance.now() - started) / 1000;
  return { conns, failed, failures, seconds };
}

async function closeAll(conns) {
  closing = true;
  const open = conns.filter((c) => c.opened);
  if (open.length === 0) return;
  await new Promise((resolve) => {
    let left = open.length;
    const timer = setTimeout(resolve, cfg.closeTimeout * 1000);
    for (const c of open) {
      c.onClose = () => {
        if (--left === 0) {
          clearTimeout(timer);
          resolve();
        }
      };
      c.ws.close(1000, "bench done");
    }
  });
  for (const c of open) if (c.opened) c.ws.terminate();
}

// ------------------------------------------------------------------ timing helpers

const at = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms - performance.now())));

// Calls fn() every `interval` ms from `start`; catches up (several calls) when late.
function everyInterval(start, interval, fn) {
  let next = start;
  const tick = () => {
    if (!sending) return;
    const now = performance.now();
    while (next <= now && sending) {
      fn();
      next += interval;
    }
    if (sending) setTimeout(tick, Math.max(0, next - performance.now()));
  };
  setTimeout(tick, Math.max(0, next - performance.now()));
}

// ------------------------------------------------------------------ the measured run

async function measure(conns, startSending) {
  const t = performance.now();
  sending = true;
  startSending(t);
  const t0Target = t + cfg.warmup * 1000;
  log(`warm-up ${cfg.warmup}s`);
  await at(t0Target);
  // Window opens.
  m0 = nextMsgno;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  emit({ event: "measure_start" });
  log(`measuring ${cfg.duration}s`);
  await at(t0 + cfg.duration * 1000);
  // Window closes: stop sending; what was sent in it is still awaited below.
  sending = false;
  measuring = false;
  m1 = nextMsgno;
  const t1 = performance.now();
  const cpu1 = process.cpuUsage(cpu0);
  emit({ event: "measure_end" });
  const windowS = (t1 - t0) / 1000;
  const cpuShare = (cpu1.user + cpu1.system) / 1e6 / windowS;

  // Drain: every counted receiver should get every measured message.
  const drainStart = performance.now();
  let drainComplete = pendingMeasured === 0;
  if (!drainComplete) {
    log(`draining (${pendingMeasured} frames outstanding)`);
    drainComplete = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), cfg.drainTimeout * 1000);
      drainResolve = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
    drainResolve = null;
  }
  const drainS = (performance.now() - drainStart) / 1000;

  let expected = 0;
  let received = 0;
  let lost = 0;
  let duplicates = 0;
  for (let no = m0; no < m1; no++) {
    const e = expectCount[no];
    const r = recvCount[no];
    expected += e;
    received += Math.min(r, e);
    if (r < e) lost += e - r;
    else duplicates += r - e;
  }
  const pct = percentiles([0.5, 0.99]);
  await closeAll(conns);
  const measuredMsgs = m1 - m0;
  return {
    window_s: round3(windowS),
    delivered_frames: windowFrames,
    delivered_frames_per_s: Math.round(windowFrames / windowS),
    sent_msgs: measuredMsgs,
    sent_msgs_per_s: round3(measuredMsgs / windowS),
    expected_frames: expected,
    received_measured_frames: received,
    lost_frames: lost,
    duplicate_frames: duplicates,
    drain_s: round3(drainS),
    drain_complete: drainComplete,
    latency_ms: {
      p50: round3(pct[0.5]),
      p99: round3(pct[0.99]),
      max: round3(latCount ? latMax : null),
      mean: round3(latCount ? latSum / latCount : null),
      count: latCount,
    },
    loadgen_cpu: round3(cpuShare),
    loadgen_cpu_user: round3(cpu1.user / 1e6 / windowS),
    loadgen_cpu_system: round3(cpu1.system / 1e6 / windowS),
  };
}

function connectReport(opened, wanted) {
  return {
    connections_wanted: wanted,
    connected: opened.conns.length,
    connect_failures: opened.failed,
    connect_failure_reasons: opened.failures,
    connect_s: round3(opened.seconds),
    connects_per_s: Math.round(opened.conns.length / opened.seconds),
  };
}

function finish(result) {
  const line = JSON.stringify({
    event: "result",
    ...result,
    fast_readers: fastReaders,
    error_frames: errorFrames,
    closed_unexpectedly: { count: unexpectedCount, codes: unexpectedCodes },
  });
  process.stdout.write(`${line}\n`, () => process.exit(0));
}

// R rooms x C clients; every client sends at `rate` and receives its room (own echo too).
async function manyRooms() {
  const specs = [];
  for (const room of cfg.rooms) {
    for (let i = 0; i < cfg.clientsPerRoom; i++) {
      specs.push({
        room,
        counted: true,
        fast: true,
        onFrame: (_c, data) => onReceiverFrame(data, 0, data.length, performance.now()),
      });
    }
  }
  log(`opening ${specs.length} clients in ${cfg.rooms.length} rooms`);
  const opened = await openAll(specs);
  const interval = 1000 / cfg.rate;
  const result = await measure(opened.conns, (t) => {
    for (const conn of opened.conns) {
      everyInterval(t + Math.random() * interval, interval, () => sendMessage(conn));
    }
  });
  return {
    mode: cfg.mode,
    rooms: cfg.rooms.length,
    clients_per_room: cfg.clientsPerRoom,
    rate_per_client: cfg.rate,
    ...connectReport(opened, specs.length),
    ...result,
  };
}

// Open N connections, report, hold them until a line arrives on stdin.
async function idle() {
  const specs = Array.from({ length: cfg.connections }, (_, i) => ({
    room: cfg.rooms[i % cfg.rooms.length],
    counted: false,
    onFrame: (_c, data) => {
      if (parseMsgno(data, 0, data.length) === ERROR_FRAME) errorFrames++;
    },
  }));
  log(`opening ${cfg.connections} connections`);
  const opened = await openAll(specs);
  const report = connectReport(opened, cfg.connections);
  emit({ event: "connected", ...report });
  const lines = createInterface({ input: process.stdin });
  const held = performance.now();
  await new Promise((resolve) => {
    lines.once("line", resolve);
    lines.once("close", resolve);
  });
  lines.close();
  const stillOpen = openNow;
  await closeAll(opened.conns);
  return {
    mode: cfg.mode,
    ...report,
    held_s: round3((performance.now() - held) / 1000),
    open_at_release: stillOpen,
  };
}

// ------------------------------------------------------------------ storm

// run.py's lines on stdin, in order; "up" is acted on as soon as it arrives.
const lineQueue = [];
const lineWaiters = [];
let stdinClosed = false;
let onUpLine = null;

function readStdinLines() {
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    if (line === "up" && onUpLine !== null) {
      onUpLine();
      return;
    }
    const waiter = lineWaiters.shift();
    if (waiter) waiter(line);
    else lineQueue.push(line);
  });
  lines.on("close", () => {
    stdinClosed = true;
    for (const waiter of lineWaiters.splice(0)) waiter(null);
  });
}

function nextLine() {
  if (lineQueue.length > 0) return Promise.resolve(lineQueue.shift());
  if (stdinClosed) return Promise.resolve(null);
  return new Promise((resolve) => lineWaiters.push(resolve));
}

const EV_MESSAGE = Buffer.from('"Event":"message"');
const EV_RECOVERED = Buffer.from('"Event":"recovered"');

// Checks `done()` every 20 ms until it holds or `seconds` pass; true if it held.
function until(done, seconds) {
  return new Promise((resolve) => {
    const deadline = performance.now() + seconds * 1000;
    const check = () => {
      if (done()) resolve(true);
      else if (performance.now() >= deadline) resolve(false);
      else setTimeout(check, 20);
    };
    check();
  });
}

function distribution(values) {
  if (values.length === 0) return { p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
  return { p50: round3(at(0.5)), p99: round3(at(0.99)), max: round3(sorted[sorted.length - 1]) };
}

async function storm() {
  readStdinLines();
  const nRooms = cfg.rooms.length;
  const clients = Array.from({ length: cfg.connections }, (_, i) => ({
    i,
    room: cfg.rooms[i % nRooms],
    // Every user in every room, as many times as there are clients per user.
    token: cfg.tokens[Math.floor(i / nRooms) % cfg.tokens.length],
    sender: i < Math.min(cfg.senders, nRooms), // one per room at most
    ws: null,
    open: false,
    caught: false,
    opens: 0,
    dead: false,
    ids: [], // message IDs received, in arrival order, over all its connections
    last: 0,
    openedAt: 0,
    caughtAt: 0,
    timer: null,
    backoff: 0,
    pending: new Set(), // msgnos sent on this connection and not yet echoed
  }));
  const st = {
    phase: "initial",
    caught: 0,
    reopened: 0,
    tDown: null,
    tUp: null,
    attempts: 0,
    failed: 0,
    failures: {},
    failedAfterUp: 0,
    failuresAfterUp: {},
    closes: {},
    replayed: 0,
    incomplete: 0,
    sent: 0,
    echoed: 0,
    done: null,
  };
  const roomAcked = new Map(); // room -> largest ID a sender got back
  let live = clients.length; // clients whose first connect succeeded

  const markCaught = (c) => {
    if (c.caught) return;
    c.caught = true;
    c.caughtAt = performance.now();
    st.caught++;
    if (st.phase === "storm" && st.caught === live && st.reopened === live) st.done(true);
  };

  const onFrame = (c, data) => {
    if (data.indexOf(EV_MESSAGE) >= 0) {
      const body = JSON.parse(data).Body;
      const id = body.ID;
      c.ids.push(id);
      if (id > c.last) c.last = id;
      if (c.sender) {
        const text = String(body.chatMessage);
        const no = text.startsWith("bench ") ? Number(text.slice(6)) : Number.NaN;
        if (c.pending.delete(no)) {
          st.echoed++;
          if (id > (roomAcked.get(c.room) ?? 0)) roomAcked.set(c.room, id);
        }
      }
    } else if (data.indexOf(EV_RECOVERED) >= 0) {
      const body = JSON.parse(data).Body;
      st.replayed += body.count ?? 0;
      if (body.complete === false) st.incomplete++;
      markCaught(c);
    } else if (data.indexOf(ERROR_EVENT) >= 0) {
      errorFrames++;
    }
  };

  // Resolves true once open, false if this attempt failed (the reason is counted).
  const connect = (c) =>
    new Promise((resolve) => {
      st.attempts++;
      let url = `${cfg.url}?room_id=${c.room}&jwt=${encodeURIComponent(c.token)}`;
      if (c.opens > 0 && cfg.recovery) url += `&since=${c.last}`;
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        skipUTF8Validation: true,
        handshakeTimeout: 30_000,
      });
      let settled = false;
      const fail = (reason) => {
        if (settled) return;
        settled = true;
        st.failed++;
        st.failures[reason] = (st.failures[reason] ?? 0) + 1;
        if (st.phase === "storm") {
          st.failedAfterUp++;
          st.failuresAfterUp[reason] = (st.failuresAfterUp[reason] ?? 0) + 1;
        }
        resolve(false);
      };
      ws.on("message", (data) => onFrame(c, data));
      ws.on("open", () => {
        settled = true;
        c.ws = ws;
        c.open = true;
        c.opens++;
        c.openedAt = performance.now();
        c.pending.clear();
        openNow++;
        if (c.opens === 2) st.reopened++;
        if (c.opens === 1 || !cfg.recovery) markCaught(c);
        resolve(true);
      });
      ws.on("unexpected-response", (_req, res) => {
        fail(`HTTP ${res.statusCode}`);
        res.resume();
        ws.terminate();
      });
      ws.on("error", (err) => fail(err?.code ?? err?.message ?? String(err)));
      ws.on("close", (code) => {
        if (!settled) fail(`closed ${code}`);
        if (c.ws !== ws || !c.open) return;
        c.open = false;
        openNow--;
        if (c.caught) {
          c.caught = false;
          st.caught--;
        }
        if (closing) return;
        st.closes[code] = (st.closes[code] ?? 0) + 1;
        if (st.phase !== "running" && st.phase !== "storm") {
          unexpectedCount++;
          unexpectedCodes[code] = (unexpectedCodes[code] ?? 0) + 1;
        }
        if (st.tDown === null) st.tDown = performance.now();
        attempt(c); // at once, as a client would
      });
    });

  const attempt = (c) => {
    c.timer = null;
    connect(c).then((ok) => {
      if (ok || closing) {
        c.backoff = 0;
        return;
      }
      // Server away: retry with a capped, jittered backoff ("up" cuts the wait short).
      c.backoff = Math.min(1000, c.backoff > 0 ? c.backoff * 2 : 100);
      c.timer = setTimeout(() => attempt(c), c.backoff * (0.5 + Math.random()));
    });
  };

  // 1. Everyone connects (`connect_concurrency` at a time).
  log(`opening ${clients.length} clients in ${nRooms} rooms`);
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < clients.length) {
      const c = clients[next++];
      if (!(await connect(c))) c.dead = true;
    }
  };
  await Promise.all(Array.from({ length: Math.min(cfg.connectConcurrency, clients.length) }, worker));
  const initialS = (performance.now() - t0) / 1000;
  live = clients.filter((c) => !c.dead).length;
  const initial = {
    connected: live,
    connect_failures: clients.length - live,
    connect_failure_reasons: { ...st.failures },
    connect_s: round3(initialS),
    connects_per_s: Math.round(live / initialS),
  };
  emit({ event: "connected", ...initial });

  // 2. "go": the senders start; run.py restarts the server meanwhile.
  if ((await nextLine()) === null) throw new Error("stdin closed before go");
  st.phase = "running";
  sending = true;
  const interval = 1000 / cfg.rate;
  const timers = [];
  for (const c of clients) {
    if (!c.sender || c.dead) continue;
    const send = () => {
      if (!sending || !c.open) return;
      const no = nextMsgno++;
      c.pending.add(no);
      st.sent++;
      c.ws.send(`{"chatRoomId":${c.room},"chatMessage":"bench ${no}"}`);
    };
    timers.push(setTimeout(() => timers.push(setInterval(send, interval)), Math.random() * interval));
  }

  // 3. "up": the storm. Every client still waiting retries now.
  let cpu0 = null;
  const caughtUp = new Promise((resolve) => {
    st.done = resolve;
  });
  onUpLine = () => {
    setTimeout(() => st.done(false), cfg.stormTimeout * 1000);
    st.tUp = performance.now();
    st.phase = "storm";
    cpu0 = process.cpuUsage();
    emit({ event: "measure_start" });
    log(`server up again: ${live - openNow} clients to reconnect`);
    for (const c of clients) {
      if (c.timer !== null) {
        clearTimeout(c.timer);
        attempt(c);
      }
    }
    if (st.caught === live && st.reopened === live) st.done(true);
  };
  // Bounded from "up" by storm_timeout (and the whole run by run.py's watchdog).
  const complete = await caughtUp;
  if (!complete) log(`storm timeout: ${st.reopened}/${live} reconnected, ${st.caught} caught up`);
  const tEnd = performance.now();
  const stormS = (tEnd - st.tUp) / 1000;
  const cpu1 = process.cpuUsage(cpu0);
  emit({ event: "measure_end" });
  st.phase = "after";
  const back = clients.filter((c) => !c.dead && c.opens >= 2);
  const lastOpen = back.reduce((m, c) => Math.max(m, c.openedAt), st.tUp);
  const lastCaught = back.reduce((m, c) => Math.max(m, c.caught ? c.caughtAt : tEnd), st.tUp);
  const connectedS = (lastOpen - st.tUp) / 1000;
  const caughtUpMs = back.map((c) => (c.caught ? c.caughtAt : tEnd) - st.tUp);
  log(`all ${back.length} back in ${connectedS.toFixed(3)} s, caught up in ${stormS.toFixed(3)} s`);

  // 4. The senders go on a little, then stop; wait until what they sent came back.
  await new Promise((resolve) => setTimeout(resolve, cfg.after * 1000));
  sending = false;
  for (const t of timers) clearInterval(t);
  const drainStart = performance.now();
  const drained = await until(
    () =>
      clients.every(
        (c) =>
          c.dead ||
          ((!c.sender || c.pending.size === 0 || !c.open) &&
            c.last >= (roomAcked.get(c.room) ?? 0)),
      ),
    cfg.drainTimeout,
  );
  const drainS = (performance.now() - drainStart) / 1000;

  // 5. The truth: every stored message of every room, from run.py.
  emit({ event: "sent_done" });
  const line = await nextLine();
  const truth = line === null ? null : JSON.parse(line).truth;
  const check = {
    expected_frames: null,
    received_frames: 0,
    lost: null,
    duplicated: 0,
    out_of_order: 0,
    unexpected: null,
    clients_wrong: null,
  };
  for (const c of clients) check.received_frames += c.ids.length;
  if (truth && cfg.recovery) {
    Object.assign(check, { expected_frames: 0, lost: 0, unexpected: 0, clients_wrong: 0 });
    const wanted = new Map();
    for (const [room, ids] of Object.entries(truth)) wanted.set(Number(room), new Set(ids));
    for (const c of clients) {
      if (c.dead) continue;
      const want = wanted.get(c.room) ?? new Set();
      const seen = new Set();
      let wrong = false;
      let prev = 0;
      for (const id of c.ids) {
        if (seen.has(id)) {
          check.duplicated++;
          wrong = true;
        }
        seen.add(id);
        if (id < prev) {
          check.out_of_order++;
          wrong = true;
        }
        prev = id;
        if (!want.has(id)) {
          check.unexpected++;
          wrong = true;
        }
      }
      check.expected_frames += want.size;
      for (const id of want) {
        if (!seen.has(id)) {
          check.lost++;
          wrong = true;
        }
      }
      if (wrong) check.clients_wrong++;
    }
  } else {
    // Nothing to compare with (the baseline: no history, and its IDs start again at 1
    // after the restart).
    check.duplicated = null;
    check.out_of_order = null;
  }
  closing = true;
  for (const c of clients) if (c.open) c.ws.close(1000, "bench done");
  await until(() => openNow === 0, cfg.closeTimeout);
  for (const c of clients) if (c.open) c.ws.terminate();
  return {
    mode: cfg.mode,
    rooms: nRooms,
    connections: clients.length,
    senders: clients.filter((c) => c.sender && !c.dead).length,
    rate_per_sender: cfg.rate,
    recovery: cfg.recovery,
    initial,
    storm_complete: complete,
    reconnected: back.length,
    all_connected_s: round3(connectedS),
    all_caught_up_s: round3((lastCaught - st.tUp) / 1000),
    outage_s: st.tDown === null ? null : round3((lastCaught - st.tDown) / 1000),
    connects_per_s: connectedS > 0 ? Math.round(back.length / connectedS) : null,
    reconnect_attempts: st.attempts - clients.length,
    failed_attempts: st.failed - initial.connect_failures,
    failure_reasons: st.failures,
    // Failed while the server was up again: refused upgrades, timeouts, resets.
    failed_after_up: st.failedAfterUp,
    failure_reasons_after_up: st.failuresAfterUp,
    close_codes: st.closes,
    replayed_frames: st.replayed,
    incomplete_recoveries: st.incomplete,
    // Per client, from "up" to caught up (its recovered frame, or open without recovery);
    // exact (the histogram stops at 10 s).
    latency_ms: { ...distribution(caughtUpMs), count: caughtUpMs.length },
    caught_up_ms: distribution(caughtUpMs),
    sent_msgs: st.sent,
    echoed_msgs: st.echoed,
    drain_s: round3(drainS),
    drain_complete: drained,
    ...check,
    lost_frames: check.lost,
    loadgen_cpu: round3((cpu1.user + cpu1.system) / 1e6 / stormS),
  };
}

async function main() {
  let result;
  if (cfg.mode === "rooms") result = await manyRooms();
  else if (cfg.mode === "idle") result = await idle();
  else if (cfg.mode === "storm") result = await storm();
  else throw new Error(`unknown mode ${cfg.mode}`);
  finish(result);
}

main().catch((err) => {
  log(`failed: ${err?.stack ?? err}`);
  process.exit(1);
});
