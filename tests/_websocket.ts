// A WebSocket whose network a test plays: alone, or joined to another one.
import type { WebSocketLike } from "../mod.ts";

export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

/** A WebSocket whose network the test plays, or a peer socket does. */
export class FakeSocket extends EventTarget implements WebSocketLike {
  binaryType = "blob";
  readyState: number;
  /** What `bufferedAmount` reports. */
  buffered = 0;
  /** How often `bufferedAmount` was read. */
  looks = 0;
  /** Copies of what was sent, in order. */
  sent: Uint8Array[] = [];
  /** Arguments of each `close` call. */
  closes: [number | undefined, string | undefined][] = [];
  /** The other end: what this socket sends arrives there on a later task. */
  peer: FakeSocket | undefined;

  constructor(readyState = OPEN) {
    super();
    this.readyState = readyState;
  }

  get bufferedAmount(): number {
    this.looks++;
    return this.buffered;
  }

  send(data: Uint8Array): void {
    if (this.readyState !== OPEN) throw new Error("InvalidStateError: not open");
    const copy = data.slice();
    this.sent.push(copy);
    this.buffered += copy.length;
    const peer = this.peer;
    if (peer === undefined) return;
    setTimeout(() => {
      this.buffered -= copy.length;
      // A browser drops what arrives once it started closing.
      if (peer.readyState === OPEN) peer.receive(copy.buffer);
    }, 0);
  }

  close(code?: number, reason?: string): void {
    this.closes.push([code, reason]);
    if (this.readyState >= CLOSING) return;
    this.readyState = CLOSING;
    const peer = this.peer;
    if (peer === undefined) return;
    // The closing handshake: both ends see a clean close after what was sent.
    setTimeout(() => {
      if (peer.readyState < CLOSED) peer.closed(code ?? 1005, true);
      this.closed(code ?? 1005, true);
    }, 1);
  }

  /** The socket finished connecting. */
  opened(): void {
    this.readyState = OPEN;
    this.dispatchEvent(new Event("open"));
  }

  /** A message arrived. */
  receive(data: unknown): void {
    this.dispatchEvent(new MessageEvent("message", { data }));
  }

  /** The connection closed. */
  closed(code: number, wasClean: boolean, reason = ""): void {
    this.readyState = CLOSED;
    this.dispatchEvent(Object.assign(new Event("close"), { code, reason, wasClean }));
  }

  /** The connection failed (an `error` event always precedes its unclean close). */
  failed(): void {
    this.dispatchEvent(new Event("error"));
    this.closed(1006, false);
  }
}

/** Two sockets joined to each other. */
export function socketPair(): [FakeSocket, FakeSocket] {
  const a = new FakeSocket();
  const b = new FakeSocket();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
