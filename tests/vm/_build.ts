// The real-VM suite's guest image: built by _build_guest.sh, cached outside the repository, rebuilt
// when its inputs change. See the module documentation of _vm.ts for what is in it. Deno APIs
// only.
//
// Cache layout (VDAGENT_VM_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/vdagent-streams/vm):
//
//   debs/linux-image-<abi>-amd64_<version>_amd64.deb   apt-get download, once (the newest cached
//                                                     one is used: remove it to take apt's next)
//   debs/busybox-static_<version>_amd64.deb            only if busybox-static is not installed
//   guest-<hash>/{vmlinux|vmlinuz, initrd.cpio, info.json, inputs.txt}
//
// <hash> covers _build_guest.sh, _guest_init.sh, the kernel package's file name, the busybox used,
// and the build's manifest (size and mtime of every binary and library copied into the guest, and
// of the data files), so an upgrade of spice-vdagent, Xvfb or a library makes a new image. A build
// goes to a temp dir that is renamed into place: two test runs that build at once both succeed,
// and one of the two images is kept. A download goes to a temp dir that is renamed too.

const HERE = decodeURIComponent(new URL(".", import.meta.url).pathname);
const BUILD_SCRIPT = `${HERE}_build_guest.sh`;
const INIT_SCRIPT = `${HERE}_guest_init.sh`;

/** A built guest, ready to boot. */
export interface GuestImage {
  /** The image's directory in the cache. */
  dir: string;
  /** The kernel QEMU boots: the uncompressed ELF (PVH entry), or the bzImage as a fallback. */
  kernel: string;
  kind: "vmlinux" | "vmlinuz";
  initrd: string;
  /** E.g. `"6.1.0-57-amd64"`. */
  kernelVersion: string;
  /** Whether this process built it (false: it was in the cache). */
  built: boolean;
  /** Milliseconds spent here: the input check, plus download and build if any. */
  ms: number;
}

/** The cache directory (not created). */
export function cacheDir(): string {
  const env = Deno.env.get("VDAGENT_VM_CACHE");
  if (env !== undefined && env !== "") return env;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const base = xdg !== undefined && xdg !== "" ? xdg : `${Deno.env.get("HOME") ?? "/tmp"}/.cache`;
  return `${base}/vdagent-streams/vm`;
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], cwd?: string): Promise<Output> {
  const out = await new Deno.Command(cmd, {
    args,
    ...(cwd === undefined ? {} : { cwd }),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { LC_ALL: "C" },
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

function runSync(cmd: string, args: string[]): Output | undefined {
  try {
    const out = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { LC_ALL: "C" },
    }).outputSync();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } catch {
    return undefined; // not installed
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** The newest cached .deb whose name starts with `prefix` (by name). */
function cachedDeb(prefix: string): string | undefined {
  const dir = `${cacheDir()}/debs`;
  const names = listDir(dir).filter((n) => n.startsWith(prefix) && n.endsWith(".deb"));
  const name = names.at(-1);
  return name === undefined ? undefined : `${dir}/${name}`;
}

/** The kernel package `linux-image-amd64` depends on, from apt's lists (no network). */
function kernelPackage(): string | undefined {
  const out = runSync("apt-cache", ["depends", "linux-image-amd64"]);
  if (out === undefined || out.code !== 0) return undefined;
  return /Depends: (linux-image-[0-9][^\s]*-amd64)\b/.exec(out.stdout)?.[1];
}

/** busybox-static's version if it is installed (then /bin/busybox is static). */
function installedBusybox(): { path: string; version: string } | undefined {
  const out = runSync("dpkg-query", ["-W", "-f", "${Status} ${Version}", "busybox-static"]);
  const m = out === undefined ? null : /^install ok installed (\S+)$/.exec(out.stdout.trim());
  if (m === null) return undefined;
  for (const path of ["/usr/bin/busybox", "/bin/busybox"]) {
    if (exists(path)) return { path, version: m[1]! };
  }
  return undefined;
}

/** Where the kernel and busybox come from, without downloading anything. */
export interface ImageSources {
  /** A kernel .deb on disk, or the package apt-get would download, or `undefined`. */
  kernel: { deb: string } | { package: string } | undefined;
  busybox: { binary: string; version: string } | { deb: string } | { package: string } | undefined;
}

let sources: ImageSources | undefined;

/**
 * Finds the kernel and busybox sources (env, cache, installed packages, apt's lists), once per
 * process unless `fresh`.
 */
export function imageSources(fresh = false): ImageSources {
  if (fresh || sources === undefined) sources = findSources();
  return sources;
}

function findSources(): ImageSources {
  let kernel: ImageSources["kernel"];
  const envKernel = Deno.env.get("VDAGENT_VM_KERNEL_DEB");
  if (envKernel !== undefined && envKernel !== "") {
    kernel = exists(envKernel) ? { deb: envKernel } : undefined;
  } else {
    // A cached kernel first: apt-cache takes a second here (no pkgcache.bin), and the kernel
    // need not follow apt's lists (remove it from debs/ to take apt's next one).
    const cached = cachedDeb("linux-image-");
    const pkg = cached === undefined ? kernelPackage() : undefined;
    kernel = cached !== undefined
      ? { deb: cached }
      : pkg !== undefined
      ? { package: pkg }
      : undefined;
  }
  let busybox: ImageSources["busybox"];
  const envBusybox = Deno.env.get("VDAGENT_VM_BUSYBOX");
  const installed = installedBusybox();
  if (envBusybox !== undefined && envBusybox !== "") {
    busybox = !exists(envBusybox)
      ? undefined
      : envBusybox.endsWith(".deb")
      ? { deb: envBusybox }
      : { binary: envBusybox, version: "VDAGENT_VM_BUSYBOX" };
  } else if (installed !== undefined) {
    busybox = { binary: installed.path, version: installed.version };
  } else {
    const cached = cachedDeb("busybox-static_");
    busybox = cached !== undefined
      ? { deb: cached }
      : runSync("apt-cache", ["show", "busybox-static"])?.code === 0
      ? { package: "busybox-static" }
      : undefined;
  }
  return { kernel, busybox };
}

/** `apt-get download PACKAGE` into the cache, through a temp dir renamed into place. */
async function download(pkg: string): Promise<string> {
  const debs = `${cacheDir()}/debs`;
  await Deno.mkdir(debs, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: debs, prefix: ".download-" });
  try {
    const out = await run("apt-get", ["download", pkg], tmp);
    const name = listDir(tmp).find((n) => n.endsWith(".deb"));
    if (out.code !== 0 || name === undefined) {
      throw new Error(
        `apt-get download ${pkg} failed (exit ${out.code}): ${out.stderr.trim() || out.stdout}`,
      );
    }
    await Deno.rename(`${tmp}/${name}`, `${debs}/${name}`);
    return `${debs}/${name}`;
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

async function sha256Hex(...parts: (string | Uint8Array)[]): Promise<string> {
  const encoder = new TextEncoder();
  const bytes = parts.map((p) => typeof p === "string" ? encoder.encode(p) : p);
  const all = new Uint8Array(bytes.reduce((n, b) => n + b.length + 1, 0));
  let at = 0;
  for (const b of bytes) {
    all.set(b, at);
    at += b.length + 1; // a zero byte between parts
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function readImage(dir: string, built: boolean, t0: number): Promise<GuestImage> {
  const info = JSON.parse(await Deno.readTextFile(`${dir}/info.json`)) as {
    kernelVersion: string;
    kernel: "vmlinux" | "vmlinuz";
  };
  return {
    dir,
    kernel: `${dir}/${info.kernel}`,
    kind: info.kernel,
    initrd: `${dir}/initrd.cpio`,
    kernelVersion: info.kernelVersion,
    built,
    ms: performance.now() - t0,
  };
}

/** Removes other images and leftover temp dirs untouched for an hour (another run may use them). */
async function prune(keep: string): Promise<void> {
  const root = cacheDir();
  const hourAgo = Date.now() - 3600_000;
  for (const name of listDir(root)) {
    if (!/^(guest-|\.build-)/.test(name) || `${root}/${name}` === keep) continue;
    try {
      const st = await Deno.stat(`${root}/${name}`);
      if ((st.mtime?.getTime() ?? 0) < hourAgo) {
        await Deno.remove(`${root}/${name}`, { recursive: true });
      }
    } catch { /* gone */ }
  }
}

async function buildImage(log: (line: string) => void): Promise<GuestImage> {
  const t0 = performance.now();
  const root = cacheDir();
  const sources = imageSources(true);
  if (sources.kernel === undefined) {
    throw new Error(
      "No kernel for the guest: apt-cache knows no linux-image-amd64 (apt-get update?), none is " +
        `cached in ${root}/debs, and VDAGENT_VM_KERNEL_DEB is not set`,
    );
  }
  if (sources.busybox === undefined) {
    throw new Error(
      "No busybox for the guest: busybox-static is not installed, not cached, unknown to apt, " +
        "and VDAGENT_VM_BUSYBOX is not set",
    );
  }
  let kernelDeb: string;
  if ("deb" in sources.kernel) {
    kernelDeb = sources.kernel.deb;
  } else {
    log(`downloading ${sources.kernel.package} (apt-get download, once)`);
    kernelDeb = await download(sources.kernel.package);
  }
  let busybox: string;
  let busyboxId: string;
  if ("binary" in sources.busybox) {
    busybox = sources.busybox.binary;
    busyboxId = `busybox-static ${sources.busybox.version}`;
  } else if ("deb" in sources.busybox) {
    busybox = sources.busybox.deb;
    busyboxId = busybox.slice(busybox.lastIndexOf("/") + 1);
  } else {
    log("downloading busybox-static (apt-get download, once)");
    busybox = await download(sources.busybox.package);
    busyboxId = busybox.slice(busybox.lastIndexOf("/") + 1);
  }

  const manifest = await run("bash", [BUILD_SCRIPT, "manifest"]);
  if (manifest.code !== 0) throw new Error(`_build_guest.sh manifest failed: ${manifest.stderr}`);
  const inputs = [
    `kernel ${kernelDeb.slice(kernelDeb.lastIndexOf("/") + 1)}`,
    `busybox ${busyboxId}`,
    manifest.stdout,
  ].join("\n");
  const hash = await sha256Hex(
    await Deno.readFile(BUILD_SCRIPT),
    await Deno.readFile(INIT_SCRIPT),
    inputs,
  );
  const dir = `${root}/guest-${hash.slice(0, 16)}`;
  if (exists(`${dir}/info.json`)) return await readImage(dir, false, t0);

  await Deno.mkdir(root, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: root, prefix: ".build-" });
  try {
    log(`building the guest image in ${dir}`);
    const out = await run("bash", [BUILD_SCRIPT, "build", `${tmp}/out`, kernelDeb, busybox]);
    if (out.code !== 0) {
      throw new Error(
        `_build_guest.sh build failed (exit ${out.code}):\n${out.stderr}${out.stdout}`,
      );
    }
    await Deno.writeTextFile(`${tmp}/out/inputs.txt`, inputs);
    try {
      await Deno.rename(`${tmp}/out`, dir);
    } catch (error) {
      // another run renamed its build into place first: use that one
      if (!exists(`${dir}/info.json`)) throw error;
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  await prune(dir);
  return await readImage(dir, true, t0);
}

let pending: Promise<GuestImage> | undefined;

/**
 * The guest image, from the cache or built now (once per process; concurrent callers share the
 * build). `log` hears one line per download or build.
 */
export function ensureGuestImage(
  options: { log?: (line: string) => void } = {},
): Promise<GuestImage> {
  const log = options.log ?? ((line: string) => {
    // deno-lint-ignore no-console
    console.error(`[vm] ${line}`);
  });
  pending ??= buildImage(log);
  pending.catch(() => (pending = undefined)); // a failed build is tried again by the next caller
  return pending;
}
