// The relay's web front on Node: a `node:net` TCP listener under the shared front
// (http_front.ts: HTTP/1.1, the WebSocket, the limits), as `scripts/relay.ts` puts it under
// `Deno.listen` on Deno. Node 20 has no WebSocket server, and the package has no dependencies.
import { createServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { serveFront, type StreamConnection, type StreamListener } from "./http_front.ts";
import type { ServeHandlers, WebServer } from "./web.ts";

/** How long a closed socket may take to flush what was written before it is destroyed. */
const LINGER_MS = 1000;

function streams(socket: Socket): StreamConnection {
  socket.setNoDelay(true);
  socket.on("error", () => {}); // the streams report it
  const { readable, writable } = Duplex.toWeb(socket) as unknown as {
    readable: ReadableStream<Uint8Array>;
    writable: WritableStream<Uint8Array>;
  };
  return {
    readable,
    writable,
    close() {
      if (socket.destroyed) return;
      socket.end();
      setTimeout(() => socket.destroy(), LINGER_MS).unref();
    },
  };
}

/** Listens on `listen` with `node:net`; accept errors (EMFILE…) reject the pending accept. */
export function listenNode(listen: { hostname: string; port: number }): Promise<StreamListener> {
  const server = createServer();
  const ready: (StreamConnection | { error: unknown })[] = [];
  let waiting: ((value: StreamConnection | { error: unknown }) => void) | undefined;
  let closed = false;
  const hand = (item: StreamConnection | { error: unknown }) => {
    if (waiting === undefined) return void ready.push(item);
    const resolve = waiting;
    waiting = undefined;
    resolve(item);
  };
  server.on("connection", (socket: Socket) => {
    if (closed) socket.destroy();
    else hand(streams(socket));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.hostname, () => {
      server.off("error", reject);
      server.on("error", (error) => hand({ error }));
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : listen.port;
      resolve({
        hostname: listen.hostname,
        port,
        async accept() {
          if (closed) throw new Error("the listener is closed");
          const item = ready.shift() ??
            await new Promise<StreamConnection | { error: unknown }>((r) => waiting = r);
          if ("error" in item) throw item.error;
          return item;
        },
        close() {
          if (closed) return;
          closed = true;
          server.close();
          for (const item of ready.splice(0)) if (!("error" in item)) item.close();
          hand({ error: new Error("the listener is closed") });
        },
      });
    });
  });
}

/** Serves the page and the WebSocket on `node:net` (the platform's `serve` on Node). */
export async function serveNode(
  listen: { hostname: string; port: number },
  handlers: ServeHandlers,
): Promise<WebServer> {
  return serveFront(await listenNode(listen), handlers);
}
