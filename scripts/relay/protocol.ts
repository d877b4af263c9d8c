// The relay's JSON protocol: one command per line in, one event per line out, on standard input
// and output and over WebSocket alike. This module parses and checks commands; it does no I/O.
import { ClipboardType, type MouseButtonName, Selection } from "../../mod.ts";
import { decodeBase64 } from "./base64.ts";
import { encodeFileList, typeOfMime, uriListToPaths } from "./mime.ts";

/** Selections by their JSON name. */
export const SELECTIONS: Readonly<Record<string, number>> = {
  clipboard: Selection.CLIPBOARD,
  primary: Selection.PRIMARY,
  secondary: Selection.SECONDARY,
};

/** The JSON name of a selection. */
export function selectionName(selection: number): string {
  return ["clipboard", "primary", "secondary"][selection] ?? `selection-${selection}`;
}

const BUTTONS: readonly MouseButtonName[] = [
  "left",
  "middle",
  "right",
  "up",
  "down",
  "side",
  "extra",
];

/** A command's optional `id`, echoed in the events that answer it. */
export type CommandId = string | number;

/** A checked command. */
export type Command =
  | {
    cmd: "copy";
    id?: CommandId;
    selection: number;
    /** `ClipboardType` value. */
    type: number;
    /** What the guest gets when it pastes (a FILE_LIST already converted from the URI list). */
    data: Uint8Array;
  }
  | {
    cmd: "paste";
    id?: CommandId;
    selection: number;
    /** `ClipboardType`, or `undefined` for the relay to choose from the guest's offer. */
    type?: number;
    /** Milliseconds; 0 waits forever. */
    timeout?: number;
  }
  | { cmd: "release"; id?: CommandId; selection: number }
  | {
    cmd: "mouse";
    id?: CommandId;
    x: number;
    y: number;
    buttons: MouseButtonName[];
    display: number;
  }
  | { cmd: "checkpoint"; id?: CommandId }
  | { cmd: "status"; id?: CommandId };

/** Codes of the errors the protocol itself reports, besides `ClipboardError`'s. */
export type ProtocolErrorCode =
  | "BAD_JSON"
  | "BAD_COMMAND"
  | "UNSUPPORTED_TYPE"
  | "BAD_DATA"
  | "LINE_TOO_LONG";

/** A command that cannot be run, with its `id` when it had a usable one. */
export class CommandError extends Error {
  readonly code: ProtocolErrorCode | string;
  readonly id: CommandId | undefined;

  constructor(code: ProtocolErrorCode | string, message: string, id?: CommandId) {
    super(message);
    this.name = "CommandError";
    this.code = code;
    this.id = id;
  }
}

const FIELDS: Readonly<Record<Command["cmd"], readonly string[]>> = {
  copy: ["selection", "mime", "text", "base64", "action"],
  paste: ["selection", "mime", "timeout"],
  release: ["selection"],
  mouse: ["x", "y", "buttons", "display"],
  checkpoint: [],
  status: [],
};

/** Parses and checks one command line; throws a {@linkcode CommandError}. */
export function parseCommand(line: string): Command {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new CommandError(
      "BAD_JSON",
      `Cannot parse command: ${error instanceof Error ? error.message : error}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CommandError("BAD_JSON", "Cannot run command: a command is a JSON object");
  }
  const object = value as Record<string, unknown>;
  const id = object.id;
  const validId = typeof id === "string" || (typeof id === "number" && Number.isFinite(id));
  const fail = (message: string, code: ProtocolErrorCode = "BAD_COMMAND"): never => {
    throw new CommandError(code, message, validId ? id : undefined);
  };
  if (id !== undefined && !validId) fail("Cannot run command: id must be a string or a number");
  const cmd = object.cmd;
  if (typeof cmd !== "string" || !Object.hasOwn(FIELDS, cmd)) {
    fail(
      `Cannot run command: cmd must be one of ${Object.keys(FIELDS).join(", ")}, got ${
        JSON.stringify(cmd)
      }`,
    );
  }
  const name = cmd as Command["cmd"];
  for (const key of Object.keys(object)) {
    if (key !== "cmd" && key !== "id" && !FIELDS[name].includes(key)) {
      fail(`Cannot run ${name}: unknown field "${key}"`);
    }
  }
  const withId = validId ? { id: id as CommandId } : {};
  const selection = (): number => {
    const s = object.selection ?? "clipboard";
    if (typeof s !== "string" || !Object.hasOwn(SELECTIONS, s)) {
      return fail(
        `Cannot run ${name}: selection must be "clipboard", "primary" or "secondary", got ${
          JSON.stringify(s)
        }`,
      );
    }
    return SELECTIONS[s]!;
  };
  const mimeType = (mime: unknown): number => {
    if (typeof mime !== "string") {
      return fail(`Cannot run ${name}: mime must be a string, got ${JSON.stringify(mime)}`);
    }
    const found = typeOfMime(mime);
    return "type" in found
      ? found.type
      : fail(`Cannot run ${name}: ${found.error}`, "UNSUPPORTED_TYPE");
  };
  const integer = (key: string, max: number, fallback?: number): number => {
    const v = object[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
      return fail(
        `Cannot run ${name}: ${key} must be an integer from 0 to ${max}, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };

  switch (name) {
    case "copy":
      return {
        cmd: "copy",
        ...withId,
        selection: selection(),
        ...copyData(object, mimeType, fail),
      };
    case "paste": {
      const type = object.mime === undefined ? undefined : mimeType(object.mime);
      const timeout = object.timeout === undefined ? undefined : integer("timeout", 0x7fff_ffff);
      return {
        cmd: "paste",
        ...withId,
        selection: selection(),
        ...(type === undefined ? {} : { type }),
        ...(timeout === undefined ? {} : { timeout }),
      };
    }
    case "release":
      return { cmd: "release", ...withId, selection: selection() };
    case "mouse": {
      const buttons = object.buttons ?? [];
      if (
        !Array.isArray(buttons) ||
        !buttons.every((b) => typeof b === "string" && BUTTONS.includes(b as MouseButtonName))
      ) {
        fail(`Cannot run mouse: buttons must be a list of ${BUTTONS.join(", ")}`);
      }
      return {
        cmd: "mouse",
        ...withId,
        x: integer("x", 0xffff_ffff),
        y: integer("y", 0xffff_ffff),
        buttons: [...new Set(buttons as MouseButtonName[])],
        display: integer("display", 255, 0),
      };
    }
    case "checkpoint":
      return { cmd: "checkpoint", ...withId };
    case "status":
      return { cmd: "status", ...withId };
  }
}

/** The type and bytes of a `copy`: `text` or `base64`, in the MIME type's own representation. */
function copyData(
  object: Record<string, unknown>,
  mimeType: (mime: unknown) => number,
  fail: (message: string, code?: ProtocolErrorCode) => never,
): { type: number; data: Uint8Array } {
  const { text, base64, action } = object;
  if ((text === undefined) === (base64 === undefined)) {
    fail("Cannot run copy: give exactly one of text and base64");
  }
  if (text !== undefined && typeof text !== "string") {
    fail("Cannot run copy: text must be a string");
  }
  if (base64 !== undefined && typeof base64 !== "string") {
    fail("Cannot run copy: base64 must be a string");
  }
  const type = object.mime === undefined && text !== undefined
    ? ClipboardType.UTF8_TEXT
    : mimeType(object.mime);
  if (
    action !== undefined &&
    (type !== ClipboardType.FILE_LIST || (action !== "copy" && action !== "cut"))
  ) {
    fail('Cannot run copy: action is "copy" or "cut", for text/uri-list only');
  }
  let bytes: Uint8Array;
  if (text !== undefined) {
    bytes = new TextEncoder().encode(text as string);
  } else {
    try {
      bytes = decodeBase64(base64 as string);
    } catch (error) {
      return fail(`Cannot run copy: ${(error as Error).message}`, "BAD_DATA");
    }
  }
  if (type === ClipboardType.UTF8_TEXT || type === ClipboardType.FILE_LIST) {
    let decoded: string;
    try {
      decoded = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return fail("Cannot run copy: the text is not UTF-8", "BAD_DATA");
    }
    if (type === ClipboardType.FILE_LIST) {
      const paths = uriListToPaths(decoded);
      if (!Array.isArray(paths)) return fail(`Cannot run copy: ${paths.error}`, "BAD_DATA");
      bytes = encodeFileList({ action: (action as "copy" | "cut" | undefined) ?? "copy", paths });
    }
  }
  if (bytes.length === 0) fail("Cannot run copy: the data is empty", "BAD_DATA");
  return { type, data: bytes };
}
