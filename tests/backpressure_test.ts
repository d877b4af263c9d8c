// How far the pipelines read ahead of a consumer that has stopped: the bytes
// pulled from the source are counted, never timed.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ChunkDeframer,
  ClipboardType,
  createHostPipeline,
  MessageAssembler,
  Selection,
} from "../mod.ts";
import { chunk, collect, framed, message, u32s } from "./_helpers.ts";

/** A source that hands out `reads` one per pull and counts the bytes pulled. */
function countingSource(
  reads: Uint8Array[],
): { readable: ReadableStream<Uint8Array>; pulled(): number } {
  let i = 0;
  let bytes = 0;
  const readable = new ReadableStream<Uint8Array>({
    pull(controller) {
      const read = reads[i++];
      if (read === undefined) return controller.close();
      bytes += read.length;
      controller.enqueue(read);
    },
  });
  return { readable, pulled: () => bytes };
}

/** Waits until `value()` has not changed for 20 event-loop turns. */
async function settled(value: () => number): Promise<number> {
  let last = -1;
  for (let still = 0; still < 20;) {
    await new Promise((r) => setTimeout(r, 0));
    const now = value();
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return last;
}

/** A writable whose writes never complete: a peer that stopped reading. */
function stalled<T>(): { writable: WritableStream<T>; writes(): number } {
  let writes = 0;
  return {
    writable: new WritableStream<T>({
      write: () => {
        writes++;
        return new Promise<void>(() => {});
      },
    }),
    writes: () => writes,
  };
}

const MiB = 1024 * 1024;
const CAPS = chunk(1, message(6, u32s(1, 0x00038de7)));
const PASTE = chunk(1, message(8, u32s(Selection.PRIMARY, ClipboardType.UTF8_TEXT)));

test("createHostPipeline stops pulling from the guest once its output to a stalled guest passes the high-water mark", async () => {
  // The guest pastes the host's 256 KiB selection again and again, one
  // request per read, and never reads what the host sends.
  const data = new Uint8Array(256 * 1024);
  const reads = [CAPS, ...Array.from({ length: 200 }, () => PASTE)];
  const source = countingSource(reads);
  const peer = stalled<Uint8Array>();
  let served = 0;
  const stop = new AbortController();
  const pipeline = createHostPipeline({ readable: source.readable, writable: peer.writable }, {
    signal: stop.signal,
    clipboard: {
      provide: () => {
        served++;
        return data;
      },
    },
  });
  pipeline.session.grab(Selection.PRIMARY, [ClipboardType.UTF8_TEXT]);
  const pulled = await settled(source.pulled);
  // The pipeline documents a 1 MiB high-water mark for queued output. It stops
  // reading after the message that crosses it; the source's own queue (one
  // read) may hold one more.
  const highWater = MiB;
  const answers = Math.floor(highWater / data.length) + 1;
  assert.ok(served <= answers, `served ${served} pastes, expected at most ${answers}`);
  assert.ok(
    served * data.length <= highWater + data.length,
    "queued output ≤ high-water mark + one message",
  );
  const bound = CAPS.length + (answers + 1) * PASTE.length;
  assert.ok(pulled <= bound, `pulled ${pulled} bytes, bound ${bound}`);
  assert.ok(pulled < reads.reduce((n, r) => n + r.length, 0), "it did not read everything");
  assert.ok(peer.writes() >= 1);
  stop.abort(new Error("test over"));
  await assert.rejects(pipeline.done, /test over/);
});

test("createHostPipeline stops inside a read full of pastes once its output passes the high-water mark", async () => {
  // One read holds 200 pastes of the host's 256 KiB selection; the guest
  // reads nothing back. Without stopping mid-read the relay would queue 50 MiB.
  const data = new Uint8Array(256 * 1024);
  const read = new Uint8Array(CAPS.length + 200 * PASTE.length);
  read.set(CAPS);
  for (let i = 0; i < 200; i++) read.set(PASTE, CAPS.length + i * PASTE.length);
  const source = countingSource([read]);
  const peer = stalled<Uint8Array>();
  let served = 0;
  const stop = new AbortController();
  const pipeline = createHostPipeline({ readable: source.readable, writable: peer.writable }, {
    signal: stop.signal,
    clipboard: {
      provide: () => {
        served++;
        return data;
      },
    },
  });
  pipeline.session.grab(Selection.PRIMARY, [ClipboardType.UTF8_TEXT]);
  await settled(() => served);
  const answers = Math.floor(MiB / data.length) + 1;
  assert.ok(served <= answers, `served ${served} pastes of 200, expected at most ${answers}`);
  stop.abort(new Error("test over"));
  await assert.rejects(pipeline.done, /test over/);
});

test("ChunkDeframer and MessageAssembler read ahead of a stalled consumer by one message plus their queues", async () => {
  // 1 MiB messages in 2048-byte chunks, in 4096-byte reads; the consumer
  // takes the first batch and never finishes writing it.
  const size = MiB;
  const one = framed(1, 4, new Uint8Array(size));
  const wire = new Uint8Array(one.length * 8);
  for (let i = 0; i < 8; i++) wire.set(one, i * one.length);
  const reads: Uint8Array[] = [];
  for (let at = 0; at < wire.length; at += 4096) reads.push(wire.subarray(at, at + 4096));
  const source = countingSource(reads);
  const consumer = stalled<unknown>();
  const done = source.readable
    .pipeThrough(new ChunkDeframer())
    .pipeThrough(new MessageAssembler())
    .pipeTo(consumer.writable)
    .catch(() => {});
  const pulled = await settled(source.pulled);
  // The consumer holds the first message (its write never ends, and it
  // fills the consumer's queue of high-water mark 1), so the assembler's
  // readable side reports backpressure and the stages stop. What was pulled
  // beyond that message sits in the queues, one read each at most: the
  // source's (high-water mark 1), the deframer's writable side (1), its
  // output batch (readable high-water mark 0, but one enqueue lands), the
  // assembler's writable side (1), and the read in the transform.
  const readsInQueues = 5;
  const bound = one.length + readsInQueues * 4096;
  assert.ok(pulled <= bound, `pulled ${pulled} bytes, bound ${bound}`);
  assert.ok(pulled < wire.length, "it did not read everything");
  assert.equal(consumer.writes(), 1);
  void done;
});

test("createHostPipeline carries a read it paused in over a hand-off, losing and doubling nothing", async () => {
  const data = new Uint8Array(256 * 1024);
  const read = new Uint8Array(CAPS.length + 200 * PASTE.length);
  read.set(CAPS);
  for (let i = 0; i < 200; i++) read.set(PASTE, CAPS.length + i * PASTE.length);
  const source = countingSource([read]);
  const written: Uint8Array[] = [];
  let releaseWrite: (() => void) | undefined;
  const slow = new WritableStream<Uint8Array>({
    write(bytes) {
      written.push(bytes.slice());
      return new Promise<void>((resolve) => releaseWrite = resolve);
    },
  });
  const transport = { readable: source.readable, writable: slow };
  let served = 0;
  const clipboard = { provide: () => (served++, data) };
  const a = createHostPipeline(transport, { clipboard });
  a.session.grab(Selection.PRIMARY, [ClipboardType.UTF8_TEXT]);
  await settled(() => served);
  assert.ok(served < 200, "A stopped inside the read");
  const checkpoint = a.checkpoint();
  releaseWrite!(); // the write in flight completes; A writes nothing more
  const state = await checkpoint;
  await a.done;
  const b = createHostPipeline(
    {
      readable: source.readable,
      writable: new WritableStream({ write: (bytes) => void written.push(bytes.slice()) }),
    },
    { clipboard, restore: state, resume: "continued" },
  );
  await b.done;
  const messages = (await collect(
    ReadableStream.from(written).pipeThrough(new ChunkDeframer()).pipeThrough(
      new MessageAssembler(),
    ),
  )).flat();
  const answers = messages.filter((m) => m.type === 4);
  assert.equal(answers.length, 200, "every paste answered once");
  assert.ok(answers.every((m) => m.data.length === 8 + data.length));
  assert.equal(messages.filter((m) => m.type === 9).length, 0, "no release");
});
