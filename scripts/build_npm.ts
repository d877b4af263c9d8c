// deno-lint-ignore-file no-console
/**
 * Builds the npm package into `npm/` and proves it, the way dnt would:
 *
 *     deno task build:npm
 *
 * 1. Empties `npm/`, writes `npm/package.json` from `deno.json` and installs
 *    the dev dependencies pinned in `deno.json` `imports` (TypeScript,
 *    `@types/node`, `playwright-core`).
 * 2. Compiles `mod.ts` and `src/` with `tsc` to ESM JavaScript plus `.d.ts`,
 *    with relative `.js` specifiers in both; copies README and LICENSE.
 * 3. Compiles the `vdagent-relay` command (`scripts/relay/`, its Node entry
 *    `node_main.ts`) against that output into `scripts/relay/*.js` with its
 *    page, the package's `bin`.
 * 4. Compiles the test suite (all of `tests/` but the Deno-only `cli/`,
 *    `interop/` and `vm/`) against that output, with its fixtures.
 * 5. Packs the package, installs the tarball into a temporary project,
 *    imports it by name from an ESM script and from TypeScript files checked
 *    with `tsc --noEmit`, and runs its `vdagent-relay` bin.
 * 6. Runs the whole compiled suite with `node --test`, the browser tests in
 *    headless Chromium included. This is the last thing it prints.
 *
 * It exits non-zero when any step fails.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };

const root = new URL("../", import.meta.url);
const out = new URL("npm/", root);
const outPath = out.pathname;

/** npm's name for the package; JSR's is `deno.json` `name`. */
const NPM_NAME = "vdagent-streams";
/** The package's source repository (to be confirmed: no remote is configured yet). */
const REPOSITORY = "https://github.com/vdagent/streams";
/** The relay command's name, and its Node entry in the package. */
const RELAY_BIN = "vdagent-relay";
const RELAY_MAIN = "scripts/relay/node_main.js";
/** Test directories that need Deno (subprocesses of `deno`, the real agent). */
const DENO_ONLY_TESTS = ["cli", "interop", "vm"];
/** Examples that tests under Node run or import (the others use Deno APIs). */
const NODE_EXAMPLES = ["relay_node.mjs", "relay_durable_object.ts"];
/** Dev dependencies, pinned in `deno.json` `imports` as `npm:name@version`. */
const DEV_DEPENDENCIES = ["typescript", "@types/node", "playwright-core"];

function step(text: string): void {
  console.error(`build:npm: ${text}`);
}

async function exec(cmd: string, args: string[], cwd: string | URL = root): Promise<number> {
  const child = new Deno.Command(cmd, { args, cwd, stdin: "null" }).spawn();
  return (await child.status).code;
}

async function must(cmd: string, args: string[], cwd: string | URL = root): Promise<void> {
  const code = await exec(cmd, args, cwd);
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with code ${code}`);
}

/** `name` → exact version, from `deno.json` `imports` entries `npm:name@version`. */
function pinnedVersions(): Record<string, string> {
  const imports = denoJson.imports as Record<string, string>;
  const pins: Record<string, string> = {};
  for (const name of DEV_DEPENDENCIES) {
    const match = imports[name]?.match(/^npm:(@?[^@]+)@(\d+\.\d+\.\d+)$/);
    if (!match || match[1] !== name) {
      throw new Error(`deno.json imports must pin "${name}" as "npm:${name}@x.y.z"`);
    }
    pins[name] = match[2]!;
  }
  return pins;
}

function packageJson(): Record<string, unknown> {
  return {
    name: NPM_NAME,
    version: denoJson.version,
    description: "The SPICE vdagent protocol as composable Web Streams: " +
      "the host side of QEMU's qemu-vdagent and the guest agent's side",
    license: denoJson.license,
    repository: { type: "git", url: `git+${REPOSITORY}.git` },
    bugs: { url: `${REPOSITORY}/issues` },
    homepage: `${REPOSITORY}#readme`,
    keywords: ["spice", "vdagent", "qemu", "virtio-serial", "clipboard", "web-streams"],
    type: "module",
    exports: {
      ".": { types: "./mod.d.ts", default: "./mod.js" },
      "./package.json": "./package.json",
    },
    types: "./mod.d.ts",
    files: [
      "mod.js",
      "mod.d.ts",
      "src/**/*.js",
      "src/**/*.d.ts",
      "scripts/relay/*.js",
      "scripts/relay/page/*",
    ],
    bin: { [RELAY_BIN]: RELAY_MAIN },
    sideEffects: false,
    engines: { node: ">=20" },
    devDependencies: pinnedVersions(),
  };
}

/** The strict options of `deno.json`, for every `tsc` run. */
const strictOptions = denoJson.compilerOptions;

/** `tsc` options for the library: ESM, declarations, web-platform types only. */
function libraryConfig(): Record<string, unknown> {
  return {
    compilerOptions: {
      ...strictOptions,
      target: "ES2022",
      module: "ES2022",
      moduleResolution: "Bundler",
      rewriteRelativeImportExtensions: true,
      isolatedModules: true,
      declaration: true,
      // No runtime's types: a Deno or Node API in src/ fails to compile.
      lib: ["ES2022", "DOM", "DOM.Iterable", "DOM.AsyncIterable"],
      types: [],
      rootDir: "..",
      outDir: ".",
      noEmitOnError: true,
      newLine: "lf",
    },
    files: ["../mod.ts", "web_platform.d.ts"],
    include: ["../src/**/*.ts"],
  };
}

/** Compiler options for code that runs on Node: its module rules and types. */
const nodeOptions = {
  ...strictOptions,
  target: "ES2022",
  module: "NodeNext",
  moduleResolution: "NodeNext",
  isolatedModules: true,
  // Node's types: TypeScript 5.9's DOM types lack ReadableStream.from.
  lib: ["ES2022"],
  types: ["node"],
  noEmitOnError: true,
  newLine: "lf",
};

/** `tsc` options for the staged tests: Node's module rules, checked against the built `.d.ts`. */
function testConfig(): Record<string, unknown> {
  return {
    compilerOptions: {
      ...nodeOptions,
      // playwright-core's declarations need the DOM's; the tarball check
      // below checks the package's own declarations.
      skipLibCheck: true,
    },
    include: ["./**/*.ts"],
  };
}

/**
 * What TypeScript 5.9's DOM types lack and the runtimes have (Deno, Node 20,
 * Chromium): a transformer's \`cancel\` (Streams spec, 2023). For the library
 * compile only; no emitted declaration names it.
 */
const WEB_PLATFORM_D_TS = `interface Transformer<I = any, O = any> {
  cancel?: (reason: any) => void | PromiseLike<void>;
}
`;

const RELATIVE_TS = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.{1,2}\/[^"'\n]*?)\.ts\2/g;

/** Rewrites relative `.ts` specifiers of imports and exports to `.js`. */
function toJsSpecifiers(source: string): string {
  return source.replace(RELATIVE_TS, "$1$2$3.js$2");
}

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* walk(url);
    else if (entry.isFile) yield url;
  }
}

/** `.d.ts` keep `.ts` specifiers (microsoft/TypeScript#61037); npm names the package differently. */
async function fixEmitted(): Promise<number> {
  let files = 0;
  for await (const url of walk(out)) {
    const path = url.pathname;
    if (path.startsWith(`${outPath}node_modules/`)) continue;
    if (!path.endsWith(".js") && !path.endsWith(".d.ts")) continue;
    const text = await Deno.readTextFile(url);
    const fixed = toJsSpecifiers(text).replaceAll('"@vdagent/streams"', `"${NPM_NAME}"`);
    if (fixed !== text) await Deno.writeTextFile(url, fixed);
    files++;
  }
  return files;
}

/**
 * Stages `scripts/relay/` (web-platform modules and the Node entry) in `npm/scripts/relay/`
 * with `.js` specifiers, compiles it against the built library with Node's types, leaves the
 * `.js` and `.d.ts` files and the page, and makes the bin executable.
 */
async function buildRelay(tsc: string): Promise<number> {
  const source = new URL("scripts/relay/", root);
  const target = new URL("scripts/relay/", out);
  await Deno.mkdir(new URL("page/", target), { recursive: true });
  const staged: string[] = [];
  for await (const entry of Deno.readDir(source)) {
    if (entry.isFile && entry.name.endsWith(".ts")) {
      const text = await Deno.readTextFile(new URL(entry.name, source));
      await Deno.writeTextFile(new URL(entry.name, target), toJsSpecifiers(text));
      staged.push(entry.name);
    }
  }
  for await (const entry of Deno.readDir(new URL("page/", source))) {
    await Deno.copyFile(
      new URL(`page/${entry.name}`, source),
      new URL(`page/${entry.name}`, target),
    );
  }
  const config = new URL("tsconfig.json", target);
  await Deno.writeTextFile(config, JSON.stringify(relayConfig(staged), null, 2));
  await must("node", [tsc, "-p", config.pathname], out);
  await Deno.remove(config);
  for (const name of staged) await Deno.remove(new URL(name, target));
  await Deno.chmod(new URL(RELAY_MAIN, out), 0o755);
  return staged.length;
}

/** `tsc` options for the relay command: Node's module rules and types, emitted in place. */
function relayConfig(files: string[]): Record<string, unknown> {
  return {
    compilerOptions: {
      ...nodeOptions,
      typeRoots: ["../../node_modules/@types"],
      // For the Node tests that import the relay's modules; only the .js files are packed.
      declaration: true,
    },
    files,
  };
}

/** Copies `tests/` (but the Deno-only directories) to `npm/tests/` with `.js` specifiers. */
async function stageTests(): Promise<string[]> {
  const tests = new URL("tests/", root);
  const testFiles: string[] = [];
  for await (const url of walk(tests)) {
    const rel = url.pathname.slice(tests.pathname.length);
    if (DENO_ONLY_TESTS.some((dir) => rel.startsWith(`${dir}/`))) continue;
    const target = new URL(`tests/${rel}`, out);
    await Deno.mkdir(new URL("./", target), { recursive: true });
    if (rel.endsWith(".ts")) {
      await Deno.writeTextFile(target, toJsSpecifiers(await Deno.readTextFile(url)));
      if (rel.endsWith("_test.ts")) testFiles.push(`tests/${rel.replace(/\.ts$/, ".js")}`);
    } else {
      await Deno.copyFile(url, target);
    }
  }
  // Examples that tests run with Node resolve the package by its own name from
  // here; TypeScript ones are compiled with the tests.
  const examples = new URL("scripts/examples/", out);
  await Deno.mkdir(examples, { recursive: true });
  for (const name of NODE_EXAMPLES) {
    const source = await Deno.readTextFile(new URL(`scripts/examples/${name}`, root));
    await Deno.writeTextFile(
      new URL(name, examples),
      toJsSpecifiers(source).replaceAll('"@vdagent/streams"', `"${NPM_NAME}"`),
    );
  }
  return testFiles.sort();
}

const CONSUMER_ESM = `// Imports the installed tarball by name and runs a clipboard round trip.
import assert from "node:assert/strict";
import {
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  Selection,
  webSocketTransport,
} from "${NPM_NAME}";

const resolved = import.meta.resolve("${NPM_NAME}");
assert.ok(resolved.endsWith("/node_modules/${NPM_NAME}/mod.js"), resolved);
assert.equal(typeof webSocketTransport, "function");
await assert.rejects(import("${NPM_NAME}/src/wire/_chunk_reader.js"), {
  code: "ERR_PACKAGE_PATH_NOT_EXPORTED",
});

const toGuest = new TransformStream();
const toHost = new TransformStream();
let offered;
const grabbed = new Promise((resolve) => offered = resolve);
const host = createHostPipeline(
  { readable: toHost.readable, writable: toGuest.writable },
  { clipboard: { onGuestGrab: () => offered() } },
);
const guest = createGuestPipeline(
  { readable: toGuest.readable, writable: toHost.writable },
  { clipboard: { provide: () => new TextEncoder().encode("from the tarball") } },
);
guest.session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
await grabbed;
const data = await host.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT);
assert.equal(new TextDecoder().decode(data), "from the tarball");
await host.close();
await guest.done;
console.log("consumer.mjs: imported ${NPM_NAME} by name and pasted:", new TextDecoder().decode(data));
`;

const CONSUMER_TS = `// Type-checks the installed tarball's declarations, imported by name.
import {
  ClipboardType,
  createHostPipeline,
  decodeMessage,
  type HostPipeline,
  type MessagePayload,
  Selection,
  type Transport,
  VdagentProtocolError,
  webSocketTransport,
} from "${NPM_NAME}";

declare const transport: Transport;
declare const socket: WebSocket;
const relay: HostPipeline = createHostPipeline(transport, { chunkSize: 1024 });
const done: Promise<void> = relay.done;
const fromSocket: Transport = webSocketTransport(socket);
const requested: Promise<Uint8Array> = relay.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT);
declare const payload: MessagePayload;
const kind: string = payload.kind;
const error = new VdagentProtocolError("TRUNCATED", "cut");
const code: "TRUNCATED" | string = error.code;
// The declarations are real types, not \`any\`: each line below must fail.
// @ts-expect-error chunkSize is a number
createHostPipeline(transport, { chunkSize: "big" });
// @ts-expect-error decodeMessage takes an AgentMessage
decodeMessage(new Uint8Array(4));
export { code, done, fromSocket, kind, requested };
`;

/**
 * Consumers' compiler settings: a Node project, a Node project that loads the DOM library too
 * (whose streams are not Node's), and a browser project without Node's types. The Node projects
 * check the README's Node example as well.
 */
const CONSUMERS = {
  node: { lib: ["ES2022"], node: true },
  "node-dom": { lib: ["ES2022", "DOM", "DOM.Iterable", "DOM.AsyncIterable"], node: true },
  browser: { lib: ["ES2022", "DOM", "DOM.Iterable", "DOM.AsyncIterable"], node: false },
};

function consumerConfig(
  typeRoots: string,
  consumer: { lib: string[]; node: boolean },
): Record<string, unknown> {
  return {
    compilerOptions: {
      strict: true,
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: consumer.lib,
      types: consumer.node ? ["node"] : [],
      typeRoots: [typeRoots],
      skipLibCheck: false,
      noEmit: true,
    },
    files: consumer.node ? ["consumer.ts", "node_example.ts"] : ["consumer.ts"],
  };
}

/**
 * `npm publish --dry-run`: npm normalizes the manifest as it publishes, and drops what it finds
 * invalid with only a warning (a `bin` path it did not like was dropped so). Any warning but the
 * one for not being logged in fails the build.
 */
async function checkPublish(): Promise<void> {
  const [npm, ...args] = README.publish.split(" ");
  const result = await new Deno.Command(npm!, {
    args,
    cwd: out,
    stdin: "null",
  }).output();
  const output = new TextDecoder().decode(result.stderr) + new TextDecoder().decode(result.stdout);
  const warnings = output.split("\n")
    .filter((line) => /^npm warn/i.test(line) && !/requires you to be logged in/.test(line));
  if (result.code !== 0 || warnings.length > 0) {
    throw new Error(`npm publish --dry-run (exit ${result.code}):\n${warnings.join("\n")}`);
  }
  step("npm publish --dry-run: no warnings");
}

async function checkTarball(tsc: string): Promise<void> {
  await checkPublish();
  const tmp = await Deno.makeTempDir({ prefix: "vdagent-streams-consumer-" });
  try {
    const packOut = new TextDecoder().decode(
      (await new Deno.Command("npm", {
        args: ["pack", "--silent", "--pack-destination", tmp],
        cwd: out,
        stdin: "null",
        stderr: "inherit",
      }).output()).stdout,
    ).trim().split("\n").at(-1)!;
    const tarball = `${tmp}/${packOut}`;
    await Deno.stat(tarball);
    step(`packed ${packOut}`);
    const project = `${tmp}/project`;
    await Deno.mkdir(project);
    await Deno.writeTextFile(
      `${project}/package.json`,
      JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2),
    );
    await must("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      tarball,
    ], project);
    await Deno.writeTextFile(`${project}/consumer.mjs`, CONSUMER_ESM);
    await must("node", ["consumer.mjs"], project);
    // The bin, as the README runs it from the installed package.
    const [npx, ...helpArgs] = README.help.split(" ");
    const help = await new Deno.Command(npx!, { args: helpArgs, cwd: project, stdin: "null" })
      .output();
    const usage = new TextDecoder().decode(help.stdout);
    if (help.code !== 0 || !usage.startsWith(`usage: ${RELAY_BIN} --connect`)) {
      throw new Error(`${README.help} exited with ${help.code}: ${usage}`);
    }
    step(`${README.help} runs the installed bin`);
    await checkNpxPackage(project, tmp);
    await checkInstallFromClone(tmp);
    await Deno.writeTextFile(`${project}/consumer.ts`, CONSUMER_TS);
    // The README's Node example, as a TypeScript user would write it.
    await Deno.copyFile(
      new URL("scripts/examples/relay_node.mjs", root),
      `${project}/node_example.ts`,
    );
    const typeRoots = `${outPath}node_modules/@types`;
    for (const [name, consumer] of Object.entries(CONSUMERS)) {
      const config = `tsconfig.${name}.json`;
      await Deno.writeTextFile(
        `${project}/${config}`,
        JSON.stringify(consumerConfig(typeRoots, consumer), null, 2),
      );
      await must("node", [tsc, "--noEmit", "-p", config], project);
      step(`the consumer code type-checks against the tarball (${config})`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The README's npm commands, run here as written (SOCKET: a socket made here). */
const README = {
  publish: "npm publish --dry-run",
  help: "npx vdagent-relay --help",
  npxPackage: "npx -p vdagent-streams vdagent-relay --connect unix:SOCKET",
  installFromClone: "npm install ./npm",
};

/**
 * `npx -p vdagent-streams vdagent-relay --connect unix:SOCKET` in a project that installed the
 * package: the relay connects and announces its capabilities; when the guest's side closes, it
 * exits 3 with its `exit` event.
 */
async function checkNpxPackage(project: string, tmp: string): Promise<void> {
  const path = `${tmp}/agent.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const [npx, ...args] = README.npxPackage.replace("SOCKET", path).split(" ");
  const child = new Deno.Command(npx!, {
    args,
    cwd: project,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  try {
    const conn = await listener.accept();
    // A VDI chunk header (port, size), then the message's (protocol, type, ...).
    const head = new Uint8Array(16);
    let got = 0;
    while (got < head.length) {
      const n = await conn.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
    const view = new DataView(head.buffer);
    if (got < 16 || view.getUint32(0, true) !== 1 || view.getUint32(12, true) !== 6) {
      throw new Error(`${README.npxPackage}: no ANNOUNCE_CAPABILITIES on the port`);
    }
    conn.close();
  } finally {
    listener.close();
  }
  const { code, stdout, stderr } = await output;
  const last = new TextDecoder().decode(stdout).trim().split("\n").at(-1) ?? "";
  if (code !== 3 || JSON.parse(last).event !== "exit") {
    throw new Error(
      `${README.npxPackage} exited with ${code}: ${last}\n${new TextDecoder().decode(stderr)}`,
    );
  }
  step(`${README.npxPackage} runs the installed package's bin`);
}

/** `npm install ./npm` from a clone (here, a project holding the build as npm/) imports by name. */
async function checkInstallFromClone(tmp: string): Promise<void> {
  const clone = `${tmp}/clone`;
  await Deno.mkdir(clone);
  await Deno.writeTextFile(
    `${clone}/package.json`,
    JSON.stringify({ name: "clone-user", private: true, type: "module" }, null, 2),
  );
  await Deno.symlink(outPath.replace(/\/$/, ""), `${clone}/npm`);
  const [npm, ...args] = README.installFromClone.split(" ");
  await must(npm!, args, clone);
  // npm links a directory it installs: the package resolves to the build itself.
  const linked = CONSUMER_ESM.replace(
    `node_modules/${NPM_NAME}/mod.js`,
    `${outPath.split("/").filter(Boolean).at(-1)}/mod.js`,
  );
  await Deno.writeTextFile(`${clone}/consumer.mjs`, linked);
  await must("node", ["consumer.mjs"], clone);
  step(`${README.installFromClone}, then an import by name, works`);
}

async function main(): Promise<number> {
  await Deno.remove(out, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  await Deno.mkdir(out);
  await Deno.writeTextFile(
    new URL("package.json", out),
    JSON.stringify(packageJson(), null, 2) + "\n",
  );
  step("installing dev dependencies");
  await must("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], out);
  const tsc = `${outPath}node_modules/typescript/bin/tsc`;

  step("compiling mod.ts and src/");
  await Deno.writeTextFile(
    new URL("tsconfig.lib.json", out),
    JSON.stringify(libraryConfig(), null, 2),
  );
  await Deno.writeTextFile(new URL("web_platform.d.ts", out), WEB_PLATFORM_D_TS);
  await must("node", [tsc, "-p", "tsconfig.lib.json"], out);
  const emitted = await fixEmitted();
  const readme = await Deno.readTextFile(new URL("README.md", root));
  await Deno.writeTextFile(
    new URL("README.md", out),
    readme.replaceAll('"@vdagent/streams"', `"${NPM_NAME}"`),
  );
  await Deno.copyFile(new URL("LICENSE", root), new URL("LICENSE", out));
  step(`emitted ${emitted} .js and .d.ts files`);

  step(`compiling ${RELAY_BIN} (${await buildRelay(tsc)} modules) against the build`);

  step("compiling the test suite against the build");
  const testFiles = await stageTests();
  await Deno.writeTextFile(
    new URL("tests/tsconfig.json", out),
    JSON.stringify(testConfig(), null, 2),
  );
  await must("node", [tsc, "-p", "tests/tsconfig.json"], out);

  step("packing and importing the tarball by name");
  await checkTarball(tsc);

  step(`running ${testFiles.length} test files with node --test (${await nodeVersion()})`);
  return await exec("node", ["--test", ...testFiles], out);
}

async function nodeVersion(): Promise<string> {
  const { stdout } = await new Deno.Command("node", { args: ["--version"] }).output();
  return `Node ${new TextDecoder().decode(stdout).trim()}`;
}

try {
  Deno.exit(await main());
} catch (error) {
  console.error(`build:npm: ${error instanceof Error ? error.message : error}`);
  Deno.exit(1);
}
