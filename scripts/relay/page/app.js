// The relay's clipboard page: speaks the relay's JSON protocol over the WebSocket at /ws, and
// reconnects to whatever relay answers on this address. Plain browser JavaScript, served by the
// relay itself; it loads nothing from anywhere else.

const TEXT = "text/plain;charset=utf-8";
const IMAGES = ["image/png", "image/jpeg", "image/bmp", "image/tiff"];
/** What the browser can show (and put on the user's clipboard, as PNG). */
const SHOWN = ["image/png", "image/jpeg", "image/bmp"];
const SELECTIONS = ["clipboard", "primary"];
const NAMES = { clipboard: "the clipboard", primary: "the primary selection" };
/** Reconnection delays, in milliseconds: doubling from the first to the last. */
const RETRY_FIRST = 250;
const RETRY_LAST = 5000;

const $ = (id) => document.getElementById(id);
const status = $("status");
const token = new URLSearchParams(location.search).get("token");

let socket;
let nextId = 1;
let retries = 0;
/** Names each item shown, so that an image is decoded once. */
let items = 0;
/** Counts connections: transfer numbers are each relay's own. */
let connection = 0;

/**
 * What the page knows of each selection: its owner (`unknown` while disconnected, `nobody`,
 * `guest` or `host`), what the owner offers, and the item shown (`{ mime, bytes, text | blob }`).
 */
const view = {};
/** What this page sent last on each selection: shown again when the relay tells it back. */
const sent = {};
/** Copies this page sent whose `ok` is awaited, by command id. */
const sending = new Map();
/** Uploads to the relay, followed through `bufferedAmount`, by command id. */
const uploads = new Map();

function setStatus(text, kind) {
  status.textContent = text;
  status.className = kind ?? "";
}

function size(bytes) {
  return `${bytes.toLocaleString("en")} bytes`;
}

function log(text, kind) {
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString("en-GB");
  item.append(time, ` ${text}`);
  if (kind !== undefined) item.className = kind;
  const list = $("log");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

function send(command) {
  command.id = nextId++;
  socket.send(JSON.stringify(command));
  return command.id;
}

function connected() {
  return socket !== undefined && socket.readyState === WebSocket.OPEN;
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

// --- The selection panels -----------------------------------------------------------------

/** Draws the panel of `selection` from `view[selection]`. */
function render(selection) {
  const v = view[selection];
  const owner = $(`${selection}-owner`);
  const text = $(`${selection}-text`);
  const image = $(`${selection}-image`);
  const copy = $(`${selection}-copy`);
  const item = v.item;
  owner.dataset.owner = v.owner;
  owner.textContent = ownerText(v);
  text.hidden = item?.text === undefined && item?.note === undefined;
  text.textContent = item?.text ?? item?.note ?? "";
  const showImage = item?.blob !== undefined && SHOWN.includes(item.mime);
  if (image.dataset.url !== undefined && image.dataset.item !== item?.key) {
    URL.revokeObjectURL(image.dataset.url);
    delete image.dataset.url;
    image.removeAttribute("src");
  }
  if (showImage && image.dataset.item !== item.key) {
    image.dataset.url = URL.createObjectURL(item.blob);
    image.src = image.dataset.url;
  }
  image.dataset.item = showImage ? item.key : "";
  image.dataset.bytes = showImage ? String(item.bytes) : "";
  image.hidden = !showImage;
  copy.disabled = !(item?.text !== undefined || showImage) || navigator.clipboard === undefined;
  copy.title = navigator.clipboard === undefined
    ? "The browser offers no clipboard here: open the page on localhost or over HTTPS"
    : "";
}

function ownerText(v) {
  switch (v.owner) {
    case "unknown":
      return "Not known while the page is not connected to the relay.";
    case "nobody":
      return "Empty: nobody has copied anything.";
    case "host": {
      const from = v.item?.ours ? ", sent from this page" : "";
      return `The host’s copy: ${v.mime}, ${size(v.bytes)}${from}.`;
    }
    case "guest": {
      if (v.item !== undefined) {
        return `The guest’s copy: ${v.item.mime}, ${size(v.item.bytes)}.`;
      }
      const what = `The guest’s copy, offered as ${v.mimes.join(", ")}`;
      if (v.error !== undefined) return `${what}: not fetched (${v.error}).`;
      if (v.fetching !== undefined) return `${what}: fetching ${v.fetching.mime}…`;
      return `${what}.`;
    }
  }
}

function setView(selection, fields) {
  view[selection] = fields;
  render(selection);
}

/** The type to show of what the guest offers: text first, then an image, then the first. */
function preferred(mimes) {
  return mimes.find((m) => m === TEXT) ?? mimes.find((m) => SHOWN.includes(m)) ?? mimes[0];
}

/** Fetches the guest's copy of `selection`, once, in a tab the user can see. */
function fetchOffer(selection) {
  const v = view[selection];
  if (
    v.owner !== "guest" || v.item !== undefined || v.fetching !== undefined ||
    v.error !== undefined || document.visibilityState !== "visible" || !connected()
  ) return;
  const mime = preferred(v.mimes);
  v.fetching = { id: send({ cmd: "paste", selection, mime }), mime };
  render(selection);
}

function item(mime, bytes, fields) {
  return { key: String(++items), mime, bytes, ...fields };
}

function onData(event) {
  const v = view[event.selection];
  if (v === undefined || v.fetching?.id !== event.id) return;
  delete v.fetching;
  const data = event.text !== undefined
    ? { text: event.text }
    : { blob: new Blob([bytesOf(event.base64)], { type: event.mime }) };
  v.item = item(event.mime, event.bytes, data);
  if (data.blob !== undefined && !SHOWN.includes(event.mime)) {
    v.item.note = `(${event.mime}: the browser cannot show it)`;
  }
  render(event.selection);
  log(
    `Fetched the guest’s copy of ${NAMES[event.selection]}: ${event.mime}, ${size(event.bytes)}.`,
  );
}

// --- Transfers ------------------------------------------------------------------------------

/** Shows one transfer's bar: `key` names it, `label` says what moves where. */
function showTransfer(key, label, done, total) {
  let row = document.querySelector(`#transfers li[data-key="${key}"]`);
  if (row === null) {
    row = document.createElement("li");
    row.dataset.key = key;
    row.append(document.createElement("span"), document.createElement("progress"));
    $("transfers").prepend(row);
    while ($("transfers").children.length > 6) $("transfers").lastChild.remove();
    $("transfers-empty").hidden = true;
  }
  const percent = total > 0 ? Math.floor((done * 100) / total) : 100;
  const [text, bar] = row.children;
  text.textContent = `${label}: ${done >= total ? "done" : `${percent} %`}`;
  bar.max = 100;
  bar.value = percent;
  row.dataset.percent = String(percent);
  row.dataset.steps = String(Number(row.dataset.steps ?? 0) + 1);
}

function onProgress(event) {
  const where = event.selection === undefined ? "" : `, ${NAMES[event.selection]}`;
  const label = event.direction === "in" ? `From the guest${where}` : `Into the guest${where}`;
  showTransfer(
    `${connection}:${event.direction}:${event.transfer}`,
    label,
    event.done,
    event.total,
  );
}

/** Follows an upload to the relay (the WebSocket API has no progress event). */
function followUpload(id, selection, total) {
  const key = `upload:${id}`;
  const label = `To the relay, for ${NAMES[selection]}`;
  uploads.set(id, total);
  const poll = () => {
    if (!uploads.has(id)) return;
    const left = socket.bufferedAmount;
    showTransfer(key, label, total - Math.min(left, total), total);
    if (left > 0) setTimeout(poll, 50);
    else uploads.delete(id);
  };
  poll();
}

// --- The relay's events -----------------------------------------------------------------------

const handlers = {
  hello(e) {
    retries = 0;
    connection++;
    for (const s of SELECTIONS) setView(s, { owner: "nobody" });
    setStatus(`Connected to the relay (${e.connect}); waiting for the guest agent…`);
    log(`Connected to the relay, which relays ${e.connect}.`);
  },
  caps() {
    setStatus("The guest agent is connected.", "ok");
    log("The guest agent is connected.");
  },
  offer(e) {
    if (view[e.selection] === undefined) return;
    setView(e.selection, { owner: "guest", mimes: e.mimes });
    log(`The guest copied on ${NAMES[e.selection]}: ${e.mimes.join(", ")}.`);
    fetchOffer(e.selection);
  },
  copied(e) {
    if (view[e.selection] === undefined) return;
    const ours = sent[e.selection];
    const same = ours !== undefined && ours.mime === e.mime && ours.bytes === e.bytes;
    setView(e.selection, {
      owner: "host",
      mime: e.mime,
      bytes: e.bytes,
      ...(same ? { item: ours } : {}),
    });
    if (!same) log(`The host copied on ${NAMES[e.selection]}: ${e.mime}, ${size(e.bytes)}.`);
  },
  release(e) {
    if (view[e.selection] === undefined) return;
    setView(e.selection, { owner: "nobody" });
    const who = e.by === "host" ? "The host" : "The guest";
    log(`${who} let go of ${NAMES[e.selection]}.`);
  },
  data: onData,
  progress: onProgress,
  served: (e) =>
    log(`The guest pasted the host’s copy of ${NAMES[e.selection]}: ${e.mime}, ${size(e.bytes)}.`),
  kept: (e) => log(`The relay keeps the guest’s copy of ${NAMES[e.selection]} (${size(e.bytes)}).`),
  diagnostic: (e) => log(`The session: ${e.message}`),
  ok(e) {
    const copy = sending.get(e.id);
    if (copy === undefined) return;
    sending.delete(e.id);
    sent[copy.selection] = copy.item;
    setStatus(`Sent: the guest’s ${copy.selection} holds it now.`, "ok");
    log(`Sent ${copy.item.mime} (${size(copy.item.bytes)}) to ${NAMES[copy.selection]}.`);
  },
  error(e) {
    log(`Error ${e.code}: ${e.message}`, "bad");
    const copy = sending.get(e.id);
    if (copy !== undefined) {
      sending.delete(e.id);
      setStatus(`Not sent: ${e.message}`, "bad");
    }
    for (const s of SELECTIONS) {
      if (view[s]?.fetching?.id === e.id) {
        delete view[s].fetching;
        view[s].error = e.message;
        render(s);
      }
    }
  },
  exit: (e) => log(`The relay stopped: ${e.reason}.`, "bad"),
};

// --- Sending --------------------------------------------------------------------------------

function copy(selection, mime, fields, shown) {
  if (!connected()) {
    setStatus("Not sent: the page is not connected to the relay.", "bad");
    return;
  }
  const id = send({ cmd: "copy", selection, mime, ...fields });
  sending.set(id, { selection, item: item(mime, shown.bytes, { ...shown.data, ours: true }) });
  setStatus(`Sending to the guest’s ${selection}…`);
  if (socket.bufferedAmount > 1024 * 1024) followUpload(id, selection, socket.bufferedAmount);
}

function sendText() {
  const text = $("send-text-input").value;
  if (text === "") return;
  const bytes = new TextEncoder().encode(text).length;
  copy($("send-selection").value, TEXT, { text }, { bytes, data: { text } });
}

async function sendImage(file) {
  if (!IMAGES.includes(file.type)) {
    setStatus(`Not sent: ${file.type || "that file"} is not PNG, JPEG, BMP or TIFF.`, "bad");
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const blob = new Blob([bytes], { type: file.type });
  copy($("send-selection").value, file.type, { base64: base64Of(bytes) }, {
    bytes: bytes.length,
    data: { blob },
  });
}

/** Puts what a panel shows on the user's own clipboard; images go as PNG. */
async function copyToUser(selection) {
  const shown = view[selection]?.item;
  if (shown === undefined) return;
  try {
    if (shown.text !== undefined) {
      await navigator.clipboard.writeText(shown.text);
    } else {
      const png = shown.mime === "image/png" ? shown.blob : await toPng(shown.blob);
      await navigator.clipboard.write([new ClipboardItem({ "image/png": png })]);
    }
    setStatus(`On your clipboard: ${shown.mime}, ${size(shown.bytes)}.`, "ok");
  } catch (error) {
    setStatus(`Not copied to your clipboard: ${error.message}`, "bad");
  }
}

async function toPng(blob) {
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  return await canvas.convertToBlob({ type: "image/png" });
}

// --- The connection -------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The relay printed the page's URL with its token; the WebSocket needs it too.
  const query = token === null ? "" : `?token=${encodeURIComponent(token)}`;
  socket = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  socket.addEventListener("message", (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return log(`An unreadable message from the relay: ${String(message.data).slice(0, 80)}`);
    }
    handlers[event.event]?.(event);
  });
  socket.addEventListener("close", (e) => void reconnect(e));
}

/** The connection ended: the panels are unknown until the next relay tells them again. */
async function reconnect(event) {
  for (const s of SELECTIONS) setView(s, { owner: "unknown" });
  sending.clear();
  uploads.clear();
  const delay = Math.min(RETRY_LAST, RETRY_FIRST * 2 ** retries++);
  const why = event.reason === "" ? "" : ` (${event.reason})`;
  let refused = false;
  try {
    // A relay that restarted with another token answers 401: say so rather than retry blindly.
    const probe = await fetch(location.href, { method: "HEAD", cache: "no-store" });
    refused = probe.status === 401 || probe.status === 403;
  } catch {
    // Nothing answers yet.
  }
  if (retries === 1) log(`Disconnected from the relay${why}.`, "bad");
  setStatus(
    refused
      ? "The relay at this address refused this page’s token: open the address it printed. Retrying…"
      : `Disconnected from the relay${why}; reconnecting in ${Math.ceil(delay / 1000)} s…`,
    "bad",
  );
  setTimeout(connect, delay);
}

for (const s of SELECTIONS) {
  setView(s, { owner: "unknown" });
  $(`${s}-copy`).addEventListener("click", () => void copyToUser(s));
}
$("send-text").addEventListener("click", sendText);
$("send-image-input").addEventListener("change", (e) => {
  const file = e.target.files?.[0];
  if (file !== undefined) void sendImage(file);
  e.target.value = "";
});
document.addEventListener("paste", (e) => {
  const file = [...(e.clipboardData?.files ?? [])].find((f) => IMAGES.includes(f.type));
  if (file !== undefined && e.target !== $("send-text-input")) {
    e.preventDefault();
    void sendImage(file);
  }
});
document.addEventListener("visibilitychange", () => SELECTIONS.forEach(fetchOffer));
connect();
