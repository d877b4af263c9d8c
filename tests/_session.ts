// Drives a session synchronously, as a scripted peer would, through the
// internals the pipelines use.
import {
  type AgentMessage,
  decodeMessage,
  encodeMessage,
  type GuestSession,
  HostSession,
  type MessagePayload,
  type PayloadOptions,
} from "../mod.ts";
import { guestCoreOf, hostCoreOf } from "../src/session/_session_cores.ts";

/** Both clipboard caps negotiated, as between QEMU and the Linux agent. */
export const BOTH: PayloadOptions = { selection: true, grabSerial: true };

export interface Driver {
  /** Messages the session sent, as payloads decoded with `layout`, since the last call. */
  take(layout?: PayloadOptions): MessagePayload[];
  /** The raw messages the session sent since the last `take`/`raw`. */
  raw(): AgentMessage[];
  /** Delivers payloads from the peer, encoded with `layout`, as one batch. */
  send(layout: PayloadOptions, ...payloads: MessagePayload[]): void;
  /** Delivers raw messages from the peer. */
  sendRaw(...messages: AgentMessage[]): void;
  /** Ends the session. */
  close(reason?: unknown): void;
}

/** Attaches a scripted peer to `session`. */
export function drive(session: HostSession | GuestSession): Driver {
  const core = session instanceof HostSession ? hostCoreOf(session) : guestCoreOf(session);
  let out: AgentMessage[] = [];
  core.attach((batch) => out.push(...batch));
  const receive = (m: AgentMessage) =>
    core.receive(m.port, m.type, m.opaque, m.data, 0, m.data.length, m.skipped);
  const raw = () => {
    core.run(() => {}); // deliver anything still waiting for its microtask
    const taken = out;
    out = [];
    return taken;
  };
  return {
    take: (layout = BOTH) => raw().map((m) => decodeMessage(m, layout)),
    raw,
    send: (layout, ...payloads) =>
      core.run(() => {
        for (const p of payloads) receive(encodeMessage(p, layout));
      }),
    sendRaw: (...messages) => core.run(() => messages.forEach(receive)),
    close: (reason) => core.close(reason),
  };
}

/**
 * Restores `host` as a relay on a new connection from a drained checkpoint of
 * a Linux guest that offered `types` on the selections of `offered`, with
 * serials of 0: the host probes (a CLIPBOARD_REQUEST of type NONE on
 * SECONDARY) before it sends anything else.
 */
export function restoreProbing(host: HostSession, offered: number[], types: number[]): void {
  const selection = (s: number) =>
    offered.includes(s)
      ? { lastSerial: 0, guestRequests: [], guestOffer: { serial: 0, types } }
      : { lastSerial: 0, guestRequests: [] };
  hostCoreOf(host).restore({
    hostCaps: host.hostCaps,
    guestCaps: LINUX_CAPS,
    selections: [selection(0), selection(1), selection(2)],
  }, { reconnected: true, drained: true, offers: true });
}

/** The Linux agent's caps word. */
export const LINUX_CAPS = [0x00038de7];
/** The Windows agent 0.9.0's caps word: no SELECTION, no GRAB_SERIAL. */
export const WINDOWS_CAPS = [0x6b7];

/** Lets promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
}
