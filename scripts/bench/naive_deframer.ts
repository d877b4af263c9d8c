// The yardstick (case N of the benchmark): a vdagent reader written the way
// most hand-rolled JavaScript clients write one. It is correct (it finds the
// same messages as the library, and checks the same framing rules), but it
//
// - concatenates what it buffered with every read (`Buffer.concat` style),
// - builds a `DataView` for every header,
// - reassembles a message by concatenating its chunks,
// - copies every chunk and every message out with `slice`,
// - and enqueues one object per message.
//
// It advances through its buffer with `subarray`, as Node's `Buffer.slice`
// does, so it is not quadratic within one read. Do not use it: it exists so
// the benchmark can say how much the library's design buys.

/** A message as the naive reader emits it. */
export interface NaiveMessage {
  port: number;
  type: number;
  opaque: bigint;
  data: Uint8Array;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Bytes → one message per `enqueue`. */
export class NaiveDeframer extends TransformStream<Uint8Array, NaiveMessage> {
  constructor() {
    let buffer: Uint8Array = new Uint8Array(0);
    // Per port (1 and 2): the chunk payloads of the message being assembled.
    const pending: Uint8Array[] = [new Uint8Array(0), new Uint8Array(0), new Uint8Array(0)];
    super({
      transform(read, controller) {
        buffer = concat(buffer, read);
        while (buffer.length >= 8) {
          const header = new DataView(buffer.buffer, buffer.byteOffset, 8);
          const port = header.getUint32(0, true);
          const size = header.getUint32(4, true);
          if (port !== 1 && port !== 2) throw new Error(`naive: bad port ${port}`);
          if (size === 0) throw new Error("naive: empty chunk");
          if (buffer.length < 8 + size) break;
          const chunk = buffer.slice(8, 8 + size);
          buffer = buffer.subarray(8 + size);
          let message = concat(pending[port]!, chunk);
          while (message.length >= 20) {
            const mh = new DataView(message.buffer, message.byteOffset, 20);
            if (mh.getUint32(0, true) !== 1) throw new Error("naive: bad protocol");
            const length = mh.getUint32(16, true);
            if (message.length < 20 + length) break;
            controller.enqueue({
              port,
              type: mh.getUint32(4, true),
              opaque: mh.getBigUint64(8, true),
              data: message.slice(20, 20 + length),
            });
            message = message.subarray(20 + length);
          }
          pending[port] = message;
        }
      },
      flush() {
        if (buffer.length > 0 || pending.some((p) => p.length > 0)) {
          throw new Error("naive: the input ended inside a message");
        }
      },
    });
  }
}
