import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeMessage, MessageType } from "../mod.ts";
import { concat, u32s } from "./_helpers.ts";

test("decodeMessage reads clipboard messages in all four caps layouts", () => {
  const grab = [
    [{}, u32s(1, 2), { kind: "clipboard_grab", selection: 0, types: [1, 2] }],
    [{ selection: true }, u32s(1, 1), { kind: "clipboard_grab", selection: 1, types: [1] }],
    [{ grabSerial: true }, u32s(7, 1), {
      kind: "clipboard_grab",
      selection: 0,
      serial: 7,
      types: [1],
    }],
    [{ selection: true, grabSerial: true }, u32s(2, 7, 1), {
      kind: "clipboard_grab",
      selection: 2,
      serial: 7,
      types: [1],
    }],
  ] as const;
  for (const [layout, data, expected] of grab) {
    assert.deepEqual(decodeMessage({ type: MessageType.CLIPBOARD_GRAB, data }, layout), expected);
  }
  assert.deepEqual(decodeMessage({ type: 9, data: new Uint8Array(0) }), {
    kind: "clipboard_release",
    selection: 0,
  });
  assert.deepEqual(decodeMessage({ type: 9, data: u32s(1) }, { selection: true }), {
    kind: "clipboard_release",
    selection: 1,
  });
  const data = concat(u32s(1, 2), new Uint8Array([0x89, 0x50]));
  const clip = decodeMessage({ type: 4, data }, { selection: true });
  assert.deepEqual(clip, {
    kind: "clipboard",
    selection: 1,
    type: 2,
    data: new Uint8Array([0x89, 0x50]),
  });
  assert.equal(clip.kind === "clipboard" && clip.data.buffer, data.buffer, "data is a view");
});

test("decodeMessage ignores the reserved bytes of the selection prefix and trailing partial words", () => {
  const data = new Uint8Array([1, 9, 9, 9, 1, 0, 0, 0, 0xff]);
  assert.deepEqual(decodeMessage({ type: 7, data }, { selection: true }), {
    kind: "clipboard_grab",
    selection: 1,
    types: [1],
  });
  assert.deepEqual(decodeMessage({ type: 6, data: concat(u32s(0, 5), new Uint8Array(3)) }), {
    kind: "announce_capabilities",
    request: false,
    caps: [5],
  });
});

test("decodeMessage reads the fixed-size messages", () => {
  const mouse = new Uint8Array([10, 0, 0, 0, 20, 0, 0, 0, 2 | 8, 0, 0, 0, 1]);
  assert.deepEqual(decodeMessage({ type: 1, data: mouse }), {
    kind: "mouse_state",
    x: 10,
    y: 20,
    buttons: 10,
    display: 1,
  });
  assert.deepEqual(decodeMessage({ type: 3, data: u32s(2, 1) }), {
    kind: "reply",
    messageType: 2,
    error: 1,
  });
  assert.deepEqual(decodeMessage({ type: 5, data: u32s(9, 24) }), {
    kind: "display_config",
    flags: 9,
    depth: 24,
  });
  assert.deepEqual(decodeMessage({ type: 14, data: u32s(0xffff_ffff) }), {
    kind: "max_clipboard",
    max: -1,
  });
  assert.deepEqual(decodeMessage({ type: 13, data: new Uint8Array(0) }), {
    kind: "client_disconnected",
  });
});

test("decodeMessage reads monitors with and without physical sizes", () => {
  const plain = concat(u32s(1, 1), u32s(768, 1024, 32, 0xffff_ffff, 5));
  assert.deepEqual(decodeMessage({ type: 2, data: plain }), {
    kind: "monitors_config",
    flags: 1,
    monitors: [{ height: 768, width: 1024, depth: 32, x: -1, y: 5 }],
  });
  const physical = concat(u32s(1, 2), u32s(768, 1024, 32, 0, 0), new Uint8Array([200, 0, 44, 1]));
  assert.deepEqual(decodeMessage({ type: 2, data: physical }), {
    kind: "monitors_config",
    flags: 2,
    monitors: [{ height: 768, width: 1024, depth: 32, x: 0, y: 0, heightMm: 200, widthMm: 300 }],
  });
});

test("decodeMessage reads file transfer messages with and without detailed errors", () => {
  const start = concat(
    u32s(3),
    new TextEncoder().encode("[vdagent-file-xfer]\nname=a\nsize=1\n\0"),
  );
  assert.deepEqual(decodeMessage({ type: 10, data: start }), {
    kind: "file_xfer_start",
    id: 3,
    metadata: "[vdagent-file-xfer]\nname=a\nsize=1\n",
  });
  assert.deepEqual(decodeMessage({ type: 11, data: u32s(3, 3) }), {
    kind: "file_xfer_status",
    id: 3,
    result: 3,
  });
  assert.deepEqual(decodeMessage({ type: 11, data: u32s(3, 4, 0, 1) }), {
    kind: "file_xfer_status",
    id: 3,
    result: 4,
    freeSpace: 1n << 32n,
  });
  assert.deepEqual(
    decodeMessage({ type: 11, data: concat(u32s(3, 2), new Uint8Array([0]), u32s(14)) }),
    {
      kind: "file_xfer_status",
      id: 3,
      result: 2,
      error: { type: 0, code: 14 },
    },
  );
  assert.deepEqual(
    decodeMessage({ type: 12, data: concat(u32s(3, 2, 0), new Uint8Array([7, 8])) }),
    {
      kind: "file_xfer_data",
      id: 3,
      data: new Uint8Array([7, 8]),
    },
  );
});

test("decodeMessage reads audio volume and graphics device info", () => {
  assert.deepEqual(decodeMessage({ type: 15, data: new Uint8Array([1, 0, 2, 1, 0, 0xff, 0xff]) }), {
    kind: "audio_volume_sync",
    playback: true,
    mute: false,
    volume: [1, 0xffff],
  });
  const address = new TextEncoder().encode("pci/0000/02.0\0");
  const info = concat(u32s(1, 0, 1, 2, address.length), address);
  assert.deepEqual(decodeMessage({ type: 16, data: info }), {
    kind: "graphics_device_info",
    displays: [{ channelId: 0, monitorId: 1, deviceDisplayId: 2, deviceAddress: "pci/0000/02.0" }],
  });
});

test("decodeMessage delivers unknown message types raw", () => {
  for (const type of [0, 17, 0xffff_ffff]) {
    const data = new Uint8Array([1, 2, 3]);
    assert.deepEqual(decodeMessage({ type, data }), { kind: "unknown", type, data });
  }
});

test("decodeMessage validates its limit options", () => {
  assert.throws(() => decodeMessage({ type: 7, data: u32s(1) }, { maxGrabTypes: 0 }), RangeError);
  assert.equal(decodeMessage({ type: 7, data: u32s(1, 1) }, { maxGrabTypes: 1 }).kind, "invalid");
  assert.equal(
    decodeMessage({ type: 6, data: u32s(1, 1, 1) }, { maxCapsWords: 1 }).kind,
    "invalid",
  );
});
