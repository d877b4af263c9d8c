// The relay's bounded event queues (scripts/relay/event_queue.ts): what one output (standard
// output, a WebSocket client) holds, what supersedes what, and when the guest's reads wait.
// Web-platform code: runs on Deno and, from the npm build, on Node.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Broadcaster,
  EventQueue,
  readWhenRoom,
  supersedingKey,
} from "../scripts/relay/event_queue.ts";

/** An output whose writes finish when the test says. */
function output() {
  const written: string[] = [];
  const pending: (() => void)[] = [];
  const fails: ((error: unknown) => void)[] = [];
  return {
    written,
    /** Finishes the oldest write in flight. */
    finish: () => pending.shift()!(),
    fail: (error: unknown) => fails.shift()!(error),
    get inFlight() {
      return pending.length;
    },
    write(text: string): Promise<void> {
      written.push(text);
      return new Promise((resolve, reject) => {
        pending.push(() => {
          fails.shift();
          resolve();
        });
        fails.push((error) => {
          pending.shift();
          reject(error);
        });
      });
    },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
const text = (name: string, length = 100) => name.padEnd(length, ".");

test("EventQueue hands events to its output in order, while less than the window is in flight", async () => {
  const out = output();
  const queue = new EventQueue(out, { window: 250, highWater: 10_000 });
  for (const name of ["a", "b", "c", "d", "e"]) queue.push(text(name));
  assert.deepEqual(out.written.map((t) => t[0]), ["a", "b", "c"], "300 in flight ≥ 250");
  assert.equal(queue.inFlight, 300);
  assert.equal(queue.waiting, 200);
  out.finish();
  await settle();
  assert.deepEqual(out.written.map((t) => t[0]), ["a", "b", "c", "d"]);
  // An event larger than the window goes alone once the window has room.
  queue.push(text("big", 1000));
  out.finish();
  out.finish();
  await settle();
  assert.deepEqual(out.written.map((t) => t[0]), ["a", "b", "c", "d", "e", "b"]);
  const flushed = queue.flush();
  let done = false;
  flushed.then(() => done = true);
  while (out.inFlight > 0) {
    out.finish();
    await settle();
  }
  await flushed;
  assert.equal(done, true);
  assert.equal(queue.inFlight + queue.waiting, 0);
});

test("EventQueue lets a newer event of a key supersede the waiting one, at the end of the queue", async () => {
  const out = output();
  const queue = new EventQueue(out, { window: 1, highWater: 10_000 });
  queue.push("first");
  for (let serial = 0; serial < 1000; serial++) {
    queue.push(`offer clipboard ${serial}`, "guest:clipboard");
    queue.push(`caps ${serial}`, "caps");
  }
  queue.push("served");
  queue.push("offer clipboard 1000", "guest:clipboard");
  assert.equal(queue.waiting, "caps 999".length + "served".length + "offer clipboard 1000".length);
  while (out.inFlight > 0) {
    out.finish();
    await settle();
  }
  assert.deepEqual(out.written, ["first", "caps 999", "served", "offer clipboard 1000"]);
});

test("EventQueue falls behind over its high water beyond the first waiting event, and room() waits until half", async () => {
  const out = output();
  const behind: number[] = [];
  const queue = new EventQueue(out, { window: 100, highWater: 1000 }, {
    onBehind: (waiting) => behind.push(waiting),
  });
  queue.push(text("in flight"));
  queue.push(text("huge", 50_000)); // the first waiting event may be as large as events get
  assert.equal(queue.room(), undefined);
  for (let i = 0; i < 5; i++) queue.push(text(`${i}`));
  assert.equal(queue.room(), undefined, "500 beyond the first: not over half the high water");
  for (let i = 5; i < 10; i++) queue.push(text(`${i}`));
  const room = queue.room();
  assert.ok(room !== undefined, "over half: the caller waits");
  assert.deepEqual(behind, [], "1000 beyond the first is not over 1000");
  let roomy = false;
  room.then(() => roomy = true);
  queue.push(text("10"));
  assert.deepEqual(behind, [51_100]);
  queue.push(text("11"));
  assert.deepEqual(behind, [51_100], "once per time behind");
  // Written one by one: room comes once at most 500 wait beyond the first.
  let writes = 0;
  while (!roomy && writes++ < 20) {
    out.finish();
    await settle();
  }
  assert.equal(roomy, true);
  assert.equal(queue.waiting, 600, "the first waiting event and 500 after it");
});

test("EventQueue reports a failed write once and drops everything from then on", async () => {
  const out = output();
  const errors: unknown[] = [];
  const queue = new EventQueue(out, { window: 1000, highWater: 1000 }, {
    onError: (error) => errors.push(error),
  });
  queue.push("a");
  queue.push("b");
  out.fail(new Error("EPIPE"));
  await settle();
  queue.push("c");
  assert.deepEqual(out.written, ["a", "b"]);
  assert.equal(errors.length, 1);
  assert.equal(queue.room(), undefined);
  const flushed = queue.flush();
  out.fail(new Error("EPIPE"));
  await flushed;
});

test("readWhenRoom reads nothing from its source while room() waits", async () => {
  let pulls = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(new Uint8Array([pulls++]));
    },
  }, { highWaterMark: 0 });
  let gate: Promise<void> | undefined;
  let open = () => {};
  const reader = readWhenRoom(source, () => gate).getReader();
  assert.deepEqual((await reader.read()).value, new Uint8Array([0]));
  gate = new Promise((resolve) => open = resolve);
  const next = reader.read();
  await settle();
  assert.equal(pulls, 1, "nothing read while waiting");
  open();
  gate = undefined;
  assert.deepEqual((await next).value, new Uint8Array([1]));
  await reader.cancel();
});

test("supersedingKey groups the guest's offers and releases by selection, caps, and progress short of its end", () => {
  assert.equal(
    supersedingKey({ event: "offer", selection: "clipboard", mimes: [] }),
    "guest:clipboard",
  );
  assert.equal(
    supersedingKey({ event: "release", selection: "clipboard", by: "guest" }),
    "guest:clipboard",
  );
  assert.equal(supersedingKey({ event: "caps", caps: [] }), "caps");
  assert.equal(
    supersedingKey({ event: "progress", transfer: 3, direction: "in", done: 1, total: 2 }),
    "progress:in:3",
  );
  assert.equal(
    supersedingKey({ event: "progress", transfer: 3, direction: "in", done: 2, total: 2 }),
    undefined,
  );
  for (const event of ["data", "served", "diagnostic", "ok", "error", "exit", "hello"]) {
    assert.equal(supersedingKey({ event }), undefined, event);
  }
});

test("EventQueue keeps what waits compact while newer events supersede older ones without end", async () => {
  const out = output();
  const queue = new EventQueue(out, { window: 1, highWater: 1 << 20 });
  queue.push("stuck"); // in flight for good
  for (let serial = 0; serial < 100_000; serial++) queue.push(`offer ${serial}`, "guest:clipboard");
  assert.equal(queue.waiting, "offer 99999".length);
  // What it holds is one entry, not 100 000: the next write is the latest offer.
  out.finish();
  await settle();
  assert.deepEqual(out.written, ["stuck", "offer 99999"]);
});

test("Broadcaster sends one event per key per task, in order with the events around them, as JSON to every queue", async () => {
  const a = output();
  const b = output();
  const queues = [
    new EventQueue(a, { window: 1 << 20, highWater: 1 << 20 }),
    new EventQueue(b, { window: 1 << 20, highWater: 1 << 20 }),
  ];
  const broadcaster = new Broadcaster(() => queues);
  for (let serial = 0; serial < 1000; serial++) {
    broadcaster.send({ event: "offer", selection: "clipboard", mimes: [], serial });
  }
  broadcaster.send({ event: "served", selection: "primary" });
  broadcaster.send({ event: "offer", selection: "clipboard", mimes: [], serial: 1000 });
  broadcaster.send({ event: "caps", caps: [] });
  broadcaster.send({ event: "release", selection: "clipboard", by: "guest" });
  assert.equal(a.written.length, 2, "the offer before served, and served, at once");
  await settle();
  const expected = [
    '{"event":"offer","selection":"clipboard","mimes":[],"serial":999}',
    '{"event":"served","selection":"primary"}',
    '{"event":"caps","caps":[]}',
    '{"event":"release","selection":"clipboard","by":"guest"}',
  ];
  assert.deepEqual(a.written, expected);
  assert.deepEqual(b.written, expected);
});
