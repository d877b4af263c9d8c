import { test } from "node:test";
import assert from "node:assert/strict";
import { type AgentMessage, encodeMessage, MessageFramer, type MessagePayload } from "../mod.ts";
import { fixture, prng, randInt, through } from "./_helpers.ts";

const LAYOUT = { selection: true, grabSerial: true };

test("MessageFramer reproduces the host capture byte for byte", async () => {
  const wire = await fixture("linux-agent-0.22.1/host-to-guest.bin");
  const payloads: MessagePayload[] = [
    { kind: "announce_capabilities", request: true, caps: [0x00020061] },
    { kind: "clipboard_request", selection: 0, type: 1 },
    { kind: "clipboard_request", selection: 0, type: 1 },
    { kind: "clipboard_request", selection: 1, type: 1 },
    { kind: "clipboard_request", selection: 0, type: 2 },
    { kind: "clipboard_grab", selection: 0, serial: 2, types: [1] },
    { kind: "clipboard", selection: 0, type: 1, data: new Uint8Array(5000).fill(0x78) },
  ];
  const messages = payloads.map((p) => encodeMessage(p, LAYOUT));
  const one = await through([messages], new MessageFramer());
  assert.equal(one.length, 1);
  assert.deepEqual(one[0], wire);
  const each = await through(messages, new MessageFramer());
  assert.deepEqual(each.map((w) => w.length), [36, 36, 36, 36, 36, 40, 5052]);
});

test("MessageFramer never puts bytes of two messages in one chunk, at any chunk size", async () => {
  const rand = prng(7);
  for (let i = 0; i < 200; i++) {
    const max = randInt(rand, 20, 2048);
    const messages: AgentMessage[] = Array.from({ length: randInt(rand, 1, 5) }, () => ({
      port: randInt(rand, 1, 2),
      type: randInt(rand, 1, 16),
      opaque: BigInt(randInt(rand, 0, 3)),
      data: new Uint8Array(randInt(rand, 0, 5000)).fill(randInt(rand, 0, 255)),
    }));
    const [wire] = await through([messages], new MessageFramer({ maxChunkSize: max })) as [
      Uint8Array,
    ];
    // Walk the chunks independently: every chunk lies inside one message.
    const view = new DataView(wire.buffer, wire.byteOffset);
    let at = 0;
    for (const m of messages) {
      let left = 20 + m.data.length;
      let first = true;
      while (left > 0) {
        const port = view.getUint32(at, true);
        const size = view.getUint32(at + 4, true);
        assert.equal(port, m.port);
        assert.ok(size >= 1 && size <= max && size <= left, `chunk of ${size} with ${left} left`);
        if (first) {
          assert.ok(size >= 20, "the header fits in the first chunk");
          assert.equal(view.getUint32(at + 8 + 4, true), m.type);
          assert.equal(view.getBigUint64(at + 8 + 8, true), m.opaque);
          assert.equal(view.getUint32(at + 8 + 16, true), m.data.length);
        }
        first = false;
        left -= size;
        at += 8 + size;
      }
    }
    assert.equal(at, wire.length);
  }
});

test("MessageFramer rejects bad options with RangeError and bad messages with TypeError or RangeError", async () => {
  assert.throws(() => new MessageFramer({ maxChunkSize: 19 }), RangeError);
  assert.throws(() => new MessageFramer({ maxChunkSize: 2049 }), RangeError);
  const good = { port: 1, type: 4, opaque: 0n, data: new Uint8Array(1) };
  const cases: [Partial<AgentMessage>, ErrorConstructor | RangeErrorConstructor][] = [
    [{ port: 3 }, RangeError],
    [{ type: -1 }, RangeError],
    [{ type: 2 ** 32 }, RangeError],
    [{ opaque: -1n }, RangeError],
    [{ opaque: 1 as unknown as bigint }, TypeError],
    [{ data: [1] as unknown as Uint8Array }, TypeError],
  ];
  for (const [i, [patch, kind]] of cases.entries()) {
    await assert.rejects(through([{ ...good, ...patch }], new MessageFramer()), kind, `case ${i}`);
  }
});

test("MessageFramer writes a 64 MiB message as one allocation of exactly its wire size", async () => {
  const data = new Uint8Array(64 << 20).fill(5);
  const [wire] = await through([{ port: 1, type: 4, opaque: 0n, data }], new MessageFramer()) as [
    Uint8Array,
  ];
  const chunks = Math.ceil((20 + data.length) / 2048);
  assert.equal(wire.length, 20 + data.length + 8 * chunks);
  assert.equal(wire.buffer.byteLength, wire.length);
  assert.equal(wire[wire.length - 1], 5);
});
