// The relay's web front: the page's few files and the WebSocket at /ws, over HTTP/1.1 on
// byte streams, the same code on Deno and Node (each entry gives it a TCP listener). One
// request per connection; every connection is bounded: how many are open, how long and how
// large a request's head may be, how large a WebSocket message. An accept that fails (EMFILE
// and the like) is logged and retried, never the end of the relay.
import {
  type FrontLimits,
  PAGE_HEADERS,
  type RequestHead,
  type ServeHandlers,
  type WebServer,
  WEBSOCKET_PATH,
} from "./web.ts";
import { acceptKey, WebSocketConnection } from "./websocket_connection.ts";

/** A connection a listener accepted. */
export interface StreamConnection {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  /** Closes the connection for good (what was written still leaves). */
  close(): void;
}

/** A TCP listener. */
export interface StreamListener {
  /** The next connection; rejects on an accept error, and once the listener is closed. */
  accept(): Promise<StreamConnection>;
  close(): void;
  readonly hostname: string;
  readonly port: number;
}

/** The front's limits unless told otherwise. */
export const FRONT_LIMITS: Omit<FrontLimits, "maxMessage"> = {
  maxConnections: 64,
  headerTimeout: 10_000,
  maxHeaderBytes: 16 * 1024,
};

const STATUS: Readonly<Record<number, string>> = {
  101: "Switching Protocols",
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
};

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** A whole response; the connection closes after it. */
function response(
  status: number,
  body: Uint8Array | string,
  headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" },
  method = "GET",
): Uint8Array {
  const bytes = typeof body === "string" ? encoder.encode(body + "\n") : body;
  const lines = Object.entries({ ...headers, "content-length": String(bytes.length) })
    .map(([name, value]) => `${name}: ${value}\r\n`).join("");
  const head = encoder.encode(
    `HTTP/1.1 ${status} ${STATUS[status] ?? ""}\r\n${lines}connection: close\r\n\r\n`,
  );
  if (method === "HEAD") return head;
  const out = new Uint8Array(head.length + bytes.length);
  out.set(head);
  out.set(bytes, head.length);
  return out;
}

/** Where `\r\n\r\n` ends in `bytes`, searching from `from`; -1 if it is not there. */
function headEnd(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(3, from); i < bytes.length; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) {
      return i + 1;
    }
  }
  return -1;
}

/** Parses a request's head; `undefined` if it is not HTTP/1.x. */
function parseHead(text: string): RequestHead | undefined {
  const lines = text.split("\r\n");
  const start = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? "");
  if (start === null) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  let url: URL;
  try {
    url = new URL(start[2]!, "http://relay");
  } catch {
    return undefined;
  }
  return { method: start[1]!, path: url.pathname, query: url.searchParams, headers };
}

/** Serves the page and the WebSocket on `listener` until `close`. */
export function serveFront(listener: StreamListener, handlers: ServeHandlers): WebServer {
  const limits = handlers.limits;
  const open = new Set<StreamConnection>();
  /** Open WebSockets, and when each has ended. */
  const sockets = new Map<WebSocketConnection, Promise<void>>();
  let closed = false;

  const serveOne = async (conn: StreamConnection) => {
    const reader = conn.readable.getReader();
    const writer = conn.writable.getWriter();
    let finished = false;
    const end = () => {
      if (finished) return;
      finished = true;
      open.delete(conn);
      conn.close();
    };
    const answer = async (bytes: Uint8Array) => {
      await writer.write(bytes).catch(() => {});
      end();
    };
    if (open.size >= limits.maxConnections) {
      return answer(response(503, `Too many connections (${limits.maxConnections} are open)`));
    }
    open.add(conn);
    // The request's head, within the time and size limits.
    let buffer = new Uint8Array(0);
    let headLength = -1;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), limits.headerTimeout);
    });
    try {
      while (headLength < 0) {
        const read = await Promise.race([reader.read(), late]);
        if (read === "late") {
          return await answer(
            response(408, `No request within ${limits.headerTimeout} ms`),
          );
        }
        if (read.done) return end();
        const from = buffer.length;
        const joined = new Uint8Array(buffer.length + read.value.length);
        joined.set(buffer);
        joined.set(read.value, buffer.length);
        buffer = joined;
        headLength = headEnd(buffer, from);
        if ((headLength < 0 ? buffer.length : headLength) > limits.maxHeaderBytes) {
          return await answer(
            response(431, `The request's head is over ${limits.maxHeaderBytes} bytes`),
          );
        }
      }
    } catch {
      return end();
    } finally {
      clearTimeout(timer);
    }
    const request = parseHead(latin1.decode(buffer.subarray(0, headLength - 4)));
    if (request === undefined) return answer(response(400, "Not an HTTP/1.1 request"));
    const refusal = handlers.admit(request);
    if (request.path === WEBSOCKET_PATH) {
      const h = request.headers;
      if (h.get("upgrade")?.toLowerCase() !== "websocket") {
        return answer(response(426, "WebSocket only", {
          "content-type": "text/plain; charset=utf-8",
          upgrade: "websocket",
        }));
      }
      const key = h.get("sec-websocket-key");
      if (
        request.method !== "GET" || h.get("sec-websocket-version") !== "13" ||
        key === undefined || !/^[A-Za-z0-9+/]{22}==$/.test(key) ||
        !/(^|,)\s*upgrade\s*(,|$)/i.test(h.get("connection") ?? "")
      ) {
        return answer(response(400, "Bad WebSocket handshake"));
      }
      if (refusal !== undefined) return answer(response(refusal.status, refusal.text));
      writer.write(encoder.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${await acceptKey(key)}\r\n\r\n`,
      )).catch(() => {});
      const socket = new WebSocketConnection(reader, writer, end, limits.maxMessage);
      const client = handlers.connect({
        send: (text) => socket.send(text),
        close: (code, reason) => socket.close(code, reason),
      });
      const ended = socket.start({
        message: (text) => client.message(text),
        tooLong: (length) => client.tooLong(length),
        close: () => {
          sockets.delete(socket);
          client.close();
        },
      }, buffer.subarray(headLength));
      sockets.set(socket, ended);
      return await ended;
    }
    if (refusal !== undefined) return answer(response(refusal.status, refusal.text));
    if (request.method !== "GET" && request.method !== "HEAD") {
      return answer(response(405, "GET only", {
        "content-type": "text/plain; charset=utf-8",
        allow: "GET, HEAD",
      }));
    }
    const asset = handlers.asset(request.path);
    if (asset === undefined) return answer(response(404, "Not found"));
    return answer(
      response(200, asset.body, { "content-type": asset.type, ...PAGE_HEADERS }, request.method),
    );
  };

  const acceptAll = async () => {
    let failures = 0;
    let backoff = 0;
    while (!closed) {
      let conn: StreamConnection;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (closed) break;
        if (failures++ === 0) {
          handlers.log(
            `cannot accept a connection: ${
              error instanceof Error ? error.message : error
            }; retrying (connections open: ${open.size})`,
          );
        }
        backoff = Math.min(1000, backoff === 0 ? 10 : backoff * 2);
        await new Promise((resolve) => setTimeout(resolve, backoff));
        continue;
      }
      if (failures > 0) {
        handlers.log(`accepting connections again, after ${failures} failed accepts`);
        failures = 0;
        backoff = 0;
      }
      if (closed) {
        conn.close();
        break;
      }
      serveOne(conn).catch(() => conn.close());
    }
  };
  const accepting = acceptAll();

  const host = listener.hostname.includes(":") ? `[${listener.hostname}]` : listener.hostname;
  return {
    url: `http://${host}:${listener.port}/`,
    async close() {
      closed = true;
      listener.close();
      const ending = [...sockets.values()];
      for (const socket of sockets.keys()) socket.close(1001, "the relay is stopping");
      await Promise.all(ending);
      for (const conn of open) conn.close();
      await accepting;
    },
  };
}
