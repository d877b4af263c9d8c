// Seeded property: encode → frame → deframe → assemble → decode is the identity
// for every message type and every layout.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ChunkDeframer,
  decodeMessage,
  encodeMessage,
  MessageAssembler,
  MessageFramer,
  type MessagePayload,
} from "../mod.ts";
import { collect, prng, randInt, randomCut } from "./_helpers.ts";
import { KINDS, LAYOUTS, randomPayload } from "./_payloads.ts";

test("decodeMessage inverts encodeMessage through the framer, deframer and assembler", async () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const rand = prng(seed);
    for (const layout of LAYOUTS) {
      const payloads: MessagePayload[] = [];
      for (let i = 0; i < 3; i++) {
        for (const kind of KINDS) payloads.push(randomPayload(rand, layout, kind));
      }
      const messages = payloads.map((p) => encodeMessage(p, layout));
      const framer = new MessageFramer({ maxChunkSize: randInt(rand, 20, 2048) });
      const wire = (await collect(ReadableStream.from([messages]).pipeThrough(framer)))[0]!;
      const reads = randomCut(rand, wire, randInt(rand, 1, 9000));
      const out = (await collect(
        ReadableStream.from(reads).pipeThrough(new ChunkDeframer()).pipeThrough(
          new MessageAssembler(),
        ),
      )).flat();
      assert.deepEqual(out.map((m) => decodeMessage(m, layout)), payloads, `seed ${seed}`);
    }
  }
});
