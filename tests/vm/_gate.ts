// Whether the real-VM suite runs. VDAGENT_VM decides what happens when its prerequisites (QEMU,
// the guest's binaries on this machine, a kernel package and busybox; see _vm.ts) are missing:
//   unset     one loud line on stderr and no test registered: nothing here counts as passed;
//   require   a failing test (`deno task test:vm` sets it);
//   skip      one loud line and no test, even when everything is there.
import { imageSources } from "./_build.ts";

const mode = Deno.env.get("VDAGENT_VM") ?? "";
if (!["", "require", "skip"].includes(mode)) {
  throw new RangeError(`VDAGENT_VM must be unset, "require" or "skip", got "${mode}"`);
}

const BINARIES = [
  "qemu-system-x86_64",
  "spice-vdagentd",
  "spice-vdagent",
  "Xvfb",
  "xkbcomp",
  "xclip",
  "setpriv",
  "bash",
  "dpkg-deb",
  "ldd",
];
const INSTALL = "apt-get install -y qemu-system-x86 spice-vdagent xvfb xclip x11-xkb-utils " +
  "busybox-static; a kernel: apt-get update (for linux-image-amd64) or VDAGENT_VM_KERNEL_DEB";
// spice-vdagentd lives in sbin, which a user's PATH may lack.
const SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

function which(name: string): string | null {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d.length > 0);
  for (const d of SYSTEM_PATH) if (!dirs.includes(d)) dirs.push(d);
  for (const dir of dirs) {
    try {
      const st = Deno.statSync(`${dir}/${name}`);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

/** What the suite needs and does not find (starts nothing, downloads nothing). */
export function findPrerequisites(): { ok: boolean; missing: string[] } {
  const missing = BINARIES.filter((name) => which(name) === null);
  if (missing.length === 0) {
    const sources = imageSources();
    if (sources.kernel === undefined) missing.push("a kernel package (linux-image-amd64)");
    if (sources.busybox === undefined) missing.push("busybox-static");
  }
  return { ok: missing.length === 0, missing };
}

/** The prerequisites, found or missing (skipped with VDAGENT_VM=skip). */
export const prerequisites = mode === "skip" ? { ok: false, missing: [] } : findPrerequisites();

/** Whether to register the real-VM tests at all. */
export const run = mode !== "skip" && (prerequisites.ok || mode === "require");

/** Whether missing prerequisites fail the tests instead of leaving them out. */
export const required = mode === "require";

/** Prints the loud line for a suite that is not run. */
export function announceNotRun(suite: string, why: string): void {
  // deno-lint-ignore no-console
  console.error(
    `!!! ${suite} NOT RUN: ${why}. None of its tests ran or passed; ` +
      "`deno task test:vm` runs it with VDAGENT_VM=require. !!!",
  );
}

if (!run) {
  announceNotRun(
    "REAL-VM SUITE",
    mode === "skip"
      ? "VDAGENT_VM=skip"
      : `missing ${prerequisites.missing.join(", ")} (${INSTALL})`,
  );
}

/** Throws when a registered test finds prerequisites missing (VDAGENT_VM=require). */
export function requirePrerequisites(): void {
  if (!prerequisites.ok) {
    throw new Error(
      `VDAGENT_VM=require, but ${prerequisites.missing.join(", ")} missing (${INSTALL})`,
    );
  }
}

/** Deno 2.9 leaves the sanitizers off by default; here they check that nothing is left running. */
export const SANITIZE = { sanitizeOps: true, sanitizeResources: true, sanitizeExit: true } as const;
