// Where a relay keeps its state: the state file, written whole and atomically after every change,
// fenced by a lock file so that one relay at a time acts on it, with a generation that only moves
// on. Web-platform code over a few file operations that the Deno and Node entries give it.
//
//   STATE              the state file (state_file.ts); never removed, replaced by rename only
//   STATE.lock         {"pid","host","token"} of the relay that holds the state, created exclusively
//   STATE.generation   the generation of the last state written: an older STATE is stale
//   .STATE.<hex>.tmp   a write in progress; a relay that takes the lock removes leftovers
import {
  decodeStateFile,
  encodeStateFile,
  type RelayState,
  StateFileError,
  type StateKey,
} from "./state_file.ts";

/** The file operations a state store needs. */
export interface StateFiles {
  /**
   * A file's bytes, or `undefined` if it does not exist. A symbolic link or anything but a
   * regular file is refused with code `NOT_A_FILE`, and a file over `maxBytes` with `TOO_LARGE`,
   * before anything is read; one replaced between the look and the open, with `CHANGED`.
   */
  read(path: string, maxBytes: number): Promise<Uint8Array | undefined>;
  /**
   * Creates `path` with mode 0600, failing if anything is there (a symbolic link included, which
   * is not followed), writes `bytes` and syncs them; `false` if `path` exists.
   */
  createNew(path: string, bytes: Uint8Array): Promise<boolean>;
  /** Renames `from` to `to`, replacing `to`. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; nothing if it does not exist. */
  remove(path: string): Promise<void>;
  /** The names in a directory. */
  list(dir: string): Promise<string[]>;
  /** Syncs a directory, so that a rename in it is durable. */
  syncDir(dir: string): Promise<void>;
  /** Whether a process of this machine is alive. */
  processAlive(pid: number): boolean;
  /** This machine's name. */
  readonly hostname: string;
  /** This process's id. */
  readonly pid: number;
}

/** Who holds a state. */
export interface LockHolder {
  pid: number;
  host: string;
  token: string;
}

const LOCK_MAX = 4096;
const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const randomHex = () => hex(crypto.getRandomValues(new Uint8Array(16)));
const text = (value: string) => new TextEncoder().encode(value);

/**
 * `files.read`, again while the file is replaced as it is opened: the state's relay renames new
 * versions over STATE and its companions while others (a standby, a second relay) read them.
 */
async function read(files: StateFiles, path: string, maxBytes: number) {
  for (let attempt = 1;; attempt++) {
    try {
      return await files.read(path, maxBytes);
    } catch (error) {
      if ((error as { code?: unknown }).code !== "CHANGED" || attempt === 5) throw error;
    }
  }
}

function split(path: string): { dir: string; base: string } {
  const slash = path.lastIndexOf("/");
  return slash < 0
    ? { dir: ".", base: path }
    : { dir: slash === 0 ? "/" : path.slice(0, slash), base: path.slice(slash + 1) };
}

/** One relay's hold on a state file. */
export class StateStore {
  readonly path: string;
  readonly #files: StateFiles;
  readonly #key: StateKey | undefined;
  readonly #maxBytes: number;
  readonly #token: string;
  #generation = 0;
  #locked = true;

  private constructor(
    files: StateFiles,
    path: string,
    key: StateKey | undefined,
    maxBytes: number,
    token: string,
  ) {
    this.#files = files;
    this.path = path;
    this.#key = key;
    this.#maxBytes = maxBytes;
    this.#token = token;
  }

  /** Who holds the state at `path`: `undefined` if nobody, `stale` set if that relay is dead. */
  static async holder(
    files: StateFiles,
    path: string,
  ): Promise<(LockHolder & { stale: boolean }) | undefined> {
    const bytes = await read(files, `${path}.lock`, LOCK_MAX);
    if (bytes === undefined) return undefined;
    let holder: LockHolder;
    try {
      holder = JSON.parse(new TextDecoder().decode(bytes));
      if (
        !Number.isSafeInteger(holder.pid) || typeof holder.host !== "string" ||
        typeof holder.token !== "string"
      ) throw new Error("fields");
    } catch {
      // Torn by a crash between create and write, or not ours: nobody can be shown to hold it.
      return { pid: 0, host: "", token: "", stale: false };
    }
    const stale = holder.host === files.hostname && holder.pid !== files.pid &&
      !files.processAlive(holder.pid);
    return { ...holder, stale };
  }

  /**
   * Takes the state at `path` for this relay: creates the lock file, or replaces one whose relay
   * died on this machine. Throws `LOCKED` if a live relay (or one on another machine) holds it.
   */
  static async lock(
    files: StateFiles,
    path: string,
    options: { key?: StateKey | undefined; maxBytes: number },
  ): Promise<StateStore & { brokeStale?: LockHolder }> {
    const token = randomHex();
    const lock = `${path}.lock`;
    const mine = text(JSON.stringify({ pid: files.pid, host: files.hostname, token }) + "\n");
    let brokeStale: LockHolder | undefined;
    for (let attempt = 0;; attempt++) {
      let created: boolean;
      try {
        created = await files.createNew(lock, mine);
      } catch (error) {
        throw new StateFileError(
          "UNWRITABLE",
          `cannot create ${lock}: ${(error as Error).message}`,
          { cause: error },
        );
      }
      if (created) break;
      const holder = await StateStore.holder(files, path);
      if (holder === undefined) continue; // released meanwhile
      if (!holder.stale || attempt > 3) {
        throw new StateFileError(
          "LOCKED",
          holder.pid === 0
            ? `${lock} exists but cannot be read; if no relay runs on ${path}, remove it`
            : `${path} is held by the relay with pid ${holder.pid} on ${holder.host} ` +
              `(${lock}); if that relay is gone, remove ${lock}`,
        );
      }
      // Moved aside first: if another relay broke it and locked in between, that lock is put back.
      const aside = `${lock}.${randomHex()}.stale`;
      await files.rename(lock, aside).catch(() => {});
      const moved = await files.read(aside, LOCK_MAX).catch(() => undefined);
      if (moved !== undefined && !new TextDecoder().decode(moved).includes(holder.token)) {
        await files.createNew(lock, moved).catch(() => false);
      }
      await files.remove(aside);
      brokeStale = holder;
    }
    const store = new StateStore(files, path, options.key, options.maxBytes, token);
    const { dir, base } = split(path);
    const escaped = base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const leftover = new RegExp(`^\\.${escaped}(\\.generation)?\\.[0-9a-f]{32}\\.tmp$`);
    for (const name of await files.list(dir).catch(() => [])) {
      if (leftover.test(name)) await files.remove(`${dir}/${name}`).catch(() => {});
    }
    return brokeStale === undefined ? store : Object.assign(store, { brokeStale });
  }

  /** The generation of the last state written at `path` (0 if none), from its small companion. */
  static async writtenGeneration(files: StateFiles, path: string): Promise<number> {
    const bytes = await read(files, `${path}.generation`, 64);
    if (bytes === undefined) return 0;
    const value = Number(new TextDecoder().decode(bytes).trim());
    return Number.isSafeInteger(value) && value >= 0 ? value : 0;
  }

  /** The generation this store wrote or read last. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Reads and verifies the state (its MAC with a key, its checkpoint under `limits`); `undefined`
   * if there is none. Throws `STALE` if a newer state was written since it.
   */
  async read(
    limits?: Parameters<typeof decodeStateFile>[2],
  ): Promise<RelayState | undefined> {
    const written = await StateStore.writtenGeneration(this.#files, this.path);
    this.#generation = written;
    const bytes = await read(this.#files, this.path, this.#maxBytes);
    if (bytes === undefined) return undefined;
    const state = await decodeStateFile(bytes, this.#key, limits);
    if (state.generation < written) {
      throw new StateFileError(
        "STALE",
        `${this.path} holds generation ${state.generation}, but generation ${written} was ` +
          `written since (${this.path}.generation): it is an older state, and restoring it would ` +
          `replay what the guest has moved past; remove ${this.path}.generation to restore it anyway`,
      );
    }
    this.#generation = state.generation;
    return state;
  }

  /**
   * Writes the next state: to a new temporary file, synced, renamed over the state, then the
   * generation. The last good state stays in place until the new one is. Throws `FENCED` if
   * another relay holds the lock now.
   */
  async write(state: Omit<RelayState, "generation">): Promise<void> {
    if (!this.#locked) throw new StateFileError("FENCED", `${this.path} was released`);
    const holder = await StateStore.holder(this.#files, this.path);
    if (holder?.token !== this.#token) {
      this.#locked = false;
      throw new StateFileError(
        "FENCED",
        holder === undefined
          ? `${this.path}.lock was removed while this relay ran: it no longer writes ${this.path}`
          : `${this.path} was taken over by the relay with pid ${holder.pid} on ${holder.host}`,
      );
    }
    const generation = this.#generation + 1;
    await this.#replace(this.path, await encodeStateFile({ ...state, generation }, this.#key));
    await this.#replace(`${this.path}.generation`, text(`${generation}\n`));
    this.#generation = generation;
  }

  /** Lets the state go: the next relay may take it. */
  async unlock(): Promise<void> {
    if (!this.#locked) return;
    this.#locked = false;
    const holder = await StateStore.holder(this.#files, this.path).catch(() => undefined);
    if (holder?.token === this.#token) await this.#files.remove(`${this.path}.lock`);
  }

  async #replace(path: string, bytes: Uint8Array): Promise<void> {
    const { dir, base } = split(path);
    let temp: string;
    do temp = `${dir}/.${base}.${randomHex()}.tmp`; while (
      !await this.#files.createNew(temp, bytes)
    );
    try {
      await this.#files.rename(temp, path);
    } catch (error) {
      await this.#files.remove(temp).catch(() => {});
      throw error;
    }
    await this.#files.syncDir(dir).catch(() => {});
  }
}
