// This module is browser compatible.

import { batchOf } from "../wire/_batch.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import type { Endpoint } from "./_endpoint.ts";
import type { Outbox } from "./_outbox.ts";

/** A session's stream: the peer's messages in, batches for the peer out. */
export type SessionStream = TransformStream<AgentMessage | readonly AgentMessage[], AgentMessage[]>;

/**
 * The thin stream wrapper of a session's core: what is written is received,
 * what the core sends is read, in batches. A core that a pipeline drives
 * (`driven()`) sends its batches there, and the stream gets none.
 */
export function sessionStream(
  core: Pick<Endpoint, "receive" | "close">,
  outbox: Outbox,
  driven: () => boolean,
): SessionStream {
  return new TransformStream<
    AgentMessage | readonly AgentMessage[],
    AgentMessage[]
  >(
    {
      start: (controller) => {
        // A pipeline that drives this session takes its output: the stream gets none.
        if (driven()) return;
        outbox.attach((batch) => {
          try {
            controller.enqueue(batch);
          } catch {
            // The readable side is gone; the session is closing.
          }
        });
      },
      transform: (input) =>
        outbox.run(() => {
          for (const m of batchOf(input)) {
            core.receive(
              m.port,
              m.type,
              m.opaque,
              m.data,
              0,
              m.data.length,
              m.skipped,
              m,
            );
          }
        }),
      flush: () => core.close(),
      cancel: (reason) => core.close(reason),
    },
    undefined,
    // One batch of read-ahead. With the default of 0, the capabilities queued
    // at creation keep the writable side waiting until a read is pending, and
    // two sessions piped back to back wait on each other.
    { highWaterMark: 1 },
  );
}
