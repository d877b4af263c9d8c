import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeMessage, type MessagePayload, type PayloadOptions } from "../mod.ts";
import { u32s } from "./_helpers.ts";

test("encodeMessage writes the selection prefix and serial only when negotiated", () => {
  const grab = { kind: "clipboard_grab", selection: 0, types: [1] } as const;
  assert.deepEqual(encodeMessage(grab).data, u32s(1));
  assert.deepEqual(encodeMessage(grab, { selection: true }).data, u32s(0, 1));
  assert.deepEqual(encodeMessage({ ...grab, serial: 3 }, { grabSerial: true }).data, u32s(3, 1));
  assert.deepEqual(
    encodeMessage({ kind: "clipboard_release", selection: 2 }, { selection: true }).data,
    u32s(2),
  );
  assert.deepEqual(
    encodeMessage({ kind: "clipboard_release", selection: 0 }).data,
    new Uint8Array(0),
  );
  const m = encodeMessage({ kind: "mouse_state", x: 1, y: 2, buttons: 2, display: 0 });
  assert.deepEqual(m, {
    port: 1,
    type: 1,
    opaque: 0n,
    data: new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0]),
  });
});

test("encodeMessage rejects what cannot be encoded with RangeError or TypeError", () => {
  const cases: [MessagePayload, PayloadOptions, ErrorConstructor | RangeErrorConstructor][] = [
    [{ kind: "clipboard_request", selection: 1, type: 1 }, {}, RangeError],
    [{ kind: "clipboard_grab", selection: 0, types: [] }, {}, RangeError],
    [{ kind: "clipboard_grab", selection: 0, types: [1] }, { grabSerial: true }, TypeError],
    [{ kind: "clipboard_grab", selection: 0, serial: 1, types: [1] }, {}, TypeError],
    [
      { kind: "clipboard_grab", selection: 0, serial: -1, types: [1] },
      { grabSerial: true },
      RangeError,
    ],
    [{ kind: "clipboard_request", selection: 256, type: 1 }, { selection: true }, RangeError],
    [{ kind: "mouse_state", x: 1.5, y: 0, buttons: 0, display: 0 }, {}, RangeError],
    [{ kind: "mouse_state", x: 0, y: 0, buttons: 0, display: 256 }, {}, RangeError],
    [{ kind: "max_clipboard", max: 2 ** 31 }, {}, RangeError],
    [{ kind: "announce_capabilities", request: true, caps: [] }, {}, RangeError],
    [
      {
        kind: "monitors_config",
        flags: 2,
        monitors: [{ height: 1, width: 1, depth: 1, x: 0, y: 0 }],
      },
      {},
      TypeError,
    ],
    [{ kind: "file_xfer_status", id: 1, result: 3, freeSpace: 1n }, {}, TypeError],
    [
      { kind: "audio_volume_sync", playback: true, mute: false, volume: new Array(256).fill(0) },
      {},
      RangeError,
    ],
    [{ kind: "nope" } as unknown as MessagePayload, {}, TypeError],
  ];
  for (const [i, [payload, layout, kind]] of cases.entries()) {
    assert.throws(() => encodeMessage(payload, layout), kind, `case ${i}`);
  }
});

test("encodeMessage writes unknown and invalid payloads back raw", () => {
  const data = new Uint8Array([1, 2, 3]);
  assert.deepEqual(encodeMessage({ kind: "unknown", type: 99, data }), {
    port: 1,
    type: 99,
    opaque: 0n,
    data,
  });
  const invalid = { kind: "invalid", type: 8, code: "PAYLOAD_SIZE", reason: "x", data } as const;
  assert.deepEqual(encodeMessage(invalid), { port: 1, type: 8, opaque: 0n, data });
});
