// The benchmark's runtime adapter for Node (used by bench_node.ts against the npm build).
import { arch, execPath, exit, memoryUsage, platform, versions } from "node:process";
import { availableParallelism, cpus, totalmem } from "node:os";
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type BenchRuntime, procStatusField } from "./_runtime.ts";

const gc = (globalThis as { gc?: () => void }).gc;

function status(): string | undefined {
  try {
    return readFileSync("/proc/self/status", "utf8");
  } catch {
    return undefined;
  }
}

/**
 * `entry` is the URL of the Node entry script, re-run by `spawnSelf` with
 * `fixed` before its arguments; `args` are the benchmark's own arguments.
 */
export function nodeRuntime(entry: string, fixed: string[], args: string[]): BenchRuntime {
  return {
    name: "node",
    versions: { node: versions.node, v8: versions.v8 },
    machine: () => ({
      cpu: cpus()[0]?.model ?? "unknown",
      cores: availableParallelism(),
      os: `${platform} ${arch}`,
      memoryMiB: Math.round(totalmem() / 1024 / 1024),
    }),
    args,
    gc: () => gc?.(),
    hasGc: gc !== undefined,
    rss: () => memoryUsage().rss,
    resetPeakRss() {
      try {
        writeFileSync("/proc/self/clear_refs", "5");
        return true;
      } catch {
        return false;
      }
    },
    peakRss() {
      const text = status();
      return (text === undefined ? undefined : procStatusField(text, "VmHWM")) ?? memoryUsage().rss;
    },
    async readText(path) {
      try {
        return await readFile(path, "utf8");
      } catch {
        return undefined;
      }
    },
    writeText: (path, text) => writeFile(path, text),
    async list(dir) {
      try {
        return await readdir(dir);
      } catch {
        return [];
      }
    },
    async mkdir(dir) {
      await mkdir(dir, { recursive: true });
    },
    spawnSelf(args) {
      return new Promise((resolve, reject) => {
        const child = spawn(execPath, ["--expose-gc", fileURLToPath(entry), ...fixed, ...args]);
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => stdout += d);
        child.stderr.on("data", (d) => stderr += d);
        child.on("error", reject);
        child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
      });
    },
    // deno-lint-ignore no-console
    print: (text) => console.log(text),
    exit: (code) => exit(code),
  };
}
