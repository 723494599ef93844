#!/usr/bin/env python3
"""Checks roomcast_client.py against a running server; exits non-zero on the first failure.

    python3 examples/python/selftest.py --port 42069

Each check uses fresh user and room names, so a shared server is fine. tests/python_clients.rs
runs this against an embedded server with its default settings (max_frame 64 KiB, fps 20,
idle timeout 120 s, resume grace 30 s, history 100). Checks that lose a connection on purpose
leave a detached session behind for the resume grace; their names are not reused. The accounts
check makes three failed password attempts from this address: the server turns an address
away after five within a minute, so a second run within the minute may fail there.
"""

import argparse
import os
import socket
import struct
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from roomcast_client import (  # noqa: E402  (the path above makes the module importable)
    DEFAULT_HOST,
    DEFAULT_PORT,
    BadRequest,
    Client,
    Conflict,
    ConnectionClosed,
    Forbidden,
    Gone,
    Invalid,
    MissedEventsGone,
    NotInRoom,
    NotLoggedIn,
    ProtocolError,
    RateLimited,
    ReconnectFailed,
    RoomcastError,
    SessionExpired,
    TooLarge,
    Unavailable,
    encode_frame,
    error_from_response,
    read_frame,
    recv_exact,
)

TIMEOUT = 5.0
TAG = f"{os.getpid() % 10000}"
CHECKS = []


def check(function):
    """Registers a check; they run in the order they are defined."""
    CHECKS.append(function)
    return function


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_raises(error_type, action):
    """Runs ``action`` and returns the ``error_type`` it raises; fails if it raises nothing."""
    try:
        action()
    except error_type as err:
        return err
    raise AssertionError(f"expected {error_type.__name__}")


def connect(args, name, **options):
    """A logged-in client whose lobby events have been read."""
    client = Client(args.host, args.port, **options)
    client.login(name, "1234")
    client.wait_for(lambda e: e["room"] == "lobby" and e["type"] == "list", TIMEOUT)
    return client


def joined(client, room):
    """Joins ``room`` and reads up to the member list."""
    client.join(room)
    client.wait_for(is_event("list", room=room), TIMEOUT)


def is_event(kind, user=None, room=None):
    def match(event):
        return (
            event["type"] == kind
            and (user is None or event["user"] == user)
            and (room is None or event["room"] == room)
        )

    return match


@check
def login_joins_the_lobby(args):
    name = f"ann{TAG}"
    with Client(args.host, args.port) as client:
        reply = client.login(name, "1234")
        expect(reply["code"] == 202, f"login code {reply['code']}")
        expect(reply["msg"] == "Access granted.", f"login msg {reply['msg']!r}")
        detail = reply["detail"]
        expect(set(detail) == {"user", "resume", "idle_timeout"}, f"login detail {detail}")
        expect(detail["user"] == name, f"login detail user {detail}")
        token = detail["resume"]
        expect(isinstance(token, str) and len(token) >= 16, f"resume token {token!r}")
        expect(client.token == token, "the client keeps the token")
        expect(detail["idle_timeout"] == 120, f"idle_timeout {detail['idle_timeout']!r}")
        expect(client.keepalive_interval == 40, f"keep-alive every {client.keepalive_interval} s")
        join = client.wait_for(is_event("join", name, "lobby"), TIMEOUT)
        expect(join["history"] is False, "own join is live, not history")
        expect(isinstance(join["seq"], int), f"a join carries its seq: {join}")
        expect(client.last_seqs.get("lobby") == join["seq"], f"last seqs {client.last_seqs}")
        members = client.wait_for(is_event("list", room="lobby"), TIMEOUT)
        expect(name in members["data"], f"{name} not in lobby list {members['data']}")
        expect(members["seq"] is None, f"a list is state, without seq: {members}")
        pong = client.ping()
        expect((pong["code"], pong["msg"]) == (200, "pong"), f"ping reply {pong}")


@check
def login_errors_are_typed(args):
    name = f"bob{TAG}"
    with connect(args, name) as first, Client(args.host, args.port) as second:
        err = expect_raises(Conflict, lambda: first.login("other", "x"))
        expect(err.code == 409, f"second login code {err.code}")
        err = expect_raises(Conflict, lambda: second.login(name.upper(), "x"))
        expect(err.detail.get("user") == name.upper(), f"409 detail {err.detail}")
        err = expect_raises(Invalid, lambda: second.login("no spaces allowed", "x"))
        expect(err.code == 422 and "user name" in err.msg, f"422 {err.code} {err.msg}")
        expect(isinstance(err, RoomcastError), "typed errors share RoomcastError")


@check
def room_message_before_login_is_401(args):
    with Client(args.host, args.port) as client:
        client.join("anywhere")
        err = expect_raises(NotLoggedIn, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect(err.detail == {"room": "anywhere", "type": "join"}, f"401 detail {err.detail}")


@check
def msg_echoes_with_data_intact(args):
    name, room = f"cat{TAG}", f"echo-{TAG}"
    data = {
        "text": 'héllo ☕ "quoted"\n',
        "list": [1, 2.5, -3e-7, None, True, False, "", {}],
        "nested": {"a": {"b": [[]]}},
        "big": 12345678901234,
    }
    with connect(args, name) as client:
        client.join(room)
        client.wait_for(is_event("list", room=room), TIMEOUT)
        client.msg(room, data)
        client.msg(room, "plain string")
        client.msg(room, None)
        got = [client.wait_for(is_event("msg", name, room), TIMEOUT) for _ in range(3)]
        expect(got[0]["data"] == data, f"msg data changed: {got[0]['data']!r}")
        expect(got[1]["data"] == "plain string", f"second msg {got[1]['data']!r}")
        expect(got[2]["data"] is None, f"null msg {got[2]['data']!r}")
        expect(all(isinstance(e["time"], float) for e in got), "events carry a float time")
        seqs = [e["seq"] for e in got]
        expect(seqs == list(range(seqs[0], seqs[0] + 3)), f"seqs go up by one: {seqs}")
        expect(client.last_seqs[room] == seqs[-1], f"last seqs {client.last_seqs}")


@check
def unknown_room_is_a_typed_404_while_iterating(args):
    with connect(args, f"dan{TAG}") as client:
        client.msg(f"nowhere-{TAG}", "hi?")
        err = expect_raises(NotInRoom, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect(err.code == 404, f"code {err.code}")
        expect(err.detail == {"room": f"nowhere-{TAG}", "type": "msg"}, f"detail {err.detail}")
        # The generator ended with the error; the connection goes on.
        expect(client.ping()["msg"] == "pong", "ping after an error")


@check
def errors_of_room_messages_do_not_fail_a_ping(args):
    with connect(args, f"eve{TAG}") as client:
        client.leave(f"nowhere-{TAG}")
        expect(client.ping()["code"] == 200, "ping answered despite an earlier 404")
        expect_raises(NotInRoom, lambda: client.wait_for(lambda e: False, TIMEOUT))


@check
def transform_tick_carries_the_pose(args):
    room = f"vr-{TAG}"
    a_name, b_name = f"fay{TAG}", f"gus{TAG}"
    with connect(args, a_name) as a, connect(args, b_name) as b:
        a.join(room)
        b.join(room)
        b.wait_for(is_event("join", a_name, room), TIMEOUT)
        a.transform(room, (1, 2.5, -3), (0, 0.7071, 0, 0.7071))
        event = b.wait_for(is_event("transform", a_name, room), TIMEOUT)
        expected = {
            "pos": {"x": 1.0, "y": 2.5, "z": -3.0},
            "rot": {"x": 0.0, "y": 0.7071, "z": 0.0, "w": 0.7071},
        }
        expect(event["data"] == expected, f"pose {event['data']}")
        expect(event["seq"] is None, f"a pose is state, without seq: {event}")
        # Euler rotation from dicts, no w.
        a.transform(room, {"x": 0, "y": 1, "z": 0}, {"x": 10, "y": 20, "z": 30})
        event = b.wait_for(is_event("transform", a_name, room), TIMEOUT)
        expect(event["data"]["rot"] == {"x": 10.0, "y": 20.0, "z": 30.0}, f"{event['data']}")
        # A late joiner gets a snapshot of every pose at its first tick.
        with connect(args, f"hal{TAG}") as late:
            late.join(room)
            event = late.wait_for(is_event("transform", a_name, room), TIMEOUT)
            expect(event["data"]["pos"] == {"x": 0.0, "y": 1.0, "z": 0.0}, "snapshot pose")
        expect_raises(ValueError, lambda: a.transform(room, (0, 0, float("nan")), (0, 0, 0)))
        a.send({"room": room, "type": "transform", "data": {"pos": {"x": 0}, "rot": {}}})
        err = expect_raises(Invalid, lambda: a.wait_for(lambda e: False, TIMEOUT))
        expect("data.pos.y" in err.msg, f"422 names the field: {err.msg}")


@check
def joiners_get_history(args):
    room = f"hist-{TAG}"
    with connect(args, f"ivy{TAG}") as a, connect(args, f"jon{TAG}") as b:
        a.join(room)
        a.msg(room, "before you came")
        a.wait_for(is_event("msg", room=room), TIMEOUT)
        b.join(room)
        old = b.wait_for(is_event("msg", room=room), TIMEOUT)
        expect(old["history"] is True, f"history flag {old}")
        expect(old["data"] == "before you came", f"history data {old['data']!r}")
        live = b.wait_for(is_event("join", f"jon{TAG}", room), TIMEOUT)
        expect(live["history"] is False, "own join is live")
        rooms = {r["room"]: r["users"] for r in a.rooms()}
        expect(rooms.get(room) == 2, f"rooms() says {rooms}")


class CountingSocket:
    """A socket that counts its recv() calls."""

    def __init__(self, sock):
        self.sock = sock
        self.recvs = 0

    def recv(self, n):
        self.recvs += 1
        return self.sock.recv(n)

    def __getattr__(self, name):
        return getattr(self.sock, name)


@check
def big_frames_and_many_small_ones(args):
    room = f"big-{TAG}"
    # A small receive buffer makes the server's 62 KB frame arrive in many pieces for sure.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((args.host, args.port))
    counting = CountingSocket(sock)
    with Client.from_socket(counting) as client:
        client.login(f"kim{TAG}", "1234")
        client.join(room)
        client.wait_for(is_event("list", room=room), TIMEOUT)
        big = "x" * 60_000 + "é" * 1000  # 62 000 bytes of UTF-8, under max_frame (64 KiB)
        client.msg(room, big)
        before = counting.recvs
        for n in range(50):  # many frames: several arrive in one recv()
            client.msg(room, n)
        event = client.wait_for(is_event("msg", room=room), TIMEOUT)
        expect(event["data"] == big, f"big msg of {len(event['data'])} chars came back changed")
        expect(counting.recvs - before > 2, f"big frame took {counting.recvs - before} recv()s")
        numbers = [client.wait_for(is_event("msg", room=room), TIMEOUT)["data"] for _ in range(50)]
        expect(numbers == list(range(50)), f"small msgs out of order: {numbers}")


@check
def frames_split_into_tiny_pieces_are_reassembled(args):
    """The server is not needed: a socketpair fed a few bytes at a time, as a slow network
    would, must give back whole frames to both readers."""
    frames = [{"info": "user", "room": "r", "payload": [{"n": i, "s": "é" * i}]} for i in range(20)]
    wire = b"".join(encode_frame(f) for f in frames)

    def trickle(sock):
        for start in range(0, len(wire), 3):
            sock.sendall(wire[start : start + 3])
            if start % 30 == 0:
                time.sleep(0.001)  # Let the reader see the partial frame.
        sock.shutdown(socket.SHUT_WR)

    left, right = socket.socketpair()
    writer = threading.Thread(target=trickle, args=(left,))
    writer.start()
    got = [read_frame(right) for _ in frames]
    expect(got == frames, "read_frame lost or mangled a split frame")
    expect_raises(ConnectionClosed, lambda: recv_exact(right, 1))
    writer.join()
    left.close()
    right.close()

    left, right = socket.socketpair()
    writer = threading.Thread(target=trickle, args=(left,))
    writer.start()
    client = Client.from_socket(right)
    events = []
    try:
        for event in client.events(timeout=TIMEOUT):
            events.append(event)
    except ConnectionClosed:
        pass
    writer.join()
    left.close()
    client.close(linger=0)
    expect([e["n"] for e in events] == list(range(20)), f"events {events}")
    expect(all(e["room"] == "r" and e["history"] is False for e in events), "room and history")


@check
def timeout_keeps_a_partial_frame(args):
    left, right = socket.socketpair()
    client = Client.from_socket(right)
    frame = encode_frame({"info": "system", "response": {"code": 200}})
    left.sendall(frame[:5])
    expect_raises(TimeoutError, lambda: client.recv(timeout=0.05))
    left.sendall(frame[5:])
    expect(client.recv(timeout=TIMEOUT)["response"]["code"] == 200, "frame after a timeout")
    left.close()
    client.close(linger=0)


@check
def oversized_frame_is_413_then_closed(args):
    with connect(args, f"lee{TAG}") as client:
        client.send({"room": "lobby", "type": "msg", "data": "y" * 70_000})
        err = expect_raises(TooLarge, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect(err.detail.get("max_frame") == 65536, f"413 detail {err.detail}")
        expect_raises(ConnectionClosed, lambda: client.recv(TIMEOUT))


@check
def zero_length_frame_is_400_then_closed(args):
    with connect(args, f"max{TAG}") as client:
        client.sock.sendall(struct.pack("!I", 0))
        expect_raises(BadRequest, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect_raises(ConnectionClosed, lambda: client.recv(TIMEOUT))


@check
def game_state_arrives_as_an_event(args):
    room = f"ttt-{TAG}"
    with connect(args, f"ned{TAG}") as client:
        client.join(room)
        client.game(room, {"start": "tictactoe"})
        event = client.wait_for(is_event("game", room=room), TIMEOUT)
        expect(event["data"]["game"] == "tictactoe", f"game state {event['data']}")
        expect(event["data"]["status"] == "waiting", f"status {event['data']['status']}")


@check
def errors_are_typed_by_code(args):
    cases = {
        400: BadRequest,
        401: NotLoggedIn,
        404: NotInRoom,
        409: Conflict,
        413: TooLarge,
        422: Invalid,
        429: RateLimited,
        503: Unavailable,
    }
    for code, cls in cases.items():
        err = error_from_response({"code": code, "msg": "m", "detail": {}})
        expect(type(err) is cls and err.code == code, f"{code} -> {type(err).__name__}")
    expired = error_from_response({"code": 410, "msg": "Session expired.", "detail": {}})
    expect(type(expired) is SessionExpired and isinstance(expired, Gone), "410 expired")
    gone = error_from_response({"code": 410, "msg": "m", "detail": {"room": "r"}})
    expect(type(gone) is MissedEventsGone and gone.code == 410, "410 with a room")
    odd = error_from_response({"code": 418, "msg": "teapot"})
    expect(type(odd) is RoomcastError and odd.detail == {}, "unknown codes stay generic")


@check
def rooms_pages_are_followed(args):
    rooms = [f"page-{TAG}-{n}" for n in range(3)]
    with connect(args, f"pam{TAG}") as client:
        for room in rooms:
            joined(client, room)
        page, after = client.rooms_page(limit=1)
        expect(len(page) == 1 and after == page[0]["room"], f"first page {page}, next {after}")
        page, after = client.rooms_page(after=f"page-{TAG}-0", limit=2)
        names = [r["room"] for r in page]
        expect(names == rooms[1:], f"page after page-{TAG}-0: {names}")
        everything = {r["room"]: r["users"] for r in client.rooms(limit=2)}
        expect(all(everything.get(room) == 1 for room in rooms), f"all pages: {everything}")
        expect("lobby" in everything, "lobby is listed")


@check
def history_query_returns_kept_events(args):
    room = f"query-{TAG}"
    with connect(args, f"quinn{TAG}") as client:
        joined(client, room)
        for n in range(5):
            client.msg(room, n)
        msgs = [client.wait_for(is_event("msg", room=room), TIMEOUT) for _ in range(5)]
        first, last = msgs[0]["seq"], msgs[-1]["seq"]
        older = client.history(room, before=last, limit=2)
        expect([e["data"] for e in older] == [2, 3], f"before {last}, limit 2: {older}")
        expect(all(e["history"] and e["room"] == room for e in older), f"flags {older}")
        expect([e["seq"] for e in older] == [last - 2, last - 1], f"seqs {older}")
        newer = client.history(room, after=first)
        expect([e["data"] for e in newer] == [1, 2, 3, 4], f"after {first}: {newer}")
        expect(client.history(room, after=last) == [], "nothing after the newest")
        expect(client.last_seqs[room] == last, "a query does not move the last seq back")
        expect_raises(NotInRoom, lambda: client.history(f"elsewhere-{TAG}", before=1))
        expect_raises(ValueError, lambda: client.history(room))
        expect(client.ping()["msg"] == "pong", "the connection goes on")


@check
def logout_leaves_every_room_at_once(args):
    room = f"bye-{TAG}"
    name = f"lou{TAG}"
    with connect(args, f"wes{TAG}") as watcher, connect(args, name) as client:
        joined(watcher, room)
        joined(client, room)
        reply = client.logout()
        expect((reply["code"], reply["msg"]) == (200, "Logged out."), f"logout {reply}")
        expect(client.token is None, "no token after logout")
        expect_raises(ConnectionClosed, lambda: client.recv(TIMEOUT))
        left = watcher.wait_for(is_event("leave", name), TIMEOUT)
        other = watcher.wait_for(is_event("leave", name), TIMEOUT)
        expect({left["room"], other["room"]} == {room, "lobby"}, "left both rooms at once")
    # The name is free again at once.
    with connect(args, name):
        pass


def lose_connection(client, watcher):
    """Drops ``client``'s connection like a network failure and waits until ``watcher``
    (in the same rooms) sees it go away."""
    client.abort()
    watcher.wait_for(is_event("away", client.user), TIMEOUT)


@check
def resume_replays_exactly_the_missed_events(args):
    room = f"res-{TAG}"
    name = f"rey{TAG}"
    with connect(args, f"sam{TAG}") as talker:
        joined(talker, room)
        lost = connect(args, name)
        joined(lost, room)
        talker.wait_for(is_event("join", name, room), TIMEOUT)
        talker.msg(room, "seen")
        lost.wait_for(is_event("msg", room=room), TIMEOUT)
        token, seqs = lost.token, lost.last_seqs
        lose_connection(lost, talker)
        lost.close(linger=0, logout=False)  # Already dropped: this only frees the object.
        for text in ("missed 1", "missed 2", "missed 3"):
            talker.msg(room, text)
        talker.wait_for(lambda e: e["type"] == "msg" and e["data"] == "missed 3", TIMEOUT)

        with Client(args.host, args.port) as back:
            reply = back.resume(token, seqs)
            detail = reply["detail"]
            expect(reply["code"] == 202 and detail.get("resumed") is True, f"resume {reply}")
            expect(detail["user"] == name and back.user == name, f"user {detail}")
            expect(detail["resume"] != token, "a resume brings a new token")
            events = []
            for event in back.events(timeout=TIMEOUT):
                if event["type"] == "back" and event["room"] == room:
                    break
                events.append(event)
            replay = [(e["room"], e["type"], e["data"]) for e in events]
            expected = [
                ("lobby", "away", ""),
                (room, "away", ""),
                (room, "msg", "missed 1"),
                (room, "msg", "missed 2"),
                (room, "msg", "missed 3"),
            ]
            got = sorted(replay, key=lambda e: e[0] != "lobby")  # rooms may come in any order
            expect([e for e in got if e[1] != "back"] == expected, f"replay {replay}")
            in_room = [e for e in events if e["room"] == room]
            expect(all(e["history"] for e in in_room), "the replay comes as history")
            expect(
                [e["seq"] for e in in_room] == list(range(seqs[room] + 1, seqs[room] + 5)),
                f"replayed seqs follow {seqs[room]}: {in_room}",
            )
            talker.wait_for(is_event("back", name, room), TIMEOUT)
            # The token was single-use: the old one is expired now.
            with Client(args.host, args.port) as stale:
                err = expect_raises(SessionExpired, lambda: stale.resume(token, {}))
                expect(err.code == 410 and err.detail == {}, f"410 {err.detail}")


@check
def resume_takes_over_an_open_connection(args):
    room = f"take-{TAG}"
    name = f"tia{TAG}"
    with connect(args, name, auto_reconnect=True) as first:
        joined(first, room)
        with Client(args.host, args.port) as second:
            second.resume(first.token, first.last_seqs)
            err = expect_raises(Conflict, lambda: first.wait_for(lambda e: False, TIMEOUT))
            expect(err.detail == {}, f"409 detail {err.detail}")
            # Taken over: it does not reconnect (that would take the session back).
            expect_raises(ConnectionClosed, lambda: first.recv(TIMEOUT))
            expect(second.ping()["msg"] == "pong", "the new connection holds the session")


@check
def auto_reconnect_resumes_after_a_reset(args):
    room = f"auto-{TAG}"
    name = f"ada{TAG}"
    reports = []
    with connect(args, f"bea{TAG}") as talker:
        joined(talker, room)
        client = connect(args, name, auto_reconnect=True, on_reconnect=reports.append)
        with client:
            joined(client, room)
            talker.wait_for(is_event("join", name, room), TIMEOUT)
            talker.msg(room, 0)
            client.wait_for(is_event("msg", room=room), TIMEOUT)
            old_token = client.token
            lose_connection(client, talker)
            for n in range(1, 4):
                talker.msg(room, n)
            talker.wait_for(lambda e: e["type"] == "msg" and e["data"] == 3, TIMEOUT)
            event = client.wait_for(lambda e: True, TIMEOUT)  # reading finds the loss
            expect(event["type"] == "reconnect", f"first event after the loss: {event}")
            expect(event["resumed"] is True and event["gaps"] == [], f"reconnect {event}")
            expect(event["missed_types"] == {"away": 2, "msg": 3}, f"missed {event}")
            expect(event["missed"] == 5 and event["attempts"] >= 1, f"counts {event}")
            expect(reports and reports[0]["missed"] == 5, f"on_reconnect got {reports}")
            expect(client.token not in (None, old_token), "the token was renewed")
            msgs = []
            for event in client.events(timeout=TIMEOUT):
                if event["type"] == "msg":
                    expect(event["replayed"] is True, f"replayed flag {event}")
                    msgs.append(event["data"])
                if event["type"] == "back" and event["room"] == room:
                    break
            expect(msgs == [1, 2, 3], f"missed msgs {msgs}")
            talker.msg(room, 4)
            live = client.wait_for(is_event("msg", room=room), TIMEOUT)
            expect(live["data"] == 4 and not live["replayed"], f"live again: {live}")
            expect(client.ping()["msg"] == "pong", "ping after the reconnect")


@check
def accounts_register_log_in_and_change_password(args):
    name = f"acc{TAG}"
    first, second = "first password", "second password"
    with Client(args.host, args.port) as client:
        reply = client.register(name, first)
        expect((reply["code"], reply["msg"]) == (201, "Account created."), f"register {reply}")
        expect(reply["detail"] == {"user": name}, f"register detail {reply['detail']}")
        expect(client.token is None, "registering does not log in")
        err = expect_raises(Conflict, lambda: client.register(name.upper(), first))
        expect(err.detail == {"user": name.upper()}, f"409 detail {err.detail}")
        err = expect_raises(Invalid, lambda: client.register(f"acd{TAG}", "short"))
        expect(err.code == 422 and "password" in err.msg, f"422 {err.msg!r}")

        err = expect_raises(Forbidden, lambda: client.login(name, "wrong password"))  # 1st failure
        expect((err.code, err.msg) == (403, "Access denied."), f"wrong password: {err}")
        expect(err.detail == {"user": name}, f"403 detail {err.detail}")
        expect(client.token is None, "a refused login leaves no session")
        reply = client.login(name.upper(), first)
        expect(reply["detail"]["user"] == name and client.user == name, f"as registered {reply}")
        client.wait_for(is_event("list", room="lobby"), TIMEOUT)

        wrong = lambda: client.change_password("wrong password", second)  # noqa: E731
        err = expect_raises(Forbidden, wrong)  # 2nd failure
        expect((err.msg, err.detail) == ("Access denied.", {}), f"wrong old password: {err}")
        err = expect_raises(Invalid, lambda: client.change_password(first, "short"))
        expect(err.detail == {}, f"a short new password: {err}")
        reply = client.change_password(first, second)
        expect((reply["code"], reply["msg"]) == (200, "Password changed."), f"change {reply}")
        expect(client.ping()["msg"] == "pong", "the session goes on")

    with Client(args.host, args.port) as client:
        err = expect_raises(Forbidden, lambda: client.login(name, first))  # 3rd failure
        expect(err.msg == "Access denied.", f"the old password: {err}")
        expect(client.login(name, second)["code"] == 202, "the new password")

    with connect(args, f"gus{TAG}") as guest:
        err = expect_raises(Forbidden, lambda: guest.change_password("1234", "new password"))
        expect(err.msg == "Only a registered user can change its password.", f"guest: {err}")


@check
def a_registered_login_takes_over_its_own_session(args):
    name = f"own{TAG}"
    with Client(args.host, args.port) as registrar:
        registrar.register(name, "owner's password")
    with connect(args, f"wit{TAG}") as witness:
        first = Client(args.host, args.port, auto_reconnect=True)
        with first:
            first.login(name, "owner's password")
            first.wait_for(is_event("list", room="lobby"), TIMEOUT)
            witness.wait_for(is_event("join", name, "lobby"), TIMEOUT)
            with Client(args.host, args.port) as second:
                reply = second.login(name, "owner's password")
                expect(reply["detail"].get("resumed") is True, f"a takeover: {reply}")
                members = second.wait_for(is_event("list", room="lobby"), TIMEOUT)
                expect(name in members["data"], f"still in the lobby: {members}")
                err = expect_raises(Conflict, lambda: first.wait_for(lambda e: False, TIMEOUT))
                expect(err.detail == {}, f"the old connection's 409: {err.detail}")
                # Taken over: it does not come back (that would take the session back).
                expect_raises(ConnectionClosed, lambda: first.recv(TIMEOUT))
                expect(second.ping()["msg"] == "pong", "the new connection holds the session")
            left = witness.wait_for(lambda e: e["user"] == name and e["type"] != "msg", TIMEOUT)
            expect(left["type"] == "leave", f"no join or away on the takeover: {left}")


class AccountServer:
    """A scripted server on 127.0.0.1:0 with one account and no sessions: every resume gets
    410 "Session expired.", so an auto-reconnecting client logs in afresh. It records the
    password of every login, and ``drop()`` resets its connections like a network failure."""

    def __init__(self, password):
        self.password = password
        self.logins = []
        self.lock = threading.Lock()
        self.conns = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # Closed.
            with self.lock:
                self.conns.append(sock)
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def serve(self, sock):
        try:
            while True:
                message = read_frame(sock)
                command = message.get("system")
                options = message.get("options") or {}
                if command == "login":
                    with self.lock:
                        self.logins.append(options.get("pass"))
                        ok = options.get("pass") == self.password
                        token = f"t{len(self.logins)}"
                    if ok:
                        detail = {"user": options.get("user"), "resume": token, "idle_timeout": 0}
                        send_reply(sock, "system", 202, "Access granted.", detail)
                    else:
                        refused = {"user": options.get("user")}
                        send_reply(sock, "error", 403, "Access denied.", refused)
                elif command == "password":
                    with self.lock:
                        ok = options.get("old") == self.password
                        if ok:
                            self.password = options.get("new")
                    if ok:
                        send_reply(sock, "system", 200, "Password changed.", {})
                    else:
                        send_reply(sock, "error", 403, "Access denied.", {})
                elif command == "resume":
                    send_reply(sock, "error", 410, "Session expired.", {})
                elif command == "ping":
                    send_reply(sock, "system", 200, "pong", {})
                # Room messages (the lobby leave of a fresh login) get no answer.
        except (ConnectionClosed, ProtocolError, OSError):
            pass

    def drop(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for sock in conns:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # Wakes the thread reading it; close does not.
            except OSError:
                pass
            sock.close()

    def close(self):
        self.listener.close()
        self.drop()


def send_reply(sock, info, code, msg, detail):
    response = {"time": time.time(), "code": code, "msg": msg, "detail": detail}
    sock.sendall(encode_frame({"info": info, "response": response}))


@check
def a_fresh_login_after_an_expiry_sends_the_current_password(args):
    server = AccountServer("first password")
    client = Client("127.0.0.1", server.port, auto_reconnect=True, keepalive=False)
    try:
        client.login("kay", "first password")
        server.drop()
        event = client.wait_for(lambda e: True, TIMEOUT)  # reading finds the loss
        expect(event["type"] == "reconnect" and event["resumed"] is False, f"{event}")
        expect(server.logins == ["first password"] * 2, f"logins {server.logins}")

        client.change_password("first password", "second password")
        server.drop()
        event = client.wait_for(lambda e: True, TIMEOUT)
        expect(event["type"] == "reconnect" and event["resumed"] is False, f"{event}")
        expect(server.logins[-1] == "second password", f"after the change: {server.logins}")

        # Changed elsewhere: the fresh login is refused, and the client stops at once (each
        # try would count towards the server's throttle of failed logins).
        server.password = "third password"
        server.drop()
        err = expect_raises(ReconnectFailed, lambda: client.wait_for(lambda e: False, TIMEOUT))
        expect(isinstance(err.__cause__, Forbidden), f"the 403 is the cause: {err!r}")
        expect(err.attempts == 1 and "403 Access denied." in str(err), f"{err}")
        expect(server.logins == ["first password"] * 2 + ["second password"] * 2, "one try")
        expect_raises(ReconnectFailed, lambda: client.recv(TIMEOUT))
    finally:
        client.close(linger=0)
        server.close()


class FakeServer:
    """The other end of a socketpair, answering like a server that has an idle timeout."""

    def __init__(self, sock, idle_timeout):
        self.sock = sock
        self.idle_timeout = idle_timeout
        self.received = []  # (time, message)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while True:
                message = read_frame(self.sock)
                self.received.append((time.monotonic(), message))
                if message.get("system") == "login":
                    detail = {"user": "kay", "resume": "t0", "idle_timeout": self.idle_timeout}
                    self.reply(202, "Access granted.", detail)
                elif message.get("system") == "ping":
                    self.reply(200, "pong", {})
        except (ConnectionClosed, OSError):
            pass

    def reply(self, code, msg, detail):
        response = {"time": time.time(), "code": code, "msg": msg, "detail": detail}
        self.sock.sendall(encode_frame({"info": "system", "response": response}))

    def pings(self, since):
        return [t for t, m in self.received if m.get("system") == "ping" and t >= since]


@check
def keepalive_pings_after_a_third_of_the_idle_timeout(args):
    left, right = socket.socketpair()
    server = FakeServer(left, 0.3)
    client = Client.from_socket(right)
    try:
        client.login("kay")
        expect(abs(client.keepalive_interval - 0.1) < 1e-9, f"{client.keepalive_interval}")
        start = time.monotonic()
        seen = list(client.events(timeout=0.6))  # idle: the keep-alive pings
        expect(seen == [], f"pongs of keep-alive pings are not shown: {seen}")
        pings = server.pings(start)
        expect(3 <= len(pings) <= 8, f"{len(pings)} pings in 0.6 s at one per 0.1 s")
        # Sending counts: a msg every 40 ms leaves nothing for the keep-alive to do.
        start = time.monotonic()
        while time.monotonic() - start < 0.5:
            client.msg("lobby", "busy")
            time.sleep(0.04)
        expect(len(server.pings(start + 0.05)) == 0, "no ping while sending")
        expect(client.ping()["msg"] == "pong", "a ping of our own is answered")
    finally:
        client.close(linger=0)
        left.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    for function in CHECKS:
        name = function.__name__
        start = time.monotonic()
        try:
            function(args)
        except Exception:  # noqa: BLE001  (any failure fails the run, with its traceback)
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
            return 1
        print(f"ok   {name} ({(time.monotonic() - start) * 1000:.0f} ms)", flush=True)
    print(f"selftest: all {len(CHECKS)} checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
