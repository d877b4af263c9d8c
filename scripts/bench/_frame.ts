// The framing target: one 64 MiB clipboard message through MessageFramer,
// against memcpy of the same number of wire bytes.
import type { AgentMessage } from "../../mod.ts";
import type { BenchLibrary, CaseDef } from "./_cases.ts";
import { clipboard, encode, T } from "./_inputs.ts";

export interface FrameInput {
  message: AgentMessage;
  /** The independent encoder's wire bytes of the same message. */
  wire: Uint8Array;
}

export function buildFrameInput(size: number): FrameInput {
  const spec = clipboard(size, 7, 2048);
  const { wire } = encode([spec]);
  return { message: { port: 1, type: T.CLIPBOARD, opaque: 0n, data: spec.payload }, wire };
}

/** Cases of the framing group; `W` checks its output against the independent encoder when verifying. */
export function frameCases(lib: BenchLibrary, input: FrameInput): CaseDef[] {
  const target = new Uint8Array(input.wire.length);
  return [
    {
      id: "R0",
      title: "Uint8Array.set of the framed size into a reused buffer",
      run() {
        target.set(input.wire, 0);
        return Promise.resolve({ items: 1, bytes: input.wire.length });
      },
    },
    {
      id: "R0+alloc",
      title: "new Uint8Array(framed size), then Uint8Array.set",
      run() {
        const fresh = new Uint8Array(input.wire.length);
        fresh.set(input.wire, 0);
        return Promise.resolve({ items: 1, bytes: fresh.length });
      },
    },
    {
      id: "W",
      title: "MessageFramer (one message per write)",
      async run(_reads, verify) {
        let items = 0;
        let bytes = 0;
        let same = true;
        await ReadableStream.from([input.message])
          .pipeThrough(new lib.MessageFramer())
          .pipeTo(
            new WritableStream({
              write(out) {
                if (verify) same &&= sameBytes(out, input.wire.subarray(bytes, bytes + out.length));
                items++;
                bytes += out.length;
              },
            }),
          );
        return { items, bytes, checksum: same ? 1 : 0 };
      },
    },
  ];
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
