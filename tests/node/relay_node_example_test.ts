// The README's Node relay (scripts/examples/relay_node.mjs), run as a Node
// subprocess against an in-process guest agent on a unix socket; both ends use
// `net.Socket` through `Duplex.toWeb`. Node only: run by `deno task build:npm`,
// where the example resolves the package by its own name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import { ClipboardType, createGuestPipeline, Selection, type Transport } from "../../mod.ts";

/** The README's command; run from the package's root, with the socket made here. */
const README = "node scripts/examples/relay_node.mjs /run/vm1/vdagent.sock";
const packageRoot = fileURLToPath(new URL("../../", import.meta.url));

test(
  "scripts/examples/relay_node.mjs relays the clipboard both ways over net.Socket and Duplex.toWeb",
  {
    timeout: 60_000,
  },
  async () => {
    const dir = await mkdtemp(join(tmpdir(), "vdagent-relay-"));
    const path = join(dir, "vdagent.sock");
    const server = createServer();
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const [node, ...args] = README.replace("/run/vm1/vdagent.sock", path).split(" ");
    assert.equal(node, "node");
    const relay = spawn(process.execPath, args, {
      cwd: packageRoot,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<number | null>((resolve) => relay.once("exit", resolve));
    try {
      const socket = await accepted;
      let hostGrabbed!: () => void;
      const hostGrab = new Promise<void>((resolve) => hostGrabbed = resolve);
      const guest = createGuestPipeline(Duplex.toWeb(socket) as Transport, {
        clipboard: {
          provide: () => new TextEncoder().encode("hello from the guest"),
          onHostGrab: () => hostGrabbed(),
        },
      });
      // PRIMARY, so the relay's own grab of CLIPBOARD does not take it over.
      guest.session.grab(Selection.PRIMARY, [ClipboardType.UTF8_TEXT]);
      let printed = "";
      relay.stdout.setEncoding("utf8");
      for await (const text of relay.stdout) {
        printed += text;
        if (printed.includes("\n")) break;
      }
      assert.equal(printed, "guest copied: hello from the guest\n");
      await hostGrab;
      const pasted = await guest.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT);
      assert.equal(new TextDecoder().decode(pasted), "Hello from the host");
      await guest.close();
      // The guest's close ends the relay's pipeline, and the relay exits by itself.
      assert.equal(await exited, 0);
    } finally {
      relay.kill();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    }
  },
);
