// The benchmark's runtime adapter for Deno.
import { type BenchRuntime, procStatusField } from "./_runtime.ts";

const gc = (globalThis as { gc?: () => void }).gc;

function status(): string | undefined {
  try {
    return Deno.readTextFileSync("/proc/self/status");
  } catch {
    return undefined;
  }
}

export const denoRuntime: BenchRuntime = {
  name: "deno",
  versions: { deno: Deno.version.deno, v8: Deno.version.v8, typescript: Deno.version.typescript },
  machine() {
    let cpu = "unknown";
    try {
      cpu = /^model name\s*:\s*(.*)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? cpu;
    } catch { /* not Linux */ }
    let memoryMiB = 0;
    try {
      memoryMiB = Math.round(Deno.systemMemoryInfo().total / 1024 / 1024);
    } catch { /* no --allow-sys */ }
    return {
      cpu,
      cores: navigator.hardwareConcurrency,
      os: `${Deno.build.os} ${Deno.build.arch}`,
      memoryMiB,
    };
  },
  args: Deno.args,
  gc: () => gc?.(),
  hasGc: gc !== undefined,
  rss: () => Deno.memoryUsage().rss,
  resetPeakRss() {
    try {
      // Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
      Deno.writeTextFileSync("/proc/self/clear_refs", "5");
      return true;
    } catch {
      return false;
    }
  },
  peakRss() {
    const text = status();
    return (text === undefined ? undefined : procStatusField(text, "VmHWM")) ??
      Deno.memoryUsage().rss;
  },
  async readText(path) {
    try {
      return await Deno.readTextFile(path);
    } catch {
      return undefined;
    }
  },
  writeText: (path, text) => Deno.writeTextFile(path, text),
  async list(dir) {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    } catch { /* missing */ }
    return names;
  },
  async mkdir(dir) {
    await Deno.mkdir(dir, { recursive: true });
  },
  async spawnSelf(args) {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        // All permissions: Deno lets only -A write /proc/self/clear_refs,
        // which resets the peak RSS before each measurement.
        "-A",
        "--v8-flags=--expose-gc",
        new URL("../bench.ts", import.meta.url).pathname,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder();
    return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
  },
  // deno-lint-ignore no-console
  print: (text) => console.log(text),
  exit: (code) => Deno.exit(code),
};
