// The benchmark on Node, against the npm build: the same code as bench.ts,
// with Node's runtime adapter and the library loaded from the build.
//
// Node 20 cannot run TypeScript, so bundle this script first (the library
// stays outside the bundle: it is imported at run time from --lib):
//
//   deno bundle --platform browser --external 'node:*' scripts/bench_node.ts -o bench/.node/bench.mjs
//   node --expose-gc bench/.node/bench.mjs --lib DIR [bench.ts flags]
//
// DIR is the root of the npm build's ES modules: it holds mod.js and
// src/wire/_chunk_reader.js and src/wire/_message_reader.js (the cores, which
// case C drives directly).
import { argv, exit } from "node:process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { BenchLibrary } from "./bench/_cases.ts";
import { runBench } from "./bench/_bench.ts";
import { nodeRuntime } from "./bench/node_runtime.ts";

const args = argv.slice(2);
const at = args.indexOf("--lib");
if (at < 0 || args[at + 1] === undefined) {
  throw new RangeError("Cannot run the Node benchmark: pass --lib <npm build directory>");
}
const given = args[at + 1]!;
const dir = resolve(given);
args.splice(at, 2);
const load = (path: string) => import(pathToFileURL(`${dir}/${path}`).href);
const [mod, chunks, messages, hostPort] = await Promise.all([
  load("mod.js"),
  load("src/wire/_chunk_reader.js"),
  load("src/wire/_message_reader.js"),
  load("src/session/_session_cores.js"),
]);
const lib: BenchLibrary = {
  // As given: the results are committed, and must not name this machine's paths.
  source: `the build in ${given}`,
  ChunkDeframer: mod.ChunkDeframer,
  MessageAssembler: mod.MessageAssembler,
  MessageFramer: mod.MessageFramer,
  HostSession: mod.HostSession,
  createHostPipeline: mod.createHostPipeline,
  ChunkReader: chunks.ChunkReader,
  MessageReader: messages.MessageReader,
  encodeCheckpoint: mod.encodeCheckpoint,
  decodeCheckpoint: mod.decodeCheckpoint,
  hostPort,
};
exit(await runBench(nodeRuntime(import.meta.url, ["--lib", dir], args), lib));
