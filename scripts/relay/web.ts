// What the relay's web front (http_front.ts) needs from the relay, and the rules it applies:
// which files it serves, and which requests it admits (Host, Origin, token).

/** A WebSocket client, as the relay sees it. */
export interface ClientChannel {
  /** Sends one text message; resolves once it is written to the socket. */
  send(text: string): Promise<void>;
  /** Closes the connection with a close frame of this code and reason. */
  close(code: number, reason: string): void;
}

/** What the relay does with a client's messages. */
export interface ClientHandlers {
  /** One text message: one JSON command. */
  message(text: string): void;
  /** A message of `length` bytes, over the limit, was skipped. */
  tooLong(length: number): void;
  /** The client went away. */
  close(): void;
}

/** A request's head, as the admission rules see it. */
export interface RequestHead {
  method: string;
  /** The URL path, without the query. */
  path: string;
  query: URLSearchParams;
  /** Header values by lower-case name (a repeated header: the values joined by `, `). */
  headers: ReadonlyMap<string, string>;
}

/** Why a request is refused: the HTTP status and a line of text for the body. */
export interface Refusal {
  status: number;
  text: string;
}

/** The front's limits. */
export interface FrontLimits {
  /** Connections open at once, WebSockets included; over it a connection gets 503 and is closed. */
  maxConnections: number;
  /** Milliseconds from accepting a connection to the end of its request's headers (else 408). */
  headerTimeout: number;
  /** Bytes of request line and headers (else 431). */
  maxHeaderBytes: number;
  /** Bytes of one WebSocket message, summed over its fragments; a longer one is skipped. */
  maxMessage: number;
}

/** What a runtime's server calls. */
export interface ServeHandlers {
  /** A static file by URL path, or `undefined` (404). */
  asset(path: string): { body: Uint8Array; type: string } | undefined;
  /** Whether a request may go on (`undefined`), or why not. */
  admit(request: RequestHead): Refusal | undefined;
  /** A WebSocket client connected at {@linkcode WEBSOCKET_PATH}. */
  connect(client: ClientChannel): ClientHandlers;
  /** A line for the log (a refused connection, an accept error). */
  log(line: string): void;
  limits: FrontLimits;
}

/** A running server. */
export interface WebServer {
  /** `http://host:port/`. */
  url: string;
  /** Closes the listener and every connection. */
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

/** The page's script and style sheet: the same for everyone, served without the token. */
const PUBLIC_PATHS = ["/app.js", "/style.css"];

/** Headers of every page response: no caching, and nothing but the relay itself. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** Who may use the front. */
export interface AccessPolicy {
  /** The token every request but the page's script and style must carry; `undefined`: none. */
  token: string | undefined;
  /**
   * Host names the `Host` header may name, besides IP addresses and `localhost` (lower case).
   */
  hosts: readonly string[];
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The host name of a `Host` header (`name:port` or `[v6]:port`), lower case; `[v6]` kept. */
function hostName(host: string): string {
  const v6 = /^(\[[0-9a-f:.]+\])(:\d+)?$/i.exec(host);
  return (v6 !== null ? v6[1]! : host.replace(/:\d+$/, "")).toLowerCase();
}

/**
 * Whether `Host` names this relay: an IP address (no DNS name can be rebound to it), or
 * `localhost`, or a name the policy lists. A DNS rebinding page's requests carry its own name.
 */
function allowedHost(host: string, policy: AccessPolicy): boolean {
  const name = hostName(host);
  return IPV4.test(name) || name.startsWith("[") || name === "localhost" ||
    policy.hosts.includes(name);
}

/** Equal strings, compared in a time that does not depend on where they differ. */
function sameSecret(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i % (b.length || 1));
  return diff === 0;
}

/** The token a request carries: `?token=`, or `Authorization: Bearer`. */
function tokenOf(request: RequestHead): string | undefined {
  const query = request.query.get("token");
  if (query !== null) return query;
  const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.get("authorization") ?? "");
  return bearer?.[1];
}

/**
 * The rules of every request, page and WebSocket alike. `Host` must name the relay (see
 * {@linkcode AccessPolicy}); a browser's `Origin` must be the page's own origin, so another site
 * open in the same browser cannot use the relay; and with a token, the request must carry it
 * (the page's script and style sheet excepted). A client that is not a browser sends no
 * `Origin` and is held to the token alone.
 */
export function admitRequest(request: RequestHead, policy: AccessPolicy): Refusal | undefined {
  const host = request.headers.get("host");
  if (host === undefined || host === "") return { status: 400, text: "No Host header" };
  if (!allowedHost(host, policy)) {
    return {
      status: 403,
      text: `Forbidden host ${hostName(host)}: start the relay with --allow-host ` +
        `${hostName(host)} to reach it by that name`,
    };
  }
  const origin = request.headers.get("origin");
  if (origin !== undefined && !sameOrigin(origin, host)) {
    return { status: 403, text: "Forbidden origin: only the relay's own page may connect" };
  }
  if (policy.token !== undefined && !PUBLIC_PATHS.includes(request.path)) {
    const token = tokenOf(request);
    if (token === undefined || !sameSecret(token, policy.token)) {
      return {
        status: 401,
        text: "Unauthorized: open the page at the URL the relay printed, with its ?token=",
      };
    }
  }
  return undefined;
}

function sameOrigin(origin: string, host: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  return (url.protocol === "http:" || url.protocol === "https:") && url.host === host.toLowerCase();
}

/** Whether `--listen`'s host is a loopback address (any of `::1`'s spellings) or `localhost`. */
export function isLoopback(hostname: string): boolean {
  const name = hostname.toLowerCase();
  if (name === "localhost" || /^127(\.\d{1,3}){3}$/.test(name)) return true;
  if (!/^[0-9a-f:]+$/.test(name)) return false;
  try {
    return new URL(`http://[${name}]/`).hostname === "[::1]";
  } catch {
    return false;
  }
}
