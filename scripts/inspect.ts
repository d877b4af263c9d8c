// deno-lint-ignore-file no-console
/**
 * Prints one line per message of a raw vdagent capture.
 *
 *     deno task inspect [--direction g2h|h2g] [--caps HEX] <capture.bin>
 *
 * Clipboard layouts follow the capabilities the capture's sender announces;
 * `--caps` gives the peer's capabilities when they are not all-inclusive.
 * On malformed input it names the byte offset and exits with code 1.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  Capability,
  ChunkDeframer,
  decodeMessage,
  hasCapability,
  MessageAssembler,
  type PayloadOptions,
  VdagentProtocolError,
} from "../mod.ts";
import { describe } from "./_describe.ts";

const usage = "usage: deno task inspect [--direction g2h|h2g] [--caps HEX] <capture.bin>";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { direction: { type: "string" }, caps: { type: "string" }, help: { type: "boolean" } },
  allowPositionals: true,
});
if (values.help || positionals.length !== 1) {
  console.error(usage);
  Deno.exit(values.help ? 0 : 2);
}
const arrow = { g2h: "guest→host ", h2g: "host→guest " }[values.direction ?? ""] ?? "";
if (values.direction !== undefined && arrow === "") {
  console.error(`inspect: --direction must be g2h or h2g\n${usage}`);
  Deno.exit(2);
}
const peer = values.caps === undefined ? undefined : [Number.parseInt(values.caps, 16) >>> 0];

let layout: PayloadOptions = {};
let count = 0;
const file = await Deno.open(positionals[0]!);
try {
  const messages = file.readable.pipeThrough(new ChunkDeframer()).pipeThrough(
    new MessageAssembler(),
  );
  for await (const batch of messages) {
    for (const message of batch) {
      const payload = decodeMessage(message, layout);
      count++;
      console.log(`${String(count).padStart(4)} ${arrow}port=${message.port} ${describe(payload)}`);
      if (payload.kind === "announce_capabilities") {
        const both = (bit: number) =>
          hasCapability(payload.caps, bit) && (!peer || hasCapability(peer, bit));
        layout = {
          selection: both(Capability.CLIPBOARD_SELECTION),
          grabSerial: both(Capability.CLIPBOARD_GRAB_SERIAL),
        };
      }
    }
  }
} catch (e) {
  if (!(e instanceof VdagentProtocolError)) throw e;
  console.error(
    `inspect: malformed input at byte offset ${e.offset ?? "?"}: ${e.code}: ${e.message}`,
  );
  Deno.exit(1);
}
console.error(`${count} messages`);
