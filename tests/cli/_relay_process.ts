// Drives `scripts/relay.ts` as a subprocess: JSON commands on its standard input, its JSON
// events read from standard output, its log from standard error, its exit code. Deno only.
// Every wait is bounded and event-driven: it resolves when the matching line arrives.

/** One event the relay printed. */
export type Event = { event: string; [field: string]: unknown };

const root = new URL("../../", import.meta.url);

/** A running relay process. */
export class RelayProcess {
  readonly name: string;
  readonly events: Event[] = [];
  /** Lines of standard output that were not JSON (there must be none). */
  readonly junk: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #readers: Promise<void>[];
  readonly #waiters = new Set<() => void>();
  #stderr = "";
  #exit: number | undefined;
  /** Whether standard output ended (after a launcher's exit, the relay under it may write on). */
  #ended = false;
  readonly exited: Promise<number>;

  /**
   * `launcher` runs the relay through another command, such as `["npx", "--yes", "deno@…", "task",
   * "relay"]`; by default it is `deno run -A scripts/relay.ts`.
   */
  constructor(
    args: string[],
    options: { name?: string; env?: Record<string, string>; launcher?: string[] } = {},
  ) {
    this.name = options.name ?? "relay";
    const [command, ...prefix] = options.launcher ??
      [Deno.execPath(), "run", "-A", "--quiet", "scripts/relay.ts"];
    this.#child = new Deno.Command(command!, {
      args: [...prefix, ...args],
      cwd: root,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", ...options.env },
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#readers = [
      this.#lines(this.#child.stdout, (line) => {
        try {
          this.events.push(JSON.parse(line));
        } catch {
          this.junk.push(line);
        }
      }).finally(() => {
        this.#ended = true;
        this.#wake();
      }),
      this.#lines(this.#child.stderr, (line) => void (this.#stderr += line + "\n")),
    ];
    this.exited = this.#child.status.then((status) => {
      this.#exit = status.code;
      this.#wake();
      return status.code;
    });
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** The exit code, once it exited. */
  get exitCode(): number | undefined {
    return this.#exit;
  }

  /** What the relay logged on standard error so far. */
  get stderr(): string {
    return this.#stderr;
  }

  async #lines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
    let rest = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + text).split("\n");
      rest = lines.pop()!;
      for (const line of lines) onLine(line);
      this.#wake();
    }
    if (rest !== "") onLine(rest);
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Sends one line: an object as JSON, a string as it is. */
  async send(command: object | string): Promise<void> {
    const line = typeof command === "string" ? command : JSON.stringify(command);
    await this.#stdin.write(new TextEncoder().encode(line + "\n"));
  }

  /** Closes the relay's standard input. */
  async closeStdin(): Promise<void> {
    await this.#stdin.close().catch(() => {});
  }

  /** Resolves once `check` holds; re-checked on every line and at exit; bounded. */
  async until<T>(check: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake: () => void = () => {};
    try {
      return await new Promise<T>((resolve, reject) => {
        wake = () => {
          const value = check();
          if (value !== undefined && value !== false) resolve(value);
          else if (this.#exit !== undefined && this.#ended) {
            reject(new Error(`${this.name} exited with ${this.#exit} before ${what}`));
          }
        };
        this.#waiters.add(wake);
        timer = setTimeout(
          () => reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        wake();
      });
    } finally {
      this.#waiters.delete(wake);
      clearTimeout(timer);
    }
  }

  /** The first event at index ≥ `since` named `event` that `match` accepts. */
  next(
    event: string,
    match: (e: Event) => boolean = () => true,
    since = 0,
    timeoutMs?: number,
  ): Promise<Event> {
    return this.until(
      () => this.events.slice(since).find((e) => e.event === event && match(e)),
      `"${event}" event`,
      timeoutMs,
    );
  }

  /** The event answering the command with `id`. */
  answer(id: string | number, timeoutMs?: number): Promise<Event> {
    return this.until(
      () => this.events.find((e) => e.id === id && e.event !== "progress"),
      `answer to ${JSON.stringify(id)}`,
      timeoutMs,
    );
  }

  /** Resolves once standard error has a line matching `re`. */
  logged(re: RegExp, timeoutMs?: number): Promise<string> {
    return this.until(() => re.exec(this.#stderr)?.[0], `log line ${re}`, timeoutMs);
  }

  signal(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // It exited already.
    }
  }

  /** Ends the process if it still runs, and waits for its streams. */
  async close(): Promise<void> {
    await this.closeStdin();
    if (this.#exit === undefined) this.signal("SIGKILL");
    await this.exited;
    // A process the relay's launcher started may hold its output open after the launcher exited.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(this.#readers),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${this.name}: its output is still open after it exited`)),
          15_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** The transcript, for failure reports. */
  report(): string {
    return `--- ${this.name}: stderr ---\n${this.#stderr}--- ${this.name}: events ---\n${
      this.events.map((e) => JSON.stringify(e).slice(0, 300)).join("\n")
    }\n`;
  }
}
