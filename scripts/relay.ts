/**
 * `vdagent-relay` on Deno: a SPICE vdagent host relay with a JSON-lines front on standard input
 * and output, an optional WebSocket front and clipboard page, and hand-off through checkpoints.
 *
 *     deno task relay --connect unix:/run/vm1/vdagent.sock [--state vm1.state] [--listen 127.0.0.1:8080]
 *
 * The relay itself is `scripts/relay/run.ts`, written against web-platform APIs; this file gives
 * it Deno's sockets, files, signals and a TCP listener for its web front (`Deno.serve` has no
 * header timeout, no connection cap, and ends the process on an accept error).
 * `scripts/relay/node_main.ts` does the same on Node for the npm package's `vdagent-relay` bin.
 *
 * @module
 */
import { parseProcess } from "./relay/launcher.ts";
import { type Connection, type RelayPlatform, runRelay } from "./relay/run.ts";
import { serveFront } from "./relay/http_front.ts";

const encoder = new TextEncoder();
const isLinux = Deno.build.os === "linux";
const fileError = (code: string, message: string) => Object.assign(new Error(message), { code });

const platform: RelayPlatform = {
  args: Deno.args,
  async connect(target): Promise<Connection> {
    const conn = target.transport === "unix"
      ? await Deno.connect({ transport: "unix", path: target.path })
      : await Deno.connect({ transport: "tcp", hostname: target.hostname, port: target.port });
    return {
      readable: conn.readable,
      writable: conn.writable,
      closeWrite: () => conn.closeWrite(),
      close: () => {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      },
    };
  },
  files: {
    async read(path, maxBytes) {
      let info: Deno.FileInfo;
      try {
        info = await Deno.lstat(path);
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      }
      if (!info.isFile) throw fileError("NOT_A_FILE", `${path} is not a regular file`);
      if (info.size > maxBytes) {
        throw fileError("TOO_LARGE", `${path} has ${info.size} bytes, over ${maxBytes}`);
      }
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path, { read: true });
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return undefined; // removed since
        throw error;
      }
      using _ = file;
      const opened = await file.stat();
      // The same file as the one looked at, not a link put there since.
      if (opened.ino !== info.ino || opened.dev !== info.dev || opened.size > maxBytes) {
        throw fileError("CHANGED", `${path} was replaced while it was opened`);
      }
      const bytes = new Uint8Array(opened.size);
      for (let at = 0; at < bytes.length;) {
        const n = await file.read(bytes.subarray(at));
        if (n === null) return bytes.subarray(0, at);
        at += n;
      }
      return bytes;
    },
    async createNew(path, bytes) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) return false;
        throw error;
      }
      try {
        for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
        await file.sync();
      } catch (error) {
        file.close();
        await Deno.remove(path).catch(() => {});
        throw error;
      }
      file.close();
      return true;
    },
    rename: (from, to) => Deno.rename(from, to),
    async remove(path) {
      try {
        await Deno.remove(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    },
    list: async (dir) => (await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name),
    async syncDir(dir) {
      using file = await Deno.open(dir, { read: true });
      await file.sync();
    },
    processAlive(pid) {
      try {
        // The state is the field after the command, which is in parentheses.
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        return !/^\S+ \(.*\) [ZX]/s.test(stat);
      } catch (error) {
        // No /proc (not Linux): taken as alive, so a lock is never broken by mistake.
        return !(error instanceof Deno.errors.NotFound) || !isLinux;
      }
    },
    hostname: Deno.hostname(),
    pid: Deno.pid,
  },
  env: (name) => Deno.env.get(name),
  processInfo(pid) {
    try {
      return parseProcess(
        Deno.readTextFileSync(`/proc/${pid}/stat`),
        Deno.readTextFileSync(`/proc/${pid}/cmdline`),
      );
    } catch {
      return undefined;
    }
  },
  readAsset: (name) => Deno.readFile(new URL(`./relay/page/${name}`, import.meta.url)),
  serve(listen, handlers) {
    // Throws at once when it cannot listen; runRelay reports it.
    const listener = Deno.listen({ hostname: listen.hostname, port: listen.port });
    const addr = listener.addr as Deno.NetAddr;
    return Promise.resolve(serveFront({
      hostname: addr.hostname,
      port: addr.port,
      async accept() {
        const conn = await listener.accept();
        conn.setNoDelay(true);
        return {
          readable: conn.readable,
          writable: conn.writable,
          close() {
            try {
              conn.close();
            } catch {
              // Closed already.
            }
          },
        };
      },
      close() {
        try {
          listener.close();
        } catch {
          // Closed already.
        }
      },
    }, handlers));
  },
  stdin: Deno.stdin.readable,
  stdout: Deno.stdout.writable,
  log: (line) => void Deno.stderr.writeSync(encoder.encode(line + "\n")),
  onSignal(handler) {
    const term = () => handler("SIGTERM");
    const int = () => handler("SIGINT");
    Deno.addSignalListener("SIGTERM", term);
    Deno.addSignalListener("SIGINT", int);
    return () => {
      Deno.removeSignalListener("SIGTERM", term);
      Deno.removeSignalListener("SIGINT", int);
    };
  },
};

Deno.exit(await runRelay(platform));
