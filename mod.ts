// This module is browser compatible.

/**
 * The SPICE vdagent protocol as composable Web Streams: the host side that
 * QEMU's `qemu-vdagent` chardev plays, and the guest agent's side.
 *
 * Most users want {@linkcode createHostPipeline}: give it the byte streams of
 * a VM's `com.redhat.spice.0` port (a unix socket to QEMU's
 * `-chardev socket`, a WebSocket through {@linkcode webSocketTransport}) and
 * it negotiates with the guest agent, shares the clipboard and moves the
 * mouse; `checkpoint()` and `restore` hand the live session to another relay.
 * {@linkcode createGuestPipeline} plays the guest agent.
 *
 * @example The guest copies, the host pastes
 * ```ts
 * import {
 *   ClipboardType,
 *   createGuestPipeline,
 *   createHostPipeline,
 *   Selection,
 * } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * // Two pairs of streams stand in for the VM's port.
 * const toGuest = new TransformStream<Uint8Array, Uint8Array>();
 * const toHost = new TransformStream<Uint8Array, Uint8Array>();
 * const offered = Promise.withResolvers<void>();
 * const relay = createHostPipeline(
 *   { readable: toHost.readable, writable: toGuest.writable },
 *   { clipboard: { onGuestGrab: () => offered.resolve() } },
 * );
 * const guest = createGuestPipeline(
 *   { readable: toGuest.readable, writable: toHost.writable },
 *   { clipboard: { provide: () => new TextEncoder().encode("copied in the guest") } },
 * );
 * guest.session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
 * await offered.promise;
 * const data = await relay.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT);
 * assert.equal(new TextDecoder().decode(data), "copied in the guest");
 * await relay.close();
 * await guest.done;
 * ```
 *
 * Below them, the wire layer turns the port's bytes into chunks
 * ({@linkcode ChunkDeframer}), chunks into messages
 * ({@linkcode MessageAssembler}) and messages back into bytes
 * ({@linkcode MessageFramer}); {@linkcode decodeMessage} and
 * {@linkcode encodeMessage} turn payloads into typed objects and back.
 *
 * @example Decoding what a guest agent sends first
 * ```ts
 * import { ChunkDeframer, decodeMessage, MessageAssembler } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * // ANNOUNCE_CAPABILITIES, request=1, the Linux agent's caps word
 * const wire = new Uint8Array([
 *   1, 0, 0, 0, 28, 0, 0, 0, // chunk: port 1, 28 bytes
 *   1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, // message header
 *   1, 0, 0, 0, 0xe7, 0x8d, 0x03, 0x00, // payload
 * ]);
 * const batches = await Array.fromAsync(
 *   ReadableStream.from([wire]).pipeThrough(new ChunkDeframer()).pipeThrough(new MessageAssembler()),
 * );
 * assert.deepEqual(decodeMessage(batches[0]![0]!), {
 *   kind: "announce_capabilities",
 *   request: true,
 *   caps: [0x00038de7],
 * });
 * ```
 *
 * @module
 */

export * from "./src/wire/wire_format.ts";
export * from "./src/wire/vdagent_protocol_error.ts";
export * from "./src/wire/vdi_chunk.ts";
export * from "./src/wire/agent_message.ts";
export * from "./src/wire/transfer_progress.ts";
export * from "./src/wire/chunk_deframer.ts";
export * from "./src/wire/message_assembler.ts";
export * from "./src/wire/message_framer.ts";
export * from "./src/protocol/message_type.ts";
export * from "./src/protocol/capability.ts";
export * from "./src/protocol/capability_words.ts";
export * from "./src/protocol/has_capability.ts";
export * from "./src/protocol/clipboard_type.ts";
export * from "./src/protocol/selection.ts";
export * from "./src/protocol/mouse_button.ts";
export * from "./src/protocol/reply_error.ts";
export * from "./src/protocol/file_xfer_status.ts";
export * from "./src/protocol/display_config_flag.ts";
export * from "./src/protocol/monitors_config_flag.ts";
export * from "./src/protocol/message_payload.ts";
export * from "./src/protocol/decode_message.ts";
export * from "./src/protocol/max_payload_size.ts";
export * from "./src/protocol/encode_message.ts";
export * from "./src/session/clipboard_error.ts";
export * from "./src/session/clipboard_offer.ts";
export * from "./src/session/mouse_input.ts";
export * from "./src/session/session_limits.ts";
export * from "./src/session/session_diagnostic.ts";
export * from "./src/session/host_session_state.ts";
export * from "./src/session/resumed_request.ts";
export * from "./src/session/host_session.ts";
export * from "./src/session/guest_session.ts";
export * from "./src/checkpoint/checkpoint_error.ts";
export * from "./src/checkpoint/checkpoint_state.ts";
export * from "./src/checkpoint/checkpoint_limits.ts";
export * from "./src/checkpoint/encode_checkpoint.ts";
export * from "./src/checkpoint/decode_checkpoint.ts";
export * from "./src/checkpoint/describe_checkpoint.ts";
export * from "./src/checkpoint/checkpoint_key.ts";
export * from "./src/checkpoint/seal_checkpoint.ts";
export * from "./src/checkpoint/open_checkpoint.ts";
export * from "./src/checkpoint/state_checkpoint.ts";
export * from "./src/pipeline/transport.ts";
export * from "./src/pipeline/pipeline_options.ts";
export * from "./src/pipeline/host_pipeline.ts";
export * from "./src/pipeline/guest_pipeline.ts";
export * from "./src/pipeline/websocket_transport.ts";
