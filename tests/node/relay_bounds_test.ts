// The npm package's vdagent-relay bin on Node against a hostile guest and hostile or slow
// clients, its resident memory measured: the scenarios of tests/_relay_bounds.ts, which
// tests/cli/relay_bounds_test.ts runs against the Deno relay. Node only: run by
// `deno task build:npm`.
import process from "node:process";
import { boundsTests } from "../_relay_bounds.ts";
import { RELAY_BIN } from "./_relay_bin.ts";

boundsTests("Node", { command: process.execPath, args: [RELAY_BIN] });
