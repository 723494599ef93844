// viewer.js: the live room viewer. Logs in as a guest, lists the rooms, and for the chosen
// room draws every member's head top-down (x/z) from the pose ticks, beside the chat.
//
// For automated browser tests the state is mirrored in window.roomcast and in data-*
// attributes: <body data-state="connecting|ready|closed" data-me=NAME data-room=ROOM>.

import { RoomcastClient, RoomcastError, defaultUrl } from "./roomcast.js";

const LOBBY = "lobby";
const PING_EVERY_MS = 30_000; // well inside the server's 120 s idle timeout
const ROOMS_EVERY_MS = 5_000;
const MAX_CHAT = 500; // chat lines kept per room
const LOGIN_TRIES = 5;

const $ = (id) => document.getElementById(id);

// The public state: read by tests, written only by this module.
const state = {
  ready: false,
  me: null,
  room: null,
  rooms: [], // [{room, users}] as the server last listed them
  members: [], // names in the shown room
  chat: [], // [{time, user, type, data}] of the shown room: msg, join, leave
  poses: {}, // {user: {x, y, z, heading}} in the shown room
  error: null,
};
window.roomcast = state;

// Everything known about each room we are in, keyed by name.
const joined = new Map();

const client = new RoomcastClient(defaultUrl());
let timers = [];

function roomState(name) {
  if (!joined.has(name)) joined.set(name, { members: [], chat: [], poses: {} });
  return joined.get(name);
}

function setStatus(status, text) {
  document.body.dataset.state = status;
  $("status").textContent = text;
  $("status").className = `status status-${status}`;
}

function randomName() {
  return `viewer-${String(Math.floor(Math.random() * 10000)).padStart(4, "0")}`;
}

async function loginAsGuest() {
  for (let attempt = 0; attempt < LOGIN_TRIES; attempt++) {
    try {
      return await client.login(randomName());
    } catch (error) {
      if (!(error instanceof RoomcastError) || error.code !== 409) throw error;
    }
  }
  throw new Error("every guest name tried was taken");
}

async function start() {
  setStatus("connecting", "Connecting…");
  try {
    await client.connect();
    roomState(LOBBY); // login joins the lobby: its history, join and list follow the 202
    state.me = await loginAsGuest();
    document.body.dataset.me = state.me;
    $("me").textContent = state.me;
    await refreshRooms();
    state.ready = true;
    setStatus("ready", "Live");
    const wanted = decodeURIComponent(location.hash.slice(1)) || LOBBY;
    show(wanted);
    // ?say=TEXT sends one message to the shown room once live: for demos, and for the
    // browser test, which drives a headless Chromium that cannot type.
    const say = new URLSearchParams(location.search).get("say");
    if (say) client.msg(wanted, say.slice(0, 2000));
    timers = [
      setInterval(() => client.ping().catch(() => {}), PING_EVERY_MS),
      setInterval(() => refreshRooms().catch(() => {}), ROOMS_EVERY_MS),
    ];
  } catch (error) {
    state.error = error.message;
    setStatus("closed", `Could not connect: ${error.message}`);
  }
}

async function refreshRooms() {
  state.rooms = await client.rooms();
  renderRooms();
}

// Shows a room: joins it (the lobby is joined at login), leaving the room shown before.
function show(name) {
  if (name === state.room) return;
  const previous = state.room;
  if (previous && previous !== LOBBY) {
    client.leave(previous);
    joined.delete(previous);
  }
  if (!joined.has(name)) {
    roomState(name);
    if (name !== LOBBY) client.join(name);
  }
  state.room = name;
  document.body.dataset.room = name;
  if (location.hash.slice(1) !== encodeURIComponent(name)) {
    history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  }
  $("room-title").textContent = name;
  publish();
  renderRooms();
  renderChat();
  renderMembers();
  draw();
}

// Copies the shown room's state to window.roomcast.
function publish() {
  const room = joined.get(state.room) ?? { members: [], chat: [], poses: {} };
  state.members = room.members;
  state.chat = room.chat;
  state.poses = room.poses;
}

function onEvent({ room: name, event }) {
  const room = joined.get(name);
  if (!room) return; // a room we just left
  switch (event.type) {
    case "list":
      room.members = [...event.data];
      break;
    case "join":
      if (!room.members.includes(event.user)) room.members = [...room.members, event.user].sort();
      addChat(room, event);
      break;
    case "leave":
      room.members = room.members.filter((user) => user !== event.user);
      delete room.poses[event.user];
      addChat(room, event);
      if (event.user === state.me) joined.delete(name);
      break;
    case "msg":
      addChat(room, event);
      break;
    case "transform":
      room.poses[event.user] = pose(event.data);
      break;
    default:
      return; // game states and future types are not shown
  }
  if ((event.type === "join" || event.type === "leave") && event.user === state.me) {
    refreshRooms().catch(() => {}); // our own move changed the counts
  }
  if (name !== state.room) return;
  publish();
  if (event.type === "transform") {
    scheduleDraw();
    renderMembers();
  } else {
    renderChat();
    renderMembers();
    scheduleDraw();
  }
}

function addChat(room, event) {
  room.chat.push({ time: event.time, user: event.user, type: event.type, data: event.data });
  if (room.chat.length > MAX_CHAT) room.chat.splice(0, room.chat.length - MAX_CHAT);
}

// A pose's position and the heading of its forward (+z) axis on the floor, in radians.
function pose({ pos, rot }) {
  let forwardX;
  let forwardZ;
  if (typeof rot.w === "number") {
    // Rotate (0, 0, 1) by the quaternion.
    forwardX = 2 * (rot.x * rot.z + rot.w * rot.y);
    forwardZ = 1 - 2 * (rot.x * rot.x + rot.y * rot.y);
  } else {
    // Euler angles in degrees: yaw about y.
    const yaw = (rot.y * Math.PI) / 180;
    forwardX = Math.sin(yaw);
    forwardZ = Math.cos(yaw);
  }
  return { x: pos.x, y: pos.y, z: pos.z, heading: Math.atan2(forwardX, forwardZ) };
}

// ---- rendering -------------------------------------------------------------------------

function renderRooms() {
  const list = $("rooms");
  const names = new Set(state.rooms.map((r) => r.room));
  const rows = [...state.rooms];
  if (state.room && !names.has(state.room)) rows.push({ room: state.room, users: 0 });
  list.replaceChildren(
    ...rows.map(({ room, users }) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.room = room;
      button.className = room === state.room ? "room current" : "room";
      const label = document.createElement("span");
      label.textContent = room;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = users;
      button.append(label, count);
      button.addEventListener("click", () => show(room));
      item.append(button);
      return item;
    }),
  );
}

function renderChat() {
  const list = $("chat");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(
    ...state.chat.map((line) => {
      const item = document.createElement("li");
      item.dataset.type = line.type;
      item.dataset.user = line.user;
      const time = document.createElement("time");
      time.textContent = new Date(line.time * 1000).toLocaleTimeString();
      const who = document.createElement("strong");
      who.textContent = line.user;
      who.style.color = colour(line.user);
      const text = document.createElement("span");
      text.className = "text";
      if (line.type === "msg") {
        text.textContent = typeof line.data === "string" ? line.data : JSON.stringify(line.data);
      } else {
        item.className = "presence";
        text.textContent = line.type === "join" ? "joined" : "left";
      }
      item.append(time, who, text);
      return item;
    }),
  );
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function renderMembers() {
  const list = $("members");
  $("member-count").textContent = `${state.members.length} member${state.members.length === 1 ? "" : "s"}`;
  list.replaceChildren(
    ...state.members.map((user) => {
      const item = document.createElement("li");
      item.dataset.user = user;
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = colour(user);
      const name = document.createElement("span");
      name.textContent = user === state.me ? `${user} (you)` : user;
      const where = document.createElement("span");
      where.className = "where";
      const p = state.poses[user];
      where.textContent = p ? `x ${metres(p.x)}  z ${metres(p.z)}` : "no pose";
      if (p) {
        item.dataset.x = p.x;
        item.dataset.z = p.z;
      }
      item.append(dot, name, where);
      return item;
    }),
  );
}

// A stable colour per user name (FNV-1a, so "headset1" and "headset2" differ).
function colour(name) {
  let hash = 0x811c9dc5;
  for (const ch of name) hash = Math.imul(hash ^ ch.codePointAt(0), 0x01000193);
  hash = Math.imul(hash ^ (hash >>> 16), 0x45d9f3b); // spread the low bits
  hash = (hash ^ (hash >>> 16)) >>> 0;
  return `hsl(${hash % 360} 62% 50%)`;
}

// Metres with two decimals, without "-0.00".
function metres(value) {
  return (Math.abs(value) < 0.005 ? 0 : value).toFixed(2);
}

let drawQueued = false;
function scheduleDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    draw();
  });
}

// The floor plan: a metre grid, the origin, and one marker per posed member, looking along
// its heading. The view fits every pose, and at least 3 m around the origin.
function draw() {
  const canvas = $("floor");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);

  const poses = Object.entries(state.poses);
  let extent = 3;
  for (const [, p] of poses) extent = Math.max(extent, Math.abs(p.x) + 1, Math.abs(p.z) + 1);
  const scale = (Math.min(width, height) / 2 - 24) / extent; // pixels per metre
  const cx = width / 2;
  const cy = height / 2;
  // +x to the right, +z up the screen (away from the viewer).
  const toScreen = (x, z) => [cx + x * scale, cy - z * scale];

  g.lineWidth = 1;
  g.strokeStyle = getComputedStyle(canvas).getPropertyValue("--grid").trim() || "#e3e7ee";
  g.beginPath();
  const lines = Math.ceil(Math.max(width, height) / scale / 2) + 1;
  for (let i = -lines; i <= lines; i++) {
    const [x] = toScreen(i, 0);
    const [, y] = toScreen(0, i);
    g.moveTo(x, 0);
    g.lineTo(x, height);
    g.moveTo(0, y);
    g.lineTo(width, y);
  }
  g.stroke();

  g.strokeStyle = getComputedStyle(canvas).getPropertyValue("--axis").trim() || "#b8c0cc";
  g.beginPath();
  g.moveTo(cx, 0);
  g.lineTo(cx, height);
  g.moveTo(0, cy);
  g.lineTo(width, cy);
  g.stroke();
  g.fillStyle = g.strokeStyle;
  g.font = "11px system-ui, sans-serif";
  g.fillText("+x", width - 22, cy - 6);
  g.fillText("+z", cx + 6, 14);
  g.fillText("1 m", 8, height - 8);
  g.fillRect(34, height - 12, scale, 2);

  g.font = "600 12px system-ui, sans-serif";
  g.textAlign = "center";
  for (const [user, p] of poses.sort(([a], [b]) => (a < b ? -1 : 1))) {
    const [x, y] = toScreen(p.x, p.z);
    const hue = colour(user);
    // Heading: a wedge pointing where the head looks.
    const angle = p.heading;
    const dx = Math.sin(angle);
    const dy = -Math.cos(angle);
    g.fillStyle = hue;
    g.globalAlpha = 0.25;
    g.beginPath();
    g.moveTo(x, y);
    g.arc(x, y, 28, Math.atan2(dy, dx) - 0.45, Math.atan2(dy, dx) + 0.45);
    g.closePath();
    g.fill();
    g.globalAlpha = 1;
    g.beginPath();
    g.arc(x, y, 8, 0, 2 * Math.PI);
    g.fill();
    g.lineWidth = 2;
    g.strokeStyle = "#fff";
    g.stroke();
    g.fillStyle = getComputedStyle(canvas).getPropertyValue("--label").trim() || "#1c2430";
    g.fillText(user === state.me ? `${user} (you)` : user, x, y - 14);
  }
  canvas.dataset.poses = poses.length;
}

// ---- wiring ----------------------------------------------------------------------------

client.addEventListener("event", (e) => onEvent(e.detail));
client.addEventListener("problem", (e) => {
  const { code, msg } = e.detail;
  state.error = `${code} ${msg}`;
  $("notice").textContent = state.error;
  $("notice").hidden = false;
});
client.addEventListener("close", (e) => {
  timers.forEach(clearInterval);
  state.ready = false;
  setStatus("closed", e.detail.reason ? `Disconnected: ${e.detail.reason}` : "Disconnected");
  $("reconnect").hidden = false;
});

$("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (!text || !state.ready) return;
  client.msg(state.room, text);
  input.value = "";
});
$("reconnect").addEventListener("click", () => location.reload());
$("notice").addEventListener("click", () => ($("notice").hidden = true));
window.addEventListener("resize", scheduleDraw);
window.addEventListener("hashchange", () => {
  if (state.ready) show(decodeURIComponent(location.hash.slice(1)) || LOBBY);
});

start();
