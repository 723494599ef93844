// The client against a scripted fake server (test/fake_server.mjs): the bytes it writes, how
// it cuts frames that arrive in pieces, what it does with a broken stream, how it lines up
// replies without request ids, and the pieces that need no server at all.

import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  EventQueueOverflow,
  ProtocolError,
  RateLimited,
  RoomcastClient,
  SessionExpired,
  MissedEventsGone,
  errorFromResponse,
  defaultUrl,
  NotInRoom,
} from "../roomcast.js";
import { FakeServer, events, frame, reply } from "./fake_server.mjs";
import { STEP, cleanly, tracked } from "./helpers.mjs";

const LOGIN_OK = reply(202, "Access granted.", { user: "Ann", resume: "a".repeat(32), idle_timeout: 120.0 });

/** A client logged in as Ann against a fresh fake server. */
async function session(options = {}) {
  const fake = await FakeServer.start();
  const client = tracked(new RoomcastClient(fake.address, { keepAlive: false, ...options }));
  await client.connect();
  const conn = await fake.accept();
  const stream = client.events();
  const login = client.login("ann", "pw");
  assert.deepEqual(await conn.read(), { system: "login", options: { user: "ann", pass: "pw" } });
  conn.send(LOGIN_OK);
  assert.equal(await login, "Ann");
  return { fake, client, conn, stream };
}

test("defaultUrl is the page's /ws, wss: when the page is https", cleanly(async () => {
  assert.equal(defaultUrl({ protocol: "https:", host: "example.org" }), "wss://example.org/ws");
  assert.equal(defaultUrl({ protocol: "http:", host: "127.0.0.1:42069" }), "ws://127.0.0.1:42069/ws");
}));

test("addresses: ws URLs, tcp URLs, host:port and {host, port}; anything else is a TypeError", cleanly(async () => {
  for (const good of ["ws://h/ws", "wss://h/ws", "tcp://127.0.0.1:1", "localhost:42069", { host: "h", port: 5 }, { port: 5 }]) {
    assert.doesNotThrow(() => new RoomcastClient(good), JSON.stringify(good));
  }
  for (const bad of ["nonsense", "tcp://h:0", "h:99999", { host: "", port: 1 }, { port: "x" }]) {
    assert.throws(() => new RoomcastClient(bad), TypeError, JSON.stringify(bad));
  }
}));

test("errors are typed by code; 410 by whether it names a room", cleanly(async () => {
  assert.ok(errorFromResponse({ code: 404, msg: "x", detail: { room: "r" } }) instanceof NotInRoom);
  assert.ok(errorFromResponse({ code: 410, msg: "Session expired.", detail: {} }) instanceof SessionExpired);
  assert.ok(errorFromResponse({ code: 410, msg: "gone", detail: { room: "r" } }) instanceof MissedEventsGone);
  const unknown = errorFromResponse({ code: 418, msg: "teapot" });
  assert.equal(unknown.code, 418);
  assert.deepEqual(unknown.detail, {});
  assert.equal(unknown.message, "418 teapot");
}));

test("frames go out as a 4-byte big-endian length of the UTF-8 body, then the JSON", cleanly(async () => {
  const { client, conn } = await session();
  const room = "café ☕";
  client.transform(room, {
    pos: [1, 1.6, -2],
    rot: [0, 0.7071, 0, 0.7071],
    parts: { left_hand: { pos: { x: -0.2, y: 1.2, z: -1.7 }, rot: [0, 0, 0] } },
  });
  const raw = await conn.readRaw();
  assert.equal(raw.header.readUInt32BE(0), Buffer.byteLength(raw.text, "utf8"));
  assert.ok(Buffer.byteLength(raw.text, "utf8") > raw.text.length, "the length counts bytes, not characters");
  assert.deepEqual(JSON.parse(raw.text), {
    room,
    type: "transform",
    data: {
      pos: { x: 1, y: 1.6, z: -2 },
      rot: { x: 0, y: 0.7071, z: 0, w: 0.7071 },
      parts: { left_hand: { pos: { x: -0.2, y: 1.2, z: -1.7 }, rot: { x: 0, y: 0, z: 0 } } },
    },
  });
  client.msg(room, { big: 12345678901234567890n.toString() });
  assert.deepEqual(await conn.read(), { room, type: "msg", data: { big: "12345678901234567890" } });
  client.join(room);
  assert.deepEqual(await conn.read(), { room, type: "join", data: "" });
  client.game(room, { move: 4 });
  assert.deepEqual(await conn.read(), { room, type: "game", data: { move: 4 } });
  assert.throws(() => client.msg(room, undefined), TypeError);
}));

test("frames cut anywhere, and many in one read, come out whole and in order", cleanly(async () => {
  const { client, conn, stream } = await session();
  const payload = Array.from({ length: 30 }, (_, n) => ({ time: 1.5, user: "bob", type: "msg", seq: n + 1, data: `m${n} ${"é".repeat(n)}` }));
  const bytes = Buffer.concat(payload.map((event) => frame(events("lobby", [event]))));
  // Pieces of 1, 2, 3, ... bytes: headers and bodies (and a two-byte "é") split everywhere.
  for (let at = 0, size = 1; at < bytes.length; at += size, size += 1) {
    conn.writeBytes(bytes.subarray(at, at + size));
    if (size % 7 === 0) await sleep(2); // some pieces arrive in reads of their own
  }
  for (const event of payload) {
    const item = await stream.take((i) => i.kind === "event", { timeout: STEP });
    assert.deepEqual(item.event, event);
  }
  assert.equal(client.lastSeqs.lobby, 30);
}));

test("a zero-length frame breaks the stream: the client closes with ProtocolError", cleanly(async () => {
  const { client, conn, stream } = await session();
  conn.writeBytes(Buffer.from([0, 0, 0, 0]));
  const end = await stream.take((i) => i.kind === "close", { timeout: STEP });
  assert.ok(end.error instanceof ProtocolError, String(end.error));
  assert.equal(client.state, "closed");
}));

test("a body that is not JSON breaks the stream too", cleanly(async () => {
  const { conn, stream } = await session();
  conn.writeBytes(frame("{not json"));
  const end = await stream.take((i) => i.kind === "close", { timeout: STEP });
  assert.ok(end.error instanceof ProtocolError, String(end.error));
}));

test("replies line up with requests in order; a request dropped silently is rejected", cleanly(async () => {
  const { client, conn, stream } = await session();
  const rooms = client.roomsPage();
  const ping = client.ping();
  assert.deepEqual(await conn.read(), { system: "rooms" });
  assert.deepEqual(await conn.read(), { system: "ping" });
  // The rooms request was dropped by the rate limit without a 429: only the pong comes.
  conn.send(reply(200, "pong"));
  await assert.rejects(rooms, RateLimited);
  assert.equal((await ping).msg, "pong");

  // A room error is not an answer: it is a problem, and the request still waits.
  const second = client.ping();
  await conn.read();
  conn.send(reply(404, "You are not in room \"x\".", { room: "x", type: "msg" }), reply(200, "pong"));
  assert.equal((await second).msg, "pong");
  const problem = await stream.take((i) => i.kind === "problem", { timeout: STEP });
  assert.equal(problem.code, 404);
}));

test("an unread iterator ends with EventQueueOverflow past its bound", cleanly(async () => {
  const { client, conn } = await session();
  const small = client.events({ maxQueued: 3 });
  const payload = [1, 2, 3, 4, 5].map((n) => ({ time: 1.5, user: "bob", type: "msg", seq: n, data: n }));
  conn.send(events("lobby", payload));
  await client.waitFor((i) => i.kind === "event" && i.event.data === 5, { timeout: STEP });
  await assert.rejects(small.next(), EventQueueOverflow);
}));

test("keep-alive pings go out after a third of the idle timeout without sending", cleanly(async () => {
  const fake = await FakeServer.start();
  const client = tracked(new RoomcastClient(fake.address));
  await client.connect();
  const conn = await fake.accept();
  const login = client.login("ann");
  await conn.read();
  conn.send(reply(202, "Access granted.", { user: "ann", resume: "b".repeat(32), idle_timeout: 0.3 }));
  await login;
  const started = Date.now();
  for (let n = 0; n < 3; n++) {
    assert.deepEqual(await conn.read(), { system: "ping" });
    conn.send(reply(200, "pong"));
  }
  const took = Date.now() - started;
  assert.ok(took >= 250 && took < 2000, `three pings every 100 ms took ${took} ms`);
}));

test("close() during a reconnect stops it: a close item without an error, no more attempts", cleanly(async () => {
  const { fake, client, conn, stream } = await session({ autoReconnect: true, reconnectDelay: 50 });
  conn.socket.destroy(); // the connection is lost
  const first = await stream.take((i) => i.kind === "reconnecting", { timeout: STEP });
  assert.equal(first.attempt, 1);
  const retry = await fake.accept(); // attempt 1: resume and ping in one write
  assert.deepEqual(await retry.read(), { system: "resume", options: { token: "a".repeat(32), rooms: {} } });
  assert.deepEqual(await retry.read(), { system: "ping" });
  await client.close(); // before the server answers
  const end = await stream.take((i) => i.kind === "close" || i.kind === "reconnect", { timeout: STEP });
  assert.equal(end.kind, "close");
  assert.equal(end.error, null);
  assert.equal(client.state, "closed");
  const more = await stream.next();
  assert.equal(more.done, true, "nothing after the close");
}));
