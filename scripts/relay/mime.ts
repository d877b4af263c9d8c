// Clipboard types ⇄ MIME types, and the file list ⇄ text/uri-list, for the relay's JSON protocol.
// Web-platform only: shared by the Deno and the Node entry points.
import { ClipboardType } from "../../mod.ts";

/** The MIME type the relay names each clipboard type with (never NONE). */
export const MIME_OF_TYPE: Readonly<Record<number, string>> = {
  [ClipboardType.UTF8_TEXT]: "text/plain;charset=utf-8",
  [ClipboardType.IMAGE_PNG]: "image/png",
  [ClipboardType.IMAGE_BMP]: "image/bmp",
  [ClipboardType.IMAGE_TIFF]: "image/tiff",
  [ClipboardType.IMAGE_JPG]: "image/jpeg",
  [ClipboardType.FILE_LIST]: "text/uri-list",
};

/** Types whose data the JSON protocol carries as `text` rather than `base64`. */
export function isTextType(type: number): boolean {
  return type === ClipboardType.UTF8_TEXT || type === ClipboardType.FILE_LIST;
}

/** The MIME type of a clipboard type; an unknown type is named `application/x-vdagent-type-N`. */
export function mimeOfType(type: number): string {
  return MIME_OF_TYPE[type] ?? `application/x-vdagent-type-${type}`;
}

const ESSENCES: Readonly<Record<string, number>> = {
  "image/png": ClipboardType.IMAGE_PNG,
  "image/bmp": ClipboardType.IMAGE_BMP,
  "image/x-bmp": ClipboardType.IMAGE_BMP,
  "image/x-ms-bmp": ClipboardType.IMAGE_BMP,
  "image/tiff": ClipboardType.IMAGE_TIFF,
  "image/jpeg": ClipboardType.IMAGE_JPG,
  "image/jpg": ClipboardType.IMAGE_JPG,
  "text/uri-list": ClipboardType.FILE_LIST,
};

/**
 * The clipboard type of a MIME type, or a message saying why there is none. `text/plain` is
 * UTF-8 text when its charset is `utf-8` or absent (any other charset is refused: the relay
 * does not transcode). Case and spaces around `;` and `=` do not matter.
 */
export function typeOfMime(mime: string): { type: number } | { error: string } {
  const [essence = "", ...params] = mime.toLowerCase().split(";").map((part) => part.trim());
  if (essence === "text/plain") {
    for (const param of params) {
      const [name, value = ""] = param.split("=").map((s) => s.trim());
      if (name !== "charset") continue;
      const charset = value.replace(/^"(.*)"$/, "$1");
      if (charset !== "utf-8" && charset !== "utf8") {
        return { error: `text/plain must be UTF-8, got charset=${charset}` };
      }
    }
    return { type: ClipboardType.UTF8_TEXT };
  }
  const type = ESSENCES[essence];
  if (type === undefined) {
    return {
      error: `unsupported MIME type "${mime}": use one of ${
        Object.values(MIME_OF_TYPE).join(", ")
      }`,
    };
  }
  return { type };
}

/** What a FILE_LIST holds: `copy` or `cut`, then absolute paths in the guest's WebDAV share. */
export interface FileList {
  action: "copy" | "cut";
  paths: string[];
}

/**
 * Decodes FILE_LIST data: UTF-8 items separated by NUL, the first `copy` or `cut`. A trailing
 * NUL is accepted.
 */
export function decodeFileList(data: Uint8Array): FileList | { error: string } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    return { error: "the file list is not UTF-8" };
  }
  const items = text.split("\0");
  if (items.length > 1 && items.at(-1) === "") items.pop();
  const [action, ...paths] = items;
  if (action !== "copy" && action !== "cut") {
    return {
      error: `the file list must start with "copy" or "cut", got ${JSON.stringify(action)}`,
    };
  }
  return { action, paths };
}

/** Encodes a FILE_LIST: `action`, then each path, separated by NUL. */
export function encodeFileList(list: FileList): Uint8Array {
  return new TextEncoder().encode([list.action, ...list.paths].join("\0"));
}

/** `file://` URI of an absolute path, percent-encoded as RFC 8089 asks. */
export function pathToFileUri(path: string): string {
  return "file://" + path.split("/").map((segment) => encodeURIComponent(segment)).join("/");
}

/**
 * The paths of a `text/uri-list` (RFC 2483: one URI per line, `#` lines are comments). Every URI
 * must be a `file:` URI of an absolute path on the local host.
 */
export function uriListToPaths(uriList: string): string[] | { error: string } {
  const paths: string[] = [];
  for (const raw of uriList.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^file:\/\/(localhost)?(\/[^?#]*)$/i.exec(line);
    if (match === null) {
      return { error: `text/uri-list may hold only file:///absolute/path URIs, got "${line}"` };
    }
    try {
      paths.push(decodeURIComponent(match[2]!));
    } catch {
      return { error: `bad percent-encoding in "${line}"` };
    }
  }
  if (paths.length === 0) return { error: "text/uri-list holds no URI" };
  return paths;
}

/** A `text/uri-list` of paths, CRLF-terminated lines as RFC 2483 asks. */
export function pathsToUriList(paths: readonly string[]): string {
  return paths.map((path) => pathToFileUri(path) + "\r\n").join("");
}
