// The relay's state file: the library's checkpoint plus what the relay itself holds, the data
// of the host's copies (the checkpoint carries the types the host offers, not their bytes) and
// of the guest's (fetched as the guest copies: the agent lets go of them when its port closes),
// a generation that every write moves on, and, with a key, an HMAC-SHA-256 over all of it.
// JSON, so that `jq` can read it.
import { decodeCheckpoint, describeCheckpoint } from "../../mod.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";
import { MIME_OF_TYPE, typeOfMime } from "./mime.ts";
import { selectionName, SELECTIONS } from "./protocol.ts";

/** The `format` of a state file. */
export const STATE_FORMAT = "vdagent-relay-state/2";

/** Most host copies a state file may list: the relay holds one type on each of three selections. */
const MAX_COPIES = 3;

/** The largest checkpoint a state file may carry (`decodeCheckpoint`'s default `maxSize`). */
const MAX_CHECKPOINT = 256 * 1024 * 1024;

/**
 * The largest state file a relay reads: the checkpoint and six copies (three each way) of up to `maxClipboard`
 * bytes, in base64, and some room for the JSON around them.
 */
export function maxStateFileSize(maxClipboard: number): number {
  return Math.ceil(((MAX_CHECKPOINT + 6 * maxClipboard) * 4) / 3) + 1024 * 1024;
}

/** The key of a relay's state files: an HMAC-SHA-256 WebCrypto key. */
export type StateKey = Awaited<ReturnType<typeof crypto.subtle.importKey>>;

/**
 * The key of a relay's state files, from its text: hex or base64 of at least 32 bytes (for
 * example `openssl rand -hex 32`). Throws a `RangeError` for anything else.
 */
export async function importStateKey(text: string): Promise<StateKey> {
  const trimmed = text.trim();
  let bytes: Uint8Array;
  if (/^([0-9a-f]{2})+$/i.test(trimmed)) {
    bytes = new Uint8Array(trimmed.length / 2).map((_, i) =>
      parseInt(trimmed.slice(2 * i, 2 * i + 2), 16)
    );
  } else {
    try {
      bytes = decodeBase64(trimmed);
    } catch {
      throw new RangeError("the key must be hex or base64 text");
    }
  }
  if (bytes.length < 32) {
    throw new RangeError(`the key must hold at least 32 bytes, it holds ${bytes.length}`);
  }
  return await crypto.subtle.importKey(
    "raw",
    bytes as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/** Data copied into one selection, by type: by the host, or by the guest. */
export interface ClipboardCopy {
  selection: number;
  type: number;
  data: Uint8Array;
}

/** What a relay hands the next one. */
export interface RelayState {
  /** `pipeline.checkpoint()`'s bytes, or a continuous checkpoint; none before the guest spoke. */
  checkpoint: Uint8Array | undefined;
  /** The data the guest may still paste from the host's copies. */
  hostCopies: ClipboardCopy[];
  /** The data of the guest's last copies, which the host may still paste. */
  guestCopies: ClipboardCopy[];
  /** Moved on by every write: a state older than one written since is stale. */
  generation: number;
  /** Written at a hand-off (the relay drained its connection and stopped), not while running. */
  handedOff: boolean;
}

/** A state file that cannot be read or trusted, or a state a relay must not act on. */
export class StateFileError extends Error {
  /**
   * `BAD_STATE_FILE`, `UNAUTHENTICATED` (a key is set and the file has no MAC), `BAD_MAC`, the
   * `CheckpointError` code of the checkpoint inside; from the store, `LOCKED` (another relay holds
   * the state), `FENCED` (another relay took it over while this one ran), `STALE` (the state is
   * older than one written since), `UNWRITABLE`.
   */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StateFileError";
    this.code = code;
  }
}

/** The bytes the MAC covers: every field but the description, in a fixed order. */
function macInput(state: RelayState): Uint8Array {
  const lines = [
    STATE_FORMAT,
    String(state.generation),
    String(state.handedOff),
    state.checkpoint === undefined ? "" : encodeBase64(state.checkpoint),
    ...state.hostCopies.map((c) => `host ${c.selection} ${c.type} ${encodeBase64(c.data)}`),
    ...state.guestCopies.map((c) => `guest ${c.selection} ${c.type} ${encodeBase64(c.data)}`),
  ];
  return new TextEncoder().encode(lines.join("\n"));
}

const encodeCopy = (copy: ClipboardCopy) => ({
  selection: selectionName(copy.selection),
  mime: MIME_OF_TYPE[copy.type],
  base64: encodeBase64(copy.data),
});

/** Encodes a state file; with `key`, it carries an HMAC-SHA-256 of its content. */
export async function encodeStateFile(state: RelayState, key?: StateKey): Promise<Uint8Array> {
  const mac = key === undefined ? undefined : new Uint8Array(
    await crypto.subtle.sign("HMAC", key, macInput(state) as Uint8Array<ArrayBuffer>),
  );
  const json = {
    format: STATE_FORMAT,
    generation: state.generation,
    handedOff: state.handedOff,
    checkpoint: state.checkpoint === undefined ? null : encodeBase64(state.checkpoint),
    hostCopies: state.hostCopies.map(encodeCopy),
    guestCopies: state.guestCopies.map(encodeCopy),
    ...(mac === undefined ? {} : { mac: encodeBase64(mac) }),
    // For humans only; the checkpoint is what counts.
    ...(state.checkpoint === undefined ? {} : { describe: describeCheckpoint(state.checkpoint) }),
  };
  return new TextEncoder().encode(JSON.stringify(json, null, 1) + "\n");
}

/**
 * Decodes and verifies a state file: its checkpoint (CRC and content, under `limits`) and,
 * with `key`, its MAC. Throws a {@linkcode StateFileError}.
 */
export async function decodeStateFile(
  bytes: Uint8Array,
  key?: StateKey,
  limits?: Parameters<typeof decodeCheckpoint>[1],
): Promise<RelayState> {
  const bad = (why: string): never => {
    throw new StateFileError("BAD_STATE_FILE", `not a ${STATE_FORMAT} file: ${why}`);
  };
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (error) {
    return bad((error as Error).message);
  }
  if (typeof json !== "object" || json === null) return bad("not a JSON object");
  if (json.format !== STATE_FORMAT) return bad(`format is ${JSON.stringify(json.format)}`);
  const base64 = (value: unknown, what: string): Uint8Array => {
    if (typeof value !== "string") return bad(`${what} is not a string`);
    try {
      return decodeBase64(value);
    } catch (error) {
      return bad(`${what}: ${(error as Error).message}`);
    }
  };
  const generation = json.generation;
  if (!Number.isSafeInteger(generation) || (generation as number) < 0) {
    return bad("generation is not a whole number");
  }
  if (typeof json.handedOff !== "boolean") return bad("handedOff is not a boolean");
  const copies = (field: "hostCopies" | "guestCopies"): ClipboardCopy[] => {
    const list = json[field];
    if (!Array.isArray(list)) return bad(`${field} is not a list`);
    if (list.length > MAX_COPIES) return bad(`${field} has ${list.length} entries`);
    return list.map((copy: Record<string, unknown>, i): ClipboardCopy => {
      const selection = SELECTIONS[String(copy?.selection)];
      const type = typeOfMime(String(copy?.mime));
      if (selection === undefined || !("type" in type)) return bad(`${field}[${i}] is malformed`);
      return { selection, type: type.type, data: base64(copy.base64, `${field}[${i}].base64`) };
    });
  };
  const state: RelayState = {
    checkpoint: json.checkpoint === null ? undefined : base64(json.checkpoint, "checkpoint"),
    hostCopies: copies("hostCopies"),
    guestCopies: copies("guestCopies"),
    generation: generation as number,
    handedOff: json.handedOff,
  };
  if (key !== undefined) {
    if (json.mac === undefined) {
      throw new StateFileError("UNAUTHENTICATED", "it carries no MAC, and a key is set");
    }
    const ok = await crypto.subtle.verify(
      "HMAC",
      key,
      base64(json.mac, "mac") as Uint8Array<ArrayBuffer>,
      macInput(state) as Uint8Array<ArrayBuffer>,
    );
    if (!ok) {
      throw new StateFileError(
        "BAD_MAC",
        "its MAC does not match the key: it was changed, or written with another key",
      );
    }
  }
  if (state.checkpoint !== undefined) {
    try {
      decodeCheckpoint(state.checkpoint, limits);
    } catch (error) {
      const code = (error as { code?: string }).code ?? "BAD_STATE_FILE";
      throw new StateFileError(code, `the checkpoint is bad: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  return state;
}
