// webSocketTransport over a scripted WebSocket, so the same tests run in Deno
// and on Node 20 (which has no WebSocket). The JSDoc example runs it over a
// real WebSocket in Deno.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  Selection,
  webSocketTransport,
} from "../mod.ts";
import { prng, randBytes, until } from "./_helpers.ts";
import { CLOSED, CONNECTING, FakeSocket, socketPair } from "./_websocket.ts";

/** The state of a promise, watched from now on. */
function watch(promise: Promise<unknown>): { state: "pending" | "fulfilled" | "rejected" } {
  const watched = { state: "pending" as "pending" | "fulfilled" | "rejected" };
  promise.then(() => watched.state = "fulfilled", () => watched.state = "rejected");
  return watched;
}

test("webSocketTransport reads each binary message as one chunk of bytes", async () => {
  const socket = new FakeSocket();
  const { readable } = webSocketTransport(socket);
  assert.equal(socket.binaryType, "arraybuffer");
  const reader = readable.getReader();
  socket.receive(new Uint8Array([1, 2, 3]).buffer);
  const backing = new Uint8Array([9, 9, 4, 5, 9]);
  socket.receive(backing.subarray(2, 4)); // some runtimes hand out views
  assert.deepEqual(await reader.read(), { value: new Uint8Array([1, 2, 3]), done: false });
  assert.deepEqual(await reader.read(), { value: new Uint8Array([4, 5]), done: false });
  socket.closed(1000, true);
  assert.deepEqual(await reader.read(), { value: undefined, done: true });
});

test("webSocketTransport writes each chunk as one binary message of exactly its bytes", async () => {
  const socket = new FakeSocket();
  const writer = webSocketTransport(socket).writable.getWriter();
  const backing = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]);
  await writer.write(backing.subarray(2, 5));
  await writer.write(new Uint8Array([42]));
  assert.deepEqual(socket.sent, [new Uint8Array([2, 3, 4]), new Uint8Array([42])]);
});

test("webSocketTransport waits for a connecting socket to open before writing", async () => {
  const socket = new FakeSocket(CONNECTING);
  const writer = webSocketTransport(socket).writable.getWriter();
  const write = watch(writer.write(new Uint8Array([1])));
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual([write.state, socket.sent.length], ["pending", 0]);
  socket.opened();
  await until(() => write.state !== "pending", "the write");
  assert.deepEqual([write.state, socket.sent], ["fulfilled", [new Uint8Array([1])]]);
});

test("webSocketTransport fails writes to a socket that never opens", async () => {
  const socket = new FakeSocket(CONNECTING);
  const { readable, writable } = webSocketTransport(socket);
  const write = writable.getWriter().write(new Uint8Array([1]));
  socket.failed();
  await assert.rejects(write, { message: "Cannot use WebSocket: the connection failed" });
  await assert.rejects(readable.getReader().read(), {
    message: "Cannot use WebSocket: the connection failed",
  });
  assert.deepEqual(socket.sent, []);
});

test("webSocketTransport holds a write while bufferedAmount is above highWaterMark", async () => {
  const socket = new FakeSocket();
  const writer = webSocketTransport(socket, { highWaterMark: 10, pollInterval: 0 }).writable
    .getWriter();
  await writer.write(new Uint8Array(10)); // exactly at the mark: resolves
  const write = watch(writer.write(new Uint8Array(6))); // 16 buffered: waits
  const looks = socket.looks;
  await until(() => socket.looks >= looks + 5, "the adapter looking at bufferedAmount");
  assert.equal(write.state, "pending");
  const next = watch(writer.write(new Uint8Array([7])));
  await until(() => socket.looks >= looks + 10, "more looks");
  assert.deepEqual([write.state, next.state, socket.sent.length], ["pending", "pending", 2]);
  socket.buffered = 0; // drained: the held write resolves, the next one is sent
  await until(() => next.state !== "pending", "the writes");
  assert.deepEqual([write.state, next.state, socket.sent.length], ["fulfilled", "fulfilled", 3]);
});

test("webSocketTransport closes the socket with 1000 once the buffer drained", async () => {
  const socket = new FakeSocket();
  const writer = webSocketTransport(socket, { pollInterval: 0 }).writable.getWriter();
  await writer.write(new Uint8Array(5));
  const close = watch(writer.close());
  const looks = socket.looks;
  await until(() => socket.looks >= looks + 5, "the adapter looking at bufferedAmount");
  assert.deepEqual([close.state, socket.closes], ["pending", []]);
  socket.buffered = 0;
  await until(() => close.state !== "pending", "the close");
  assert.deepEqual([close.state, socket.closes], ["fulfilled", [[1000, undefined]]]);
});

test("webSocketTransport ends the readable on a clean close and then rejects writes", async () => {
  const socket = new FakeSocket();
  const { readable, writable } = webSocketTransport(socket);
  const reader = readable.getReader();
  socket.receive(new Uint8Array([1]).buffer);
  socket.closed(4000, true, "bye");
  assert.deepEqual(await reader.read(), { value: new Uint8Array([1]), done: false });
  assert.deepEqual(await reader.read(), { value: undefined, done: true });
  await assert.rejects(writable.getWriter().write(new Uint8Array([2])), {
    message: "Cannot write to WebSocket: the peer closed it with code 4000",
  });
  assert.deepEqual(socket.sent, []);
});

test("webSocketTransport errors both streams on an unclean close", async () => {
  const socket = new FakeSocket();
  const { readable, writable } = webSocketTransport(socket);
  socket.closed(1006, false, "gone");
  const message = "Cannot read from WebSocket: closed uncleanly with code 1006 (gone)";
  await assert.rejects(readable.getReader().read(), { message });
  await assert.rejects(writable.getWriter().write(new Uint8Array([2])), { message });
});

test("webSocketTransport errors both streams on an error event and closes the socket", async () => {
  const socket = new FakeSocket();
  const { readable, writable } = webSocketTransport(socket);
  const reader = readable.getReader();
  socket.receive(new Uint8Array([1]).buffer);
  socket.failed();
  const message = "Cannot use WebSocket: the connection failed";
  await assert.rejects(reader.read(), { message }); // an errored stream drops its queue
  await assert.rejects(writable.getWriter().write(new Uint8Array([2])), { message });
  assert.deepEqual(socket.closes, [[undefined, undefined]]);
});

test("webSocketTransport rejects a text message with a TypeError and closes the socket", async () => {
  const socket = new FakeSocket();
  const { readable } = webSocketTransport(socket);
  socket.receive("hello");
  await assert.rejects(readable.getReader().read(), {
    name: "TypeError",
    message: "Cannot read from WebSocket: expected a binary message, got a text message",
  });
  assert.deepEqual(socket.closes, [[undefined, undefined]]);
});

test("webSocketTransport closes the socket when the readable is cancelled or the writable aborted", async () => {
  const a = new FakeSocket();
  await webSocketTransport(a).readable.cancel(new Error("done reading"));
  assert.deepEqual(a.closes, [[undefined, undefined]]);
  const b = new FakeSocket();
  await webSocketTransport(b).writable.abort(new Error("done writing"));
  assert.deepEqual(b.closes, [[undefined, undefined]]);
});

test("webSocketTransport rejects a bad highWaterMark or pollInterval with a RangeError", () => {
  for (
    const options of [{ highWaterMark: -1 }, { highWaterMark: NaN }, { pollInterval: Infinity }]
  ) {
    assert.throws(() => webSocketTransport(new FakeSocket(), options), RangeError);
  }
  assert.throws(() => webSocketTransport(new FakeSocket(), { highWaterMark: -1 }), {
    message: "Cannot adapt WebSocket: highWaterMark must be a non-negative number, got -1",
  });
});

test("webSocketTransport carries a host and a guest pipeline, with large clipboards both ways", async () => {
  const [hostSocket, guestSocket] = socketPair();
  const rand = prng(7);
  const fromGuest = randBytes(rand, 300_000);
  const fromHost = randBytes(rand, 200_000);
  const guestOffered: number[][] = [];
  let hostOffered!: () => void;
  const hostGrabbed = new Promise<void>((resolve) => hostOffered = resolve);
  let guestGrabbed!: () => void;
  const offered = new Promise<void>((resolve) => guestGrabbed = resolve);
  // A small highWaterMark makes every 64 KiB write wait for the peer.
  const options = { highWaterMark: 16_384, pollInterval: 0 };
  const host = createHostPipeline(webSocketTransport(hostSocket, options), {
    clipboard: {
      onGuestGrab: (_, types) => {
        guestOffered.push([...types]);
        guestGrabbed();
      },
      provide: () => fromHost,
    },
  });
  const guest = createGuestPipeline(webSocketTransport(guestSocket, options), {
    clipboard: { provide: () => fromGuest, onHostGrab: () => hostOffered() },
  });
  guest.session.grab(Selection.PRIMARY, [ClipboardType.IMAGE_PNG]);
  await offered;
  const pasted = await host.session.request(Selection.PRIMARY, ClipboardType.IMAGE_PNG);
  host.session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
  await hostGrabbed;
  const copied = await guest.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT);
  assert.deepEqual(guestOffered, [[ClipboardType.IMAGE_PNG]]);
  assert.deepEqual(pasted, fromGuest);
  assert.deepEqual(copied, fromHost);
  // Messages over 64 KiB went out in several binary messages.
  assert.ok(guestSocket.sent.length > 300_000 / 65_536, `${guestSocket.sent.length} messages`);
  await host.close();
  await guest.done;
  assert.deepEqual([hostSocket.closes[0], hostSocket.readyState], [[1000, undefined], CLOSED]);
  assert.equal(guestSocket.readyState, CLOSED);
});
