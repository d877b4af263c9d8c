// The benchmark (issue 7), on Deno against the sources:
//
//   deno task bench            full run (-A: only -A may reset the peak RSS in /proc): Markdown to stdout, JSON + SVG to bench/results/
//   deno task bench --check    also evaluates the targets; exits 1 naming a failing ratio
//   deno task bench --quick    a short smoke run (tiny inputs, figures mean nothing)
//
// Other flags: --out DIR, --only small,multi,single,frame, --cases D,F (R0 and
// R2 always run), --no-memory, --memory-only (the 1 GiB memory run alone).
// The runtime-independent code is in scripts/bench/; bench_node.ts runs the
// same code on Node against the npm build.
import {
  ChunkDeframer,
  createHostPipeline,
  HostSession,
  MessageAssembler,
  MessageFramer,
} from "../mod.ts";
import { decodeCheckpoint, encodeCheckpoint } from "../mod.ts";
import * as hostPort from "../src/session/_session_cores.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { runBench } from "./bench/_bench.ts";
import { denoRuntime } from "./bench/deno_runtime.ts";

const code = await runBench(denoRuntime, {
  source: "the sources (mod.ts)",
  ChunkDeframer,
  MessageAssembler,
  MessageFramer,
  HostSession,
  createHostPipeline,
  ChunkReader,
  MessageReader,
  encodeCheckpoint,
  decodeCheckpoint,
  hostPort,
});
Deno.exit(code);
