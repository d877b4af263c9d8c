// The relay's state file: the library's checkpoint plus what the relay itself holds, the data
// of the host's copies (the checkpoint carries the types the host offers, not their bytes).
// JSON, so that `jq` can read it; a raw library checkpoint ("VDCK…") is accepted too.
import { decodeCheckpoint, describeCheckpoint } from "../../mod.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";
import { MIME_OF_TYPE, typeOfMime } from "./mime.ts";
import { selectionName, SELECTIONS } from "./protocol.ts";

/** The `format` of a state file. */
export const STATE_FORMAT = "vdagent-relay-state/1";

/** Data the host copied into one selection, by type. */
export interface HostCopy {
  selection: number;
  type: number;
  data: Uint8Array;
}

/** What a relay hands the next one. */
export interface RelayState {
  /** `pipeline.checkpoint()`'s bytes. */
  checkpoint: Uint8Array;
  /** The data the guest may still paste from the host's copies. */
  hostCopies: HostCopy[];
}

/** A state file that cannot be read. */
export class StateFileError extends Error {
  /** `BAD_STATE_FILE`, or the `CheckpointError` code of the checkpoint inside. */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StateFileError";
    this.code = code;
  }
}

/** Encodes a state file: JSON with the checkpoint and the host's data in base64. */
export function encodeStateFile(state: RelayState): Uint8Array {
  const json = {
    format: STATE_FORMAT,
    checkpoint: encodeBase64(state.checkpoint),
    hostCopies: state.hostCopies.map((copy) => ({
      selection: selectionName(copy.selection),
      mime: MIME_OF_TYPE[copy.type],
      base64: encodeBase64(copy.data),
    })),
    // For humans only; the checkpoint is what counts.
    describe: describeCheckpoint(state.checkpoint),
  };
  return new TextEncoder().encode(JSON.stringify(json, null, 1) + "\n");
}

/** Decodes and verifies a state file (the checkpoint's CRC included); throws a {@linkcode StateFileError}. */
export function decodeStateFile(bytes: Uint8Array): RelayState {
  const checked = (checkpoint: Uint8Array) => {
    try {
      decodeCheckpoint(checkpoint);
    } catch (error) {
      const code = (error as { code?: string }).code ?? "BAD_STATE_FILE";
      throw new StateFileError(code, `the checkpoint is bad: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return checkpoint;
  };
  if (bytes[0] === 0x56 && bytes[1] === 0x44 && bytes[2] === 0x43 && bytes[3] === 0x4b) {
    return { checkpoint: checked(bytes), hostCopies: [] };
  }
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
  const copies = json.hostCopies;
  if (!Array.isArray(copies)) return bad("hostCopies is not a list");
  const hostCopies = copies.map((copy: Record<string, unknown>, i): HostCopy => {
    const selection = SELECTIONS[String(copy?.selection)];
    const type = typeOfMime(String(copy?.mime));
    if (selection === undefined || !("type" in type)) return bad(`hostCopies[${i}] is malformed`);
    return { selection, type: type.type, data: base64(copy.base64, `hostCopies[${i}].base64`) };
  });
  return { checkpoint: checked(base64(json.checkpoint, "checkpoint")), hostCopies };
}
