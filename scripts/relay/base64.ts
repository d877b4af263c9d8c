// Base64 (RFC 4648, standard alphabet) for the relay's JSON protocol, without `Buffer` or a
// character per call to `btoa`: megabytes of clipboard data go through here.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const CODES = new Uint8Array(64).map((_, i) => ALPHABET.charCodeAt(i));
const VALUES = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) VALUES[ALPHABET.charCodeAt(i)] = i;
const ascii = new TextDecoder();

/** Encodes bytes as base64 with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  const out = new Uint8Array(Math.ceil(bytes.length / 3) * 4);
  let o = 0;
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = CODES[n >>> 18]!;
    out[o++] = CODES[(n >>> 12) & 63]!;
    out[o++] = CODES[(n >>> 6) & 63]!;
    out[o++] = CODES[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest > 0) {
    const n = (bytes[i]! << 16) | (rest === 2 ? bytes[i + 1]! << 8 : 0);
    out[o++] = CODES[n >>> 18]!;
    out[o++] = CODES[(n >>> 12) & 63]!;
    out[o++] = rest === 2 ? CODES[(n >>> 6) & 63]! : 61;
    out[o++] = 61;
  }
  return ascii.decode(out);
}

/**
 * Decodes base64 (padding optional, no whitespace). Throws a `SyntaxError` naming the first bad
 * character.
 */
export function decodeBase64(text: string): Uint8Array {
  let end = text.length;
  if (end > 0 && text.charCodeAt(end - 1) === 61) end--;
  if (end > 0 && text.charCodeAt(end - 1) === 61) end--;
  if (end % 4 === 1 || (end < text.length && text.length % 4 !== 0)) {
    throw new SyntaxError(`Invalid base64: length ${text.length} cannot be base64`);
  }
  const out = new Uint8Array(Math.floor((end * 3) / 4));
  let o = 0;
  let bits = 0;
  let count = 0;
  for (let i = 0; i < end; i++) {
    const code = text.charCodeAt(i);
    const value = code < 128 ? VALUES[code]! : -1;
    if (value < 0) {
      throw new SyntaxError(`Invalid base64: character ${JSON.stringify(text[i])} at ${i}`);
    }
    bits = (bits << 6) | value;
    if (++count === 4) {
      out[o++] = bits >>> 16;
      out[o++] = (bits >>> 8) & 255;
      out[o++] = bits & 255;
      bits = 0;
      count = 0;
    }
  }
  if (count === 2) out[o++] = bits >>> 4;
  if (count === 3) {
    out[o++] = bits >>> 10;
    out[o++] = (bits >>> 2) & 255;
  }
  return out;
}
