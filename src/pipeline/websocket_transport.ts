// This module is browser compatible.

/**
 * The part of a WebSocket that {@linkcode webSocketTransport} uses: the web
 * platform's `WebSocket` in browsers, Deno, Node 22 and workers, or an object
 * that behaves like it.
 */
export interface WebSocketLike {
  /** How binary messages arrive; the adapter sets `"arraybuffer"`. */
  binaryType: string;
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** Bytes passed to `send` and not transmitted yet. */
  readonly bufferedAmount: number;
  /** Sends one binary message. */
  send(data: Uint8Array): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
  /** Listens for `open`, `message`, `close` and `error`. */
  addEventListener(type: string, listener: (event: Event) => void): void;
  /** Stops listening. */
  removeEventListener(type: string, listener: (event: Event) => void): void;
}

/** Options of {@linkcode webSocketTransport}. */
export interface WebSocketTransportOptions {
  /**
   * Bytes the socket may hold in `bufferedAmount` before a write waits for
   * them to drain. Default 1 MiB.
   */
  highWaterMark?: number;
  /** Milliseconds between looks at `bufferedAmount` while a write waits. Default 5. */
  pollInterval?: number;
}

const CONNECTING = 0;
const OPEN = 1;
/** Close code of a normal closure (RFC 6455, 7.4.1). */
const NORMAL_CLOSURE = 1000;

/**
 * Turns a WebSocket into a byte transport (`Transport`) for
 * `createHostPipeline` and `createGuestPipeline`: each binary message is one
 * read, each write is one binary message.
 *
 * - **Opening**: the socket may still be connecting; writes wait for `open`.
 * - **Backpressure**: a write resolves once the socket's `bufferedAmount` is
 *   at most `highWaterMark`, checked every `pollInterval` ms while above it
 *   (the `WebSocket` API has no drain event). The API cannot pause the
 *   sender, so reads are queued until the reader takes them.
 * - **Closing**: closing the writable waits for `bufferedAmount` to drain,
 *   then closes the socket with code 1000; aborting it or cancelling the
 *   readable closes the socket at once. A clean close from the peer ends the
 *   readable; the writable then rejects writes.
 * - **Errors**: an `error` event, a close that was not clean, or a text
 *   message (vdagent is bytes: a `TypeError`) error both streams and close
 *   the socket. Nothing is dropped silently.
 *
 * The adapter sets `binaryType` to `"arraybuffer"` and adds listeners; it
 * removes them when the socket closes.
 *
 * @param socket An open or connecting WebSocket.
 * @param options How much the socket may buffer, and how often to look.
 * @returns The socket's bytes as a readable and a writable stream.
 * @throws {RangeError} If `highWaterMark` or `pollInterval` is not a
 * non-negative number.
 *
 * @example A clipboard round trip over a real WebSocket (Deno)
 * ```ts
 * import {
 *   ClipboardType,
 *   createGuestPipeline,
 *   createHostPipeline,
 *   Selection,
 *   webSocketTransport,
 * } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * // A guest agent served over WebSocket...
 * const guestDone = Promise.withResolvers<void>();
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
 *   const { socket, response } = Deno.upgradeWebSocket(request);
 *   const guest = createGuestPipeline(webSocketTransport(socket), {
 *     clipboard: { provide: () => new TextEncoder().encode("copied in the guest") },
 *   });
 *   guest.session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
 *   guest.done.then(guestDone.resolve, guestDone.reject);
 *   return response;
 * });
 *
 * // ...and the host side, as a web page would run it.
 * const offered = Promise.withResolvers<void>();
 * const socket = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * const relay = createHostPipeline(webSocketTransport(socket), {
 *   clipboard: { onGuestGrab: () => offered.resolve() },
 * });
 * await offered.promise;
 * const data = await relay.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT);
 * assert.equal(new TextDecoder().decode(data), "copied in the guest");
 * await relay.close();
 * await guestDone.promise;
 * await server.shutdown();
 * ```
 */
export function webSocketTransport(
  socket: WebSocketLike,
  options: WebSocketTransportOptions = {},
): { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> } {
  const highWaterMark = options.highWaterMark ?? 1024 * 1024;
  const pollInterval = options.pollInterval ?? 5;
  for (const [name, value] of [["highWaterMark", highWaterMark], ["pollInterval", pollInterval]]) {
    if (typeof value !== "number" || !(value >= 0) || value === Infinity) {
      throw new RangeError(
        `Cannot adapt WebSocket: ${name} must be a non-negative number, got ${value}`,
      );
    }
  }

  let reads!: ReadableStreamDefaultController<Uint8Array>;
  let writes!: WritableStreamDefaultController;
  let readsEnded = false;
  let failure: Error | undefined;
  let opened: { resolve(): void; reject(error: Error): void } | undefined;
  const open = socket.readyState === CONNECTING
    ? new Promise<void>((resolve, reject) => opened = { resolve, reject })
    : undefined;
  open?.catch(() => {}); // a failure also reaches the streams

  const detach = () => {
    socket.removeEventListener("open", onOpen);
    socket.removeEventListener("message", onMessage);
    socket.removeEventListener("close", onClose);
    socket.removeEventListener("error", onError);
  };
  const fail = (error: Error) => {
    if (failure !== undefined) return;
    failure = error;
    opened?.reject(error);
    if (!readsEnded) {
      readsEnded = true;
      reads.error(error);
    }
    writes.error(error);
    detach();
    socket.close();
  };
  const onOpen = () => opened?.resolve();
  const onMessage = (event: Event) => {
    if (readsEnded) return;
    const data = (event as MessageEvent).data;
    if (data instanceof ArrayBuffer) {
      reads.enqueue(new Uint8Array(data));
    } else if (ArrayBuffer.isView(data)) {
      reads.enqueue(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else {
      const got = typeof data === "string"
        ? "a text message"
        : Object.prototype.toString.call(data);
      fail(new TypeError(`Cannot read from WebSocket: expected a binary message, got ${got}`));
    }
  };
  const onClose = (event: Event) => {
    const { code, reason, wasClean } = event as CloseEvent;
    if (!wasClean) {
      fail(
        new Error(
          `Cannot read from WebSocket: closed uncleanly with code ${code}${
            reason ? ` (${reason})` : ""
          }`,
        ),
      );
      return;
    }
    failure ??= new Error(`Cannot write to WebSocket: the peer closed it with code ${code}`);
    opened?.reject(failure);
    if (!readsEnded) {
      readsEnded = true;
      reads.close();
    }
    writes.error(failure);
    detach();
  };
  const onError = () => fail(new Error("Cannot use WebSocket: the connection failed"));
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", onOpen);
  socket.addEventListener("message", onMessage);
  socket.addEventListener("close", onClose);
  socket.addEventListener("error", onError);

  /** Waits until at most `limit` bytes are buffered. */
  const drain = async (limit: number) => {
    while (socket.bufferedAmount > limit) {
      if (failure !== undefined) throw failure;
      if (socket.readyState !== OPEN) {
        throw new Error(
          `Cannot write to WebSocket: it closed with ${socket.bufferedAmount} bytes unsent`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pollInterval));
    }
  };

  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      reads = controller;
    },
    cancel() {
      readsEnded = true;
      socket.close();
    },
  });
  const writable = new WritableStream<Uint8Array>({
    start(controller) {
      writes = controller;
    },
    async write(chunk) {
      if (socket.readyState === CONNECTING) await open;
      if (failure !== undefined) throw failure;
      if (socket.readyState !== OPEN) throw new Error("Cannot write to WebSocket: it is closed");
      socket.send(chunk);
      await drain(highWaterMark);
    },
    async close() {
      await drain(0);
      socket.close(NORMAL_CLOSURE);
    },
    abort() {
      socket.close();
    },
  });
  return { readable, writable };
}
