// The client against a real roomcast server over TCP (started by tests/js_client.rs):
// login, rooms, chat both ways, transforms on the tick, typed errors, history queries, games.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Conflict,
  ConnectionClosed,
  Forbidden,
  Invalid,
  NotInRoom,
  RoomcastClient,
  RoomcastError,
} from "../roomcast.js";
import { STEP, cleanly, tracked, env, isEvent, isMsg, join, loggedIn, needsServer, say, unique } from "./helpers.mjs";

const ADDR = env("ROOMCAST_ADDR");

test("login answers with the name, a token and the idle timeout; the lobby's join and list follow", { skip: needsServer }, cleanly(async () => {
  const name = unique("Alice");
  const client = tracked(new RoomcastClient(`tcp://${ADDR}`));
  await client.connect();
  assert.equal(client.state, "open");
  const events = client.events();
  const heard = [];
  client.addEventListener("event", (e) => heard.push(e.detail));
  const called = [];
  const off = client.on("event", (item) => called.push(item));

  assert.equal(await client.login(name, "1234"), name);
  assert.match(client.token, /^[0-9a-f]{32}$/);
  assert.equal(client.idleTimeout, 120);

  const joined = await events.take(isEvent("lobby", "join", name), { timeout: STEP });
  assert.equal(joined.history, false);
  assert.equal(joined.replayed, false);
  assert.ok(Number.isInteger(joined.event.seq), JSON.stringify(joined));
  assert.equal(typeof joined.event.time, "number");
  const list = await events.take(isEvent("lobby", "list"), { timeout: STEP });
  assert.ok(list.event.data.includes(name), JSON.stringify(list));
  assert.equal(list.event.seq, undefined);

  // The same items reached the EventTarget listeners and the callbacks, in the same order
  // (other tests' users may come and go in the lobby meanwhile).
  const mine = heard.filter((i) => i.room === "lobby" && !i.history && i.event.user === name);
  assert.deepEqual(mine.map((i) => i.event.type), ["join", "list"]);
  assert.deepEqual(called, heard);
  off();
  assert.deepEqual(client.joinedRooms, ["lobby"]);
  assert.equal(client.lastSeqs.lobby, joined.event.seq);
  await client.close();
  assert.equal(client.state, "closed");
}));

test("login refusals are typed errors with their code and detail", { skip: needsServer }, cleanly(async () => {
  const taken = unique("Taken");
  const { client: holder } = await loggedIn(ADDR, taken);
  const client = tracked(new RoomcastClient(`tcp://${ADDR}`));
  await client.connect();

  const bad = await client.login("bad name").then(() => null, (err) => err);
  assert.ok(bad instanceof Invalid, String(bad));
  assert.ok(bad instanceof RoomcastError);
  assert.equal(bad.code, 422);
  assert.deepEqual(bad.detail, { user: "bad name" });

  // Names are unique ignoring ASCII case.
  const clash = await client.login(taken.toUpperCase()).then(() => null, (err) => err);
  assert.ok(clash instanceof Conflict, String(clash));
  assert.equal(clash.code, 409);
  assert.equal(clash.detail.user, taken.toUpperCase());

  // The connection is still good for a login with a free name.
  const free = unique("Free");
  assert.equal(await client.login(free), free);
  await Promise.all([client.close(), holder.close()]);
}));

test("two clients chat both ways; every member gets each msg, the sender included", { skip: needsServer }, cleanly(async () => {
  const room = unique("den ☕ ");
  const a = await loggedIn(ADDR, unique("a"));
  const b = await loggedIn(ADDR, unique("b"));
  await join(a.client, a.events, room);
  await join(b.client, b.events, room);
  await a.events.take(isEvent(room, "join", b.client.user), { timeout: STEP });

  const hello = { text: "hello from a, ☕ included", n: [1, 2.5, null, true] };
  a.client.msg(room, hello);
  const got = await b.events.take(isMsg(room, hello), { timeout: STEP });
  assert.equal(got.event.user, a.client.user);
  assert.equal(got.history, false);
  const echo = await a.events.take(isMsg(room, hello), { timeout: STEP });
  assert.equal(echo.event.seq, got.event.seq);

  b.client.msg(room, "and back from b");
  const back = await a.events.take(isMsg(room, "and back from b"), { timeout: STEP });
  assert.equal(back.event.user, b.client.user);
  assert.equal(back.event.seq, got.event.seq + 1, "seqs are dense per room");
  assert.equal(a.client.lastSeqs[room], back.event.seq);
  assert.deepEqual(a.client.joinedRooms, ["lobby", room]);

  // A joiner gets the room's history first, marked as history.
  const c = await loggedIn(ADDR, unique("c"));
  c.client.join(room);
  const first = await c.events.take((i) => i.room === room, { timeout: STEP });
  assert.equal(first.history, true);
  const history = [first];
  while (history.at(-1).history) history.push(await c.events.take((i) => i.room === room, { timeout: STEP }));
  const said = history.filter((i) => i.history && i.event.type === "msg").map((i) => i.event.data);
  assert.deepEqual(said, [hello, "and back from b"]);
  assert.deepEqual(history.at(-1).event.type, "join");
  await Promise.all([a.client.close(), b.client.close(), c.client.close()]);
}));

test("transforms arrive on the tick: coalesced to the latest pose, parts and all accepted", { skip: needsServer }, cleanly(async () => {
  const room = unique("vr");
  const a = await loggedIn(ADDR, unique("head"));
  const b = await loggedIn(ADDR, unique("watcher"));
  await join(a.client, a.events, room);
  await join(b.client, b.events, room);

  // Five poses at once: the server forwards only the latest of each tick (20 per second).
  const hand = { pos: [0.2, 1.2, 0.3], rot: [0, 0, 0, 1] };
  for (let x = 0; x < 5; x++) {
    assert.equal(a.client.transform(room, { pos: [x, 1.6, -2], rot: [0, 0.7071, 0, 0.7071], parts: { left_hand: hand, right_hand: hand } }), true);
  }
  const poses = [];
  for (;;) {
    const item = await b.events.take(isEvent(room, "transform", a.client.user), { timeout: STEP });
    poses.push(item.event.data);
    if (item.event.data.pos.x === 4) break;
  }
  assert.ok(poses.length <= 2, `five poses sent at once came in ${poses.length} ticks`);
  assert.deepEqual(poses.at(-1).pos, { x: 4, y: 1.6, z: -2 });
  assert.deepEqual(poses.at(-1).rot, { x: 0, y: 0.7071, z: 0, w: 0.7071 });
  // The sender gets the tick too.
  await a.events.take((i) => isEvent(room, "transform", a.client.user)(i) && i.event.data.pos.x === 4, { timeout: STEP });

  // The positional form, Euler angles as an object.
  a.client.transform(room, { x: 9, y: 1, z: 0 }, { x: 0, y: 90, z: 0 });
  const euler = await b.events.take((i) => isEvent(room, "transform", a.client.user)(i) && i.event.data.pos.x === 9, { timeout: STEP });
  assert.deepEqual(euler.event.data.rot, { x: 0, y: 90, z: 0 });

  // A pose that is not finite never leaves the client.
  assert.throws(() => a.client.transform(room, [NaN, 0, 0], [0, 0, 0]), TypeError);
  assert.throws(() => a.client.transform(room, [0, 0], [0, 0, 0]), TypeError);
  await Promise.all([a.client.close(), b.client.close()]);
}));

test("refused room messages arrive as typed problems with code and detail", { skip: needsServer }, cleanly(async () => {
  const { client, events } = await loggedIn(ADDR, unique("oops"));
  const problems = [];
  client.addEventListener("problem", (e) => problems.push(e.detail));
  const room = unique("nowhere");

  client.msg(room, "anyone?");
  const notIn = await events.take((i) => i.kind === "problem", { timeout: STEP });
  assert.equal(notIn.code, 404);
  assert.ok(notIn.error instanceof NotInRoom);
  assert.deepEqual(notIn.detail, { room, type: "msg" });

  client.join("lobby");
  const twice = await events.take((i) => i.kind === "problem", { timeout: STEP });
  assert.ok(twice.error instanceof Conflict);
  assert.deepEqual(twice.detail, { room: "lobby", type: "join" });

  client.send({ room: "lobby", type: "transform", data: { pos: { x: 1, y: 2 }, rot: { x: 0, y: 0, z: 0 } } });
  const pose = await events.take((i) => i.kind === "problem", { timeout: STEP });
  assert.ok(pose.error instanceof Invalid);
  assert.match(pose.msg, /data\.pos\.z/);

  assert.deepEqual(problems.map((p) => p.code), [404, 409, 422]);
  // The connection is fine after all that.
  assert.equal((await client.ping()).msg, "pong");
  await client.close();
}));

test("history queries: before and after a seq, a limit, an empty range, and refusals", { skip: needsServer }, cleanly(async () => {
  const room = unique("archive");
  const a = await loggedIn(ADDR, unique("keeper"));
  await join(a.client, a.events, room);
  const seqs = [];
  for (let n = 0; n < 6; n++) seqs.push((await say(a.client, a.events, room, `m${n}`)).event.seq);

  const before = await a.client.history(room, { before: seqs[5], limit: 2 });
  assert.deepEqual(before.map((e) => e.data), ["m3", "m4"]);
  assert.deepEqual(before.map((e) => e.seq), [seqs[3], seqs[4]]);
  const after = await a.client.history(room, { after: seqs[1], limit: 3 });
  assert.deepEqual(after.map((e) => e.data), ["m2", "m3", "m4"]);
  assert.deepEqual(await a.client.history(room, { after: seqs[5] }), []);

  await assert.rejects(a.client.history(room, { after: 0, limit: 0 }), (err) => err instanceof Invalid && err.code === 422);
  await assert.rejects(a.client.history(unique("elsewhere"), { after: 0 }), (err) => err instanceof NotInRoom);
  await assert.rejects(a.client.history(room, { before: 1, after: 1 }), TypeError);

  // A joiner that asks at once: the join's history is not the answer to the query.
  const b = await loggedIn(ADDR, unique("late"));
  b.client.join(room);
  const answer = await b.client.history(room, { before: seqs[2], limit: 2 });
  assert.deepEqual(answer.map((e) => e.data), ["m0", "m1"]);
  const joinerHistory = await b.events.take((i) => i.room === room && i.history, { timeout: STEP });
  assert.equal(joinerHistory.event.type, "join");
  // Query answers are not events: the history seen is the join's alone.
  const msgs = [];
  for (;;) {
    const item = await b.events.take((i) => i.room === room, { timeout: STEP });
    if (!item.history) break;
    msgs.push(item.event.data);
  }
  assert.deepEqual(msgs, ["m0", "m1", "m2", "m3", "m4", "m5"]);
  await Promise.all([a.client.close(), b.client.close()]);
}));

test("a game of tic-tac-toe: every member gets each state; a move out of turn is refused", { skip: needsServer }, cleanly(async () => {
  const room = unique("ttt");
  const x = await loggedIn(ADDR, unique("x"));
  const o = await loggedIn(ADDR, unique("o"));
  await join(x.client, x.events, room);
  await join(o.client, o.events, room);
  const state = (stream) => stream.take(isEvent(room, "game"), { timeout: STEP }).then((i) => i.event.data);

  x.client.game(room, { start: "tictactoe" });
  assert.equal((await state(x.events)).status, "waiting");
  assert.equal((await state(o.events)).status, "waiting");
  o.client.game(room, { join: true });
  const playing = await state(x.events);
  assert.equal(playing.status, "playing");
  assert.equal(playing.turn, x.client.user);
  assert.deepEqual(playing.players, { X: x.client.user, O: o.client.user });
  await state(o.events);
  x.client.game(room, { move: 4 });
  const moved = await state(o.events);
  assert.equal(moved.board[4], "X");
  x.client.game(room, { move: 0 });
  const refused = await x.events.take((i) => i.kind === "problem", { timeout: STEP });
  assert.equal(refused.code, 422);
  assert.deepEqual(refused.detail, { room, type: "game" });
  await Promise.all([x.client.close(), o.client.close()]);
}));

test("rooms follows every page of the directory", { skip: needsServer }, cleanly(async () => {
  const { client, events } = await loggedIn(ADDR, unique("lister"));
  const mine = [unique("r-a"), unique("r-b"), unique("r-c")];
  for (const room of mine) await join(client, events, room);
  const page = await client.roomsPage({ limit: 1 });
  assert.equal(page.rooms.length, 1);
  assert.equal(typeof page.next, "string");
  const all = await client.rooms({ limit: 2 });
  for (const room of mine) assert.deepEqual(all.find((r) => r.room === room), { room, users: 1 });
  assert.ok(all.some((r) => r.room === "lobby"));
  const names = all.map((r) => r.room);
  assert.deepEqual(names, [...names].sort(), "sorted by name");
  await client.close();
}));

test("before connect and after close, sends throw and requests reject with ConnectionClosed", { skip: needsServer }, cleanly(async () => {
  const client = tracked(new RoomcastClient(`tcp://${ADDR}`));
  assert.throws(() => client.msg("lobby", "x"), ConnectionClosed);
  await assert.rejects(client.ping(), ConnectionClosed);
  await client.connect();
  assert.equal((await client.ping()).code, 200);
  await client.close();
  assert.throws(() => client.join("x"), ConnectionClosed);
  await assert.rejects(client.ping(), ConnectionClosed);
  // Nobody listening: a typed error, not a hang.
  const nowhere = tracked(new RoomcastClient("tcp://127.0.0.1:1"));
  await assert.rejects(nowhere.connect(), ConnectionClosed);
}));

test("logout leaves at once and closes for good; close() keeps the session (away)", { skip: needsServer }, cleanly(async () => {
  const room = unique("exit");
  const watcher = await loggedIn(ADDR, unique("watcher"));
  const leaver = await loggedIn(ADDR, unique("leaver"), { autoReconnect: true });
  const closer = await loggedIn(ADDR, unique("closer"), { autoReconnect: true });
  for (const c of [watcher, leaver, closer]) await join(c.client, c.events, room);

  const reply = await leaver.client.logout();
  assert.equal(reply.code, 200);
  await watcher.events.take(isEvent(room, "leave", leaver.client.user), { timeout: STEP });
  const closed = await leaver.events.take((i) => i.kind === "close" || i.kind === "reconnecting", { timeout: STEP });
  assert.equal(closed.kind, "close");
  assert.equal(closed.error, null);
  assert.equal(leaver.client.state, "closed");

  await closer.client.close();
  const away = await watcher.events.take((i) => i.room === room && i.event.user === closer.client.user, { timeout: STEP });
  assert.equal(away.event.type, "away");
  assert.equal(closer.client.state, "closed");
  await watcher.client.close();
}));

test("for await iterates the items, and ends after the close", { skip: needsServer }, cleanly(async () => {
  const room = unique("loop");
  const { client, events } = await loggedIn(ADDR, unique("iter"));
  await join(client, events, room);
  const seen = [];
  const loop = (async () => {
    for await (const item of client) {
      if (item.kind === "event" && item.room === room) seen.push(item.event.data);
      if (item.kind === "close") seen.push("close");
    }
  })();
  client.msg(room, "one");
  client.msg(room, "two");
  await client.waitFor(isMsg(room, "two"), { timeout: STEP });
  await client.close();
  await loop;
  assert.deepEqual(seen, ["one", "two", "close"]);
}));

test("accounts: register, a wrong password refused, a password change, and a login elsewhere takes over", { skip: needsServer }, cleanly(async () => {
  const name = unique("owner");
  const clerk = tracked(new RoomcastClient(`tcp://${ADDR}`));
  await clerk.connect();
  await assert.rejects(clerk.register(name, "short"), (err) => err instanceof Invalid && err.code === 422);
  const created = await clerk.register(name, "correct horse");
  assert.equal(created.code, 201);
  assert.deepEqual(created.detail, { user: name });
  await assert.rejects(clerk.register(name, "another one"), Conflict);
  await assert.rejects(clerk.login(name, "wrong horse"), (err) => err instanceof Forbidden && err.code === 403);

  const first = await loggedIn(ADDR, name, { autoReconnect: true }, "correct horse");
  await first.client.changePassword("correct horse", "battery staple");
  await assert.rejects(first.client.changePassword("correct horse", "x".repeat(9)), Forbidden);

  // A login with the new password elsewhere takes the session over; the first client stops.
  const second = tracked(new RoomcastClient(`tcp://${ADDR}`));
  await second.connect();
  assert.equal(await second.login(name, "battery staple"), name);
  const end = await first.events.take((i) => i.kind === "close" || i.kind === "reconnecting", { timeout: STEP });
  assert.equal(end.kind, "close");
  assert.ok(end.error instanceof Conflict, String(end.error));
}));
