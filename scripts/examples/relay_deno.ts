// deno-lint-ignore-file no-console
// A relay for a VM's guest agent in Deno: prints what the guest copies and
// offers the guest a text to paste.
//   deno run --allow-net --allow-read --allow-write scripts/examples/relay_deno.ts /run/vm1/vdagent.sock
import { ClipboardType, createHostPipeline, Selection } from "@vdagent/streams";

const TEXT = ClipboardType.UTF8_TEXT;
const conn = await Deno.connect({ transport: "unix", path: Deno.args[0]! });
const relay = createHostPipeline(conn, {
  clipboard: {
    onGuestGrab(selection, types) { // the guest copied
      if (!types.includes(TEXT)) return;
      relay.session.request(selection, TEXT).then(
        (data) => console.log(`guest copied: ${new TextDecoder().decode(data)}`),
        (error) => console.error(`paste failed: ${error.code}`),
      );
    },
    provide: () => new TextEncoder().encode("Hello from the host"), // the guest pastes
  },
});
relay.session.grab(Selection.CLIPBOARD, [TEXT]);
await relay.done;
