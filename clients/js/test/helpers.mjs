// Shared by the tests: the servers tests/js_client.rs started (their addresses come in
// environment variables), the control channel to its failing-network proxies, and small
// waits that never hang.

import net from "node:net";
import { RoomcastClient } from "../roomcast.js";

/** How long one expected answer or event may take: generous for a loaded 2-core machine. */
export const STEP = 5000;

/** The address in an environment variable, or undefined. @param {string} name */
export function env(name) {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
}

/** Why tests that need the servers are skipped, or false when they can run. */
export const needsServer = env("ROOMCAST_ADDR")
  ? false
  : "ROOMCAST_ADDR is not set: run these tests with `cargo test --test js_client`";

/** Every client (and fake or gateway server) the running test made. */
const opened = new Set();

/**
 * A test body that closes everything it opened when it ends, passed or failed: an open
 * socket would keep Node, and the Rust test, waiting. (A wrapper rather than an after()
 * hook: root-level hooks differ between Node versions.)
 * @param {(t: import("node:test").TestContext) => Promise<void>} body
 */
export function cleanly(body) {
  return async (t) => {
    try {
      await body(t);
    } finally {
      const things = [...opened];
      opened.clear();
      await Promise.all(things.map((thing) => thing.close()));
    }
  };
}

/**
 * Remembers something to close when the test ends.
 * @template {{close(): Promise<unknown>}} T
 * @param {T} thing
 * @returns {T}
 */
export function tracked(thing) {
  opened.add(thing);
  return thing;
}

let counter = 0;
/** A user or room name no other test uses (names are unique per server, and servers are shared). */
export function unique(prefix) {
  counter += 1;
  return `${prefix}${counter}-${process.pid % 100000}`;
}

/**
 * A connected, logged-in client, with an event stream opened before the login so nothing is
 * missed; the lobby's join and list are already read.
 * @param {string} address
 * @param {string} user
 * @param {import("../roomcast.js").ClientOptions} [options]
 * @param {string} [pass]
 */
export async function loggedIn(address, user, options = {}, pass = "pw") {
  const client = tracked(new RoomcastClient(`tcp://${address}`, options));
  await client.connect();
  const events = client.events();
  await client.login(user, pass);
  await events.take(isEvent("lobby", "list", user), { timeout: STEP });
  return { client, events };
}

/** Matches room events by room, type and (optionally) user. */
export function isEvent(room, type, user) {
  return (item) =>
    item.kind === "event" && item.room === room && item.event.type === type &&
    (user === undefined || item.event.user === user);
}

/** Matches the msg event carrying this data. */
export function isMsg(room, data) {
  return (item) =>
    item.kind === "event" && item.room === room && item.event.type === "msg" &&
    JSON.stringify(item.event.data) === JSON.stringify(data);
}

/** Joins a room and waits for the own join and list events. */
export async function join(client, events, room) {
  client.join(room);
  await events.take(isEvent(room, "list", client.user), { timeout: STEP });
}

/** Sends a msg and waits for its echo, so the next one cannot share its frame. */
export async function say(client, events, room, data) {
  client.msg(room, data);
  return events.take(isMsg(room, data), { timeout: STEP });
}

/**
 * A command to tests/js_client.rs: "main cut_after 1", "short restore", "doomed shutdown"...
 * Resolves once it answered "ok".
 * @param {string} command
 */
export function control(command) {
  const address = env("ROOMCAST_CONTROL");
  if (!address) return Promise.reject(new Error("ROOMCAST_CONTROL is not set"));
  const [host, port] = split(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let answer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to control command ${command}`));
    }, STEP);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(`${command}\n`));
    socket.on("data", (text) => {
      answer += text;
      if (!answer.includes("\n")) return;
      clearTimeout(timer);
      socket.end();
      if (answer.trim() === "ok") resolve(undefined);
      else reject(new Error(`control command ${command}: ${answer.trim()}`));
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** "127.0.0.1:4000" -> ["127.0.0.1", 4000]. @param {string} address */
export function split(address) {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

/** Every msg data a stream yields until (and with) `last`, in order. */
export async function msgsUntil(events, room, last) {
  const seen = [];
  for (;;) {
    const item = await events.take((i) => i.kind === "event" && i.room === room && i.event.type === "msg", {
      timeout: STEP,
    });
    seen.push(item);
    if (JSON.stringify(item.event.data) === JSON.stringify(last)) return seen;
  }
}
