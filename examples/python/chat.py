#!/usr/bin/env python3
"""Terminal chat over roomcast. Run it in two terminals:

    python3 examples/python/chat.py --user alice
    python3 examples/python/chat.py --user bob

Lines you type go to the current room. Commands:

    /join ROOM    join ROOM and make it the current room
    /leave ROOM   leave ROOM
    /room ROOM    make ROOM (already joined) the current room
    /list         who is in the current room
    /rooms        every room and its member count
    /quit         leave (so do Ctrl-D and Ctrl-C)

A reader thread prints what arrives: local time, room, user, text.
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
    ConnectionClosed,
    RoomcastError,
)

HELP = "commands: /join ROOM, /leave ROOM, /room ROOM, /list, /rooms, /quit"


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


def format_event(event):
    """One line for an event, or None for events a chat does not show (poses)."""
    kind, user, room = event["type"], event["user"], event["room"]
    prefix = f"{stamp()} #{room}"
    if event["history"]:
        if kind != "msg":
            return None  # Old joins and leaves are noise; old messages are context.
        prefix += " (earlier)"
    if kind == "msg":
        return f"{prefix} <{user}> {show(event['data'])}"
    if kind == "join":
        return f"{prefix} * {user} joined #{room}"
    if kind == "leave":
        return f"{prefix} * {user} left #{room}"
    if kind == "list":
        return f"{prefix} * members: {', '.join(event['data'])}"
    if kind == "game":
        return f"{prefix} * game: {show(event['data'])}"
    if kind == "system":
        return f"{stamp()} * {event.get('msg')} {show(event.get('detail', {}))}"
    return None  # transform: headset poses are too many to print here.


def read_server(client, quitting):
    """The reader thread: prints events and errors until the connection ends."""
    while True:
        try:
            for event in client.events():
                line = format_event(event)
                if line is not None:
                    say(line)
        except RoomcastError as err:
            say(f"{stamp()} ! {err.code} {err.msg}")
            continue  # The connection goes on; errors close it only with 408/413.
        except (ConnectionClosed, OSError):
            if not quitting.is_set():
                say(f"{stamp()} ! connection closed by the server (press Enter to exit)")
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
    elif command == "/list":
        client.list(state["room"])
    elif command == "/rooms":
        # The reply arrives through the reader thread, as a "system" event.
        client.send({"system": "rooms"})
    else:
        say(HELP)
    return True


def main():
    parser = argparse.ArgumentParser(description="Terminal chat over roomcast.")
    parser.add_argument("--user", required=True, help="your name: 1-32 of A-Z a-z 0-9 _ - .")
    parser.add_argument("--password", default="", help="accepted as is (no accounts yet)")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--room", default="lobby", help="room to join and talk in")
    args = parser.parse_args()

    try:
        client = Client(args.host, args.port)
        client.login(args.user, args.password)
    except RoomcastError as err:
        say(f"login refused: {err.code} {err.msg}")
        return 1
    except OSError as err:
        say(f"cannot connect to {args.host}:{args.port}: {err}")
        return 1
    state = {"room": args.room}
    if args.room != "lobby":
        client.join(args.room)
    say(f"logged in as {client.user}; talking in #{args.room}. {HELP}")

    quitting = threading.Event()
    reader = threading.Thread(target=read_server, args=(client, quitting), daemon=True)
    reader.start()
    lines = queue.Queue()
    threading.Thread(target=read_stdin, args=(lines,), daemon=True).start()

    try:
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
    quitting.set()
    # Half-close: the server answers everything sent so far, then closes, and the reader
    # prints those last events before it sees the end.
    client.shutdown()
    reader.join(timeout=2.0)
    client.close(linger=0)
    say("bye")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while connecting.
        sys.exit(130)
