// The processes that launched the relay: `npx`, `deno task`, the `sh -c` in between. A signal sent
// to one of them (what `docker stop` or a terminal does) does not reach the relay, which would
// run on, orphaned, its state never handed off. So the relay watches them, and stops as on SIGTERM
// when one of them goes away.

/** What the relay reads of a process (Linux: `/proc/PID/stat` and `/proc/PID/cmdline`). */
export interface ProcessInfo {
  ppid: number;
  argv: string[];
}

/**
 * A process from the text of `/proc/PID/stat` (the parent is the second field after the command,
 * which is in parentheses and may hold anything) and `/proc/PID/cmdline` (NUL-separated).
 */
export function parseProcess(stat: string, cmdline: string): ProcessInfo | undefined {
  const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  if (!Number.isSafeInteger(ppid)) return undefined;
  return {
    ppid,
    argv: cmdline.split("\0").filter((arg, i, all) => arg !== "" || i < all.length - 1),
  };
}

const base = (path: string | undefined) => path?.slice(path.lastIndexOf("/") + 1) ?? "";

/** Whether a process is one of the launchers that do not pass a signal on. */
export function isLauncher(argv: readonly string[]): boolean {
  const [first, second, third] = argv;
  if (base(first) === "deno" && second === "task") return true;
  // npm names its process after the command: `npm exec deno@2.9.6 task relay`, `npx …`.
  if (/^(npm exec|npx)( |$)/.test(first ?? "") || base(second).startsWith("npx-cli")) return true;
  if (["npm", "npx"].includes(base(first)) || base(second) === "npm-cli.js") return true;
  // The shell npm runs a bin through: sh -c 'deno' task relay, sh -c vdagent-relay …
  return ["sh", "bash", "dash"].includes(base(first)) && second === "-c" &&
    /^'?(deno|npx|npm|vdagent-relay)\b/.test(third ?? "");
}

/**
 * Watches the launchers above process `self`, every `intervalMs`; calls `onGone` once, with a
 * sentence, when one of them exits. (A launcher that merely gets another parent, as under
 * `nohup` when its terminal closes, still runs, and so does the relay.) Returns the function that
 * stops watching.
 */
export function watchLaunchers(
  info: (pid: number) => ProcessInfo | undefined,
  self: number,
  onGone: (why: string) => void,
  intervalMs = 500,
): () => void {
  const chain: { pid: number; argv: string }[] = [];
  for (let pid = info(self)?.ppid ?? 1; pid > 1 && chain.length < 8;) {
    const process = info(pid);
    if (process === undefined || !isLauncher(process.argv)) break;
    chain.push({ pid, argv: process.argv.join("\0") });
    pid = process.ppid;
  }
  if (chain.length === 0) return () => {};
  const timer = setInterval(() => {
    // Gone, or its pid already taken by another program.
    const gone = chain.find((launcher) => info(launcher.pid)?.argv.join("\0") !== launcher.argv);
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(
      `the relay's launcher (pid ${gone.pid}, ${
        gone.argv.split("\0").slice(0, 3).join(" ")
      }) exited; it does not pass signals on`,
    );
  }, intervalMs);
  return () => clearInterval(timer);
}
