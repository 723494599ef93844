#!/usr/bin/env python3
"""Terminal chat over roomcast. Run it in two terminals:

    python3 examples/python/chat.py --user alice
    python3 examples/python/chat.py --user bob

A registered name needs its password: ``--register --password P`` makes the name an account
first (when it is one already, it just logs in), and from then on ``--password P`` logs in.
A refused login (403 "Access denied." for a wrong password) ends it with the server's message
and exit status 1.

Lines you type go to the current room. Commands:

    /join ROOM    join ROOM and make it the current room
    /leave ROOM   leave ROOM
    /room ROOM    make ROOM (already joined) the current room
    /who          who is in the current room (also /list)
    /rooms        every room and its member count
    /quit         log out and leave (so do Ctrl-D and Ctrl-C)

A reader thread prints what arrives: local time, room, user, text. When the connection is lost,
the client reconnects and resumes the session on its own (--no-reconnect turns that off) and
prints "reconnected, N missed messages replayed" before the messages it missed.
"""

import argparse
import json
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from roomcast_client import (  # noqa: E402  (the path above makes the module importable)
    DEFAULT_HOST,
    DEFAULT_PORT,
    Client,
    Conflict,
    ConnectionClosed,
    RoomcastError,
)

HELP = "commands: /join ROOM, /leave ROOM, /room ROOM, /who, /rooms, /quit"


def say(text):
    """Prints one line now: stdout may be a pipe, which Python would otherwise buffer."""
    print(text, flush=True)


def stamp():
    """Local time of arrival, for the start of a line."""
    return time.strftime("%H:%M:%S")


def show(data, limit=500):
    """Text for a msg's data: strings as they are, anything else as JSON, cut at ``limit``."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text


def format_event(event, me=None):
    """One line for an event, or None for events a chat does not show (poses, keep-alive
    pongs). ``me`` is our user name: our own away and back are not news to us."""
    kind, user, room = event["type"], event["user"], event["room"]
    prefix = f"{stamp()} #{room}"
    if event.get("replayed"):
        if kind != "msg":
            return None  # Missed joins and leaves still show as the events they were.
        prefix += " (missed)"
    elif event["history"]:
        if kind != "msg":
            return None  # Old joins and leaves are noise; old messages are context.
        prefix += " (earlier)"
    if kind == "msg":
        return f"{prefix} <{user}> {show(event['data'])}"
    if kind == "join":
        return f"{prefix} * {user} joined #{room}"
    if kind == "leave":
        return f"{prefix} * {user} left #{room}"
    if kind in ("away", "back") and user != me:
        state = "lost the connection" if kind == "away" else "is back"
        return f"{prefix} * {user} {state}"
    if kind == "list":
        return f"{prefix} * members: {', '.join(event['data'])}"
    if kind == "game":
        return f"{prefix} * game: {show(event['data'])}"
    if kind == "system":
        return f"{stamp()} * {event.get('msg')}"
    if kind == "reconnect":
        return format_reconnect(event)
    return None  # transform: headset poses are too many to print here.


def format_reconnect(info):
    """The line for a reconnect: how many missed messages follow, and what could not be had."""
    msgs = info.get("missed_types", {}).get("msg", 0)
    line = f"{stamp()} * reconnected, {msgs} missed messages replayed"
    if not info.get("resumed"):
        line += "; the session had expired: logged in again and re-joined the rooms"
    if info.get("gaps"):
        rooms = ", ".join(f"#{room}" for room in info["gaps"])
        line += f"; older missed events are no longer kept in {rooms}"
    return line


class RoomsListing:
    """Collects the pages of a ``rooms`` reply (the reader thread asks for the next page
    itself: ``detail["next"]`` goes back as ``options.after``) and prints the whole list."""

    def __init__(self):
        self.rooms = []

    def page(self, client, detail):
        """Takes one page; True when it was the last one and the list has been printed."""
        self.rooms.extend(detail.get("rooms", []))
        after = detail.get("next")
        if after is not None:
            client.send({"system": "rooms", "options": {"after": after}})
            return False
        rooms, self.rooms = self.rooms, []
        say(f"{stamp()} * {len(rooms)} rooms:")
        width = max((len(r["room"]) for r in rooms), default=0)
        for r in rooms:
            users = r["users"]
            say(f"{stamp()} *   #{r['room']:<{width}} {users} user{'' if users == 1 else 's'}")
        return True


def read_server(client, quitting, lost):
    """The reader thread: prints events and errors until the connection ends. Sets ``lost``
    when it ends without our asking (the server closed, or reconnecting failed)."""
    listing = RoomsListing()
    while True:
        try:
            for event in client.events():
                if event["type"] == "system" and "rooms" in event.get("detail", {}):
                    listing.page(client, event["detail"])
                    continue
                line = format_event(event, client.user)
                if line is not None:
                    say(line)
        except RoomcastError as err:
            say(f"{stamp()} ! {err.code} {err.msg}")
            continue  # The connection goes on; errors close it only with 408/409/413.
        except (ConnectionClosed, OSError) as err:
            if not quitting.is_set():
                say(f"{stamp()} ! connection lost: {err}")
                lost.set()
            quitting.set()
            return


def read_stdin(lines):
    """Feeds stdin lines to the main thread; None means end of input.

    Reads the file descriptor, not ``sys.stdin``: a daemon thread blocked inside
    ``sys.stdin`` holds its lock, and Python can abort at exit waiting for it."""
    fd = sys.stdin.fileno()
    rest = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        *complete, rest = (rest + chunk).split(b"\n")
        for line in complete:
            lines.put(line.decode("utf-8", "replace").rstrip("\r"))
    if rest:
        lines.put(rest.decode("utf-8", "replace").rstrip("\r"))
    lines.put(None)


def handle_line(client, state, line):
    """Sends one typed line. Returns False when the user asked to quit."""
    if not line.startswith("/"):
        if line.strip():
            client.msg(state["room"], line)
        return True
    command, _, arg = line.partition(" ")
    arg = arg.strip()
    if command == "/quit":
        return False
    if command in ("/join", "/leave", "/room") and not arg:
        say(f"usage: {command} ROOM")
    elif command == "/join":
        client.join(arg)
        state["room"] = arg
    elif command == "/leave":
        client.leave(arg)
        if arg == state["room"]:
            state["room"] = "lobby"
            say(f"* current room: #{state['room']}")
    elif command == "/room":
        state["room"] = arg
        say(f"* current room: #{arg}")
    elif command in ("/who", "/list"):
        client.list(state["room"])
    elif command == "/rooms":
        # The reply arrives through the reader thread, as a "system" event.
        client.send({"system": "rooms"})
    else:
        say(HELP)
    return True


def register(client, user, password):
    """Makes ``user`` an account. A 409 (registered already, perhaps by an earlier run) is
    fine: the login that follows checks the password. Other refusals are raised."""
    try:
        client.register(user, password)
    except Conflict:
        say(f"* {user} is registered already; logging in")
        return
    say(f"* registered {user}")


def main():
    parser = argparse.ArgumentParser(description="Terminal chat over roomcast.")
    parser.add_argument("--user", required=True, help="your name: 1-32 of A-Z a-z 0-9 _ - .")
    parser.add_argument(
        "--password",
        default="",
        help="needed for a registered name (see --register); a guest's is ignored",
    )
    parser.add_argument(
        "--register",
        action="store_true",
        help="register --user with --password first (at least 8 characters); a name that is "
        "registered already just logs in",
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--room", default="lobby", help="room to join and talk in")
    parser.add_argument(
        "--no-reconnect",
        action="store_true",
        help="do not reconnect and resume when the connection is lost",
    )
    args = parser.parse_args()

    try:
        client = Client(args.host, args.port, auto_reconnect=not args.no_reconnect)
    except OSError as err:
        print(f"chat.py: cannot connect to {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    step = "login"
    try:
        if args.register:
            step = "register"
            register(client, args.user, args.password)
            step = "login"
        client.login(args.user, args.password)
    except RoomcastError as err:
        print(f"chat.py: {step} refused: {err.code} {err.msg}", file=sys.stderr)
        client.close(linger=0)
        return 1
    except OSError as err:
        print(f"chat.py: {step} failed: {err}", file=sys.stderr)
        client.close(linger=0)
        return 1
    state = {"room": args.room}
    quitting = threading.Event()
    lost = threading.Event()
    reader = threading.Thread(target=read_server, args=(client, quitting, lost), daemon=True)
    lines = queue.Queue()
    # From here on, Ctrl-C logs out like /quit.
    try:
        if args.room != "lobby":
            client.join(args.room)
        say(f"logged in as {client.user}; talking in #{args.room}. {HELP}")
        reader.start()
        threading.Thread(target=read_stdin, args=(lines,), daemon=True).start()
        while not quitting.is_set():
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None or not handle_line(client, state, line):
                break
    except KeyboardInterrupt:
        pass
    except OSError as err:
        say(f"! cannot send: {err}")
        lost.set()
    quitting.set()
    # Log out: the server answers everything sent so far, takes us out of every room, then
    # closes; the reader prints those last events before it sees the end.
    try:
        client.logout(wait=False)
    except OSError:
        pass  # Already gone: the server ends the session after its resume grace.
    if reader.ident is not None:  # Started.
        reader.join(timeout=2.0)
    client.close(linger=0, logout=False)
    say("bye")
    return 1 if lost.is_set() else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while connecting or logging out.
        sys.exit(130)
