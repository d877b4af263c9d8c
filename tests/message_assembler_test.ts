import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type AgentMessage,
  MessageAssembler,
  VdagentProtocolError,
  type VdiChunk,
} from "../mod.ts";
import { message, through } from "./_helpers.ts";

async function assemble(chunks: VdiChunk[], options = {}): Promise<AgentMessage[]> {
  return (await through([chunks], new MessageAssembler(options))).flat();
}

test("MessageAssembler reassembles each port separately when their chunks interleave", async () => {
  const a = message(4, new Uint8Array(50).fill(1));
  const b = message(9, new Uint8Array([2, 0, 0, 0]));
  const c = message(13, new Uint8Array(0));
  const out = await assemble([
    { port: 1, data: a.subarray(0, 7) },
    { port: 2, data: b },
    { port: 1, data: a.subarray(7, 30) },
    { port: 2, data: c },
    { port: 1, data: a.subarray(30) },
  ]);
  assert.deepEqual(out, [
    { port: 2, type: 9, opaque: 0n, data: new Uint8Array([2, 0, 0, 0]) },
    { port: 2, type: 13, opaque: 0n, data: new Uint8Array(0) },
    { port: 1, type: 4, opaque: 0n, data: new Uint8Array(50).fill(1) },
  ]);
});

test("MessageAssembler accepts a message header split across chunks, as the Linux agent does", async () => {
  const m = message(1, new Uint8Array(13).fill(7), { opaque: 0x0123_4567_89ab_cdefn });
  for (let at = 1; at < m.length; at++) {
    const out = await assemble([{ port: 1, data: m.subarray(0, at) }, {
      port: 1,
      data: m.subarray(at),
    }]);
    assert.deepEqual(out, [
      { port: 1, type: 1, opaque: 0x0123_4567_89ab_cdefn, data: new Uint8Array(13).fill(7) },
    ], `split at ${at}`);
  }
});

test("MessageAssembler hands out a single-chunk message as a view and copies a multi-chunk one once", async () => {
  const m = message(4, new Uint8Array(10).fill(3));
  const [single] = await assemble([{ port: 1, data: m }]);
  assert.equal(single!.data.buffer, m.buffer);
  assert.equal(single!.data.byteOffset, 20);
  const [multi] = await assemble([{ port: 1, data: m.subarray(0, 25) }, {
    port: 1,
    data: m.subarray(25),
  }]);
  assert.notEqual(multi!.data.buffer, m.buffer);
  assert.equal(multi!.data.buffer.byteLength, 10);
  const [copied] = await assemble([{ port: 1, data: m }], { copy: true });
  assert.notEqual(copied!.data.buffer, m.buffer);
  assert.deepEqual(copied!.data, new Uint8Array(10).fill(3));
});

test("MessageAssembler takes one chunk or a batch per write, and emits one batch per write", async () => {
  const m = message(9, new Uint8Array([1, 0, 0, 0]));
  const batches = await through<VdiChunk | VdiChunk[], AgentMessage[]>(
    [{ port: 1, data: m }, [{ port: 1, data: m }, { port: 1, data: m }]],
    new MessageAssembler(),
  );
  assert.deepEqual(batches.map((b) => b.length), [1, 2]);
});

test("MessageAssembler checks maxMessageSize on the header, before the body arrives", async () => {
  const header = message(4, new Uint8Array(0), { size: 1001 });
  await assert.rejects(
    assemble([{ port: 1, data: header }], { maxMessageSize: 1000 }),
    (e) => e instanceof VdagentProtocolError && e.code === "MESSAGE_TOO_LARGE" && e.type === 4,
  );
  const [ok] = await assemble([{ port: 1, data: message(4, new Uint8Array(1000)) }], {
    maxMessageSize: 1000,
  });
  assert.equal(ok!.data.length, 1000);
  assert.throws(() => new MessageAssembler({ maxMessageSize: -1 }), RangeError);
});

test("MessageAssembler reports offsets as on the wire, chunk headers included", async () => {
  const good = message(9, new Uint8Array(4));
  const bad = message(9, new Uint8Array(4), { protocol: 2 });
  await assert.rejects(
    assemble([{ port: 1, data: good }, { port: 2, data: bad }]),
    (e) =>
      e instanceof VdagentProtocolError && e.code === "BAD_PROTOCOL" && e.offset === 8 + 24 + 8 &&
      e.port === 2 && e.type === 9,
  );
});

test("MessageAssembler errors with TRUNCATED when the input ends inside a message", async () => {
  const m = message(4, new Uint8Array(10));
  await assert.rejects(
    assemble([{ port: 1, data: m.subarray(0, 25) }]),
    (e) =>
      e instanceof VdagentProtocolError && e.code === "TRUNCATED" && e.port === 1 && e.type === 4,
  );
  await assert.rejects(
    assemble([{ port: 2, data: m.subarray(0, 5) }]),
    (e) => e instanceof VdagentProtocolError && e.code === "TRUNCATED" && e.port === 2,
  );
});
