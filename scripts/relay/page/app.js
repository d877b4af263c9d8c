// The relay's clipboard page: speaks the relay's JSON protocol over the WebSocket at /ws.
// Plain browser JavaScript, served by the relay itself; it loads nothing from anywhere else.

const TEXT = "text/plain;charset=utf-8";
const IMAGES = ["image/png", "image/jpeg", "image/bmp", "image/tiff"];

const $ = (id) => document.getElementById(id);
const status = $("status");
const guestMeta = $("guest-meta");
const guestText = $("guest-text");
const guestImage = $("guest-image");
const progress = $("progress");
const progressLabel = $("progress-label");

let socket;
let nextId = 1;
/** The id of the latest paste of the guest's clipboard: older answers are stale. */
let latestPaste = 0;
/** Counts uploads; the relay's progress events count too, so that they stop an upload's poll. */
let uploads = 0;
let imageUrl;

function setStatus(text, kind) {
  status.textContent = text;
  status.className = kind ?? "";
}

function log(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const list = $("log");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

function send(command) {
  command.id = nextId++;
  socket.send(JSON.stringify(command));
  return command.id;
}

function showProgress(done, total, label) {
  progress.max = total || 1;
  progress.value = done;
  progressLabel.textContent = total > 0 && done < total
    ? `${label} ${Math.floor((done * 100) / total)} % (${done} of ${total} bytes)`
    : `${label} done (${total} bytes)`;
}

function bytesOf(base64) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function base64Of(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function showText(text, meta) {
  guestMeta.textContent = meta;
  guestText.textContent = text;
  guestText.hidden = false;
  guestImage.hidden = true;
}

function showImage(bytes, mime, meta) {
  if (imageUrl !== undefined) URL.revokeObjectURL(imageUrl);
  imageUrl = URL.createObjectURL(new Blob([bytes], { type: mime }));
  guestImage.src = imageUrl;
  guestImage.dataset.bytes = String(bytes.length);
  guestImage.hidden = false;
  guestText.hidden = true;
  guestMeta.textContent = meta;
}

function showEmpty(meta) {
  guestMeta.textContent = meta;
  guestText.hidden = true;
  guestImage.hidden = true;
}

/** The guest copied: fetch what it offers, text first, then an image, then a file list. */
function onOffer(event) {
  if (event.selection !== "clipboard") return;
  const mime = event.mimes.find((m) => m === TEXT) ??
    event.mimes.find((m) => IMAGES.includes(m)) ?? event.mimes[0];
  guestMeta.textContent = `The guest offers ${event.mimes.join(", ")}; fetching ${mime}…`;
  latestPaste = send({ cmd: "paste", selection: "clipboard", mime });
}

function onData(event) {
  if (event.selection !== "clipboard" || (event.id !== latestPaste && !event.resumed)) return;
  const meta = `${event.mime}, ${event.bytes} bytes, copied in the guest`;
  if (event.text !== undefined) showText(event.text, meta);
  else if (IMAGES.includes(event.mime)) showImage(bytesOf(event.base64), event.mime, meta);
  else showText(`(${event.bytes} bytes of ${event.mime})`, meta);
}

const handlers = {
  hello: (e) => setStatus(`Connected to the relay (${e.connect}); waiting for the guest agent…`),
  caps: () => setStatus("The guest agent is connected.", "ok"),
  offer: onOffer,
  data: onData,
  release(e) {
    if (e.selection === "clipboard") showEmpty("The guest’s clipboard is empty.");
  },
  progress(e) {
    uploads++; // the relay reports now: a poll still pending would put the bar back
    showProgress(e.done, e.total, e.direction === "in" ? "from the guest" : "to the guest");
  },
  served: (e) => log(`the guest pasted ${e.bytes} bytes of ${e.mime}`),
  ok(e) {
    if (e.cmd === "copy") setStatus("Sent: the guest’s clipboard holds it now.", "ok");
  },
  error(e) {
    log(`error ${e.code}: ${e.message}`);
    if (e.cmd === "copy") setStatus(`Not sent: ${e.message}`, "bad");
  },
  exit: (e) => setStatus(`The relay stopped: ${e.reason}.`, "bad"),
};

function copy(mime, fields, meta) {
  if (socket.readyState !== WebSocket.OPEN) {
    setStatus("Not connected to the relay.", "bad");
    return;
  }
  send({ cmd: "copy", selection: "clipboard", mime, ...fields });
  latestPaste = 0; // the guest's clipboard now holds ours
  guestMeta.textContent = meta;
  // The WebSocket API has no progress event: follow what is still buffered.
  const total = socket.bufferedAmount;
  if (total > 1024 * 1024) {
    const upload = ++uploads;
    const poll = () => {
      if (upload !== uploads) return;
      showProgress(total - socket.bufferedAmount, total, "to the relay");
      if (socket.bufferedAmount > 0) setTimeout(poll, 50);
    };
    poll();
  }
}

function sendText() {
  const text = $("send-text-input").value;
  if (text === "") return;
  copy(TEXT, { text }, `You sent ${new Blob([text]).size} bytes of text.`);
  showText(text, "You sent this text; the guest pastes it.");
}

async function sendImage(file) {
  if (!IMAGES.includes(file.type)) {
    setStatus(`Cannot send ${file.type || "that file"}: use PNG, JPEG, BMP or TIFF.`, "bad");
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  copy(file.type, { base64: base64Of(bytes) }, `You sent a ${file.type} of ${bytes.length} bytes.`);
  showImage(
    bytes,
    file.type,
    `You sent this ${file.type} (${bytes.length} bytes); the guest pastes it.`,
  );
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The relay printed the page's URL with its token; the WebSocket needs it too.
  const token = new URLSearchParams(location.search).get("token");
  const query = token === null ? "" : `?token=${encodeURIComponent(token)}`;
  socket = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  socket.addEventListener("message", (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return log(`unreadable message: ${String(message.data).slice(0, 80)}`);
    }
    if (!["progress", "data"].includes(event.event)) log(`${event.event} ${briefly(event)}`);
    handlers[event.event]?.(event);
  });
  socket.addEventListener("close", (e) => {
    const why = e.reason === "" ? "" : `: ${e.reason}`;
    if (status.className !== "bad") setStatus(`Disconnected from the relay${why}.`, "bad");
  });
}

function briefly(event) {
  const { event: _, ...rest } = event;
  const text = JSON.stringify(rest);
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

$("send-text").addEventListener("click", sendText);
$("send-image-input").addEventListener("change", (e) => {
  const file = e.target.files?.[0];
  if (file !== undefined) sendImage(file);
});
document.addEventListener("paste", (e) => {
  const file = [...(e.clipboardData?.files ?? [])].find((f) => IMAGES.includes(f.type));
  if (file !== undefined && e.target !== $("send-text-input")) {
    e.preventDefault();
    sendImage(file);
  }
});
connect();
