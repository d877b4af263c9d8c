// src/ uses web-platform APIs only: no Deno or Node API, no module but its own.
// Deno checks the TypeScript sources; Node, against the npm build, checks the
// emitted JavaScript and declarations.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";

/** Globals that belong to a runtime, not to the web platform. */
const RUNTIME_GLOBALS = [
  "Deno",
  "Bun",
  "Buffer",
  "process",
  "require",
  "module",
  "exports",
  "global",
  "__dirname",
  "__filename",
  "setImmediate",
  "clearImmediate",
];

/**
 * A source with comments removed and each quoted string replaced by its index
 * in `strings` (`"0"`, `"1"`, …), plus every string literal. Handles nested template literals and regular expression
 * literals after an operator or keyword.
 */
function tokenize(source: string): { code: string; strings: string[] } {
  let code = "";
  const strings: string[] = [];
  /** Brace depth of each template substitution we are inside. */
  const templates: number[] = [];
  let depth = 0;
  let i = 0;
  const readQuoted = (quote: string): string => {
    let text = "";
    for (i++; i < source.length && source[i] !== quote; i++) {
      if (source[i] === "\\") i++;
      text += source[i];
    }
    i++;
    return text;
  };
  /** Reads template text up to a closing backtick or a `${`; returns whether it closed. */
  const readTemplate = (): boolean => {
    let text = "";
    for (; i < source.length; i++) {
      if (source[i] === "\\") {
        text += source[++i];
      } else if (source[i] === "`") {
        i++;
        strings.push(text);
        return true;
      } else if (source[i] === "$" && source[i + 1] === "{") {
        i += 2;
        strings.push(text);
        return false;
      } else {
        text += source[i];
      }
    }
    return true;
  };
  const startsRegExp = () =>
    /(^|[(,=:[!&|?{};+\-*%<>~^]|\b(return|typeof|case|of|in))\s*$/.test(code);
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < source.length && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? source.length : end + 2;
      code += " ";
    } else if (c === "/" && startsRegExp()) {
      let inClass = false;
      for (i++; i < source.length && (inClass || source[i] !== "/"); i++) {
        if (source[i] === "\\") i++;
        else if (source[i] === "[") inClass = true;
        else if (source[i] === "]") inClass = false;
      }
      i++;
      code += "/regexp/";
    } else if (c === "'" || c === '"') {
      code += `"${strings.push(readQuoted(c)) - 1}"`;
    } else if (c === "`") {
      i++;
      code += "``";
      if (!readTemplate()) {
        templates.push(depth);
        code += " ";
      }
    } else if (c === "}" && templates.length > 0 && templates.at(-1) === depth) {
      templates.pop();
      i++;
      if (!readTemplate()) templates.push(depth);
      code += " ";
    } else {
      if (c === "{") depth++;
      if (c === "}") depth--;
      code += c;
      i++;
    }
  }
  return { code, strings };
}

/** Where a source touches a runtime API, one description per use. */
function runtimeApiUses(source: string): string[] {
  const { code, strings } = tokenize(source);
  const uses: string[] = [];
  // src/ imports nothing but its own relative files.
  const specifiers = code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)"(\d+)"/g);
  for (const [, index] of specifiers) {
    const specifier = strings[Number(index)]!;
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) {
      uses.push(`import "${specifier}"`);
    }
  }
  for (const text of strings) {
    if (text.startsWith("node:")) uses.push(`"${text}"`);
    if (RUNTIME_GLOBALS.includes(text)) uses.push(`"${text}"`);
  }
  const names = RUNTIME_GLOBALS.join("|");
  for (const match of code.matchAll(new RegExp(`(^|[^.#\\w$])(${names})\\b`, "g"))) {
    uses.push(match[2]!);
  }
  for (
    const match of code.matchAll(
      new RegExp(`\\b(globalThis|self|window)\\s*\\.\\s*(${names})\\b`, "g"),
    )
  ) {
    uses.push(`${match[1]}.${match[2]}`);
  }
  return uses;
}

async function sourceFiles(dir: URL): Promise<URL[]> {
  const files: URL[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const url = new URL(entry.name + (entry.isDirectory() ? "/" : ""), dir);
    if (entry.isDirectory()) files.push(...await sourceFiles(url));
    else if (/\.(ts|js|mjs)$/.test(entry.name)) files.push(url);
  }
  return files;
}

test("runtimeApiUses catches Deno, Node and CommonJS APIs", () => {
  const planted: [string, string[]][] = [
    [`const data = await Deno.readFile("x");`, ["Deno"]],
    [`import { readFile } from "node:fs/promises";`, [
      'import "node:fs/promises"',
      '"node:fs/promises"',
    ]],
    [`import fs from "fs";`, ['import "fs"']],
    [`export { x } from "npm:left-pad";`, ['import "npm:left-pad"']],
    [`const { Socket } = await import("node:net");`, ['import "node:net"', '"node:net"']],
    [`const b = Buffer.from([1]);`, ["Buffer"]],
    [`if (process.env.DEBUG) log();`, ["process"]],
    [`const x = require("./x.js");`, ["require"]],
    [`const p = globalThis.process;`, ["globalThis.process"]],
    [`const d = globalThis["Deno"];`, ['"Deno"']],
    [`setImmediate(() => {});`, ["setImmediate"]],
    [`const t = \`\${Deno.pid}\`;`, ["Deno"]],
    [`const t = \`a\${\`b\${process.pid}\`}c\`;`, ["process"]],
  ];
  for (const [source, expected] of planted) {
    assert.deepEqual(runtimeApiUses(source).sort(), expected.sort(), source);
  }
});

test("runtimeApiUses ignores comments, strings and properties that only look like runtime APIs", () => {
  const clean = [
    `// Deno.readFile and Buffer are not used here`,
    `/** @example\n * import assert from "node:assert/strict";\n * Deno.exit(0);\n */`,
    `throw new Error("Cannot process a chunk: the Buffer is full");`,
    `const m = \`cannot process \${size} bytes\`;`,
    `this.#process(); options.require; const o = { buffer: 1 };`,
    `const re = /"process"/; const d = a / b / c;`,
    `import { x } from "./x.ts"; export * from "../y.ts"; // import "node:fs"`,
    `export type { T } from "./t.js"; const f = await import("./f.js");`,
  ];
  for (const source of clean) assert.deepEqual(runtimeApiUses(source), [], source);
});

test("src/ touches no Deno or Node API and imports only its own files", async () => {
  const src = new URL("../src/", import.meta.url);
  const files = await sourceFiles(src);
  assert.ok(files.length >= 30, `only ${files.length} files under ${src}`);
  const found: string[] = [];
  // The npm build has mod.js and mod.d.ts instead of mod.ts.
  const mods = ["mod.ts", "mod.js", "mod.d.ts"].map((name) =>
    new URL(`../${name}`, import.meta.url)
  );
  let checked = 0;
  for (const file of [...mods, ...files]) {
    let source: string;
    try {
      source = await readFile(file, "utf8");
    } catch {
      continue;
    }
    checked++;
    for (const use of runtimeApiUses(source)) found.push(`${file.pathname}: ${use}`);
  }
  assert.deepEqual(found, []);
  assert.ok(checked > files.length, "mod.ts (or mod.js) was not checked");
});
