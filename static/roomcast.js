// roomcast.js: a small browser client for the roomcast protocol over WebSocket.
//
// Every protocol message is one JSON text message (protocol.md). The protocol has no
// request ids: the server answers system requests (login, rooms, ping) in order, and
// room messages get no success reply, only errors that name their room. So replies
// without a "room" in their detail settle the oldest pending system request, and room
// errors are dispatched as "problem" events.
//
// Events (EventTarget; read event.detail):
//   "open"     {}                                  the socket is open
//   "event"    {room, history, event}              one room event: {time, user, type, data}
//   "problem"  {code, msg, detail}                 an error not answering a request
//   "close"    {code, reason}                      the socket closed

export class RoomcastError extends Error {
  constructor(response) {
    super(response.msg);
    this.code = response.code;
    this.detail = response.detail ?? {};
  }
}

export class RoomcastClient extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.pending = []; // [{resolve, reject}] of system requests, oldest first
    this.user = null;
  }

  // Opens the socket; resolves once it is open.
  connect() {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      socket.addEventListener("open", () => {
        this.emit("open", {});
        resolve();
      });
      socket.addEventListener("message", (message) => this.receive(message.data));
      socket.addEventListener("close", (close) => {
        const error = new RoomcastError({ code: 0, msg: "connection closed" });
        this.pending.splice(0).forEach((p) => p.reject(error));
        this.emit("close", { code: close.code, reason: close.reason });
        reject(error);
      });
    });
  }

  close() {
    this.socket?.close(1000, "bye");
  }

  send(message) {
    this.socket.send(JSON.stringify(message));
  }

  // Sends a system request and resolves with the reply's response ({code, msg, detail}),
  // or rejects with a RoomcastError.
  request(message) {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.send(message);
    });
  }

  async login(user, pass = "") {
    const response = await this.request({ system: "login", options: { user, pass } });
    this.user = response.detail.user;
    return this.user;
  }

  // Every room with its member count, following the server's pages ("next") up to
  // maxPages of them.
  async rooms(maxPages = 20) {
    const rooms = [];
    let after;
    for (let page = 0; page < maxPages; page++) {
      const message = after === undefined ? { system: "rooms" } : { system: "rooms", options: { after } };
      const response = await this.request(message);
      rooms.push(...response.detail.rooms);
      after = response.detail.next;
      if (typeof after !== "string") break;
    }
    return rooms;
  }

  ping() {
    return this.request({ system: "ping" });
  }

  join(room) {
    this.send({ room, type: "join" });
  }

  leave(room) {
    this.send({ room, type: "leave" });
  }

  msg(room, data) {
    this.send({ room, type: "msg", data });
  }

  transform(room, pos, rot) {
    this.send({ room, type: "transform", data: { pos, rot } });
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // the server sends only JSON; ignore anything else
    }
    if (frame.info === "user") {
      for (const event of frame.payload ?? []) {
        this.emit("event", { room: frame.room, history: frame.history === true, event });
      }
      return;
    }
    const response = frame.response;
    if (!response) return; // unknown shapes are ignored (protocol.md §8)
    const forRoom = response.detail && "room" in response.detail;
    const waiting = forRoom ? undefined : this.pending.shift();
    if (waiting) {
      if (frame.info === "error") waiting.reject(new RoomcastError(response));
      else waiting.resolve(response);
    } else if (frame.info === "error") {
      this.emit("problem", response);
    }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

// The WebSocket address of the server that served this page.
export function defaultUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws`;
}
