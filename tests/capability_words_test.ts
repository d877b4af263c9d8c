import { test } from "node:test";
import assert from "node:assert/strict";
import { Capability, capabilityWords, hasCapability } from "../mod.ts";

test("capabilityWords packs QEMU's and the Linux agent's masks", () => {
  const qemu = [
    Capability.MOUSE_STATE,
    Capability.CLIPBOARD_BY_DEMAND,
    Capability.CLIPBOARD_SELECTION,
    Capability.CLIPBOARD_GRAB_SERIAL,
  ];
  assert.deepEqual(capabilityWords(qemu), [0x00020061]);
  assert.deepEqual(capabilityWords([]), [0]);
  assert.deepEqual(capabilityWords([31, 32, 95]), [0x8000_0000, 1, 0x8000_0000]);
  assert.throws(() => capabilityWords([-1]), RangeError);
  assert.throws(() => capabilityWords([0.5]), RangeError);
});

test("hasCapability reads bits across words and treats missing words as unset", () => {
  const caps = [0x00038de7, 0x1];
  for (let bit = 0; bit < 64; bit++) {
    const expected = bit < 32 ? ((0x00038de7 >>> bit) & 1) === 1 : bit === 32;
    assert.equal(hasCapability(caps, bit), expected, `bit ${bit}`);
  }
  assert.equal(hasCapability([0xffff_ffff], 32), false);
  assert.equal(hasCapability([], 0), false);
});
