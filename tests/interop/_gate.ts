// Whether the real-agent suites run. VDAGENT_INTEROP decides what happens when the Debian
// packages are missing:
//   unset     one loud line on stderr and no test registered: nothing here counts as passed;
//   require   a failing test (CI and `deno task test:interop` set it);
//   skip      one loud line and no test, even when the packages are installed.
import { findGuestBinaries } from "./_guest_stack.ts";

const mode = Deno.env.get("VDAGENT_INTEROP") ?? "";
if (!["", "require", "skip"].includes(mode)) {
  throw new RangeError(`VDAGENT_INTEROP must be unset, "require" or "skip", got "${mode}"`);
}

/** The guest stack's binaries, found or missing. */
export const binaries = findGuestBinaries();
const INSTALL = "apt-get install -y spice-vdagent socat xvfb xclip";

/** Whether to register the real-agent tests at all. */
export const run = mode !== "skip" && (binaries.ok || mode === "require");

/** Whether missing packages fail the tests instead of leaving them out. */
export const required = mode === "require";

/** Prints the loud line for a suite that is not run. */
export function announceNotRun(suite: string, why: string): void {
  // deno-lint-ignore no-console
  console.error(
    `!!! ${suite} NOT RUN: ${why}. None of its tests ran or passed; ` +
      "CI runs it with VDAGENT_INTEROP=require. !!!",
  );
}

if (!run) {
  announceNotRun(
    "REAL-AGENT INTEROP SUITE",
    mode === "skip"
      ? "VDAGENT_INTEROP=skip"
      : `missing ${binaries.missing.join(", ")} (${INSTALL})`,
  );
}

/** Throws when a registered test finds the packages missing (VDAGENT_INTEROP=require). */
export function requireBinaries(): void {
  if (!binaries.ok) {
    throw new Error(`VDAGENT_INTEROP=require, but ${binaries.missing.join(", ")} missing`);
  }
}

/** Deno 2.9 leaves the sanitizers off by default; here they check that nothing is left running. */
export const SANITIZE = { sanitizeOps: true, sanitizeResources: true, sanitizeExit: true } as const;
