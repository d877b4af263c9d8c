import { test } from "node:test";
import assert from "node:assert/strict";
import { ChunkDeframer, MessageAssembler, VdagentProtocolError, type VdiChunk } from "../mod.ts";
import { chunk, collect, concat, framed, through } from "./_helpers.ts";

function isCode(code: string, offset?: number) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof VdagentProtocolError, `expected VdagentProtocolError, got ${e}`);
    assert.equal(e.code, code);
    if (offset !== undefined) assert.equal(e.offset, offset);
    return true;
  };
}

test("ChunkDeframer emits one batch per write with views into the input", async () => {
  const input = concat(chunk(1, new Uint8Array([1, 2])), chunk(2, new Uint8Array([3])));
  const batches = await through([input], new ChunkDeframer());
  assert.equal(batches.length, 1);
  assert.deepEqual(batches[0], [
    { port: 1, data: new Uint8Array([1, 2]) },
    { port: 2, data: new Uint8Array([3]) },
  ]);
  for (const c of batches[0]!) assert.equal(c.data.buffer, input.buffer);
});

test("ChunkDeframer copies a chunk that spans reads once, into a buffer of its size", async () => {
  const payload = new Uint8Array(100).map((_, i) => i);
  const wire = chunk(1, payload);
  const reads = [wire.subarray(0, 3), wire.subarray(3, 50), wire.subarray(50)];
  const chunks = (await through(reads, new ChunkDeframer())).flat();
  assert.equal(chunks.length, 1);
  assert.deepEqual(chunks[0]!.data, payload);
  assert.notEqual(chunks[0]!.data.buffer, wire.buffer);
  assert.equal(chunks[0]!.data.buffer.byteLength, 100);
});

test("ChunkDeframer with copy hands out no views of the input", async () => {
  const input = chunk(1, new Uint8Array([9, 9, 9]));
  const [[c]] = await through([input], new ChunkDeframer({ copy: true })) as [[VdiChunk]];
  assert.deepEqual(c.data, new Uint8Array([9, 9, 9]));
  assert.notEqual(c.data.buffer, input.buffer);
});

test("ChunkDeframer errors with TRUNCATED when the input ends inside a header or a chunk", async () => {
  const wire = chunk(1, new Uint8Array(10));
  await assert.rejects(through([wire.subarray(0, 5)], new ChunkDeframer()), isCode("TRUNCATED", 0));
  await assert.rejects(
    through([wire.subarray(0, 12)], new ChunkDeframer()),
    isCode("TRUNCATED", 12),
  );
});

test("ChunkDeframer checks maxChunkSize on the header, before any payload arrives", async () => {
  const header = chunk(1, new Uint8Array(0), 101);
  await assert.rejects(
    through([header], new ChunkDeframer({ maxChunkSize: 100 })),
    isCode("CHUNK_TOO_LARGE", 0),
  );
  const ok =
    (await through([chunk(1, new Uint8Array(100))], new ChunkDeframer({ maxChunkSize: 100 })))
      .flat();
  assert.equal(ok[0]!.data.length, 100);
});

test("ChunkDeframer rejects bad arguments with TypeError and RangeError", async () => {
  assert.throws(() => new ChunkDeframer({ maxChunkSize: 0 }), RangeError);
  assert.throws(() => new ChunkDeframer({ maxChunkSize: 2 ** 32 }), RangeError);
  assert.throws(() => new ChunkDeframer({ maxChunkSize: 1.5 }), RangeError);
  await assert.rejects(
    through(["text" as unknown as Uint8Array], new ChunkDeframer()),
    TypeError,
  );
});

test("ChunkDeframer and MessageAssembler keep reassembled messages intact when the source reuses its buffer", async () => {
  // Ten 3000-byte messages in 2048-byte chunks, read through one 1000-byte
  // buffer that the source overwrites on every pull.
  const payloads = Array.from({ length: 10 }, (_, i) => new Uint8Array(3000).fill(i + 1));
  const wire = concat(...payloads.map((p) => framed(1, 4, p)));
  for (const copy of [false, true]) {
    const scratch = new Uint8Array(1000);
    let at = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (at >= wire.length) return controller.close();
        const n = Math.min(scratch.length, wire.length - at);
        scratch.set(wire.subarray(at, at + n));
        at += n;
        controller.enqueue(scratch.subarray(0, n));
      },
    }, { highWaterMark: 0 });
    const messages = (await collect(
      source.pipeThrough(new ChunkDeframer({ copy })).pipeThrough(new MessageAssembler({ copy })),
    )).flat();
    scratch.fill(0xee);
    assert.deepEqual(messages.map((m) => m.data), payloads, `copy: ${copy}`);
  }
});

test("ChunkDeframer views alias the input, as documented, unless copy is set", async () => {
  const input = chunk(1, new Uint8Array([1, 2, 3]));
  for (const copy of [false, true]) {
    const reused = input.slice();
    const [[c]] = await through([reused], new ChunkDeframer({ copy })) as [[VdiChunk]];
    reused.fill(0);
    assert.deepEqual([...c.data], copy ? [1, 2, 3] : [0, 0, 0]);
  }
});

test("ChunkDeframer and MessageAssembler hold the source back when the consumer stalls", async () => {
  // 1000 small messages offered one 48-byte read at a time; nobody reads the
  // output. The stages may buffer only their queues' worth of reads.
  const one = framed(1, 1, new Uint8Array(13));
  let pulled = 0;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      if (pulled > 1000) return controller.close();
      controller.enqueue(one);
    },
  }, { highWaterMark: 0 });
  const output = source.pipeThrough(new ChunkDeframer()).pipeThrough(new MessageAssembler());
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
  assert.ok(pulled <= 6, `pulled ${pulled} reads with a stalled consumer`);
  const reader = output.getReader();
  let messages = 0;
  for (let r = await reader.read(); !r.done; r = await reader.read()) messages += r.value.length;
  assert.equal(messages, 1000);
});
