// roomcast.js: the roomcast client for JavaScript. One ES module, no dependencies, the same
// API in browsers (WebSocket) and in Node (raw TCP with the 4-byte length prefix, or
// WebSocket). protocol.md in the repository is the wire contract; README.md beside this file
// shows the API with examples.
//
// Why it is built the way it is:
//
// - The protocol has no request ids. The server answers every system message (login,
//   resume, logout, ping, rooms) exactly once and in order, and answers a room message only
//   when it fails, with an error whose detail names the room. So a reply without a room
//   settles the oldest pending system request, and a room error is a "problem" event (or the
//   answer to a pending history query of that room).
// - Sessions outlive connections (protocol.md §9). The client keeps the newest resume token
//   and the last seq it received in each room, so after a lost connection it can resume and
//   receive exactly the history events it missed: none lost, none twice.
// - Browser-only and Node-only code are chosen at run time: `node:net` is imported
//   dynamically, and only when a TCP address is used, so the same file loads in both.

/** The server's default port. */
export const DEFAULT_PORT = 42069;

/**
 * Largest frame accepted from the server: 16 MiB, as protocol.md §1.3 asks, plus room for the
 * two corners it does not cover (a frame a few hundred bytes over). A header beyond it means
 * the stream is broken.
 */
export const MAX_FRAME = 16 * 1024 * 1024 + 64 * 1024;

/** The idle timeout assumed until the login reply tells the real one (the server's default). */
export const DEFAULT_IDLE_TIMEOUT = 120;

const PING = '{"system":"ping"}';
const IS_NODE = typeof process === "object" && process !== null && !!process.versions?.node;

// --- types ---------------------------------------------------------------------------------

/**
 * A room event as the server sends it (protocol.md §2.3).
 * @typedef {object} RoomEvent
 * @property {number} time server time, UNIX seconds
 * @property {string} user who caused it (for list events, the recipient)
 * @property {string} type join, leave, list, msg, transform, game, away, back, ...
 * @property {number} [seq] its number in the room's history; absent on transform and list
 * @property {any} data
 */

/**
 * What the client reports. Every listener gets one of these as `event.detail`, the async
 * iterator yields them, and `on()` callbacks receive them. `kind` tells them apart.
 * @typedef {EventItem | ProblemItem | SystemItem | OpenItem | ReconnectingItem | ReconnectItem | CloseItem} Item
 *
 * @typedef {object} EventItem one room event
 * @property {"event"} kind
 * @property {string} room
 * @property {boolean} history true for a joiner's history and a resume's replay
 * @property {boolean} replayed true for events missed while the connection was down
 * @property {RoomEvent} event
 *
 * @typedef {object} ProblemItem an error that answers no request (a refused room message,
 *   a 429, a 410 for a room during a resume, a 408 or 503 before the server closes)
 * @property {"problem"} kind
 * @property {number} code
 * @property {string} msg
 * @property {Record<string, any>} detail
 * @property {RoomcastError} error
 *
 * @typedef {object} SystemItem a success reply nobody waited for (a raw `send`)
 * @property {"system"} kind
 * @property {number} code
 * @property {string} msg
 * @property {Record<string, any>} detail
 *
 * @typedef {object} OpenItem
 * @property {"open"} kind
 * @property {number} generation
 *
 * @typedef {object} ReconnectingItem the connection was lost; an attempt follows
 * @property {"reconnecting"} kind
 * @property {number} attempt 1, 2, ...
 * @property {number} delay milliseconds waited before this attempt
 * @property {Error} cause why the connection was lost
 *
 * @typedef {object} ReconnectItem a reconnect succeeded; the replayed events follow it
 * @property {"reconnect"} kind
 * @property {boolean} resumed false when the session had expired and the client logged in
 *   afresh and joined its rooms again
 * @property {number} missed history events replayed
 * @property {Record<string, number>} missedTypes the same, per type
 * @property {string[]} gaps rooms whose missed events were no longer kept (some are lost)
 * @property {string[]} rejoined rooms joined again after a fresh login
 * @property {number} attempts
 * @property {number} downtime milliseconds without a connection
 * @property {number} generation
 *
 * @typedef {object} CloseItem the client is closed for good (no reconnect follows)
 * @property {"close"} kind
 * @property {number} code the roomcast code that ended it (408, 409, 413, 503), else 0
 * @property {string} reason
 * @property {Error | null} error null when close() or logout() ended it
 */

/**
 * @typedef {object} Response a reply's `response` object
 * @property {number} time
 * @property {number} code
 * @property {string} msg
 * @property {Record<string, any>} detail
 */

/**
 * @typedef {[number, number, number] | {x: number, y: number, z: number}} Vec3
 * @typedef {[number, number, number] | [number, number, number, number] |
 *   {x: number, y: number, z: number, w?: number}} Rotation Euler angles (x, y, z) or a
 *   quaternion (x, y, z, w)
 * @typedef {object} Pose
 * @property {Vec3} pos
 * @property {Rotation} rot
 * @property {Record<string, {pos: Vec3, rot: Rotation}>} [parts] e.g. left_hand, right_hand
 */

/**
 * @typedef {object} ClientOptions
 * @property {boolean} [autoReconnect=false] on a lost connection, reconnect and resume
 * @property {number} [reconnectAttempts=20] connections tried per loss before giving up
 * @property {number} [reconnectDelay=100] ms before the second attempt (the first is at
 *   once); it doubles up to reconnectMaxDelay, each shortened by a random jitter of up to half
 * @property {number} [reconnectMaxDelay=2000] ms
 * @property {boolean} [keepAlive=true] ping after a third of the idle timeout without sending
 * @property {number} [requestTimeout=10000] ms to wait for an answer
 * @property {number} [connectTimeout=10000] ms to wait for a connection
 * @property {number} [maxBuffered=8388608] bytes the socket may hold unsent; past it
 *   transforms are dropped and other sends throw SendBufferFull
 * @property {number} [maxQueued=1024] messages kept while reconnecting
 * @property {number} [maxPending=256] requests awaiting an answer at once
 * @property {typeof WebSocket} [WebSocket] the WebSocket class for ws:// addresses, when the
 *   runtime has none (Node 20 without --experimental-websocket)
 */

// --- errors --------------------------------------------------------------------------------

/** An error reply from the server: `code` (400..599), `msg` and `detail`. */
export class RoomcastError extends Error {
  /** @param {Partial<Response>} response */
  constructor(response) {
    const code = typeof response?.code === "number" ? response.code : 0;
    const msg = typeof response?.msg === "string" ? response.msg : "";
    super(`${code} ${msg}`);
    this.name = new.target.name;
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.msg = msg;
    /** @type {Record<string, any>} */
    this.detail = isObject(response?.detail) ? response.detail : {};
    /** @type {number | undefined} server time of the reply */
    this.time = response?.time;
  }
}
/** 400: not JSON, a missing or ill-typed field, an unknown command or type. */
export class BadRequest extends RoomcastError {}
/** 401: a room message before login. */
export class NotLoggedIn extends RoomcastError {}
/** 403 "Access denied.": a wrong or missing password for a registered name (or a guest on a
 * server that takes accounts only); a password change refused. */
export class Forbidden extends RoomcastError {}
/** 404: a room message for a room you are not in. */
export class NotInRoom extends RoomcastError {}
/** 408: not logged in in time, or silent past the idle timeout; the server closes. */
export class TimedOut extends RoomcastError {}
/** 409: name taken, already logged in or joined, a game running; or the session was resumed
 * on another connection (detail `{}`), after which the server closes. */
export class Conflict extends RoomcastError {}
/** 410: what a resume asked for is gone (see the two subclasses). */
export class Gone extends RoomcastError {}
/** 410 "Session expired.": the token is unknown, used or expired; log in afresh. */
export class SessionExpired extends Gone {}
/** 410 with detail `{room}`: a resumed room's missed events are gone; its whole kept history
 * follows. */
export class MissedEventsGone extends Gone {}
/** 413: a frame over the server's max_frame; the server closes. */
export class TooLarge extends RoomcastError {}
/** 422: well-formed but invalid: a name, a pose, a game move, a limit reached. */
export class Invalid extends RoomcastError {}
/** 429: over the rate limit; the message was dropped. */
export class RateLimited extends RoomcastError {}
/** 503: server full, out of rooms, low on memory, or shutting down. */
export class Unavailable extends RoomcastError {}

const ERRORS = new Map([
  [400, BadRequest],
  [401, NotLoggedIn],
  [403, Forbidden],
  [404, NotInRoom],
  [408, TimedOut],
  [409, Conflict],
  [413, TooLarge],
  [422, Invalid],
  [429, RateLimited],
  [503, Unavailable],
]);

/**
 * The RoomcastError subclass for a reply's `response` object.
 * @param {Partial<Response>} response
 * @returns {RoomcastError}
 */
export function errorFromResponse(response) {
  if (response?.code === 410) {
    const forRoom = isObject(response.detail) && "room" in response.detail;
    return forRoom ? new MissedEventsGone(response) : new SessionExpired(response);
  }
  const Class = ERRORS.get(/** @type {number} */ (response?.code)) ?? RoomcastError;
  return new Class(response);
}

/** The connection is closed, was lost, or was never opened. */
export class ConnectionClosed extends Error {
  /** @param {string} message @param {{cause?: unknown}} [options] */
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Auto-reconnect gave up after `attempts` tries; `cause` is the last error. */
export class ReconnectFailed extends ConnectionClosed {
  /** @param {string} message @param {number} attempts @param {unknown} cause */
  constructor(message, attempts, cause) {
    super(message, { cause });
    this.attempts = attempts;
  }
}

/** The server sent something that is not a frame of JSON: the stream cannot be trusted. */
export class ProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** No answer (or no matching event) in time. */
export class WaitTimeout extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "WaitTimeout";
  }
}

/** The socket holds more unsent bytes than `maxBuffered`, or the reconnect queue is full. */
export class SendBufferFull extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "SendBufferFull";
  }
}

/** An event iterator fell more than its `maxQueued` items behind and was ended. */
export class EventQueueOverflow extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "EventQueueOverflow";
  }
}

// --- the client ----------------------------------------------------------------------------

/** The `Event` dispatched for each item: `type` is the item's kind, `detail` the item. */
export class RoomcastEvent extends Event {
  /** @param {string} type @param {Item} detail */
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

/**
 * A connection to a roomcast server. Create it, `await connect()`, `await login(name)`;
 * then send with `join`, `msg`, `transform`, ... and receive through `addEventListener`,
 * `on(kind, callback)` or `for await (const item of client.events())`.
 *
 * States: "idle" (before connect), "connecting", "open", "reconnecting", "closed".
 */
export class RoomcastClient extends EventTarget {
  /** @type {Address} */
  #address;
  /** @type {Required<Omit<ClientOptions, "WebSocket">> & {WebSocket?: typeof WebSocket}} */
  #options;
  /** @type {"idle" | "connecting" | "open" | "reconnecting" | "closed"} */
  #state = "idle";
  /** @type {Wire | null} the connection in use */
  #wire = null;
  /** @type {Wire | null} a connection being resumed on */
  #trying = null;
  #generation = 0;
  /** @type {Entry[]} system requests awaiting their answer, in send order */
  #pending = [];
  /** @type {Map<string, Entry[]>} history queries awaiting their answer, per room */
  #queries = new Map();
  #order = 0;
  /** @type {(string | Entry)[]} what to send once reconnected, in call order */
  #queue = [];
  /** @type {Map<string, string>} the latest pose per room, sent once reconnected */
  #poses = new Map();
  /** Rooms whose join was sent and whose own join event has not arrived: history frames
   * there are the joiner's history, not the answer to a history query. */
  #joining = new Set();
  /** Rooms whose leave was sent and not yet confirmed: not joined again after a fresh login. */
  #leaving = new Set();
  /** True between a manual resume and the pong sent with it: history frames are replays. */
  #replaying = false;
  /** True while a reconnect's frames are handed out: they answer no history query. */
  #handing = false;
  /** @type {Map<string, number | null>} room -> last seq received, in join order */
  #seqs = new Map();
  /** @type {Map<string, Anchor>} room -> the last history event received there */
  #anchors = new Map();
  /** @type {string | null} */
  #user = null;
  #pass = "";
  /** @type {string | null} */
  #token = null;
  /** @type {number | null} */
  #idle = null;
  /** @type {RoomcastError | null} an error after which reconnecting is wrong */
  #final = null;
  /** @type {RoomcastError | null} the error the server sent before closing (408, 503, ...) */
  #lastWords = null;
  /** close() or logout() was asked: no reconnect. */
  #closing = false;
  #lastSend = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #keepTimer;
  /** @type {(() => void) | null} ends a reconnect backoff early */
  #wake = null;
  /** @type {Set<EventStream>} */
  #streams = new Set();
  /** @type {(() => void)[]} */
  #closeWaiters = [];

  /**
   * @param {string | {host?: string, port?: number} | URL} [address] `ws://` or `wss://`
   *   URL (browsers, and Node with a WebSocket), `tcp://host:port`, `host:port` or
   *   `{host, port}` (Node). Default: the page's own `/ws` in a browser (`wss:` when the page
   *   is https), 127.0.0.1:42069 in Node.
   * @param {ClientOptions} [options]
   */
  constructor(address, options = {}) {
    super();
    this.#address = parseAddress(address);
    this.#options = {
      autoReconnect: false,
      reconnectAttempts: 20,
      reconnectDelay: 100,
      reconnectMaxDelay: 2000,
      keepAlive: true,
      requestTimeout: 10_000,
      connectTimeout: 10_000,
      maxBuffered: 8 * 1024 * 1024,
      maxQueued: 1024,
      maxPending: 256,
      ...options,
    };
  }

  // --- state

  /** "idle", "connecting", "open", "reconnecting" or "closed". */
  get state() {
    return this.#state;
  }
  /** True while a connection is open. */
  get connected() {
    return this.#state === "open";
  }
  /** The connection's number: 1 for the first, +1 at each reconnect. */
  get generation() {
    return this.#generation;
  }
  /** The user name as the server spells it, once logged in. */
  get user() {
    return this.#user;
  }
  /** The newest resume token (single-use: each login and resume brings a new one). */
  get token() {
    return this.#token;
  }
  /** The server's idle timeout in seconds, as the login reply told it (0: none). */
  get idleTimeout() {
    return this.#idle;
  }
  /** `{room: seq}`: the last history seq received in each room; what a resume passes. */
  get lastSeqs() {
    /** @type {Record<string, number>} */
    const seqs = {};
    for (const [room, seq] of this.#seqs) if (seq !== null) seqs[room] = seq;
    return seqs;
  }
  /** The rooms this client is in, as far as its events tell, in join order. */
  get joinedRooms() {
    return [...this.#seqs.keys()];
  }
  /** Whether auto-reconnect is on; may be changed at any time. */
  get autoReconnect() {
    return this.#options.autoReconnect;
  }
  set autoReconnect(on) {
    this.#options.autoReconnect = !!on;
  }

  // --- connection

  /**
   * Opens the connection. Resolves with the client once open; rejects with
   * ConnectionClosed when nobody answers.
   * @returns {Promise<this>}
   */
  async connect() {
    if (this.#state === "open" || this.#state === "connecting" || this.#state === "reconnecting") {
      throw new Error(`connect() while ${this.#state}`);
    }
    this.#state = "connecting";
    this.#closing = false;
    this.#final = null;
    let wire;
    try {
      wire = await openWire(this.#address, this.#options);
    } catch (err) {
      this.#state = "idle";
      for (const resolve of this.#closeWaiters.splice(0)) resolve();
      throw err;
    }
    if (this.#closing) {
      wire.abort();
      this.#finish(null);
      throw new ConnectionClosed("closed while connecting");
    }
    this.#install(wire);
    this.#dispatch({ kind: "open", generation: this.#generation });
    return this;
  }

  /**
   * Closes without logging out: the server keeps the session for its resume grace (its rooms
   * see you "away"). Never reconnects. Resolves once the connection is closed.
   * @returns {Promise<void>}
   */
  close() {
    if (this.#state === "closed" || this.#state === "idle") return Promise.resolve();
    this.#closing = true;
    const done = new Promise((resolve) => this.#closeWaiters.push(() => resolve(undefined)));
    this.#wake?.();
    this.#trying?.abort();
    const wire = this.#wire;
    if (wire === null) {
      if (this.#state !== "connecting") this.#finish(null);
      return done;
    }
    wire.close();
    // The server closes its side once it has answered; do not wait for a dead peer.
    const timer = setTimeout(() => wire.abort(), 1000);
    done.then(() => clearTimeout(timer));
    return done;
  }

  /**
   * Drops the connection at once, as a network failure would. The session stays on the
   * server for its resume grace; with autoReconnect the client resumes it. For tests and
   * demos.
   */
  abort() {
    this.#wire?.abort();
  }

  // --- sessions

  /**
   * Logs in; resolves with the user name as the server spells it. The lobby's history, your
   * join event and the member list follow as events. Starts the keep-alive pings. Rejects
   * with Invalid (bad name), Conflict (name taken), Forbidden (wrong password) or
   * Unavailable.
   * @param {string} user
   * @param {string} [pass] needed for a registered name; a guest's is ignored
   * @returns {Promise<string>}
   */
  async login(user, pass = "") {
    this.#joining.add("lobby"); // the lobby's join frames follow the 202
    const message = { system: "login", options: { user, pass } };
    await this.#request("login", message, {
      retry: false,
      sync: (response) => {
        if (!response) return;
        this.#seqs.clear();
        this.#anchors.clear();
        this.#pass = pass;
        this.#takeSession(response.detail, user);
        this.#scheduleKeepAlive();
      },
    }).catch((err) => {
      this.#joining.delete("lobby");
      throw err;
    });
    return /** @type {string} */ (this.#user);
  }

  /**
   * Takes back a detached session on this fresh connection (what auto-reconnect does for
   * you). Resolves with the 202 response once the replay is in: per room, the events after
   * the seq in `rooms` arrive as events with `history` and `replayed` set, then your `back`.
   * Rejects with SessionExpired when the token is unknown, used or expired: log in afresh.
   * @param {string} [token] default: the newest this client holds
   * @param {Record<string, number>} [rooms] room -> last seq received (default: lastSeqs)
   * @returns {Promise<Response>}
   */
  async resume(token = this.#token ?? "", rooms = this.lastSeqs) {
    for (const [room, seq] of Object.entries(rooms)) {
      if (!this.#seqs.has(room)) this.#seqs.set(room, seq);
    }
    const message = { system: "resume", options: { token, rooms } };
    this.#replaying = true;
    const answer = this.#request("resume", message, {
      retry: false,
      sync: (response) => response && this.#takeSession(response.detail, this.#user),
    });
    // The pong comes after every frame the resume caused: it ends the replay.
    const end = this.#request("ping", { system: "ping" }, {
      retry: false,
      internal: true,
      sync: () => {
        this.#replaying = false;
        this.#scheduleKeepAlive();
      },
    });
    end.catch(() => {});
    const response = await answer;
    await end;
    return response;
  }

  /**
   * Registers an account (protocol.md §10): from then on the name needs its password, and a
   * login with it takes over the name's session wherever it is. Does not log in. Resolves
   * with the reply (201 "Account created."); rejects with Invalid (a bad name, or a password
   * under 8 characters) or Conflict (the name is registered or logged in).
   * @param {string} user
   * @param {string} pass
   * @returns {Promise<Response>}
   */
  register(user, pass) {
    return this.#request("register", { system: "register", options: { user, pass } }, { retry: false });
  }

  /**
   * Changes the logged-in registered user's password; resolves with the reply (200). Rejects
   * with Forbidden (a wrong old password, or a guest) or Invalid (a new one too short).
   * @param {string} oldPass
   * @param {string} newPass
   * @returns {Promise<Response>}
   */
  changePassword(oldPass, newPass) {
    return this.#request("password", { system: "password", options: { old: oldPass, new: newPass } }, {
      retry: false,
      sync: (response) => {
        if (response) this.#pass = newPass; // what a fresh login after an expiry sends
      },
    });
  }

  /**
   * Logs out: you leave every room at once, the server closes the connection, and nothing
   * reconnects. Resolves with the reply (200 "Logged out.").
   * @returns {Promise<Response>}
   */
  async logout() {
    this.#closing = true;
    const response = await this.#request("logout", { system: "logout" }, { retry: false });
    this.#token = null;
    return response;
  }

  /**
   * Round trip to the server; resolves with the pong (code 200, msg "pong").
   * @returns {Promise<Response>}
   */
  ping() {
    return this.#request("ping", { system: "ping" });
  }

  /**
   * One page of the room directory, sorted by name: at most `limit` rooms (server default
   * 100, at most 500) after the room named `after`. `next` is the `after` of the next page,
   * undefined on the last one.
   * @param {{after?: string, limit?: number}} [page]
   * @returns {Promise<{rooms: {room: string, users: number}[], next: string | undefined}>}
   */
  async roomsPage({ after, limit } = {}) {
    /** @type {Record<string, any>} */
    const options = {};
    if (after !== undefined) options.after = after;
    if (limit !== undefined) options.limit = limit;
    const message = Object.keys(options).length ? { system: "rooms", options } : { system: "rooms" };
    const { detail } = await this.#request("rooms", message);
    const next = typeof detail.next === "string" ? detail.next : undefined;
    return { rooms: Array.isArray(detail.rooms) ? detail.rooms : [], next };
  }

  /**
   * Every room with its member count, following the pages up to `maxPages` of them.
   * @param {{limit?: number, maxPages?: number}} [options]
   * @returns {Promise<{room: string, users: number}[]>}
   */
  async rooms({ limit, maxPages = 20 } = {}) {
    const rooms = [];
    /** @type {string | undefined} */
    let after;
    for (let page = 0; page < maxPages; page++) {
      const answer = await this.roomsPage({ after, limit });
      rooms.push(...answer.rooms);
      after = answer.next;
      if (after === undefined) break;
    }
    return rooms;
  }

  /**
   * Kept history events of a room you are in, next to a seq: `before` gives the newest
   * events older than it, `after` the oldest newer than it; at most `limit` (server default
   * 50, at most 100), in seq order. Resolves with [] when none are kept in that range. These
   * events are not dispatched as items.
   * @param {string} room
   * @param {{before?: number, after?: number, limit?: number}} range
   * @returns {Promise<RoomEvent[]>}
   */
  history(room, { before, after, limit } = {}) {
    if ((before === undefined) === (after === undefined)) {
      return Promise.reject(new TypeError("history() needs exactly one of before and after"));
    }
    /** @type {Record<string, number>} */
    const data = before !== undefined ? { before } : { after: /** @type {number} */ (after) };
    if (limit !== undefined) data.limit = limit;
    return this.#request("history", { room, type: "history", data }, { room });
  }

  // --- room messages: no success reply; their failures arrive as "problem" items

  /** Joins a room (created if new): its history, your join event and the members follow.
   * @param {string} room */
  join(room) {
    this.#roomMessage(room, "join", "");
    this.#joining.add(room);
  }

  /** Leaves a room. @param {string} room */
  leave(room) {
    this.#roomMessage(room, "leave", "");
    this.#leaving.add(room);
  }

  /** Asks for a room's members; they arrive as a list event. @param {string} room */
  list(room) {
    this.#roomMessage(room, "list", "");
  }

  /**
   * Says something (any JSON value) to everyone in the room, yourself included.
   * @param {string} room
   * @param {any} data
   */
  msg(room, data) {
    if (data === undefined) throw new TypeError("msg() needs data (null is allowed)");
    this.#roomMessage(room, "msg", data);
  }

  /**
   * Streams a pose: `transform(room, {pos, rot, parts})` or `transform(room, pos, rot,
   * parts)`. `pos` is [x, y, z] or {x, y, z}; `rot` Euler [x, y, z] or a quaternion
   * [x, y, z, w] (or objects); `parts` maps a part name (left_hand, right_hand, ...) to its
   * own {pos, rot}, sent under `data.parts`. The server forwards each user's latest pose once
   * per tick. Returns false when the pose was not sent now: dropped because the socket is
   * backed up (the next pose supersedes it), or kept while reconnecting (only the latest per
   * room is sent once back). Throws TypeError for a non-finite number.
   * @param {string} room
   * @param {Pose | Vec3} pose
   * @param {Rotation} [rot]
   * @param {Pose["parts"]} [parts]
   * @returns {boolean}
   */
  transform(room, pose, rot, parts) {
    const given = isObject(pose) && "pos" in pose && rot === undefined
      ? /** @type {Pose} */ (pose)
      : { pos: /** @type {Vec3} */ (pose), rot: /** @type {Rotation} */ (rot), parts };
    /** @type {Record<string, any>} */
    const data = { pos: vec3(given.pos, "pos"), rot: rotation(given.rot, "rot") };
    if (given.parts != null) {
      if (!isObject(given.parts)) throw new TypeError("parts must be an object of {pos, rot}");
      /** @type {Record<string, any>} */
      const out = {};
      for (const [name, part] of Object.entries(given.parts)) {
        if (!isObject(part)) throw new TypeError(`parts.${name} must be {pos, rot}`);
        out[name] = { pos: vec3(part.pos, `parts.${name}.pos`), rot: rotation(part.rot, `parts.${name}.rot`) };
      }
      data.parts = out;
    }
    const text = JSON.stringify({ room, type: "transform", data });
    if (this.#state === "reconnecting") {
      this.#poses.delete(room); // re-inserted last: poses go out in the order last set
      this.#poses.set(room, text);
      return false;
    }
    const wire = this.#openWire();
    if (wire.buffered > this.#options.maxBuffered) return false;
    this.#sendNow(wire, [text]);
    return true;
  }

  /**
   * A game command: {start: "tictactoe"}, {join: true}, {move: 4}, {restart: true}. The new
   * state arrives as a game event.
   * @param {string} room
   * @param {Record<string, any>} command
   */
  game(room, command) {
    this.#roomMessage(room, "game", command);
  }

  /**
   * Sends any message as it is. A system message's reply arrives as a "system" or "problem"
   * item.
   * @param {Record<string, any>} message
   */
  send(message) {
    if (typeof message?.system === "string") {
      this.#request("raw", message, {
        retry: false,
        // An error reply is dispatched as a problem by #settle.
        sync: (response) => response && this.#dispatch({ kind: "system", ...pick(response) }),
      }).catch(() => {});
      return;
    }
    this.#write(JSON.stringify(message));
  }

  // --- receiving

  /**
   * An async iterator over every item from now on (room events, problems, reconnects, ...);
   * it ends after the "close" item. Break out of the loop (or call `return()`) to stop it.
   * It holds at most `maxQueued` unread items, then ends with EventQueueOverflow.
   * @param {{maxQueued?: number}} [options]
   * @returns {EventStream}
   */
  events({ maxQueued = 10_000 } = {}) {
    const stream = new EventStream(maxQueued, () => this.#streams.delete(stream));
    if (this.#state === "closed") stream.end();
    else this.#streams.add(stream);
    return stream;
  }

  /** `for await (const item of client)` is `for await (const item of client.events())`. */
  [Symbol.asyncIterator]() {
    return this.events();
  }

  /**
   * Calls `callback(item)` for each item of this kind ("event", "problem", "system", "open",
   * "reconnecting", "reconnect", "close"); returns a function that stops it.
   * @param {Item["kind"]} kind
   * @param {(item: any) => void} callback
   * @returns {() => void}
   */
  on(kind, callback) {
    /** @param {Event} event */
    const listener = (event) => callback(/** @type {RoomcastEvent} */ (event).detail);
    this.addEventListener(kind, listener);
    return () => this.removeEventListener(kind, listener);
  }

  /**
   * The first item from now on that `match` accepts; rejects with WaitTimeout after
   * `timeout` ms, or ConnectionClosed when the client closes first.
   * @param {(item: Item) => boolean} match
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Item>}
   */
  async waitFor(match, { timeout = this.#options.requestTimeout } = {}) {
    const stream = this.events();
    try {
      return await stream.take(match, { timeout });
    } finally {
      stream.return();
    }
  }

  // --- internals: sending

  /** @param {string} room @param {string} type @param {any} data */
  #roomMessage(room, type, data) {
    if (typeof room !== "string") throw new TypeError("room must be a string");
    this.#write(JSON.stringify({ room, type, data }));
  }

  /** The open connection, or a throw saying why there is none. */
  #openWire() {
    if (this.#state !== "open" || this.#wire === null) {
      throw new ConnectionClosed(
        this.#state === "closed" ? "the client is closed" : `not connected (${this.#state})`,
      );
    }
    return this.#wire;
  }

  /** Sends a message now, or queues it while reconnecting. @param {string | Entry} item */
  #write(item) {
    if (this.#state === "reconnecting") {
      if (this.#queue.length >= this.#options.maxQueued) {
        throw new SendBufferFull(`${this.#queue.length} messages already wait for the reconnect`);
      }
      this.#queue.push(item);
      return;
    }
    const wire = this.#openWire();
    if (wire.buffered > this.#options.maxBuffered) {
      throw new SendBufferFull(`${wire.buffered} bytes wait to be sent (maxBuffered)`);
    }
    if (typeof item === "string") {
      this.#sendNow(wire, [item]);
    } else {
      item.sentOn = this.#generation;
      this.#sendNow(wire, [item.text]);
    }
  }

  /** @param {Wire} wire @param {string[]} texts */
  #sendNow(wire, texts) {
    wire.send(texts);
    this.#lastSend = now();
  }

  /**
   * Sends a request and waits for its answer. `sync` runs when the answer is read, before
   * the frames after it are handled (the login's session must be known to its lobby events).
   * @param {Entry["kind"]} kind
   * @param {Record<string, any>} message
   * @param {{retry?: boolean, internal?: boolean, room?: string,
   *   sync?: (response: Response | null, error: Error | null) => void}} [options]
   * @returns {Promise<any>}
   */
  #request(kind, message, { retry = true, internal = false, room, sync } = {}) {
    return new Promise((resolve, reject) => {
      const waiting = this.#pending.length + [...this.#queries.values()].reduce((n, q) => n + q.length, 0);
      if (waiting >= this.#options.maxPending) {
        reject(new SendBufferFull(`${waiting} requests already wait for an answer`));
        return;
      }
      /** @type {Entry} */
      const entry = {
        kind,
        text: JSON.stringify(message),
        order: ++this.#order,
        retry,
        internal,
        room,
        sentOn: 0,
        done: false,
        timer: undefined,
        settle: (response, error) => {
          if (entry.done) return;
          entry.done = true;
          clearTimeout(entry.timer);
          sync?.(response, error);
          if (error) reject(error);
          else resolve(response);
        },
      };
      if (room === undefined) this.#pending.push(entry);
      else {
        const queue = this.#queries.get(room) ?? [];
        queue.push(entry);
        this.#queries.set(room, queue);
      }
      try {
        this.#write(entry);
      } catch (err) {
        this.#forget(entry);
        entry.settle(null, /** @type {Error} */ (err));
        return;
      }
      // An entry that times out stays queued (marked done), so that its late answer, if
      // one comes, still lines up with it and not with the next request.
      entry.timer = setTimeout(() => {
        entry.settle(null, new WaitTimeout(`no answer to ${kind} within ${this.#options.requestTimeout} ms`));
      }, this.#options.requestTimeout);
    });
  }

  /** @param {Entry} entry */
  #forget(entry) {
    const list = entry.room === undefined ? this.#pending : this.#queries.get(entry.room) ?? [];
    const at = list.indexOf(entry);
    if (at >= 0) list.splice(at, 1);
  }

  // --- internals: receiving

  /** @param {Wire} wire */
  #install(wire) {
    this.#wire = wire;
    this.#state = "open";
    this.#generation += 1;
    this.#lastSend = now();
    wire.listen(
      (frame) => this.#onFrame(frame),
      (err) => this.#onWireClose(wire, err),
    );
  }

  /**
   * One frame from the server.
   * @param {Record<string, any>} frame
   * @param {boolean} [replayed] part of an auto-reconnect's replay
   */
  #onFrame(frame, replayed = false) {
    if (frame.info === "user") {
      this.#onEvents(frame, replayed);
      return;
    }
    const response = frame.response;
    if (!isObject(response)) return; // unknown shapes are ignored (protocol.md §8)
    const detail = isObject(response.detail) ? response.detail : {};
    const error = frame.info === "error" ? errorFromResponse(response) : null;
    if (error && this.#endsConnection(error)) {
      this.#lastWords = error;
      if (endsForGood(error)) this.#final = error;
      this.#dispatch(problem(error)); // the server closes next
      return;
    }
    if (typeof detail.room === "string") {
      const queries = detail.type === "history" ? this.#queries.get(detail.room) : undefined;
      const query = queries?.shift();
      if (query) {
        query.settle(error ? null : [], error);
        return;
      }
      if (error instanceof MissedEventsGone) {
        this.#seqs.set(detail.room, null); // its whole kept history follows
        this.#anchors.delete(detail.room);
      }
      if (error && detail.type === "join") this.#joining.delete(detail.room);
      if (error && detail.type === "leave") this.#leaving.delete(detail.room);
      this.#dispatch(error ? problem(error) : { kind: "system", ...pick(/** @type {Response} */ (response)) });
      return;
    }
    this.#settle(/** @type {Response} */ (response), error);
  }

  /**
   * A reply without a room answers the oldest pending request. A success that cannot answer
   * it (a pong while a rooms request waits) means that request was dropped by the rate limit
   * without a 429 (the server sends at most one a second): it is rejected, and the reply
   * goes to the next.
   * @param {Response} response
   * @param {RoomcastError | null} error
   */
  #settle(response, error) {
    while (this.#pending.length > 0) {
      const entry = /** @type {Entry} */ (this.#pending.shift());
      if (error || answers(entry.kind, response)) {
        if (error && !entry.done && (entry.internal || entry.kind === "raw")) this.#dispatch(problem(error));
        entry.settle(error ? null : response, error);
        return;
      }
      entry.settle(null, new RateLimited({ code: 429, msg: "Dropped by the rate limit.", detail: {} }));
    }
    this.#dispatch(error ? problem(error) : { kind: "system", ...pick(response) });
  }

  /** Whether the server closes the connection after this error. @param {RoomcastError} error */
  #endsConnection(error) {
    const about = "room" in error.detail || "user" in error.detail;
    if (error.code === 408 || error.code === 413) return true;
    if (error.code === 503) return !about;
    // A 409 with no room or user is a takeover, unless it answers our own resume ("Already
    // logged in").
    return error.code === 409 && !about && this.#pending[0]?.kind !== "resume";
  }

  /**
   * @param {Record<string, any>} frame
   * @param {boolean} replayed
   */
  #onEvents(frame, replayed) {
    const room = frame.room;
    if (typeof room !== "string" || !Array.isArray(frame.payload)) return;
    const history = frame.history === true;
    if (history && !replayed && !this.#replaying && !this.#handing && !this.#joining.has(room)) {
      const query = this.#queries.get(room)?.shift();
      if (query) {
        query.settle(frame.payload, null);
        return;
      }
    }
    const isReplay = replayed || (history && this.#replaying);
    this.#track(room, frame.payload, history);
    for (const event of frame.payload) {
      if (!isObject(event)) continue;
      if (!history && event.user === this.#user) {
        if (event.type === "join") this.#joining.delete(room);
        if (event.type === "leave") this.#leaving.delete(room);
      }
      this.#dispatch({ kind: "event", room, history, replayed: isReplay, event: /** @type {RoomEvent} */ (event) });
    }
  }

  /**
   * Remembers the last seq per room; our own live leave forgets the room.
   * @param {string} room
   * @param {any[]} payload
   * @param {boolean} history
   */
  #track(room, payload, history) {
    for (const event of payload) {
      if (!isObject(event)) continue;
      if (!history && event.type === "leave" && event.user === this.#user) {
        this.#seqs.delete(room);
        this.#anchors.delete(room);
        continue;
      }
      const last = this.#seqs.get(room) ?? null;
      if (!this.#seqs.has(room)) this.#seqs.set(room, null);
      const seq = event.seq;
      if (Number.isInteger(seq) && (last === null || seq > last)) {
        this.#seqs.set(room, seq);
        this.#anchors.set(room, anchorOf(event));
      }
    }
  }

  /** @param {Record<string, any>} detail @param {string | null} user */
  #takeSession(detail, user) {
    const d = isObject(detail) ? detail : {};
    this.#user = typeof d.user === "string" ? d.user : user;
    if (typeof d.resume === "string") this.#token = d.resume;
    if (typeof d.idle_timeout === "number") this.#idle = d.idle_timeout;
  }

  /** @param {Item} item */
  #dispatch(item) {
    // Iterators first: a listener that closes the client must not put "close" before this.
    for (const stream of this.#streams) stream.push(item);
    this.dispatchEvent(new RoomcastEvent(item.kind, item));
  }

  // --- internals: keep-alive

  #keepAliveEvery() {
    const idle = this.#idle ?? DEFAULT_IDLE_TIMEOUT;
    return idle > 0 ? (idle * 1000) / 3 : null;
  }

  #scheduleKeepAlive() {
    clearTimeout(this.#keepTimer);
    const every = this.#keepAliveEvery();
    if (!this.#options.keepAlive || this.#state !== "open" || this.#token === null || every === null) return;
    const wait = Math.max(0, this.#lastSend + every - now());
    this.#keepTimer = setTimeout(() => {
      if (this.#state !== "open") return;
      if (now() - this.#lastSend >= every - 1) {
        this.#request("ping", { system: "ping" }, { retry: false, internal: true }).catch(() => {});
      }
      this.#scheduleKeepAlive();
    }, wait);
    // In Node, a keep-alive alone must not keep the process running.
    /** @type {any} */ (this.#keepTimer).unref?.();
  }

  // --- internals: losing and regaining the connection

  /** @param {Wire} wire @param {Error} err */
  #onWireClose(wire, err) {
    if (wire !== this.#wire) return;
    this.#wire = null;
    clearTimeout(this.#keepTimer);
    const cause = this.#final ?? this.#lastWords ?? err;
    this.#lastWords = null;
    const may = this.#options.autoReconnect && this.#token !== null && !this.#final && !this.#closing;
    if (!may) {
      this.#finish(this.#closing && !this.#final ? null : cause);
      return;
    }
    // Requests sent on the lost connection: ping, rooms and history are asked again once
    // reconnected; the others cannot be (their effect is unknown) and fail.
    const lost = [...this.#pending, ...[...this.#queries.values()].flat()]
      .filter((entry) => entry.sentOn === this.#generation)
      .sort((a, b) => a.order - b.order);
    /** @type {Entry[]} */
    const again = [];
    for (const entry of lost) {
      if (entry.retry && !entry.done) again.push(entry);
      else {
        this.#forget(entry);
        entry.settle(null, new ConnectionClosed(`the connection was lost before the answer to ${entry.kind}`, { cause }));
      }
    }
    this.#queue = [...again, ...this.#queue];
    this.#state = "reconnecting";
    this.#reconnect(cause).catch((err) => this.#finish(err));
  }

  /** Connects again with backoff and resumes (or logs in afresh). @param {Error} cause */
  async #reconnect(cause) {
    const started = now();
    const { reconnectAttempts, reconnectDelay, reconnectMaxDelay } = this.#options;
    /** @type {unknown} */
    let last = cause;
    for (let attempt = 1; attempt <= reconnectAttempts && !this.#closing; attempt++) {
      const delay = attempt === 1
        ? 0
        : Math.round(Math.min(reconnectMaxDelay, reconnectDelay * 2 ** (attempt - 2)) * (0.5 + Math.random() / 2));
      this.#dispatch({ kind: "reconnecting", attempt, delay, cause });
      if (delay > 0) await this.#sleep(delay);
      if (this.#closing) break;
      /** @type {Wire | null} */
      let wire = null;
      try {
        wire = await openWire(this.#address, this.#options);
        this.#trying = wire;
        if (this.#closing) break;
        const back = await this.#comeBack(wire);
        if (this.#closing) break;
        this.#trying = null;
        this.#regained(wire, back, attempt, now() - started);
        return;
      } catch (err) {
        wire?.abort();
        this.#trying = null;
        last = err;
        // A password refused on the fresh login (changed elsewhere) will not be accepted later.
        if (err instanceof RoomcastError && (endsForGood(err) || err instanceof Forbidden)) {
          this.#final = err;
          break;
        }
        if (this.#closing) break;
      }
    }
    this.#trying?.abort();
    this.#trying = null;
    if (this.#closing && !this.#final) this.#finish(null);
    else if (this.#final) this.#finish(this.#final);
    else {
      const text = last instanceof Error ? last.message : String(last);
      this.#finish(new ReconnectFailed(
        `gave up reconnecting after ${reconnectAttempts} attempts (the last: ${text}); the connection was lost with: ${cause.message}`,
        reconnectAttempts,
        last,
      ));
    }
  }

  /** @param {number} ms */
  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve(undefined);
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve(undefined);
      };
    });
  }

  /**
   * On a fresh connection: sends resume and a ping in one write, and reads up to the pong,
   * which comes after every frame the resume caused. If the session expired, logs in afresh
   * on the same connection, joins the rooms again and reads up to the next pong.
   * @param {Wire} wire
   * @returns {Promise<Regained>}
   */
  #comeBack(wire) {
    return new Promise((resolve, reject) => {
      const seen = new Map(Object.entries(this.lastSeqs));
      const rooms = [...this.#seqs.keys()].filter((room) => !this.#leaving.has(room));
      const inLobby = rooms.includes("lobby");
      const anchors = new Map(this.#anchors);
      /** @type {{frame: Record<string, any>, replayed: boolean}[]} */
      const frames = [];
      /** @type {string[]} */
      const gaps = [];
      /** @type {"resume" | "login"} */
      let phase = "resume";
      /** @type {boolean | null} */
      let resumed = null;
      let loggedIn = false;
      const timer = setTimeout(
        () => finish(new WaitTimeout(`no answer to the resume within ${this.#options.requestTimeout} ms`)),
        this.#options.requestTimeout,
      );
      /** @param {unknown} err @param {Regained} [value] */
      const finish = (err, value) => {
        clearTimeout(timer);
        wire.hold(); // frames after the pong wait until the connection is installed
        if (err) reject(err);
        else resolve(/** @type {Regained} */ (value));
      };
      /** @param {Record<string, any>} frame */
      const step = (frame) => {
        const response = isObject(frame.response) ? frame.response : {};
        const detail = isObject(response.detail) ? response.detail : {};
        if (frame.info === "user") {
          if (phase === "login") {
            if (frame.room !== "lobby" || inLobby) frames.push({ frame, replayed: false });
            return;
          }
          const last = seen.get(frame.room);
          const payload = Array.isArray(frame.payload)
            ? frame.payload.filter((e) => last === undefined || !Number.isInteger(e?.seq) || e.seq > last)
            : [];
          if (payload.length > 0) frames.push({ frame: { ...frame, payload }, replayed: frame.history === true });
          return;
        }
        if (isPong(frame)) {
          if (phase === "resume") {
            if (resumed === null) throw new ProtocolError("the server did not answer the resume");
            if (resumed) {
              finish(null, { resumed: true, frames, gaps, rejoined: [] });
              return;
            }
            logIn();
            return;
          }
          if (!loggedIn) throw new ProtocolError("the server did not answer the login");
          const lost = rooms.filter((room) => !splice(frames, room, anchors.get(room)));
          finish(null, { resumed: false, frames, gaps: lost, rejoined: rooms });
          return;
        }
        if (frame.info === "system" && response.code === 202) {
          this.#takeSession(detail, this.#user);
          if (phase === "resume") resumed = true;
          else loggedIn = true;
          return;
        }
        if (frame.info === "error") {
          const error = errorFromResponse(response);
          if (phase === "resume" && error.code === 410) {
            if (typeof detail.room === "string") {
              gaps.push(detail.room); // its whole kept history follows
              seen.delete(detail.room);
            } else {
              resumed = false; // the pong still follows
              this.#token = null;
            }
            return;
          }
          if (typeof detail.room === "string") {
            frames.push({ frame, replayed: false }); // a room refused on the way back
            return;
          }
          throw error; // shutting down, full, the name taken: this attempt failed
        }
        frames.push({ frame, replayed: false });
      };
      wire.listen(
        (frame) => {
          try {
            step(frame);
          } catch (err) {
            finish(err);
          }
        },
        (err) => finish(err),
      );
      // The session expired: log in afresh, join the rooms again, and read up to the pong.
      const logIn = () => {
        phase = "login";
        /** @type {string[]} */
        const out = [JSON.stringify({ system: "login", options: { user: this.#user, pass: this.#pass } })];
        for (const room of rooms) if (room !== "lobby") out.push(JSON.stringify({ room, type: "join", data: "" }));
        if (!inLobby) out.push(JSON.stringify({ room: "lobby", type: "leave", data: "" }));
        out.push(PING);
        wire.send(out);
      };
      if (this.#token === null) {
        logIn(); // an earlier attempt learned that the session expired
        return;
      }
      const resume = { system: "resume", options: { token: this.#token, rooms: Object.fromEntries(seen) } };
      wire.send([JSON.stringify(resume), PING]);
    });
  }

  /**
   * Makes the resumed connection the one in use: takes in the replay's seqs, reports the
   * reconnect, hands out the replay, then sends what waited.
   * @param {Wire} wire @param {Regained} back @param {number} attempts @param {number} downtime
   */
  #regained(wire, back, attempts, downtime) {
    if (back.resumed) {
      for (const room of back.gaps) {
        this.#seqs.set(room, null); // start over from its whole kept history
        this.#anchors.delete(room);
      }
    } else {
      this.#seqs.clear();
      this.#anchors.clear();
      this.#joining.clear();
      this.#leaving.clear();
    }
    /** @type {Record<string, number>} */
    const missedTypes = {};
    let missed = 0;
    for (const { frame, replayed } of back.frames) {
      if (!replayed) continue;
      for (const event of frame.payload) {
        missed += 1;
        missedTypes[event.type] = (missedTypes[event.type] ?? 0) + 1;
      }
    }
    this.#wire = wire;
    this.#state = "open";
    this.#generation += 1;
    this.#dispatch({
      kind: "reconnect",
      resumed: back.resumed,
      missed,
      missedTypes,
      gaps: [...back.gaps].sort(),
      rejoined: back.rejoined,
      attempts,
      downtime: Math.round(downtime),
      generation: this.#generation,
    });
    this.#handing = true;
    try {
      for (const { frame, replayed } of back.frames) this.#onFrame(frame, replayed);
    } finally {
      this.#handing = false;
    }
    // What waited goes out in one write, the latest poses last.
    const items = this.#queue.splice(0);
    const texts = items.map((item) => {
      if (typeof item === "string") return item;
      item.sentOn = this.#generation;
      return item.text;
    });
    texts.push(...this.#poses.values());
    this.#poses.clear();
    this.#lastSend = now();
    if (texts.length > 0) wire.send(texts);
    wire.listen(
      (frame) => this.#onFrame(frame),
      (err) => this.#onWireClose(wire, err),
    );
    this.#scheduleKeepAlive();
  }

  /** Closed for good: fails what waits, reports the close, ends the iterators.
   * @param {Error | null} error */
  #finish(error) {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#wire = null;
    clearTimeout(this.#keepTimer);
    const why = error ?? new ConnectionClosed("the client was closed");
    for (const entry of [...this.#pending, ...[...this.#queries.values()].flat()]) entry.settle(null, why);
    this.#pending = [];
    this.#queries.clear();
    for (const item of this.#queue) if (typeof item !== "string") item.settle(null, why);
    this.#queue = [];
    this.#poses.clear();
    this.#joining.clear();
    this.#leaving.clear();
    this.#replaying = false;
    this.#dispatch({
      kind: "close",
      code: error instanceof RoomcastError ? error.code : 0,
      reason: error ? error.message : "closed",
      error,
    });
    for (const stream of this.#streams) stream.end();
    this.#streams.clear();
    for (const resolve of this.#closeWaiters.splice(0)) resolve();
  }
}

/**
 * Connects a new client; resolves with it once the connection is open.
 * @param {ConstructorParameters<typeof RoomcastClient>[0]} [address]
 * @param {ClientOptions} [options]
 */
export function connect(address, options) {
  return new RoomcastClient(address, options).connect();
}

/**
 * The WebSocket address of the server that served this page: `wss:` when the page is https.
 * @param {{protocol: string, host: string}} [location] default: the page's location
 */
export function defaultUrl(location = /** @type {any} */ (globalThis).location) {
  if (!location) throw new TypeError("defaultUrl() needs a location outside a browser");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws`;
}

// --- the event iterator --------------------------------------------------------------------

/**
 * Items in arrival order, for `for await` and for tests: `take(match, {timeout})` waits for
 * the first matching item and drops the ones before it.
 * @implements {AsyncIterableIterator<Item>}
 */
export class EventStream {
  /** @type {Item[]} */
  #items = [];
  /** @type {{match: ((item: Item) => boolean) | null, resolve: (item: Item | null) => void, reject: (err: Error) => void}[]} */
  #waiters = [];
  #ended = false;
  /** @type {Error | null} */
  #failure = null;
  #max;
  #detach;

  /** @param {number} max @param {() => void} detach */
  constructor(max, detach) {
    this.#max = max;
    this.#detach = detach;
  }

  /** @param {Item} item (called by the client) */
  push(item) {
    if (this.#ended) return;
    const waiter = this.#waiters[0];
    if (waiter && this.#items.length === 0) {
      if (waiter.match === null || waiter.match(item)) {
        this.#waiters.shift();
        waiter.resolve(item);
      }
      return; // a take() drops what it does not want
    }
    if (this.#items.length >= this.#max) {
      this.#failure = new EventQueueOverflow(`more than ${this.#max} unread items`);
      this.#items = [];
      this.end();
      return;
    }
    this.#items.push(item);
  }

  /** No more items will come (called by the client). */
  end() {
    if (this.#ended) return;
    this.#ended = true;
    this.#detach();
    for (const waiter of this.#waiters.splice(0)) {
      if (this.#failure) waiter.reject(this.#failure);
      else if (waiter.match === null) waiter.resolve(null);
      else waiter.reject(new ConnectionClosed("the client closed before a matching item came"));
    }
  }

  /** @returns {Promise<IteratorResult<Item>>} */
  async next() {
    if (this.#items.length > 0) return { value: /** @type {Item} */ (this.#items.shift()), done: false };
    if (this.#failure) throw this.#failure;
    if (this.#ended) return { value: undefined, done: true };
    const item = await new Promise((resolve, reject) => this.#waiters.push({ match: null, resolve, reject }));
    return item === null ? { value: undefined, done: true } : { value: item, done: false };
  }

  /**
   * The first item `match` accepts (default: the next item); the ones before it are dropped.
   * Rejects with WaitTimeout after `timeout` ms (nothing after the drop is lost), or with
   * ConnectionClosed when the stream ends first.
   * @param {(item: Item) => boolean} [match]
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Item>}
   */
  take(match = () => true, { timeout = 10_000 } = {}) {
    while (this.#items.length > 0) {
      const item = /** @type {Item} */ (this.#items.shift());
      if (match(item)) return Promise.resolve(item);
    }
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#ended) return Promise.reject(new ConnectionClosed("the client is closed"));
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        /** @param {Item | null} item */
        resolve: (item) => {
          clearTimeout(timer);
          resolve(/** @type {Item} */ (item));
        },
        /** @param {Error} err */
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(new WaitTimeout(`no matching item within ${timeout} ms`));
      }, timeout);
      this.#waiters.push(waiter);
    });
  }

  /** Stops the stream: no more items are kept. */
  async return() {
    this.#items = [];
    this.end();
    return { value: undefined, done: /** @type {true} */ (true) };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

// --- connections ---------------------------------------------------------------------------

/**
 * @typedef {{kind: "ws", url: string} | {kind: "tcp", host: string, port: number}} Address
 * @typedef {[number, number | undefined, string | undefined, string | undefined]} Anchor
 *   seq, time, user and type of the last history event received in a room
 * @typedef {{resumed: boolean, frames: {frame: Record<string, any>, replayed: boolean}[],
 *   gaps: string[], rejoined: string[]}} Regained
 * @typedef {object} Entry a request awaiting its answer
 * @property {"login" | "resume" | "logout" | "register" | "password" | "ping" | "rooms" | "history" | "raw"} kind
 * @property {string} text
 * @property {number} order
 * @property {boolean} retry asked again on the new connection after a reconnect
 * @property {boolean} internal a keep-alive or replay-ending ping
 * @property {string | undefined} room set for history queries
 * @property {number} sentOn the generation of the connection it went out on (0: not yet)
 * @property {boolean} done
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 * @property {(response: any, error: Error | null) => void} settle
 */

/** @param {unknown} address @returns {Address} */
function parseAddress(address) {
  if (address === undefined || address === null) {
    const location = /** @type {any} */ (globalThis).location;
    if (!IS_NODE && location) return { kind: "ws", url: defaultUrl(location) };
    return { kind: "tcp", host: "127.0.0.1", port: DEFAULT_PORT };
  }
  if (isObject(address) && !(address instanceof URL)) {
    return tcpAddress(address.host ?? "127.0.0.1", address.port ?? DEFAULT_PORT);
  }
  const text = String(address);
  if (/^wss?:\/\//i.test(text)) return { kind: "ws", url: text };
  if (/^tcp:\/\//i.test(text)) {
    const url = new URL(text);
    return tcpAddress(url.hostname.replace(/^\[(.*)\]$/, "$1"), url.port === "" ? DEFAULT_PORT : Number(url.port));
  }
  const colon = text.lastIndexOf(":");
  if (colon > 0) return tcpAddress(text.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), Number(text.slice(colon + 1)));
  throw new TypeError(`not a roomcast address: ${JSON.stringify(text)} (use ws://, wss://, tcp://host:port or host:port)`);
}

/** @param {unknown} host @param {unknown} port @returns {Address} */
function tcpAddress(host, port) {
  if (typeof host !== "string" || host === "") throw new TypeError("host must be a non-empty string");
  if (!Number.isInteger(port) || /** @type {number} */ (port) < 1 || /** @type {number} */ (port) > 65535) {
    throw new TypeError(`port must be an integer from 1 to 65535, got ${port}`);
  }
  return { kind: "tcp", host, port: /** @type {number} */ (port) };
}

/**
 * @param {Address} address
 * @param {{connectTimeout: number, WebSocket?: typeof WebSocket}} options
 * @returns {Promise<Wire>}
 */
function openWire(address, options) {
  return address.kind === "ws"
    ? WsWire.open(address.url, options)
    : TcpWire.open(address.host, address.port, options.connectTimeout);
}

/**
 * One connection, whatever carries it: frames in (decoded objects), texts out. Frames and
 * the close are held while nobody listens (between a resume's pong and the switch to the
 * client's handlers), then handed over in order.
 */
class Wire {
  /** @type {((frame: Record<string, any>) => void) | null} */
  #onFrame = null;
  /** @type {((err: Error) => void) | null} */
  #onClose = null;
  /** @type {Record<string, any>[]} */
  #held = [];
  /** @type {Error | null} */
  #heldClose = null;
  #closed = false;

  /**
   * @param {(frame: Record<string, any>) => void} onFrame
   * @param {(err: Error) => void} onClose
   */
  listen(onFrame, onClose) {
    this.#onFrame = onFrame;
    this.#onClose = onClose;
    while (this.#held.length > 0 && this.#onFrame === onFrame) {
      onFrame(/** @type {Record<string, any>} */ (this.#held.shift()));
    }
    if (this.#held.length === 0 && this.#heldClose && this.#onClose === onClose) {
      const err = this.#heldClose;
      this.#heldClose = null;
      onClose(err);
    }
  }

  hold() {
    this.#onFrame = null;
    this.#onClose = null;
  }

  /** @param {Record<string, any>} frame */
  deliver(frame) {
    if (this.#closed) return;
    if (this.#onFrame && this.#held.length === 0) this.#onFrame(frame);
    else this.#held.push(frame);
  }

  /** @param {Error} err */
  closed(err) {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#onClose && this.#held.length === 0) this.#onClose(err);
    else this.#heldClose = err;
  }

  get isClosed() {
    return this.#closed;
  }

  /** Bytes not yet handed to the network. */
  get buffered() {
    return 0;
  }
  /** @param {string[]} _texts sent in order, in one write where the transport allows */
  send(_texts) {}
  /** Ends gracefully: the server answers what it has, then closes. */
  close() {}
  /** Drops the connection now; the close is reported at once. */
  abort() {}
}

const DECODER = typeof TextDecoder === "function" ? new TextDecoder("utf-8", { fatal: true }) : null;

/** Raw TCP in Node: each frame a 4-byte big-endian length, then that many bytes of JSON. */
class TcpWire extends Wire {
  /** @type {import("node:net").Socket} */
  #socket;
  /** @type {Buffer[]} received bytes not yet cut into frames */
  #chunks = [];
  #size = 0;
  /** Bytes needed before the next frame can be cut. */
  #want = 4;
  /** @type {Error | null} */
  #error = null;

  /**
   * @param {string} host @param {number} port @param {number} timeout
   * @returns {Promise<TcpWire>}
   */
  static async open(host, port, timeout) {
    if (!IS_NODE) {
      throw new ConnectionClosed("raw TCP is not available in a browser: use a ws:// or wss:// address");
    }
    const net = await import(/* webpackIgnore: true */ /* @vite-ignore */ "node:net");
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionClosed(`no connection to ${host}:${port} within ${timeout} ms`));
      }, timeout);
      /** @param {Error} err */
      const failed = (err) => {
        clearTimeout(timer);
        reject(new ConnectionClosed(`cannot connect to ${host}:${port}: ${err.message}`, { cause: err }));
      };
      socket.once("error", failed);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", failed);
        // Nagle would hold a pose back until the previous one is acknowledged.
        socket.setNoDelay(true);
        resolve(new TcpWire(socket));
      });
    });
  }

  /** @param {import("node:net").Socket} socket */
  constructor(socket) {
    super();
    this.#socket = socket;
    socket.on("data", (chunk) => this.#receive(chunk));
    socket.on("error", (err) => {
      this.#error = err;
    });
    socket.on("close", () => {
      const err = this.#error;
      this.closed(err
        ? new ConnectionClosed(`connection lost: ${err.message}`, { cause: err })
        : new ConnectionClosed("the server closed the connection"));
    });
  }

  /**
   * Cuts whole frames off the received bytes. Chunks are joined only once they hold a whole
   * frame, so a large frame arriving in many pieces is copied once.
   * @param {Buffer} chunk
   */
  #receive(chunk) {
    if (this.isClosed) return;
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#size < this.#want) return;
    const buf = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks, this.#size);
    let at = 0;
    this.#want = 4;
    while (buf.length - at >= 4 && !this.isClosed) {
      const length = buf.readUInt32BE(at);
      if (length === 0 || length > MAX_FRAME) {
        this.#fail(new ProtocolError(`bad frame length ${length}: expected 1..${MAX_FRAME} bytes`));
        return;
      }
      if (buf.length - at < 4 + length) {
        this.#want = 4 + length;
        break;
      }
      const body = buf.subarray(at + 4, at + 4 + length);
      at += 4 + length;
      let frame;
      try {
        frame = JSON.parse(DECODER ? DECODER.decode(body) : body.toString("utf8"));
      } catch (err) {
        this.#fail(new ProtocolError(`a frame that is not UTF-8 JSON: ${/** @type {Error} */ (err).message}`));
        return;
      }
      if (!isObject(frame)) {
        this.#fail(new ProtocolError("a frame that is not a JSON object"));
        return;
      }
      this.deliver(frame);
    }
    const rest = buf.subarray(at);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#size = rest.length;
  }

  /** @param {Error} err */
  #fail(err) {
    this.#socket.destroy();
    this.closed(err);
  }

  get buffered() {
    return this.#socket.writableLength;
  }

  /** @param {string[]} texts */
  send(texts) {
    if (this.isClosed) return;
    const bodies = texts.map((text) => Buffer.from(text, "utf8"));
    const out = Buffer.allocUnsafe(bodies.reduce((n, body) => n + 4 + body.length, 0));
    let at = 0;
    for (const body of bodies) {
      out.writeUInt32BE(body.length, at);
      body.copy(out, at + 4);
      at += 4 + body.length;
    }
    this.#socket.write(out);
  }

  close() {
    this.#socket.end();
  }

  abort() {
    const socket = /** @type {any} */ (this.#socket);
    if (typeof socket.resetAndDestroy === "function") socket.resetAndDestroy();
    else socket.destroy();
    this.closed(new ConnectionClosed("the connection was dropped"));
  }
}

/** WebSocket: one JSON object per text message, both ways. */
class WsWire extends Wire {
  /** @type {WebSocket} */
  #ws;

  /**
   * @param {string} url
   * @param {{connectTimeout: number, WebSocket?: typeof WebSocket}} options
   * @returns {Promise<WsWire>}
   */
  static open(url, { connectTimeout, WebSocket: Class }) {
    const WS = Class ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof WS !== "function") {
      return Promise.reject(new ConnectionClosed(
        "this runtime has no WebSocket (Node 22+ has one; Node 20 needs --experimental-websocket): pass options.WebSocket or use a tcp:// address",
      ));
    }
    return new Promise((resolve, reject) => {
      /** @type {WebSocket} */
      const ws = new WS(url);
      const timer = setTimeout(() => failed(), connectTimeout);
      const opened = () => {
        cleanup();
        resolve(new WsWire(ws));
      };
      const failed = () => {
        cleanup();
        ws.close();
        reject(new ConnectionClosed(`cannot open ${url}`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        ws.removeEventListener("open", opened);
        ws.removeEventListener("error", failed);
        ws.removeEventListener("close", failed);
      };
      ws.addEventListener("open", opened);
      ws.addEventListener("error", failed);
      ws.addEventListener("close", failed);
    });
  }

  /** @param {WebSocket} ws */
  constructor(ws) {
    super();
    this.#ws = ws;
    ws.addEventListener("message", (message) => {
      let frame;
      try {
        if (typeof message.data !== "string") throw new Error("a binary message");
        frame = JSON.parse(message.data);
      } catch (err) {
        ws.close();
        this.closed(new ProtocolError(`a message that is not JSON text: ${/** @type {Error} */ (err).message}`));
        return;
      }
      if (isObject(frame)) this.deliver(frame);
    });
    ws.addEventListener("close", (event) => {
      const why = event.reason ? `: ${event.reason}` : "";
      this.closed(new ConnectionClosed(`the server closed the connection (WebSocket ${event.code}${why})`));
    });
  }

  get buffered() {
    return this.#ws.bufferedAmount;
  }

  /** @param {string[]} texts */
  send(texts) {
    if (this.isClosed) return;
    for (const text of texts) this.#ws.send(text);
  }

  close() {
    this.#ws.close(1000, "bye");
  }

  abort() {
    this.#ws.close();
    this.closed(new ConnectionClosed("the connection was dropped"));
  }
}

// --- helpers -------------------------------------------------------------------------------

/** @param {unknown} value @returns {value is Record<string, any>} */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function now() {
  return typeof performance === "object" ? performance.now() : Date.now();
}

/** @param {Record<string, any>} frame */
function isPong(frame) {
  return frame.info === "system" && frame.response?.code === 200 && frame.response?.msg === "pong";
}

/**
 * Whether a success reply can answer a request of this kind.
 * @param {Entry["kind"]} kind @param {Response} response
 */
function answers(kind, response) {
  const pong = response.code === 200 && response.msg === "pong";
  const rooms = response.code === 200 && Array.isArray(response.detail?.rooms);
  switch (kind) {
    case "ping":
      return pong;
    case "rooms":
      return rooms;
    case "login":
    case "resume":
      return response.code === 202;
    case "register":
      return response.code === 201;
    case "logout":
    case "password":
      return response.code === 200 && !pong && !rooms;
    default:
      return true;
  }
}

/**
 * Errors after which reconnecting is wrong: the session was taken over (409 with no room or
 * user: a resume, or a registered user's login, elsewhere), our frame was too large (413),
 * the server is shutting down (503).
 * @param {RoomcastError} error
 */
function endsForGood(error) {
  const about = "room" in error.detail || "user" in error.detail;
  if (error.code === 413) return true;
  if (error.code === 409) return !about;
  return error.code === 503 && !about && error.msg === "Server shutting down.";
}

/** @param {RoomcastError} error @returns {ProblemItem} */
function problem(error) {
  return { kind: "problem", code: error.code, msg: error.msg, detail: error.detail, error };
}

/** @param {Response} response */
function pick(response) {
  return {
    code: response.code,
    msg: response.msg,
    detail: isObject(response.detail) ? response.detail : {},
  };
}

/** @param {Record<string, any>} event @returns {Anchor} */
function anchorOf(event) {
  return [event.seq, event.time, event.user, event.type];
}

/**
 * In a fresh login's frames, the history of `room` (a joiner's) is cut after the `anchor`,
 * the last event received before the loss; the rest are marked replayed. False when the
 * history no longer holds the anchor: then it stays a joiner's history, and some events
 * may have been lost.
 * @param {{frame: Record<string, any>, replayed: boolean}[]} frames
 * @param {string} room
 * @param {Anchor | undefined} anchor
 */
function splice(frames, room, anchor) {
  if (anchor === undefined) return false;
  const mine = frames.filter(({ frame }) => frame.info === "user" && frame.room === room && frame.history === true);
  const same = (/** @type {any} */ e) =>
    e?.seq === anchor[0] && e?.time === anchor[1] && e?.user === anchor[2] && e?.type === anchor[3];
  if (!mine.some(({ frame }) => frame.payload.some(same))) return false;
  for (const item of mine) {
    item.frame = { ...item.frame, payload: item.frame.payload.filter((/** @type {any} */ e) => !(e?.seq <= anchor[0])) };
    item.replayed = true;
  }
  const kept = frames.filter(({ frame }) => frame.info !== "user" || frame.payload.length > 0);
  frames.splice(0, frames.length, ...kept);
  return true;
}

/**
 * @param {unknown} value @param {string} name
 * @returns {{x: number, y: number, z: number}}
 */
function vec3(value, name) {
  const [x, y, z] = Array.isArray(value)
    ? value
    : isObject(value) ? [value.x, value.y, value.z] : [];
  if (Array.isArray(value) && value.length !== 3) throw new TypeError(`${name} needs 3 numbers, got ${value.length}`);
  return { x: finite(x, `${name}.x`), y: finite(y, `${name}.y`), z: finite(z, `${name}.z`) };
}

/**
 * @param {unknown} value @param {string} name
 * @returns {{x: number, y: number, z: number, w?: number}}
 */
function rotation(value, name) {
  let w;
  if (Array.isArray(value)) {
    if (value.length !== 3 && value.length !== 4) {
      throw new TypeError(`${name} needs 3 (Euler) or 4 (quaternion) numbers, got ${value.length}`);
    }
    w = value[3];
  } else if (isObject(value)) {
    w = value.w;
  }
  const out = /** @type {{x: number, y: number, z: number, w?: number}} */ (vec3(
    Array.isArray(value) ? value.slice(0, 3) : value,
    name,
  ));
  if (w !== undefined) out.w = finite(w, `${name}.w`);
  return out;
}

/** @param {unknown} value @param {string} name @returns {number} */
function finite(value, name) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${name} must be a finite number, got ${String(value)}`);
  }
  return value;
}
