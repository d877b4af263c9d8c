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
import { type Connection, type RelayPlatform, runRelay } from "./relay/run.ts";
import { serveFront } from "./relay/http_front.ts";

const encoder = new TextEncoder();

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
  async readFile(path) {
    try {
      return await Deno.readFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  },
  async writeFileAtomic(path, bytes) {
    const slash = path.lastIndexOf("/");
    const temp = `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.${Deno.pid}.tmp`;
    try {
      const file = await Deno.open(temp, {
        write: true,
        create: true,
        truncate: true,
        mode: 0o600,
      });
      try {
        for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
        await file.sync();
      } finally {
        file.close();
      }
      await Deno.rename(temp, path);
    } catch (error) {
      await Deno.remove(temp).catch(() => {});
      throw error;
    }
  },
  removeFile: (path) => Deno.remove(path),
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
