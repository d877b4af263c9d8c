#!/usr/bin/env node
// `vdagent-relay` on Node: the npm package's bin. The relay is `run.ts`, written against
// web-platform APIs; this file gives it Node's sockets, files, signals and a TCP listener for
// its web front, as `scripts/relay.ts` does on Deno.
import { open, readFile, rename, rm } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { Duplex, Readable, Writable } from "node:stream";
import type { Transport } from "../../mod.ts";
import { serveNode } from "./node_websocket.ts";
import { type Connection, type RelayPlatform, runRelay } from "./run.ts";

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
        const { readable, writable } = Duplex.toWeb(socket) as unknown as Transport;
        resolve({
          readable,
          writable,
          closeWrite: () => new Promise<void>((done) => socket.end(done)),
          close: () => void socket.destroy(),
        });
      });
    });
  },
  async readFile(path) {
    try {
      return new Uint8Array(await readFile(path));
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") return undefined;
      throw error;
    }
  },
  async writeFileAtomic(path, bytes) {
    const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
    try {
      const file = await open(temp, "w", 0o600);
      try {
        await file.writeFile(bytes);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  },
  removeFile: (path) => rm(path),
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
