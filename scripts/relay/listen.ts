// `--listen`: the token, and the web front's handlers (a bounded queue per WebSocket client),
// for run.ts.
import type { RelayArgs } from "./args.ts";
import { encodeBase64 } from "./base64.ts";
import { EventQueue } from "./event_queue.ts";
import { FRONT_LIMITS } from "./http_front.ts";
import type { RelayCore, RelayEvent } from "./relay_core.ts";
import type { RelayPlatform } from "./run.ts";
import { type AccessPolicy, admitRequest, PAGE_ASSETS, type WebServer } from "./web.ts";

/** A WebSocket client's bounds: one that falls behind by the high water is closed. */
const CLIENT_LIMITS = { window: 1024 * 1024, highWater: 16 * 1024 * 1024 };

const message = (error: unknown) => error instanceof Error ? error.message : String(error);

/** Characters a `--token-file` token may have: visible ASCII. */
const TOKEN = /^[\x21-\x7e]{16,1024}$/;

/**
 * The token of `--listen`: `--token-file`'s content, else a random one (256 bits, base64url);
 * `undefined` without `--listen` or with `--no-auth`; `null` when the file is unusable (logged).
 */
export async function listenToken(
  platform: RelayPlatform,
  args: RelayArgs,
  log: (line: string) => void,
): Promise<string | undefined | null> {
  if (args.listen === undefined || args.noAuth) return undefined;
  if (args.tokenFile === undefined) {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    return encodeBase64(bytes).replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_");
  }
  let bytes: Uint8Array | undefined;
  try {
    bytes = await platform.files.read(args.tokenFile, 4096);
  } catch (error) {
    log(`cannot read --token-file ${args.tokenFile}: ${message(error)}`);
    return null;
  }
  const token = bytes === undefined ? "" : new TextDecoder().decode(bytes).trim();
  if (!TOKEN.test(token)) {
    log(
      `--token-file ${args.tokenFile} ${bytes === undefined ? "does not exist" : "is unusable"}: ` +
        "it must hold a token of 16 to 1024 visible ASCII characters (e.g. " +
        "`openssl rand -hex 32 > FILE`)",
    );
    return null;
  }
  return token;
}

/** What the web front needs from the relay. */
export interface ListenContext {
  policy: AccessPolicy;
  /** The session, once it runs: a client that comes earlier waits for it. */
  core: Promise<RelayCore>;
  target: string;
  /** The clients' queues, which the relay's broadcasts go to. */
  clients: Set<EventQueue>;
  maxMessage: number;
  log: (line: string) => void;
  /** Sends the broadcasts that wait for the end of the task, before a client's answer. */
  flush(): void;
}

/**
 * Serves the page and the WebSocket; resolves with the server and the page's URL (with its
 * token) once listening, or `undefined` when it cannot listen (logged).
 */
export async function listen(
  platform: RelayPlatform,
  address: { hostname: string; port: number },
  { policy, core, target, clients, maxMessage, log, flush }: ListenContext,
): Promise<{ server: WebServer; url: string } | undefined> {
  let server: WebServer;
  try {
    const assets = new Map<string, { body: Uint8Array; type: string }>();
    for (const [path, asset] of Object.entries(PAGE_ASSETS)) {
      assets.set(path, { body: await platform.readAsset(asset.name), type: asset.type });
    }
    let clientCount = 0;
    server = await platform.serve(address, {
      asset: (path) => assets.get(path),
      admit: (request) => admitRequest(request, policy),
      log,
      limits: { ...FRONT_LIMITS, maxMessage },
      connect(client) {
        const name = `WebSocket client ${++clientCount}`;
        const queue: EventQueue = new EventQueue(
          { write: (text) => client.send(text) },
          CLIENT_LIMITS,
          {
            onBehind: (waiting) => {
              log(
                `${name} fell behind (${waiting} bytes of events unread, over the limit of ` +
                  `${CLIENT_LIMITS.highWater}): closing it`,
              );
              clients.delete(queue);
              queue.discard();
              client.close(
                1008,
                `too slow: over ${CLIENT_LIMITS.highWater} bytes of events unread`,
              );
            },
          },
        );
        const send = (event: RelayEvent) => {
          flush();
          queue.push(JSON.stringify(event));
        };
        send({ event: "hello", connect: target });
        let open = true;
        void core.then((ready) => {
          if (!open) return;
          for (const event of ready.stateEvents()) send(event);
          clients.add(queue);
        });
        return {
          message: (text) => void core.then((ready) => ready.run(text, send)),
          tooLong: (length) =>
            send({
              event: "error",
              code: "MESSAGE_TOO_LONG",
              message:
                `Cannot run command: the message has ${length} bytes, over the limit of ${maxMessage}`,
            }),
          close: () => {
            open = false;
            clients.delete(queue);
            queue.discard();
          },
        };
      },
    });
  } catch (error) {
    log(`cannot listen on ${address.hostname}:${address.port}: ${message(error)}`);
    return undefined;
  }
  const query = policy.token === undefined ? "" : `?token=${encodeURIComponent(policy.token)}`;
  log(
    `listening on ${server.url}${query} (clipboard page at /, WebSocket at /ws; ` +
      (policy.token === undefined ? "no token: --no-auth" : "the token is required") + ")",
  );
  return { server, url: server.url + query };
}
