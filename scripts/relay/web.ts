// What the relay's web front needs from a runtime's HTTP server, and the rules it applies:
// which files it serves, and which WebSocket handshakes it accepts.

/** A WebSocket client, as the relay sees it. */
export interface ClientChannel {
  /** Sends one text message. */
  send(text: string): void;
}

/** What the relay does with a client's messages. */
export interface ClientHandlers {
  /** One text message: one JSON command. */
  message(text: string): void;
  /** The client went away. */
  close(): void;
}

/** What a runtime's server calls. */
export interface ServeHandlers {
  /** A static file by URL path, or `undefined` (404). */
  asset(path: string): { body: Uint8Array; type: string } | undefined;
  /** Whether a WebSocket handshake with these `Origin` and `Host` headers is accepted (else 403). */
  allow(origin: string | undefined, host: string | undefined): boolean;
  /** A WebSocket client connected at {@linkcode WEBSOCKET_PATH}. */
  connect(client: ClientChannel): ClientHandlers;
}

/** A running server. */
export interface WebServer {
  /** `http://host:port/`. */
  url: string;
  /** Closes the listener and every client. */
  close(): Promise<void>;
}

/** Where the JSON protocol is served. */
export const WEBSOCKET_PATH = "/ws";

/** The page: URL path → asset file (in `scripts/relay/page/`) and content type. */
export const PAGE_ASSETS: Readonly<Record<string, { name: string; type: string }>> = {
  "/": { name: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { name: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { name: "style.css", type: "text/css; charset=utf-8" },
};

/** Headers of every page response: no caching, and nothing but the relay itself. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[?::1\]?)$/i;

/** The host name of a `Host` header (`name:port` or `[v6]:port`). */
function hostName(host: string): string {
  const v6 = /^\[([^\]]+)\](:\d+)?$/.exec(host);
  return v6 !== null ? v6[1]! : host.replace(/:\d+$/, "");
}

/**
 * Which WebSocket handshakes the relay accepts. A browser sends `Origin`; it must be the page's
 * own origin, so another site open in the same browser cannot read the guest's clipboard. When
 * the relay listens on a loopback address, `Host` must name a loopback host too, so a DNS
 * rebinding name cannot pass for the page's origin. A client that is not a browser sends no
 * `Origin` and is accepted.
 */
export function allowWebSocket(
  origin: string | undefined,
  host: string | undefined,
  listenHostname: string,
): boolean {
  if (host === undefined) return false;
  if (LOOPBACK.test(listenHostname) && !LOOPBACK.test(hostName(host))) return false;
  if (origin === undefined) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  return (url.protocol === "http:" || url.protocol === "https:") && url.host === host.toLowerCase();
}
