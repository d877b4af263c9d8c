// JSR readiness: `deno publish --dry-run` and the documentation of every
// public symbol, run as `deno` subprocesses (Deno only).
import { test } from "node:test";
import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url);

async function deno(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

/** The README's command. */
const README = "deno publish --dry-run";

test("deno publish --dry-run passes the slow-types check and publishes only the library", async () => {
  // As written on a clean checkout (CI's); a working tree with changes needs --allow-dirty.
  const status = await new Deno.Command("git", { args: ["status", "--porcelain"], cwd: root })
    .output();
  const dirty = new TextDecoder().decode(status.stdout).trim() !== "";
  const [, ...args] = README.split(" ");
  const { code, stdout, stderr } = await deno(...args, ...(dirty ? ["--allow-dirty"] : []));
  const output = stdout + stderr;
  assert.equal(code, 0, output);
  assert.match(output, /Success Dry run complete/);
  // Slow types and other problems are reported as warnings or errors.
  assert.doesNotMatch(output, /^\s*(warning|error)/im);
  const files = [...output.matchAll(/^\s*(file:\/\/\S+) \(/gm)]
    .map((m) => m[1]!.slice(root.href.length));
  for (const file of ["mod.ts", "README.md", "LICENSE", "src/pipeline/websocket_transport.ts"]) {
    assert.ok(files.includes(file), `${file} is not published`);
  }
  assert.deepEqual(
    files.filter((f) => !/^(mod\.ts|deno\.json|README\.md|LICENSE|src\/.+\.ts)$/.test(f)),
    [],
  );
});

test("every public symbol has JSDoc, and every exported value an asserting @example", async () => {
  const lint = await deno("doc", "--lint", "mod.ts");
  assert.equal(lint.code, 0, lint.stdout + lint.stderr);
  const json = await deno("doc", "--json", "mod.ts");
  assert.equal(json.code, 0, json.stderr);
  interface Declaration {
    kind: string;
    jsDoc?: { doc?: string; tags?: { kind: string; doc?: string }[] };
  }
  const { nodes } = JSON.parse(json.stdout) as {
    nodes: Record<string, { symbols: { name: string; declarations: Declaration[] }[] }>;
  };
  const symbols = Object.values(nodes)[0]!.symbols;
  assert.ok(symbols.length > 50, `${symbols.length} symbols`);
  const missing: string[] = [];
  for (const { name, declarations } of symbols) {
    for (const { kind, jsDoc } of declarations) {
      if (!jsDoc?.doc) missing.push(`${name}: no JSDoc`);
      // Deno std's rule: functions and classes carry examples; so do our constants.
      if (kind === "interface" || kind === "typeAlias") continue;
      const examples = (jsDoc?.tags ?? []).filter((tag) => tag.kind === "example");
      if (examples.length === 0) missing.push(`${name}: no @example`);
      for (const example of examples) {
        if (!/```ts\n[\s\S]*assert[\s\S]*```/.test(example.doc ?? "")) {
          missing.push(`${name}: an @example that asserts nothing`);
        }
      }
    }
  }
  assert.deepEqual(missing, []);
});

test("the checkpoint layer meets Deno std's documentation rules: titled examples, examples on class members", async () => {
  // std's _tools/check_docs.ts: each function and class method has @param
  // for every parameter, @returns unless it returns nothing, and a titled
  // @example; each documented class property has a titled @example. Other
  // layers do not all meet it yet; this layer does.
  const json = await deno("doc", "--json", "mod.ts");
  assert.equal(json.code, 0, json.stderr);
  interface JsDoc {
    tags?: { kind: string; name?: string; doc?: string }[];
  }
  interface Param {
    kind: string;
    name?: string;
    left?: { kind: string; name?: string };
  }
  interface TypeDef {
    keyword?: string;
    typeRef?: { typeName: string; typeParams?: TypeDef[] | null };
  }
  interface FunctionDef {
    params: Param[];
    returnType?: TypeDef;
  }
  interface Member {
    name: string;
    kind?: string;
    jsDoc?: JsDoc;
    functionDef?: FunctionDef;
  }
  interface Declaration {
    kind: string;
    location: { filename: string };
    jsDoc?: JsDoc;
    def?: FunctionDef & { properties?: Member[]; methods?: Member[] };
  }
  const { nodes } = JSON.parse(json.stdout) as {
    nodes: Record<string, { symbols: { name: string; declarations: Declaration[] }[] }>;
  };
  const problems: string[] = [];
  const examples = (name: string, jsDoc: JsDoc | undefined) => {
    const tags = (jsDoc?.tags ?? []).filter((tag) => tag.kind === "example");
    if (tags.length === 0) problems.push(`${name}: no @example`);
    for (const tag of tags) {
      if ((tag.doc ?? "").startsWith("```")) problems.push(`${name}: an @example without a title`);
    }
  };
  const functionDocs = (name: string, jsDoc: JsDoc | undefined, def: FunctionDef) => {
    const tags = jsDoc?.tags ?? [];
    for (const param of def.params) {
      const paramName = param.kind === "assign" ? param.left?.name : param.name;
      if (
        paramName !== undefined && !tags.some((t) => t.kind === "param" && t.name === paramName)
      ) {
        problems.push(`${name}: no @param ${paramName}`);
      }
    }
    const returns = def.returnType;
    const isVoid = returns === undefined || returns.keyword === "void" ||
      returns.typeRef?.typeName === "Promise" &&
        returns.typeRef.typeParams?.[0]?.keyword === "void";
    if (!isVoid && !tags.some((t) => t.kind === "return")) problems.push(`${name}: no @returns`);
    examples(name, jsDoc);
  };
  let checked = 0;
  for (const { name, declarations } of Object.values(nodes)[0]!.symbols) {
    for (const declaration of declarations) {
      if (!declaration.location.filename.includes("/src/checkpoint/")) continue;
      checked++;
      if (declaration.kind === "function") {
        functionDocs(name, declaration.jsDoc, declaration.def!);
      } else if (declaration.kind === "class") {
        examples(name, declaration.jsDoc);
        for (const property of declaration.def?.properties ?? []) {
          if (property.jsDoc !== undefined) examples(`${name}.${property.name}`, property.jsDoc);
        }
        for (const method of declaration.def?.methods ?? []) {
          if (method.jsDoc === undefined) continue;
          functionDocs(`${name}.${method.name}()`, method.jsDoc, method.functionDef!);
        }
      }
    }
  }
  assert.ok(checked >= 10, `only ${checked} declarations in src/checkpoint/`);
  assert.deepEqual(problems, []);
});
