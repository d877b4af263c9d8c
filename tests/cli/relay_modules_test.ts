// The relay's web-platform modules (scripts/relay/): base64, MIME types, the file list, the
// command line, the state file and the web front's admission rules. Deno only, like the relay's other
// tests; the Node bin runs the same modules in tests/node/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClipboardType, encodeCheckpoint } from "../../mod.ts";
import { parseRelayArgs, UsageError } from "../../scripts/relay/args.ts";
import { decodeBase64, encodeBase64 } from "../../scripts/relay/base64.ts";
import {
  decodeFileList,
  encodeFileList,
  mimeOfType,
  pathsToUriList,
  typeOfMime,
  uriListToPaths,
} from "../../scripts/relay/mime.ts";
import { parseCommand } from "../../scripts/relay/protocol.ts";
import {
  decodeStateFile,
  encodeStateFile,
  importStateKey,
  StateFileError,
} from "../../scripts/relay/state_file.ts";
import { admitRequest, isLoopback } from "../../scripts/relay/web.ts";
import { prng, randBytes } from "../_helpers.ts";

test("encodeBase64 and decodeBase64 agree with btoa and atob at every length up to 300", () => {
  const bytes = randBytes(prng(5), 300);
  for (let n = 0; n <= 300; n++) {
    const part = bytes.subarray(0, n);
    const reference = btoa(String.fromCharCode(...part));
    assert.equal(encodeBase64(part), reference, `length ${n}`);
    assert.deepEqual(decodeBase64(reference), part, `length ${n}`);
    assert.deepEqual(decodeBase64(reference.replace(/=+$/, "")), part, `unpadded, length ${n}`);
  }
});

test("decodeBase64 refuses what is not base64 with a SyntaxError naming the place", () => {
  assert.throws(() => decodeBase64("AB$D"), /character "\$" at 2/);
  assert.throws(() => decodeBase64("ABCDE"), /length 5 cannot be base64/);
  assert.throws(() => decodeBase64("AB=C"), SyntaxError);
  assert.throws(() => decodeBase64("QUJD\n"), SyntaxError);
  assert.throws(() => decodeBase64("é"), SyntaxError);
});

test("typeOfMime maps the six MIME types, their aliases and text/plain's charset", () => {
  const cases: [string, number][] = [
    ["text/plain;charset=utf-8", ClipboardType.UTF8_TEXT],
    ["text/plain", ClipboardType.UTF8_TEXT],
    ['Text/Plain; Charset="UTF-8"', ClipboardType.UTF8_TEXT],
    ["image/png", ClipboardType.IMAGE_PNG],
    ["image/bmp", ClipboardType.IMAGE_BMP],
    ["image/x-ms-bmp", ClipboardType.IMAGE_BMP],
    ["image/tiff", ClipboardType.IMAGE_TIFF],
    ["image/jpeg", ClipboardType.IMAGE_JPG],
    ["image/jpg", ClipboardType.IMAGE_JPG],
    ["text/uri-list", ClipboardType.FILE_LIST],
  ];
  for (const [mime, type] of cases) assert.deepEqual(typeOfMime(mime), { type }, mime);
  assert.match((typeOfMime("text/plain;charset=iso-8859-1") as { error: string }).error, /UTF-8/);
  assert.match((typeOfMime("image/gif") as { error: string }).error, /unsupported MIME type/);
  for (let type = 1; type <= 6; type++) {
    assert.deepEqual(typeOfMime(mimeOfType(type)), { type }, `round trip of ${type}`);
  }
  assert.equal(mimeOfType(9), "application/x-vdagent-type-9");
});

test("FILE_LIST and text/uri-list convert both ways, percent-encoding paths", () => {
  const list = { action: "cut" as const, paths: ["/a b/c.txt", "/été/#1?.pdf", "/x"] };
  const bytes = encodeFileList(list);
  assert.equal(new TextDecoder().decode(bytes), "cut\0/a b/c.txt\0/été/#1?.pdf\0/x");
  assert.deepEqual(decodeFileList(bytes), list);
  assert.deepEqual(decodeFileList(new TextEncoder().encode("copy\0/x\0")), {
    action: "copy",
    paths: ["/x"],
  });
  const uris = pathsToUriList(list.paths);
  assert.equal(uris, "file:///a%20b/c.txt\r\nfile:///%C3%A9t%C3%A9/%231%3F.pdf\r\nfile:///x\r\n");
  assert.deepEqual(uriListToPaths(`# comment\n${uris}`), list.paths);
  assert.deepEqual(uriListToPaths("file://localhost/y\n"), ["/y"]);
  assert.ok("error" in decodeFileList(new TextEncoder().encode("move\0/x")));
  assert.ok("error" in decodeFileList(new Uint8Array([0xff])));
  for (
    const bad of [
      "https://example.com/x",
      "file://host/x",
      "file:relative",
      "# only",
      "file:///%zz",
    ]
  ) {
    assert.ok("error" in (uriListToPaths(bad) as object), bad);
  }
});

test("parseCommand defaults to CLIPBOARD and UTF-8 text, and keeps a bad command's id", () => {
  assert.deepEqual(parseCommand('{"cmd":"copy","text":"hi"}'), {
    cmd: "copy",
    selection: 0,
    type: ClipboardType.UTF8_TEXT,
    data: new TextEncoder().encode("hi"),
  });
  assert.deepEqual(parseCommand('{"cmd":"paste","id":"p","selection":"secondary"}'), {
    cmd: "paste",
    id: "p",
    selection: 2,
  });
  assert.deepEqual(parseCommand('{"cmd":"mouse","x":1,"y":2,"buttons":["left","left"]}'), {
    cmd: "mouse",
    x: 1,
    y: 2,
    buttons: ["left"],
    display: 0,
  });
  assert.throws(() => parseCommand('{"cmd":"release","id":9,"selection":"nope"}'), {
    code: "BAD_COMMAND",
    id: 9,
  });
  assert.throws(() => parseCommand('{"cmd":"copy","mime":"image/png","text":"x","action":"cut"}'), {
    code: "BAD_COMMAND",
  });
});

test("parseRelayArgs reads every flag, drops a leading --, and refuses bad values", () => {
  assert.deepEqual(
    parseRelayArgs([
      "--",
      "--connect",
      "tcp:[::1]:5900",
      "--state",
      "vm.state",
      "--resume",
      "continued",
      "--listen",
      "localhost:0",
      "--no-mouse",
      "--no-clipboard",
      "--max-clipboard",
      "1048576",
    ]),
    {
      connect: { transport: "tcp", hostname: "::1", port: 5900 },
      state: "vm.state",
      resume: "continued",
      standby: false,
      listen: { hostname: "localhost", port: 0 },
      mouse: false,
      clipboard: false,
      maxClipboard: 1048576,
    },
  );
  assert.deepEqual(parseRelayArgs(["--connect", "unix:/run/vm.sock"]), {
    connect: { transport: "unix", path: "/run/vm.sock" },
    resume: "reconnected",
    standby: false,
    mouse: true,
    clipboard: true,
  });
  assert.deepEqual(
    parseRelayArgs(["--connect", "unix:/run/b.sock", "--state", "vm.state", "--standby"]),
    {
      connect: { transport: "unix", path: "/run/b.sock" },
      state: "vm.state",
      resume: "continued",
      standby: true,
      mouse: true,
      clipboard: true,
    },
    "a standby resumes continued",
  );
  assert.equal(parseRelayArgs(["--help"]), undefined);
  const bad: [string[], RegExp][] = [
    [[], /--connect is required/],
    [["--connect", "vm.sock"], /unix:PATH or tcp:HOST:PORT/],
    [["--connect", "tcp:host:99999"], /HOST:PORT/],
    [["--connect", "tcp:host:0"], /port other than 0/],
    [["--connect", "unix:/x", "--resume", "continued"], /--resume needs --state/],
    [["--connect", "unix:/x", "--standby"], /--standby needs --state/],
    [
      ["--connect", "unix:/x", "--state", "s", "--standby", "--resume", "reconnected"],
      /--standby resumes continued/,
    ],
    [["--connect", "unix:/x", "--max-clipboard", "1e6"], /--max-clipboard/],
    [["--connect", "unix:/x", "extra"], /positional/],
  ];
  for (const [args, message] of bad) {
    assert.throws(
      () => parseRelayArgs(args),
      (e) => e instanceof UsageError && message.test(e.message),
    );
  }
});

test("decodeStateFile reads what encodeStateFile wrote, and refuses the rest", async () => {
  const empty = { lastSerial: 0, guestRequests: [] };
  const checkpoint = encodeCheckpoint({
    mode: "lossless",
    hostCaps: [0x00020061],
    guestCaps: [0x00038de7],
    selections: [{ ...empty, lastSerial: 2, hostOffer: [1] }, empty, empty],
  });
  const state = {
    checkpoint,
    hostCopies: [{ selection: 0, type: 1, data: new TextEncoder().encode("host text") }],
    guestCopies: [{ selection: 1, type: 1, data: new TextEncoder().encode("guest text") }],
    generation: 7,
    handedOff: true,
  };
  const file = await encodeStateFile(state);
  const json = JSON.parse(new TextDecoder().decode(file));
  assert.equal(json.format, "vdagent-relay-state/2");
  assert.equal(json.generation, 7);
  assert.equal(json.handedOff, true);
  assert.equal(json.mac, undefined);
  assert.deepEqual(json.hostCopies, [{
    selection: "clipboard",
    mime: "text/plain;charset=utf-8",
    base64: "aG9zdCB0ZXh0",
  }]);
  assert.equal(json.describe.selections[0].lastSerial, 2);
  assert.deepEqual(await decodeStateFile(file), state);
  const fresh = {
    checkpoint: undefined,
    hostCopies: [],
    guestCopies: [],
    generation: 1,
    handedOff: false,
  };
  assert.deepEqual(await decodeStateFile(await encodeStateFile(fresh)), fresh);
  const refused = async (bytes: Uint8Array, code: string) =>
    await assert.rejects(
      decodeStateFile(bytes),
      (e) => e instanceof StateFileError && e.code === code,
    );
  const edited = (change: Record<string, unknown>) =>
    new TextEncoder().encode(JSON.stringify({ ...json, ...change }));
  const corrupt = checkpoint.slice();
  corrupt[12]! ^= 1;
  await refused(edited({ checkpoint: encodeBase64(corrupt) }), "BAD_CHECKSUM");
  await refused(new TextEncoder().encode("{}"), "BAD_STATE_FILE");
  await refused(new TextEncoder().encode("not json"), "BAD_STATE_FILE");
  await refused(edited({ format: "vdagent-relay-state/1" }), "BAD_STATE_FILE");
  await refused(edited({ hostCopies: [{ selection: "x" }] }), "BAD_STATE_FILE");
  await refused(edited({ generation: -1 }), "BAD_STATE_FILE");
  await refused(edited({ handedOff: "yes" }), "BAD_STATE_FILE");
  const copy = json.hostCopies[0];
  await refused(edited({ hostCopies: [copy, copy, copy, copy] }), "BAD_STATE_FILE");
  await refused(edited({ guestCopies: undefined }), "BAD_STATE_FILE");
});

test("decodeStateFile with a key refuses a state file with any field changed, its MAC stripped, or another key", async () => {
  const key = await importStateKey("11".repeat(32));
  const other = await importStateKey(encodeBase64(new Uint8Array(32).fill(2)));
  const state = {
    checkpoint: encodeCheckpoint({
      mode: "lossless",
      hostCaps: [0x00020061],
      guestCaps: [0x00038de7],
      selections: [
        { lastSerial: 0, guestRequests: [] },
        { lastSerial: 0, guestRequests: [] },
        { lastSerial: 0, guestRequests: [] },
      ],
    }),
    hostCopies: [{ selection: 1, type: 1, data: new TextEncoder().encode("secret") }],
    guestCopies: [{ selection: 0, type: 1, data: new TextEncoder().encode("guest secret") }],
    generation: 3,
    handedOff: true,
  };
  const file = await encodeStateFile(state, key);
  const json = JSON.parse(new TextDecoder().decode(file));
  assert.equal(typeof json.mac, "string");
  assert.deepEqual(await decodeStateFile(file, key), state);
  // Without a key the MAC is not checked: the relay that has none warns at start.
  assert.deepEqual(await decodeStateFile(file), state);
  const refused = (change: Record<string, unknown>, code: string, with_ = key) =>
    assert.rejects(
      decodeStateFile(new TextEncoder().encode(JSON.stringify({ ...json, ...change })), with_),
      (e) => e instanceof StateFileError && e.code === code,
    );
  await refused({}, "BAD_MAC", other);
  await refused({ mac: undefined }, "UNAUTHENTICATED");
  await refused({ generation: 4 }, "BAD_MAC");
  await refused({ handedOff: false }, "BAD_MAC");
  await refused({ hostCopies: [{ ...json.hostCopies[0], selection: "clipboard" }] }, "BAD_MAC");
  await refused({ hostCopies: [] }, "BAD_MAC");
  await refused({ guestCopies: json.hostCopies }, "BAD_MAC");
  // Every bit of the checkpoint is covered: a flipped bit is a bad MAC before a bad CRC.
  for (let i = 0; i < state.checkpoint.length * 8; i += 7) {
    const flipped = state.checkpoint.slice();
    flipped[i >> 3]! ^= 1 << (i & 7);
    await refused({ checkpoint: encodeBase64(flipped) }, "BAD_MAC");
  }
  const mac = decodeBase64(json.mac);
  mac[0]! ^= 0x80;
  await refused({ mac: encodeBase64(mac) }, "BAD_MAC");
});

test("importStateKey takes hex or base64 of at least 32 bytes, and nothing else", async () => {
  assert.equal((await importStateKey("ab".repeat(32) + "\n")).algorithm.name, "HMAC");
  assert.equal((await importStateKey(encodeBase64(new Uint8Array(48)))).type, "secret");
  await assert.rejects(importStateKey("ab".repeat(31)), RangeError);
  await assert.rejects(importStateKey("not a key!"), RangeError);
});

test("admitRequest wants a Host naming the relay, the page's own Origin, and the token", () => {
  const policy = { token: "the-token-0123456789", hosts: ["vm-host.lan"] };
  const status = (
    target: string,
    headers: Record<string, string>,
    which: { token: string | undefined; hosts: string[] } = policy,
  ) => {
    const url = new URL(target, "http://relay");
    return admitRequest({
      method: "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: new Map(Object.entries(headers)),
    }, which)?.status ?? 200;
  };
  const token = "?token=the-token-0123456789";
  // The page's own origin, and clients without one.
  assert.equal(
    status(`/ws${token}`, { host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080" }),
    200,
  );
  assert.equal(
    status(`/ws${token}`, { host: "localhost:8080", origin: "http://localhost:8080" }),
    200,
  );
  assert.equal(status(`/ws${token}`, { host: "[::1]:8080", origin: "http://[::1]:8080" }), 200);
  assert.equal(status(`/ws${token}`, { host: "192.168.1.5:8080" }), 200, "an IP address");
  assert.equal(status(`/${token}`, { host: "[::ffff:127.0.0.1]:8080" }), 200);
  assert.equal(status(`/${token}`, { host: "VM-HOST.lan:8080" }), 200, "--allow-host");
  assert.equal(
    status("/ws", { host: "127.0.0.1:8080", authorization: "Bearer the-token-0123456789" }),
    200,
  );
  // The token.
  assert.equal(status("/ws", { host: "127.0.0.1:8080" }), 401);
  assert.equal(status("/", { host: "127.0.0.1:8080" }), 401);
  assert.equal(status("/?token=the-token-012345678", { host: "127.0.0.1:8080" }), 401);
  assert.equal(status("/?token=the-token-0123456789x", { host: "127.0.0.1:8080" }), 401);
  assert.equal(status("/app.js", { host: "127.0.0.1:8080" }), 200, "the script is public");
  assert.equal(status("/style.css", { host: "127.0.0.1:8080" }), 200);
  assert.equal(status("/", { host: "127.0.0.1:8080" }, { token: undefined, hosts: [] }), 200);
  // Origin and Host, whatever the listen address.
  const origin = { host: "127.0.0.1:8080" };
  assert.equal(status(`/ws${token}`, { ...origin, origin: "https://evil.example" }), 403);
  assert.equal(status(`/ws${token}`, { ...origin, origin: "http://127.0.0.1:9999" }), 403);
  assert.equal(status(`/ws${token}`, { ...origin, origin: "null" }), 403);
  for (const host of ["evil.test:18434", "ip6-localhost", "localhost.evil.test", "vm-host"]) {
    assert.equal(status(`/ws${token}`, { host, origin: `http://${host}` }), 403, host);
    assert.equal(status(`/app.js`, { host }), 403, host);
  }
  assert.equal(status(`/ws${token}`, {}), 400, "no Host header");
});

test("isLoopback knows 127/8, ::1 in any spelling and localhost, and nothing else", () => {
  for (const name of ["127.0.0.1", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1", "localhost"]) {
    assert.equal(isLoopback(name), true, name);
  }
  for (const name of ["0.0.0.0", "::", "192.168.1.5", "::ffff:127.0.0.1", "ip6-localhost"]) {
    assert.equal(isLoopback(name), false, name);
  }
});

test("parseRelayArgs reads --token-file, --no-auth and --allow-host, with --listen only", () => {
  const listen = ["--connect", "unix:/x", "--listen", "127.0.0.1:8080"];
  assert.deepEqual(
    parseRelayArgs([...listen, "--token-file", "t", "--allow-host", "A.lan", "--allow-host", "b"]),
    {
      connect: { transport: "unix", path: "/x" },
      resume: "reconnected",
      standby: false,
      listen: { hostname: "127.0.0.1", port: 8080 },
      tokenFile: "t",
      allowHosts: ["a.lan", "b"],
      mouse: true,
      clipboard: true,
    },
  );
  assert.equal(parseRelayArgs([...listen, "--no-auth"])?.noAuth, true);
  assert.equal(
    parseRelayArgs(["--connect", "unix:/x", "--listen", "[::1]:0", "--no-auth"])?.noAuth,
    true,
  );
  const bad: [string[], RegExp][] = [
    [["--connect", "unix:/x", "--no-auth"], /--no-auth needs --listen/],
    [["--connect", "unix:/x", "--token-file", "t"], /--token-file needs --listen/],
    [["--connect", "unix:/x", "--allow-host", "a"], /--allow-host needs --listen/],
    [[...listen, "--no-auth", "--token-file", "t"], /contradict/],
    [["--connect", "unix:/x", "--listen", "0.0.0.0:80", "--no-auth"], /not 0\.0\.0\.0/],
    [["--connect", "unix:/x", "--listen", "[::]:80", "--no-auth"], /loopback/],
    [["--connect", "unix:/x", "--listen", "192.168.1.5:80", "--no-auth"], /loopback/],
    [[...listen, "--allow-host", "evil.test:80"], /--allow-host must be a host name/],
  ];
  for (const [args, message] of bad) {
    assert.throws(
      () => parseRelayArgs(args),
      (e) => e instanceof UsageError && message.test(e.message),
    );
  }
});
