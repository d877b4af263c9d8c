// A guest port (tests/cli/_guest_port.ts) and vdagent-relay subprocesses connected to it, for
// the relay's tests. Deno only.
import { GuestPort } from "./_guest_port.ts";
import { RelayProcess } from "./_relay_process.ts";

/** Starts a relay on the port: `--connect unix:<port>` and `args`. */
export type StartRelay = (
  args?: string[],
  name?: string,
  env?: Record<string, string>,
  launcher?: string[],
) => RelayProcess;

/** Runs `fn` with a guest port and relays; on failure prints every relay's log and events. */
export async function withRelay(
  fn: (port: GuestPort, start: StartRelay) => Promise<void>,
): Promise<void> {
  const port = await GuestPort.open();
  const relays: RelayProcess[] = [];
  try {
    await fn(port, (args = [], name, env, launcher) => {
      const relay = new RelayProcess(["--connect", `unix:${port.path}`, ...args], {
        ...(name === undefined ? {} : { name }),
        ...(env === undefined ? {} : { env }),
        ...(launcher === undefined ? {} : { launcher }),
      });
      relays.push(relay);
      return relay;
    });
  } catch (error) {
    // deno-lint-ignore no-console
    console.error(relays.map((r) => r.report()).join("\n"));
    throw error;
  } finally {
    await Promise.all(relays.map((r) => r.close()));
    await port.close();
  }
}
