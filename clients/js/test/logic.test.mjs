// Unit tests of realtime.js's pure logic (node --test): a fake WebSocket stands in for the
// gateway, so each rule is checked frame by frame. The real gateway and a real browser are
// in tests/browser/.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { Realtime } from "../../../realtime/static/client/realtime.js";

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {}
  open() {
    this.onopen();
  }
  receive(frame) {
    this.onmessage({ data: JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.onclose({ code, reason: "" });
  }
  last(type) {
    return this.sent.filter((f) => f.type === type).at(-1);
  }
}

let fetched;
beforeEach(() => {
  FakeSocket.all = [];
  fetched = [];
  globalThis.WebSocket = FakeSocket;
  globalThis.fetch = async (url, init) => {
    fetched.push([url, init]);
    return { status: globalThis.probeStatus ?? 0, json: async () => ({ error: "why" }) };
  };
});
afterEach(() => {
  delete globalThis.probeStatus;
});

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function connected(options = {}) {
  const rt = new Realtime("http://gw.example:8080", { userId: "alice", ...options });
  const opened = rt.connect();
  FakeSocket.all.at(-1).open();
  await opened;
  return [rt, FakeSocket.all.at(-1)];
}

test("the URL: a base gets /ws, http becomes ws, the identity goes in the query", async () => {
  const [first, ws] = await connected();
  first.close();
  assert.equal(ws.url, "ws://gw.example:8080/ws?user_id=alice");
  const rt = new Realtime("https://gw.example/ws", { token: "t" });
  rt.connect().catch(() => {});
  assert.equal(FakeSocket.all.at(-1).url, "wss://gw.example/ws?token=t");
  rt.close();
  ws.onclose = null;
});

test("subscribe waits for its ack; publish resolves on its ack and rejects on its error", async () => {
  const [rt, ws] = await connected();
  const sub = rt.subscribe("room");
  const subscribe = ws.last("subscribe");
  assert.deepEqual(subscribe.listen, ["broadcast", "presence"]);
  assert.equal(subscribe.history, 0); // a position to recover from later
  let ready = false;
  sub.ready.then(() => (ready = true));
  await tick();
  assert.equal(ready, false);
  ws.receive({ type: "ack", ref: subscribe.ref });
  await sub.ready;
  const ok = sub.publish("chat", { text: "hi" });
  ws.receive({ type: "ack", ref: ws.last("broadcast").ref, offset: 3, epoch: "e" });
  assert.equal((await ok).offset, 3);
  const refused = sub.publish("chat", 1);
  ws.receive({ type: "error", code: "forbidden", message: "no", ref: ws.last("broadcast").ref });
  await assert.rejects(refused, (err) => err.code === "forbidden");
  rt.close();
});

test("members follow sync and events in seq order; a gap asks for a fresh sync", async () => {
  const [rt, ws] = await connected();
  const sub = rt.subscribe("room");
  const changes = [];
  sub.on("members", (m) => changes.push([...m.keys()].sort().join(",")));
  ws.receive({ type: "presence_sync", channel: "room", version: 5, users: [{ user_id: "a", meta: { n: 1 } }] });
  ws.receive({ type: "presence_join", channel: "room", user_id: "b", meta: {}, seq: 6 });
  ws.receive({ type: "presence_join", channel: "room", user_id: "b", meta: {}, seq: 6 }); // again: ignored
  assert.deepEqual(changes, ["a", "a,b"]);
  const before = ws.sent.filter((f) => f.type === "subscribe").length;
  ws.receive({ type: "presence_leave", channel: "room", user_id: "a", seq: 8 }); // 7 missing
  assert.deepEqual(changes, ["a", "a,b"]); // not applied
  const resync = ws.sent.filter((f) => f.type === "subscribe");
  assert.equal(resync.length, before + 1);
  assert.equal(resync.at(-1).since, undefined); // the subscription stays live: no replay
  ws.receive({ type: "presence_sync", channel: "room", version: 8, users: [{ user_id: "b" }] });
  assert.deepEqual(changes.at(-1), "b");
  assert.equal(sub.version, 8);
  rt.close();
});

test("a chunked sync replaces the list once its last chunk came", async () => {
  const [rt, ws] = await connected();
  const sub = rt.subscribe("room");
  const sync = { type: "presence_sync", channel: "room", version: 2, chunks: 2 };
  ws.receive({ ...sync, chunk: 1, users: [{ user_id: "a" }] });
  assert.equal(sub.members.size, 0);
  ws.receive({ ...sync, chunk: 2, users: [{ user_id: "b" }] });
  assert.deepEqual([...sub.members.keys()], ["a", "b"]);
  rt.close();
});

test("a reconnect resubscribes with since, rejoins with the same meta, drops what it had", async () => {
  const [rt, ws] = await connected({ minDelay: 1, maxDelay: 2 });
  const sub = rt.subscribe("news");
  ws.receive({ type: "ack", ref: ws.last("subscribe").ref });
  const tracked = sub.track({ name: "Alice" });
  ws.receive({ type: "ack", ref: ws.last("presence_join").ref });
  await tracked;
  const got = [];
  sub.on("broadcast", (m) => got.push(m.offset));
  ws.receive({ type: "broadcast", channel: "news", event: "e", payload: 1, offset: 4, epoch: "E" });
  ws.drop(1012);
  assert.equal(rt.state, "reconnecting");
  await new Promise((resolve) => setTimeout(resolve, 20));
  const again = FakeSocket.all.at(-1);
  assert.notEqual(again, ws);
  again.open();
  assert.deepEqual(again.last("subscribe").since, { offset: 4, epoch: "E" });
  assert.deepEqual(again.last("presence_join").payload, { name: "Alice" });
  const infos = [];
  sub.on("recovered", (info) => infos.push(info.recovered));
  again.receive({ type: "subscribed", channel: "news", offset: 5, epoch: "E", recovered: true });
  again.receive({ type: "broadcast", channel: "news", event: "e", payload: 1, offset: 4, epoch: "E" });
  again.receive({ type: "broadcast", channel: "news", event: "e", payload: 2, offset: 5, epoch: "E" });
  assert.deepEqual(got, [4, 5]); // 4 not twice
  assert.deepEqual(infos, [true]);
  rt.close();
});

test("recovered false moves the position to the gateway's", async () => {
  const [rt, ws] = await connected();
  const sub = rt.subscribe("news");
  ws.receive({ type: "subscribed", channel: "news", offset: 9, epoch: "F", recovered: false });
  assert.deepEqual(sub.position, { offset: 9, epoch: "F" });
  rt.close();
});

test("a publish while disconnected rejects at once; a pending one rejects when the socket goes", async () => {
  const [rt, ws] = await connected({ minDelay: 1000 });
  const sub = rt.subscribe("room");
  const pending = sub.publish("e", 1);
  ws.drop(1006);
  await assert.rejects(pending, (err) => err.code === "disconnected");
  await assert.rejects(sub.publish("e", 2), (err) => err.code === "disconnected");
  rt.close();
});

test("backoff: jittered between half the cap and the cap, the cap doubling up to maxDelay", async () => {
  const rt = new Realtime("http://gw.example", { userId: "a", minDelay: 100, maxDelay: 1000 });
  const delays = [];
  const realTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn, ms) => {
    delays.push(ms);
    return 0;
  };
  try {
    rt._wanted = true;
    for (let i = 0; i < 6; i++) rt._retry(1006);
  } finally {
    globalThis.setTimeout = realTimeout;
  }
  const caps = [100, 200, 400, 800, 1000, 1000];
  delays.forEach((ms, i) => {
    assert.ok(ms >= caps[i] / 2 && ms <= caps[i], `retry ${i}: ${ms} ms, cap ${caps[i]}`);
  });
  // The jitter: the random draw picks within [cap / 2, cap].
  const realRandom = Math.random;
  const drawn = [];
  globalThis.setTimeout = (fn, ms) => {
    drawn.push(ms);
    return 0;
  };
  try {
    Math.random = () => 0;
    rt._attempt = 0;
    rt._retry(1006);
    Math.random = () => 0.5;
    rt._attempt = 0;
    rt._retry(1006);
  } finally {
    Math.random = realRandom;
    globalThis.setTimeout = realTimeout;
  }
  assert.deepEqual(drawn, [50, 75]);
  rt._wanted = false;
});

test("a server disconnect (4000-4999 but 4001/4008/4029) stops; 4008 reconnects", async () => {
  const [rt, ws] = await connected({ minDelay: 1, maxDelay: 2 });
  const errors = [];
  rt.on("error", (e) => errors.push([e.code, e.closeCode]));
  ws.drop(4008);
  assert.equal(rt.state, "reconnecting");
  await new Promise((resolve) => setTimeout(resolve, 20));
  const again = FakeSocket.all.at(-1);
  assert.notEqual(again, ws);
  again.open();
  again.drop(4000);
  assert.equal(rt.state, "closed");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(FakeSocket.all.at(-1), again); // no new attempt
  assert.deepEqual(errors, [["connection_lost", 4008], ["disconnected_by_server", 4000]]);
});

test("a presence gap asks for one fresh sync at a time", async () => {
  const [rt, ws] = await connected();
  rt.subscribe("room");
  ws.receive({ type: "presence_sync", channel: "room", version: 1, users: [] });
  const count = () => ws.sent.filter((f) => f.type === "subscribe").length;
  const before = count();
  ws.receive({ type: "presence_join", channel: "room", user_id: "x", seq: 3 });
  ws.receive({ type: "presence_join", channel: "room", user_id: "y", seq: 4 });
  assert.equal(count(), before + 1);
  ws.receive({ type: "ack", ref: ws.last("subscribe").ref });
  await tick();
  ws.receive({ type: "presence_join", channel: "room", user_id: "z", seq: 9 });
  assert.equal(count(), before + 2); // the first one answered: a new gap may ask again
  rt.close();
});

test("a replay of the last N that was empty still gives a position", async () => {
  const [rt, ws] = await connected();
  const sub = rt.subscribe("news", { history: 5 });
  assert.equal(ws.last("subscribe").history, 5);
  ws.receive({ type: "subscribed", channel: "news", offset: 0, epoch: "E" });
  assert.equal(sub.position, null); // a replay may follow
  ws.receive({ type: "ack", ref: ws.last("subscribe").ref });
  await sub.ready;
  assert.deepEqual(sub.position, { offset: 0, epoch: "E" });
  rt.close();
});

test("a refused upgrade (403) stops: connect rejects with the status, no retry", async () => {
  globalThis.probeStatus = 403;
  const rt = new Realtime("http://gw.example", { userId: "a", minDelay: 1 });
  const opening = rt.connect();
  FakeSocket.all.at(-1).drop(1006);
  await assert.rejects(opening, (err) => err.code === "refused" && err.status === 403);
  assert.equal(fetched[0][1].method, "POST");
  assert.equal(rt.state, "closed");
  assert.equal(FakeSocket.all.length, 1);
});

test("an unreachable gateway is retried, not given up", async () => {
  const rt = new Realtime("http://gw.example", { userId: "a", minDelay: 1, maxDelay: 2 });
  rt.connect().catch(() => {});
  FakeSocket.all.at(-1).drop(1006);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(FakeSocket.all.length >= 2);
  assert.equal(rt.state === "reconnecting" || rt.state === "connecting", true);
  rt.close();
});

test("token_expired: getToken, then a refresh frame; the frame event hides the token", async () => {
  const [rt, ws] = await connected({ token: "old", getToken: async () => "new" });
  const shown = [];
  rt.on("frame", (f, d) => d === "out" && shown.push(f));
  ws.receive({ type: "error", code: "token_expired", message: "expired" });
  await tick();
  await tick();
  assert.equal(ws.last("refresh").token, "new");
  assert.equal(shown.at(-1).token, "[redacted]");
  rt.close();
});
