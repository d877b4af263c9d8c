// deno-lint-ignore-file no-console
// The same relay on Node, with the npm package.
//   node scripts/examples/relay_node.mjs /run/vm1/vdagent.sock
import { connect } from "node:net";
import { Duplex } from "node:stream";
import { ClipboardType, createHostPipeline, Selection } from "vdagent-streams";

const TEXT = ClipboardType.UTF8_TEXT;
const socket = connect(process.argv[2] ?? "/run/vm1/vdagent.sock");
const relay = createHostPipeline(Duplex.toWeb(socket), {
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
