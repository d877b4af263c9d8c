#!/usr/bin/env node
// `vdagent-relay` on Node: the npm package's bin. The relay is `run.ts`, written against
// web-platform APIs; this file gives it Node's sockets, files, signals and a TCP listener for
// its web front, as `scripts/relay.ts` does on Deno.
import { constants, readFileSync } from "node:fs";
import { lstat, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { hostname } from "node:os";
import process from "node:process";
import { Duplex, Readable, Writable } from "node:stream";
import { serveNode } from "./node_websocket.ts";
import { parseProcess } from "./launcher.ts";
import { type Connection, type RelayPlatform, runRelay } from "./run.ts";

const fileError = (code: string, message: string) => Object.assign(new Error(message), { code });

const platform: RelayPlatform = {
  args: process.argv.slice(2),
  connect(target): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = target.transport === "unix"
        ? netConnect({ path: target.path })
        : netConnect({ host: target.hostname, port: target.port });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        const { readable, writable } = Duplex.toWeb(socket) as unknown as Connection;
        resolve({
          readable,
          writable,
          closeWrite: () => new Promise<void>((done) => socket.end(done)),
          close: () => void socket.destroy(),
        });
      });
    });
  },
  files: {
    async read(path, maxBytes) {
      let info;
      try {
        info = await lstat(path);
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return undefined;
        throw error;
      }
      if (!info.isFile()) throw fileError("NOT_A_FILE", `${path} is not a regular file`);
      if (info.size > maxBytes) {
        throw fileError("TOO_LARGE", `${path} has ${info.size} bytes, over ${maxBytes}`);
      }
      let file;
      try {
        file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch (error) {
        if ((error as { code?: string }).code === "ENOENT") return undefined; // removed since
        if ((error as { code?: string }).code === "ELOOP") {
          throw fileError("NOT_A_FILE", `${path} is a symbolic link`);
        }
        throw error;
      }
      try {
        const opened = await file.stat();
        if (opened.ino !== info.ino || opened.dev !== info.dev || opened.size > maxBytes) {
          throw fileError("CHANGED", `${path} was replaced while it was opened`);
        }
        return new Uint8Array(await file.readFile());
      } finally {
        await file.close();
      }
    },
    async createNew(path, bytes) {
      let file;
      try {
        file = await open(path, "wx", 0o600);
      } catch (error) {
        if ((error as { code?: string }).code === "EEXIST") return false;
        throw error;
      }
      try {
        await file.writeFile(bytes);
        await file.sync();
      } catch (error) {
        await file.close();
        await rm(path, { force: true });
        throw error;
      }
      await file.close();
      return true;
    },
    rename: (from, to) => rename(from, to),
    remove: (path) => rm(path, { force: true }),
    list: (dir) => readdir(dir),
    async syncDir(dir) {
      const file = await open(dir, "r");
      try {
        await file.sync();
      } finally {
        await file.close();
      }
    },
    processAlive(pid) {
      try {
        // The state is the field after the command, which is in parentheses.
        return !/^\S+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
      } catch {
        if (process.platform === "linux") return false;
        try {
          process.kill(pid, 0);
          return true;
        } catch (error) {
          return (error as { code?: string }).code === "EPERM";
        }
      }
    },
    hostname: hostname(),
    pid: process.pid,
  },
  env: (name) => process.env[name],
  processInfo(pid) {
    try {
      return parseProcess(
        readFileSync(`/proc/${pid}/stat`, "utf8"),
        readFileSync(`/proc/${pid}/cmdline`, "utf8"),
      );
    } catch {
      return undefined;
    }
  },
  readAsset: async (name) =>
    new Uint8Array(await readFile(new URL(`./page/${name}`, import.meta.url))),
  serve: serveNode,
  stdin: Readable.toWeb(process.stdin) as unknown as ReadableStream<Uint8Array>,
  stdout: Writable.toWeb(process.stdout) as unknown as WritableStream<Uint8Array>,
  log: (line) => void process.stderr.write(line + "\n"),
  onSignal(handler) {
    const term = () => handler("SIGTERM");
    const int = () => handler("SIGINT");
    process.on("SIGTERM", term);
    process.on("SIGINT", int);
    return () => {
      process.off("SIGTERM", term);
      process.off("SIGINT", int);
    };
  },
};

process.exit(await runRelay(platform));
