// WebSocket frames as a client writes them and as the relay's front answers, for tests that
// speak to the front byte by byte (tests/relay_front_test.ts, tests/_relay_bounds.ts,
// tests/node/node_websocket_test.ts).

/** The handshake's key in RFC 6455's example. */
export const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

/** A client frame: FIN and opcode, the payload masked (or not, to test a refusal). */
export function clientFrame(
  opcode: number,
  payload: Uint8Array,
  fin = true,
  mask = true,
): Uint8Array {
  const n = payload.length;
  const size = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(size + (mask ? 4 : 0) + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  const view = new DataView(out.buffer);
  if (n < 126) out[1] = n;
  else if (n < 65536) (out[1] = 126, view.setUint16(2, n));
  else (out[1] = 127, view.setBigUint64(2, BigInt(n)));
  if (mask) {
    out[1]! |= 0x80;
    const key = [0x12, 0x34, 0x56, 0x78];
    out.set(key, size);
    for (let i = 0; i < n; i++) out[size + 4 + i] = payload[i]! ^ key[i & 3]!;
  } else {
    out.set(payload, size);
  }
  return out;
}

/** One server frame. */
export interface ServerFrame {
  opcode: number;
  payload: Uint8Array;
}

/** The whole frames at the start of `bytes`, and how many bytes they took. */
export function serverFrames(bytes: Uint8Array): { frames: ServerFrame[]; used: number } {
  const frames: ServerFrame[] = [];
  let at = 0;
  for (;;) {
    if (bytes.length - at < 2) break;
    let length = bytes[at + 1]! & 0x7f;
    let header = 2;
    if (length === 126) {
      if (bytes.length - at < 4) break;
      length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
      header = 4;
    } else if (length === 127) {
      if (bytes.length - at < 10) break;
      length = Number(new DataView(bytes.buffer, bytes.byteOffset + at).getBigUint64(2));
      header = 10;
    }
    if (bytes.length - at < header + length) break;
    frames.push({
      opcode: bytes[at]! & 0x0f,
      payload: bytes.slice(at + header, at + header + length),
    });
    at += header + length;
  }
  return { frames, used: at };
}

/** A close frame's code. */
export const closeCode = (payload: Uint8Array): number => (payload[0]! << 8) | payload[1]!;

/** A close frame's reason. */
export const closeReason = (payload: Uint8Array): string =>
  new TextDecoder().decode(payload.subarray(2));

/** The request of a WebSocket handshake on `path`, with extra or replaced headers. */
export function handshake(host: string, path: string, headers: Record<string, string> = {}) {
  const lines = Object.entries({
    Host: host,
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
    ...headers,
  }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  return `GET ${path} HTTP/1.1\r\n${lines}\r\n`;
}
