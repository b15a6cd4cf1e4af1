// The playground: a page over realtime.js, imported from the gateway that served the page
// (/client/realtime.js), or, when a plain static server hosts these files, from the gateway the
// page connects to: this directory works served from anywhere.
//
// Everything received is shown with textContent, never parsed as HTML: any user of a channel
// chooses what its broadcasts and presence meta contain.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const LOG_LIMIT = 500;
const MESSAGE_LIMIT = 50;

const page = {
  rt: null, // the Realtime instance while connected (or reconnecting)
  cards: new Map(), // channel -> {sub, root}
  inspectTimer: null,
  clients: new Map(), // realtime.js URL -> the imported module
};

// ---- settings -----------------------------------------------------------------------------

function initialGateway() {
  const named = params.get("gateway");
  if (named) return named;
  // Its own origin: opened from the gateway, that is the gateway.
  return location.protocol.startsWith("http") ? location.origin : "http://127.0.0.1:8080";
}

function initialUser() {
  // A new one each time the page loads, so two tabs are two users (sessionStorage would be
  // copied by "duplicate tab", and two tabs of one user make one member).
  return "user-" + Math.random().toString(16).slice(2, 6);
}

/** The gateway's HTTP base URL, from what the user typed (http(s) or ws(s), with /ws or not). */
function gatewayBase() {
  const text = $("gateway").value.trim();
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`the gateway URL ${JSON.stringify(text)} is not a URL (like http://127.0.0.1:8080)`);
  }
  if (url.protocol === "ws:") url.protocol = "http:";
  if (url.protocol === "wss:") url.protocol = "https:";
  if (!["http:", "https:"].includes(url.protocol)) {
    throw new Error(`the gateway URL must be http(s) or ws(s), not ${url.protocol}`);
  }
  let path = url.pathname.replace(/\/+$/, "");
  if (path.endsWith("/ws")) path = path.slice(0, -3);
  return url.origin + path;
}

async function loadClient(base) {
  // The client of this page's own server first (served by a gateway, it is there): only code
  // from where the page came from runs in its origin, whatever gateway it is pointed at.
  // Hosted on a plain static server, there is none: then the gateway's own client, as the
  // gateway the user connects to is code the user chose to trust.
  const own = new URL("../client/realtime.js", location.href).href;
  const failures = [];
  for (const url of [own, base + "/client/realtime.js"]) {
    if (!page.clients.has(url)) {
      try {
        page.clients.set(url, await import(url));
      } catch (err) {
        failures.push(`${url}: ${err.message}`);
        continue;
      }
    }
    return page.clients.get(url);
  }
  throw new Error(
    `could not load realtime.js (is the gateway up, and is this page's origin ` +
      `${location.origin} in its CORS_ALLOWED_ORIGINS?): ${failures.join("; ")}`,
  );
}

function parseJson(text, what) {
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${err.message}`);
  }
}

function showError(element, err) {
  element.textContent = err ? String(err.message || err) + (err.code ? ` (${err.code})` : "") : "";
  element.hidden = !err;
}

// ---- event log ----------------------------------------------------------------------------

function log(direction, text) {
  const list = $("log");
  const item = document.createElement("li");
  item.className = direction;
  const time = document.createElement("time");
  time.textContent = new Date().toISOString().slice(11, 23);
  const arrow = document.createElement("span");
  arrow.className = "direction";
  arrow.textContent = { in: "←", out: "→", http: "⇄", note: "•" }[direction] || "•";
  const body = document.createElement("code");
  body.textContent = text;
  item.append(time, arrow, body);
  list.prepend(item); // newest first
  while (list.childElementCount > LOG_LIMIT) list.lastElementChild.remove();
}

function frameText(frame) {
  return typeof frame === "string" ? frame : JSON.stringify(frame);
}

// ---- connection ---------------------------------------------------------------------------

function setState(state) {
  const label = $("state");
  label.textContent = state;
  label.dataset.state = state;
  const live = page.rt !== null;
  $("connect").disabled = live;
  $("disconnect").disabled = !live;
  $("subscribe").disabled = state !== "connected";
  for (const field of ["gateway", "userId", "token"]) $(field).disabled = live;
}

async function connect() {
  showError($("connectError"), null);
  let base;
  let client;
  try {
    base = gatewayBase();
    client = await loadClient(base);
  } catch (err) {
    showError($("connectError"), err);
    log("note", err.message);
    return;
  }
  const token = $("token").value.trim();
  const options = token ? { token } : { userId: $("userId").value.trim() };
  const rt = new client.Realtime(base, options);
  page.rt = rt;
  rt.on("state", (state) => {
    if (page.rt !== rt) return;
    if (state === "closed") {
      // Closed for good (the client gave up, or the gateway refused it): start over.
      page.rt = null;
      for (const channel of [...page.cards.keys()]) removeCard(channel);
    }
    setState(state);
  });
  rt.on("frame", (frame, direction) => log(direction === "out" ? "out" : "in", frameText(frame)));
  rt.on("error", (err) => log("note", `error: ${err.message || err}${err.code ? ` (${err.code})` : ""}`));
  setState("connecting");
  log("note", `connecting to ${base} as ${token ? "the JWT's user" : options.userId}`);
  try {
    await rt.connect();
  } catch (err) {
    page.rt = null;
    rt.close();
    setState("closed");
    showError($("connectError"), err);
    log("note", `connect failed: ${err.message}${err.status ? ` (HTTP ${err.status})` : ""}`);
  }
}

function disconnect() {
  const rt = page.rt;
  page.rt = null;
  if (rt) rt.close();
  for (const channel of [...page.cards.keys()]) removeCard(channel);
  setState("closed");
  log("note", "disconnected");
}

// ---- channels -----------------------------------------------------------------------------

function subscribe() {
  showError($("subscribeError"), null);
  const channel = $("channel").value.trim();
  const listen = [];
  if ($("listenBroadcast").checked) listen.push("broadcast");
  if ($("listenPresence").checked) listen.push("presence");
  if (!channel) return showError($("subscribeError"), new Error("name a channel"));
  if (listen.length === 0) return showError($("subscribeError"), new Error("listen to something"));
  if (page.cards.has(channel)) {
    return showError($("subscribeError"), new Error(`already subscribed to ${channel}`));
  }
  const sub = page.rt.subscribe(channel, { listen, recover: $("recover").checked });
  const card = addCard(channel, listen, sub);
  sub.ready.then(
    () => {
      card.root.querySelector(".note").textContent = "subscribed";
    },
    (err) => {
      removeCard(channel);
      showError($("subscribeError"), err);
    },
  );
}

function addCard(channel, listen, sub) {
  const root = $("channelCard").content.firstElementChild.cloneNode(true);
  root.dataset.channel = channel;
  root.querySelector(".name").textContent = channel;
  root.querySelector(".listen").textContent = `listen: ${listen.join(", ")}`;
  root.querySelector(".note").textContent = "subscribing…";
  root.querySelector(".meta").value = JSON.stringify({ name: $("userId").value.trim() || "me" });
  root.querySelector(".presence").hidden = !listen.includes("presence");
  const card = { sub, root, joined: false };
  const error = root.querySelector(".error");

  const act = (button, action) =>
    root.querySelector(button).addEventListener("click", async () => {
      showError(error, null);
      try {
        await action();
      } catch (err) {
        showError(error, err);
      }
    });

  act(".send", async () => {
    const payload = parseJson(root.querySelector(".payload").value, "the payload");
    await sub.publish(root.querySelector(".event").value.trim(), payload);
  });
  const track = async () => {
    await sub.track(parseJson(root.querySelector(".meta").value, "the meta"));
    setJoined(card, true);
  };
  act(".join", track);
  act(".update", track);
  act(".leave", async () => {
    await sub.untrack();
    setJoined(card, false);
  });
  act(".unsubscribe", async () => {
    removeCard(channel);
    await sub.unsubscribe();
  });

  sub.on("members", (members) => renderMembers(card, members));
  sub.on("broadcast", (message) => {
    const list = root.querySelector(".messages");
    const item = document.createElement("li");
    const who = message.user_id ? `${message.user_id}: ` : "(http) ";
    item.textContent = `${who}${message.event} ${JSON.stringify(message.payload)}`;
    if (message.offset !== undefined && message.offset !== null) item.dataset.offset = message.offset;
    list.prepend(item);
    while (list.childElementCount > MESSAGE_LIMIT) list.lastElementChild.remove();
  });
  sub.on("recovered", (info) => {
    const text = info.recovered
      ? "reconnected: recovered every message missed"
      : "reconnected: could not recover everything missed (history trimmed or expired)";
    root.querySelector(".note").textContent = text;
    log("note", `${channel}: ${text}`);
  });
  page.cards.set(channel, card);
  $("channels").prepend(root);
  return card;
}

function setJoined(card, joined) {
  card.joined = joined;
  card.root.querySelector(".join").disabled = joined;
  card.root.querySelector(".update").disabled = !joined;
  card.root.querySelector(".leave").disabled = !joined;
}

function renderMembers(card, members) {
  const list = card.root.querySelector(".members");
  list.replaceChildren();
  const sorted = [...members.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [user, member] of sorted) {
    const item = document.createElement("li");
    item.dataset.user = user;
    const name = document.createElement("b");
    name.textContent = user;
    const meta = document.createElement("code");
    meta.textContent = JSON.stringify(member.meta ?? {});
    item.append(name, " ", meta);
    list.append(item);
  }
  card.root.querySelector(".count").textContent = `(${members.size})`;
}

function removeCard(channel) {
  const card = page.cards.get(channel);
  if (!card) return;
  page.cards.delete(channel);
  card.root.remove();
}

// ---- HTTP API -----------------------------------------------------------------------------

function apiHeaders() {
  const key = $("apiKey").value.trim();
  return key ? { "x-api-key": key } : {};
}

async function call(method, path, body) {
  const base = gatewayBase();
  const init = { method, headers: apiHeaders(), credentials: "omit" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(base + path, init);
  let answer;
  try {
    answer = await response.json();
  } catch {
    answer = { error: `HTTP ${response.status}, not JSON` };
  }
  return { status: response.status, answer };
}

async function postEvent() {
  const status = $("httpStatus");
  status.className = "result";
  try {
    const body = {
      channel: $("httpChannel").value.trim(),
      event: $("httpEvent").value.trim(),
      payload: parseJson($("httpPayload").value, "the payload"),
    };
    const { status: code, answer } = await call("POST", "/api/event", body);
    status.textContent = `${code} ${JSON.stringify(answer)}`;
    status.classList.add(code === 200 ? "ok" : "failed");
    log("http", `POST /api/event ${JSON.stringify(body)} -> ${code} ${JSON.stringify(answer)}`);
  } catch (err) {
    status.textContent = err.message;
    status.classList.add("failed");
  }
}

async function inspect() {
  const status = $("inspectorStatus");
  const table = $("inspector");
  status.className = "result";
  try {
    const { status: code, answer } = await call("GET", "/api/channels?limit=100");
    if (code !== 200) {
      table.hidden = true;
      const why =
        code === 403 && /server API is off/.test(answer.error || "")
          ? "the server API is off on this gateway (start it with API_KEYS and PLAYGROUND=1)"
          : code === 401
            ? "enter an API key above"
            : answer.error;
      status.textContent = `${code}: ${why}`;
      status.classList.add("failed");
      return;
    }
    const rows = await Promise.all(
      answer.channels.map(async ({ channel, subscribers }) => {
        const stats = await call("GET", `/api/presence/stats?channel=${encodeURIComponent(channel)}`);
        return { channel, subscribers, members: stats.status === 200 ? stats.answer.users : "?" };
      }),
    );
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.channel = row.channel;
      for (const value of [row.channel, row.subscribers, row.members]) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.append(td);
      }
      body.append(tr);
    }
    table.hidden = false;
    status.textContent =
      `${rows.length} active channel(s), ${answer.instances} instance(s)` +
      (answer.complete ? "" : ", some did not answer");
    status.classList.add("ok");
  } catch (err) {
    table.hidden = true;
    status.textContent = err.message;
    status.classList.add("failed");
  }
}

function autoInspect() {
  clearInterval(page.inspectTimer);
  page.inspectTimer = $("inspectAuto").checked ? setInterval(inspect, 2000) : null;
  if (page.inspectTimer) inspect();
}

// ---- wiring -------------------------------------------------------------------------------

$("gateway").value = initialGateway();
$("userId").value = initialUser();
$("connect").addEventListener("click", connect);
$("disconnect").addEventListener("click", disconnect);
$("subscribe").addEventListener("click", subscribe);
$("httpSend").addEventListener("click", postEvent);
$("inspect").addEventListener("click", inspect);
$("inspectAuto").addEventListener("change", autoInspect);
$("clearLog").addEventListener("click", () => $("log").replaceChildren());
setState("closed");
// For tests and the curious: the page's state, read-only by convention.
window.playground = page;
