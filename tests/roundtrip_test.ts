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
import { decodePayload } from "../src/protocol/_decode_payload.ts";
import { collect, concat, prng, randInt, randomCut } from "./_helpers.ts";
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

test("decodePayload reads a payload inside a larger buffer as decodeMessage reads it alone", () => {
  const rand = prng(9);
  for (const layout of LAYOUTS) {
    for (const kind of KINDS) {
      const { type, data } = encodeMessage(randomPayload(rand, layout, kind), layout);
      // The payload as sent, cut short, empty, and with a byte too many: valid and invalid ones.
      const variants = [
        data,
        data.subarray(0, Math.max(0, data.length - 1)),
        data.subarray(0, 0),
        concat(data, new Uint8Array([7])),
      ];
      for (const payload of variants) {
        const before = randInt(rand, 1, 9);
        const big = new Uint8Array(before + payload.length + 9).fill(0xa5);
        big.set(payload, before);
        assert.deepEqual(
          decodePayload(type, big, before, before + payload.length, undefined, layout),
          decodeMessage({ type, data: payload }, layout),
          `${kind} of ${payload.length} bytes, layout ${JSON.stringify(layout)}`,
        );
      }
    }
  }
});
