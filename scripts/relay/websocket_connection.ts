// The server side of one WebSocket connection (RFC 6455) after the handshake, over a byte
// stream: text messages only, no extensions; client frames must be masked. Web-platform only,
// the same on Deno and Node. What a client can make it hold is bounded: a message's payload
// (summed over its fragments, each unmasked straight into one buffer), one pong, the frames
// handed to the stream (the caller paces them, see event_queue.ts).
import { encodeBase64 } from "./base64.ts";

/** What the connection tells its user. */
export interface WebSocketHandlers {
  /** One text message. */
  message(text: string): void;
  /** A message longer than the limit was skipped (its bytes were read and dropped). */
  tooLong(length: number): void;
  /** The connection ended (called once). */
  close(): void;
}

const Op = { CONTINUATION: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** `Sec-WebSocket-Accept` for a handshake's `Sec-WebSocket-Key`. */
export async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + GUID));
  return encodeBase64(new Uint8Array(digest));
}

/** How long a closing connection waits for its close frame to leave before it lets go. */
const CLOSE_WAIT_MS = 1000;

/** The header of a server frame (FIN set, not masked) with `length` bytes of payload. */
function frameHeader(opcode: number, length: number): Uint8Array {
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const header = new Uint8Array(size);
  header[0] = 0x80 | opcode;
  if (length < 126) {
    header[1] = length;
  } else if (length < 65536) {
    header[1] = 126;
    header[2] = length >>> 8;
    header[3] = length & 255;
  } else {
    header[1] = 127;
    new DataView(header.buffer).setBigUint64(2, BigInt(length));
  }
  return header;
}

/** A whole server frame. */
function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const header = frameHeader(opcode, payload.length);
  const out = new Uint8Array(header.length + payload.length);
  out.set(header);
  out.set(payload, header.length);
  return out;
}

/** Where the payload of the frame being read goes. */
type Sink = "message" | "control" | "skip";

/**
 * One WebSocket connection. `start` reads frames until the peer closes or a protocol error;
 * `send` writes a text message; `close` starts the closing handshake.
 */
export class WebSocketConnection {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #end: () => void;
  readonly #maxMessage: number;
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  #handlers: WebSocketHandlers | undefined;
  #closing = false;
  #ended = false;
  // The frame header being read (up to 14 bytes).
  readonly #header = new Uint8Array(14);
  #headerHave = 0;
  // The frame payload being read.
  #inPayload = false;
  #opcode = 0;
  #fin = false;
  #remaining = 0;
  readonly #mask = new Uint8Array(4);
  #maskAt = 0;
  #sink: Sink = "message";
  // The message being assembled, or skipped.
  #inMessage = false;
  #message = new Uint8Array(0);
  #messageLength = 0;
  #skipping = false;
  readonly #control = new Uint8Array(125);
  #controlLength = 0;
  // Pongs: one in flight at most; the latest ping's payload waits for it.
  #pongInFlight = false;
  #pongNext: Uint8Array | undefined;

  /**
   * Over a connection's streams (the reader may have read the handshake already); `end`
   * closes the connection for good. Messages over `maxMessage` bytes are skipped.
   */
  constructor(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    writer: WritableStreamDefaultWriter<Uint8Array>,
    end: () => void,
    maxMessage: number,
  ) {
    this.#reader = reader;
    this.#writer = writer;
    this.#end = end;
    this.#maxMessage = maxMessage;
  }

  /** Reads frames, `head` (bytes read after the handshake) first, until the connection ends. */
  async start(handlers: WebSocketHandlers, head: Uint8Array): Promise<void> {
    this.#handlers = handlers;
    try {
      if (head.length > 0) this.#receive(head);
      while (!this.#closing) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        this.#receive(value);
      }
    } catch {
      // The connection failed or was closed under the read.
    }
    if (!this.#closing) this.#finish();
  }

  /** Sends one text message; resolves once it is written (at once if the connection is closing). */
  send(text: string): Promise<void> {
    if (this.#closing) return Promise.resolve();
    const payload = this.#encoder.encode(text);
    this.#writer.write(frameHeader(Op.TEXT, payload.length)).catch(() => {});
    return this.#writer.write(payload).catch(() => {});
  }

  /** Sends a close frame, waits a little for it to leave, then ends the connection. */
  close(code: number, reason: string): void {
    if (this.#closing) return;
    this.#closing = true;
    const text = this.#encoder.encode(reason).subarray(0, 123);
    const payload = new Uint8Array(2 + text.length);
    payload[0] = code >>> 8;
    payload[1] = code & 255;
    payload.set(text, 2);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gone = new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_WAIT_MS));
    Promise.race([this.#writer.write(frame(Op.CLOSE, payload)).catch(() => {}), gone])
      .then(() => {
        clearTimeout(timer);
        this.#finish();
      });
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#closing = true;
    this.#end();
    this.#handlers?.close();
  }

  /** Parses what arrived, frame by frame, without keeping `bytes`. */
  #receive(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length && !this.#closing) {
      if (!this.#inPayload) {
        at = this.#readHeader(bytes, at);
        continue;
      }
      const n = Math.min(this.#remaining, bytes.length - at);
      this.#payload(bytes, at, n);
      at += n;
      this.#remaining -= n;
      if (this.#remaining === 0) this.#endFrame();
    }
  }

  /** Takes header bytes from `bytes` at `at`; returns where it stopped. */
  #readHeader(bytes: Uint8Array, at: number): number {
    const h = this.#header;
    while (at < bytes.length && this.#headerHave < 2) h[this.#headerHave++] = bytes[at++]!;
    if (this.#headerHave < 2) return at;
    const b0 = h[0]!;
    const b1 = h[1]!;
    // Checked before the rest of the header is waited for.
    if ((b0 & 0x70) !== 0) return this.#failAt(bytes, 1002, "reserved bits set");
    if ((b1 & 0x80) === 0) return this.#failAt(bytes, 1002, "client frames must be masked");
    const short = b1 & 0x7f;
    const need = 2 + (short === 126 ? 2 : short === 127 ? 8 : 0) + 4;
    while (at < bytes.length && this.#headerHave < need) h[this.#headerHave++] = bytes[at++]!;
    if (this.#headerHave < need) return at;
    this.#headerHave = 0;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    let length = b1 & 0x7f;
    let maskAt = 2;
    if (length === 126) {
      length = (h[2]! << 8) | h[3]!;
      maskAt = 4;
    } else if (length === 127) {
      if (h[2]! !== 0 || h[3]! !== 0 || (h[4]! & 0xe0) !== 0) {
        return this.#failAt(bytes, 1009, "frame too big");
      }
      length = new DataView(h.buffer).getUint32(2) * 2 ** 32 + new DataView(h.buffer).getUint32(6);
      maskAt = 10;
    }
    this.#mask.set(h.subarray(maskAt, maskAt + 4));
    this.#maskAt = 0;
    this.#fin = fin;
    this.#opcode = opcode;
    this.#remaining = length;
    if (opcode >= 8) {
      if (!fin || length > 125) return this.#failAt(bytes, 1002, "bad control frame");
      if (opcode !== Op.CLOSE && opcode !== Op.PING && opcode !== Op.PONG) {
        return this.#failAt(bytes, 1002, `unknown opcode ${opcode}`);
      }
      this.#sink = "control";
      this.#controlLength = 0;
    } else if (opcode === Op.BINARY) {
      return this.#failAt(bytes, 1003, "text messages only");
    } else if (opcode === Op.TEXT || opcode === Op.CONTINUATION) {
      if ((opcode === Op.TEXT) === this.#inMessage) {
        return this.#failAt(bytes, 1002, "bad fragmentation");
      }
      if (opcode === Op.TEXT) {
        this.#inMessage = true;
        this.#messageLength = 0;
        this.#skipping = false;
      }
      if (!this.#skipping && this.#messageLength + length > this.#maxMessage) {
        this.#skipping = true;
        this.#message = new Uint8Array(0);
      }
      if (this.#skipping) {
        this.#sink = "skip";
      } else {
        this.#sink = "message";
        this.#reserve(this.#messageLength + length, fin);
      }
    } else {
      return this.#failAt(bytes, 1002, `unknown opcode ${opcode}`);
    }
    this.#inPayload = true;
    if (length === 0) {
      this.#endFrame();
    }
    return at;
  }

  #failAt(bytes: Uint8Array, code: number, reason: string): number {
    this.close(code, reason);
    return bytes.length;
  }

  /** Room for `total` bytes of message: exact for a final frame, doubling otherwise. */
  #reserve(total: number, fin: boolean): void {
    if (total <= this.#message.length) return;
    const size = fin
      ? total
      : Math.min(this.#maxMessage, Math.max(total, this.#message.length * 2));
    const grown = new Uint8Array(size);
    grown.set(this.#message.subarray(0, this.#messageLength));
    this.#message = grown;
  }

  /** Unmasks `n` payload bytes of `bytes` at `at` into where they go. */
  #payload(bytes: Uint8Array, at: number, n: number): void {
    if (this.#sink === "skip") {
      this.#messageLength += n;
      return;
    }
    const into = this.#sink === "message" ? this.#message : this.#control;
    let to = this.#sink === "message" ? this.#messageLength : this.#controlLength;
    const mask = this.#mask;
    let m = this.#maskAt;
    for (let i = at, end = at + n; i < end; i++) {
      into[to++] = bytes[i]! ^ mask[m]!;
      m = (m + 1) & 3;
    }
    this.#maskAt = m;
    if (this.#sink === "message") this.#messageLength = to;
    else this.#controlLength = to;
  }

  #endFrame(): void {
    this.#inPayload = false;
    if (this.#sink === "control") return this.#controlFrame();
    if (!this.#fin) return;
    this.#inMessage = false;
    const length = this.#messageLength;
    this.#messageLength = 0;
    if (this.#skipping) {
      this.#skipping = false;
      this.#handlers?.tooLong(length);
      return;
    }
    const message = this.#message.subarray(0, length);
    this.#message = new Uint8Array(0);
    let text: string;
    try {
      text = this.#decoder.decode(message);
    } catch {
      return this.close(1007, "not UTF-8");
    }
    this.#handlers?.message(text);
  }

  /** A whole control frame arrived. */
  #controlFrame(): void {
    const payload = this.#control.slice(0, this.#controlLength);
    switch (this.#opcode) {
      case Op.PING:
        return this.#pong(payload);
      case Op.PONG:
        return;
      case Op.CLOSE: {
        const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1000;
        return this.close(code === 1005 || code === 1006 ? 1000 : code, "");
      }
    }
  }

  /** Answers a ping; while a pong is in flight, only the latest ping waits for its own. */
  #pong(payload: Uint8Array): void {
    if (this.#pongInFlight) {
      this.#pongNext = payload;
      return;
    }
    this.#pongInFlight = true;
    this.#writer.write(frame(Op.PONG, payload)).then(
      () => {
        this.#pongInFlight = false;
        const next = this.#pongNext;
        this.#pongNext = undefined;
        if (next !== undefined && !this.#closing) this.#pong(next);
      },
      () => {},
    );
  }
}
