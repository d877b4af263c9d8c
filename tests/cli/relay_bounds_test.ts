// vdagent-relay on Deno (scripts/relay.ts) against a hostile guest and hostile or slow
// clients, its resident memory measured: the scenarios of tests/_relay_bounds.ts, which
// tests/node/relay_bounds_test.ts runs against the npm package's Node bin. Deno only.
import { boundsTests } from "../_relay_bounds.ts";

boundsTests("Deno", {
  command: Deno.execPath(),
  args: ["run", "-A", "--quiet", "scripts/relay.ts"],
  cwd: new URL("../../", import.meta.url).pathname,
});
