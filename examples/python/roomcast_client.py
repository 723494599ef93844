#!/usr/bin/env python3
"""A small roomcast client for Python: standard library only, Python 3.8+.

roomcast speaks length-prefixed JSON over raw TCP. Every frame, both ways, is a 4-byte
big-endian length N followed by N bytes of UTF-8 JSON (one object):

    sock.sendall(struct.pack("!I", len(body)) + body)

Reading is the part socket tutorials get wrong: one ``send`` on one side is not one ``recv``
on the other. TCP is a byte stream, so a ``recv`` may return half a frame, or one frame and
the start of the next. A reader must keep reading until it has the 4 header bytes, then until
it has the whole body (see ``recv_exact`` and ``Client.recv``).

Quick start::

    from roomcast_client import Client, RoomcastError

    with Client("127.0.0.1", 42069, auto_reconnect=True) as client:
        client.login("Tibi", "1234")          # 202 "Access granted."; you are in "lobby"
        client.join("vr")
        client.msg("vr", {"text": "hello"})
        client.transform("vr", (0, 1.6, 0), (0, 0, 0, 1))
        for event in client.events(timeout=5):  # stops after 5 s without a frame
            print(event["room"], event["user"], event["type"], event["data"])
    # Leaving the with block logs out: the user leaves its rooms at once.

Accounts (protocol.md §10). ``register(user, password)`` makes a name an account (it does not
log in); from then on logging in as that name needs the password, and a wrong or missing one
raises ``Forbidden`` ("403 Access denied."). Other names log in as guests with any password.
``change_password(old, new)`` changes the logged-in account's password::

    client.register("alice", "correct horse")   # 201; Conflict (409) if already registered
    client.login("alice", "correct horse")      # Forbidden (403) with a wrong password

Errors. The server answers a bad request with ``{"info": "error", "response": {...}}``;
this module turns it into a ``RoomcastError`` subclass chosen by code (``NotInRoom`` for 404,
``Gone`` for 410, ``RateLimited`` for 429, ...). ``login``, ``register``,
``change_password``, ``resume``, ``logout``, ``ping``, ``rooms`` and ``history`` wait for
their answer and raise it. Room messages (``join``,
``msg``, ...) get no success reply, so their errors arrive later, in order, and are RAISED by
``events()`` / ``wait_for()`` when reached (the generator then ends; call ``events()`` again
to go on, nothing buffered is lost). ``recv()`` returns every frame as it is and raises
nothing for error frames.

Sessions. The login reply carries a single-use resume token and the server's idle timeout.
Every history event (msg, join, leave, game, away, back) carries ``seq``, numbered per room;
the client remembers the last seq it received in each room (``last_seqs``) and the newest
token (``token``). A connection lost without ``logout()`` leaves the session detached on the
server for its resume grace (30 s by default): ``resume(token, rooms)`` on a new connection
takes it back and replays, per room, exactly the history events after those seqs.

Keep-alive. The server closes a connection that sends nothing for its idle timeout (120 s by
default, told in the login reply). After ``login()`` or ``resume()`` a daemon thread sends a
``{"system": "ping"}`` whenever the client has sent nothing for a third of it (40 s before the
timeout is known); anything sent counts, poses included. Its pongs are not shown to the
reader. ``Client(..., keepalive=False)`` turns it off.

Auto-reconnect (opt-in, ``Client(host, port, auto_reconnect=True)``). When a logged-in
connection is lost (EOF, reset, the idle timeout, a server restart), the thread that notices
(the reader, a sender, or the keep-alive thread) reconnects with exponential backoff
(``reconnect_attempts`` tries, waits of ``reconnect_delay`` doubling up to
``reconnect_max_delay`` seconds) and resumes, passing the last seqs, so the event stream goes
on with exactly the history events that were missed: none lost, none twice. If the server no
longer knows the session (410 "Session expired."), it logs in afresh with the same name and
password (the one ``login`` was given, or the new one after ``change_password``) and re-joins
the rooms it was in; history events that the rooms still keep and that
follow the last one received are replayed then too. Either way the reader first gets a
``reconnect`` event (see ``events()``), and ``on_reconnect(info)`` is called with the same
dict. While a reconnect is under way, sends wait for it; a send that failed with the
connection is sent again on the new one. What the server never received is lost: messages
that were still in flight on the dead connection are not re-sent (they may or may not have
arrived), and state events (poses, member lists) are not replayed. A client whose session was
taken over by a resume elsewhere (409) or that sent a frame over the limit (413) does not
reconnect, and neither does one whose fresh login is refused with 403 (the password was
changed elsewhere: trying again would only count towards the server's throttle of failed
logins); the reader then gets ``ReconnectFailed`` with the ``Forbidden`` as its
``__cause__``. After ``reconnect_attempts`` failures the reader gets ``ReconnectFailed``.

Threads. One thread may read (``recv``, ``events``, ``login``, ``ping``, ...) while others
send: sends are serialized by a lock. ``close()`` and ``logout(wait=False)`` from any thread
make the reader see the end of the stream.
"""

import argparse
import collections
import json
import random
import select
import socket
import struct
import sys
import threading
import time

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_FRAME",
    "DEFAULT_IDLE_TIMEOUT",
    "Client",
    "RoomcastError",
    "BadRequest",
    "NotLoggedIn",
    "Forbidden",
    "NotInRoom",
    "TimedOut",
    "Conflict",
    "Gone",
    "SessionExpired",
    "MissedEventsGone",
    "TooLarge",
    "Invalid",
    "RateLimited",
    "Unavailable",
    "ConnectionClosed",
    "ReconnectFailed",
    "ProtocolError",
    "error_from_response",
    "encode_frame",
    "recv_exact",
    "read_frame",
    "vec3",
    "rotation",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 42069
#: Largest frame the server may send (16 MiB); anything longer means the stream is broken.
MAX_FRAME = 16 * 1024 * 1024
#: The idle timeout assumed until the login reply tells the real one (the server's default).
DEFAULT_IDLE_TIMEOUT = 120.0

_HEADER = struct.Struct("!I")
_CHUNK = 64 * 1024


# --- errors -----------------------------------------------------------------------------


class RoomcastError(Exception):
    """An error reply from the server: ``code`` (400..599), ``msg`` and ``detail`` (a dict,
    e.g. ``{"room": R, "type": K}`` for room messages)."""

    code = None

    def __init__(self, code, msg, detail=None):
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.detail = detail if detail is not None else {}


class BadRequest(RoomcastError):
    """400: not JSON, missing or ill-typed field, unknown command or type."""

    code = 400


class NotLoggedIn(RoomcastError):
    """401: a room message (or logout) before login."""

    code = 401


class Forbidden(RoomcastError):
    """403 "Access denied.": a login to a registered name with a wrong or missing password
    (with ``--accounts-only``, also to an unregistered one), or ``change_password`` with a
    wrong old password; 403 "Only a registered user can change its password." for a guest's
    ``change_password``."""

    code = 403


class NotInRoom(RoomcastError):
    """404: leave, list, msg, transform, game or history for a room you are not in."""

    code = 404


class TimedOut(RoomcastError):
    """408: not logged in in time, or silent past the idle timeout; the server closes."""

    code = 408


class Conflict(RoomcastError):
    """409: already logged in, user name taken, name already registered (or logged in, for
    ``register``), room already joined, game running; or "Session resumed on another
    connection; closing." (then the server closes)."""

    code = 409


class Gone(RoomcastError):
    """410: what a resume asked for is gone (see the two subclasses)."""

    code = 410


class SessionExpired(Gone):
    """410 "Session expired.": the resume token is unknown, used or expired. Log in afresh
    (and re-join rooms)."""


class MissedEventsGone(Gone):
    """410 with detail ``{"room": R}``: the events a resume missed in room R are no longer
    kept (or its seq is beyond the room's latest); the room's whole kept history follows."""


class TooLarge(RoomcastError):
    """413: a frame over the server's max_frame; the server closes."""

    code = 413


class Invalid(RoomcastError):
    """422: well-formed but invalid: a name, a password (8 characters to 1024 bytes), a pose, a
    game move, or a limit reached."""

    code = 422


class RateLimited(RoomcastError):
    """429: too many messages per second; the message was dropped (at most one 429 a
    second, whatever was dropped). For a login: "Too many failed logins; try again in a
    minute." (five wrong passwords for one name or from one address)."""

    code = 429


class Unavailable(RoomcastError):
    """503: server full, out of rooms or accounts, low on memory, busy checking passwords
    ("Busy, try again."), or shutting down."""

    code = 503


_ERRORS = {cls.code: cls for cls in RoomcastError.__subclasses__()}


class ConnectionClosed(ConnectionError):
    """The server closed the connection (or it was closed locally)."""


class ReconnectFailed(ConnectionClosed):
    """Auto-reconnect gave up: ``attempts`` connections failed; ``__cause__`` is the last
    error. The client is closed."""

    def __init__(self, message, attempts):
        super().__init__(message)
        self.attempts = attempts


class ProtocolError(ConnectionError):
    """The server sent something that is not a frame of JSON; the stream cannot be trusted."""


def error_from_response(response):
    """Builds the ``RoomcastError`` subclass for a reply's ``response`` object."""
    code = response.get("code")
    detail = response.get("detail")
    cls = _ERRORS.get(code, RoomcastError)
    if cls is Gone:
        cls = MissedEventsGone if isinstance(detail, dict) and "room" in detail else SessionExpired
    return cls(code, response.get("msg", ""), detail)


# --- framing ------------------------------------------------------------------------------


def encode_frame(message):
    """One frame: a 4-byte big-endian length, then the message as compact UTF-8 JSON.

    NaN and infinities raise ``ValueError`` here: they are not JSON, and the server would
    answer 400."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    body = body.encode("utf-8")
    return _HEADER.pack(len(body)) + body


def recv_exact(sock, n):
    """Reads exactly ``n`` bytes from a blocking socket, or raises ``ConnectionClosed``.

    This loop is the fix for the classic socket-tutorial bug: ``sock.recv(n)`` returns
    *at most* n bytes, whatever the peer happened to send in one call. A 60 KB frame can
    arrive as 16 KB + 44 KB, and a 4-byte header can even arrive as 1 + 3 bytes. Code that
    does ``json.loads(sock.recv(4096))`` works on localhost with small messages and then
    fails at random in production.
    """
    parts = []
    remaining = n
    while remaining > 0:
        chunk = sock.recv(min(remaining, _CHUNK))
        if not chunk:
            raise ConnectionClosed(f"connection closed with {remaining} of {n} bytes unread")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def read_frame(sock):
    """Reads one frame from a blocking socket and returns the decoded JSON object.

    The simplest correct reader, for scripts that own their socket; ``Client.recv`` does the
    same with a buffer, so that a timeout never drops half a frame.
    """
    (length,) = _HEADER.unpack(recv_exact(sock, _HEADER.size))
    _check_length(length)
    return _decode_body(recv_exact(sock, length))


def _check_length(length):
    if length == 0 or length > MAX_FRAME:
        raise ProtocolError(f"bad frame length {length}: expected 1..{MAX_FRAME} bytes")


def _decode_body(body):
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"frame is not UTF-8 JSON: {err}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame is not a JSON object: {message!r}")
    return message


def _split_frame(buf):
    """Takes one whole frame off the front of ``buf`` (a bytearray) and decodes it; None when
    the buffer holds only part of one."""
    if len(buf) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack_from(buf)
    _check_length(length)
    end = _HEADER.size + length
    if len(buf) < end:
        return None
    body = bytes(buf[_HEADER.size : end])
    del buf[:end]
    return _decode_body(body)


def _open_socket(host, port, timeout):
    """A connected TCP socket, blocking (reads wait in select()), without Nagle."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    _no_delay(sock)
    return sock


def _no_delay(sock):
    # Nagle delays a pose by up to a tick: small frames must leave at once.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # Not TCP (a socketpair in tests): nothing to delay.


class _Wire:
    """A socket being set up (a resume or a fresh login), read with its own buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def read(self, deadline):
        """The next frame; ``TimeoutError`` at ``deadline``, ``ConnectionClosed`` at EOF."""
        while True:
            frame = _split_frame(self.buf)
            if frame is not None:
                return frame
            wait = max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], wait)[0]:
                raise TimeoutError("no answer from the server in time")
            chunk = self.sock.recv(_CHUNK)
            if not chunk:
                raise ConnectionClosed("the server closed the connection")
            self.buf += chunk


def _close_quietly(sock, abort=False):
    """Closes a socket, waking any thread blocked in select() on it first. With ``abort``,
    the peer gets a reset (SO_LINGER 0), as from a network failure."""
    if sock is None:
        return
    try:
        if abort:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# --- poses --------------------------------------------------------------------------------


def vec3(value):
    """A position as the server wants it: ``{"x", "y", "z"}`` from a dict or an (x, y, z)."""
    if isinstance(value, dict):
        return {axis: float(value[axis]) for axis in ("x", "y", "z")}
    x, y, z = value
    return {"x": float(x), "y": float(y), "z": float(z)}


def rotation(value):
    """A rotation: Euler ``(x, y, z)`` or quaternion ``(x, y, z, w)``, as a tuple or a dict."""
    if isinstance(value, dict):
        axes = ("x", "y", "z", "w") if "w" in value else ("x", "y", "z")
        return {axis: float(value[axis]) for axis in axes}
    values = tuple(value)
    if len(values) not in (3, 4):
        raise ValueError(f"rotation needs 3 (Euler) or 4 (quaternion) numbers, got {values!r}")
    return dict(zip(("x", "y", "z", "w"), map(float, values)))


# --- the client ---------------------------------------------------------------------------

_PING = encode_frame({"system": "ping"})


def _answers_password(response):
    """Whether a success reply can be a password change's (200, neither a pong, a rooms page
    nor a history query's empty range)."""
    detail = response.get("detail") or {}
    return (
        response.get("code") == 200
        and response.get("msg") != "pong"
        and "rooms" not in detail
        and "room" not in detail
    )


def _is_pong(frame):
    response = frame.get("response") or {}
    return (
        frame.get("info") == "system"
        and response.get("code") == 200
        and response.get("msg") == "pong"
    )


class Client:
    """A blocking connection to a roomcast server.

    ``Client(host, port)`` connects at once; ``Client()`` waits for ``connect()``. Use it as a
    context manager to log out and close it on the way out.

    Options (keyword only):

    - ``auto_reconnect`` (False): on a lost connection, reconnect and resume (module doc).
    - ``reconnect_attempts`` (8): connections tried per loss before ``ReconnectFailed``;
      the first at once, then after waits of ``reconnect_delay`` (0.25 s) doubling up to
      ``reconnect_max_delay`` (5 s), each shortened by a random jitter of up to half. With
      the defaults, about 18 s at most: within the server's 30 s resume grace.
    - ``on_reconnect``: called as ``on_reconnect(info)`` after each reconnect, in the thread
      that reconnected, with the dict the ``reconnect`` event carries.
    - ``keepalive`` (True): ping after a third of the idle timeout without sending.
    """

    def __init__(
        self,
        host=None,
        port=DEFAULT_PORT,
        timeout=10.0,
        *,
        auto_reconnect=False,
        reconnect_attempts=8,
        reconnect_delay=0.25,
        reconnect_max_delay=5.0,
        on_reconnect=None,
        keepalive=True,
    ):
        self.sock = None
        self.user = None
        self.timeout = timeout
        self.auto_reconnect = auto_reconnect
        self.reconnect_attempts = max(1, int(reconnect_attempts))
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.on_reconnect = on_reconnect
        self.keepalive = keepalive
        self._address = None
        self._password = ""
        self._token = None
        self._idle_timeout = None
        self._buf = bytearray()
        self._inbox = collections.deque()  # Decoded frames not yet read (reconnect replays).
        self._pending = collections.deque()  # Frames read while waiting for a reply.
        self._events = collections.deque()  # Events of a frame that events() began.
        self._seqs = {}  # room -> last seq received (None: none yet), in join order
        self._anchors = {}  # room -> (seq, time, user, type) of that last event
        self._send_lock = threading.Lock()
        # Guards the connection (sock, generation, buffer) and the session state above.
        self._cond = threading.Condition()
        self._gen = 0  # Bumped whenever the connection is replaced or dropped.
        self._reconnecting = False
        self._failure = None  # ReconnectFailed, once auto-reconnect gave up.
        self._final = None  # A 409/413 that closes the connection: do not reconnect.
        self._closed = threading.Event()  # close(), logout() or shutdown(): no reconnect.
        self._keepalive_pending = 0  # Pings of the keep-alive thread not yet answered.
        self._keepalive_thread = None
        self._last_send = time.monotonic()
        if host is not None:
            self.connect(host, port, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- connection

    def connect(self, host=DEFAULT_HOST, port=DEFAULT_PORT, timeout=None):
        """Opens the TCP connection; ``timeout`` (default: the client's) bounds the connect
        only. Raises ``OSError`` (e.g. ``ConnectionRefusedError``) when nobody listens."""
        sock = _open_socket(host, port, self.timeout if timeout is None else timeout)
        with self._cond:
            self._address = (host, port)
            self._failure = None
            self._closed.clear()
            self._install(sock)
        return self

    @classmethod
    def from_socket(cls, sock, **options):
        """Wraps a connected stream socket (e.g. one with tuned buffers, or a socketpair).
        Such a client cannot reconnect by itself: it does not know where the socket goes."""
        client = cls(**options)
        sock.settimeout(None)
        _no_delay(sock)
        with client._cond:
            client._install(sock)
        return client

    def _install(self, sock):
        """Makes ``sock`` the connection (caller holds ``_cond``)."""
        self.sock = sock
        self._buf = bytearray()
        self._gen += 1
        self._last_send = time.monotonic()
        self._cond.notify_all()

    @property
    def token(self):
        """The newest resume token (single-use: each login or resume brings a new one), or
        None before login and after logout."""
        return self._token

    @property
    def idle_timeout(self):
        """The server's idle timeout in seconds as its login reply told it (0: none), or
        None before login."""
        return self._idle_timeout

    @property
    def keepalive_interval(self):
        """Seconds without sending after which the keep-alive pings: a third of the idle
        timeout (40 s until it is known); None when the server has none."""
        idle = DEFAULT_IDLE_TIMEOUT if self._idle_timeout is None else self._idle_timeout
        return idle / 3 if idle > 0 else None

    @property
    def last_seqs(self):
        """``{room: seq}``: the last history seq received in each room this client is in
        (from live events, histories and replays alike); what ``resume`` passes."""
        with self._cond:
            return {room: seq for room, seq in self._seqs.items() if seq is not None}

    @property
    def rooms_joined(self):
        """The rooms this client is in, as far as the events it received tell, in join order."""
        with self._cond:
            return list(self._seqs)

    def fileno(self):
        """The socket's descriptor, for select(). Frames may already wait in the buffer:
        check ``has_buffered()`` before blocking on it. A reconnect changes it."""
        return self.sock.fileno()

    def has_buffered(self):
        """Whether a whole frame is already buffered, so ``recv`` will not block."""
        if self._pending or self._inbox:
            return True
        if len(self._buf) < _HEADER.size:
            return False
        (length,) = _HEADER.unpack_from(self._buf)
        return len(self._buf) >= _HEADER.size + length

    def shutdown(self):
        """Half-closes: sends nothing more, and does not reconnect. The server answers what
        it already has, then closes, so a reader sees the last events and then
        ``ConnectionClosed``. The server takes it for a lost connection: a logged-in session
        is kept for a resume (its rooms see it ``away``); ``logout()`` leaves instead."""
        self._closed.set()
        with self._send_lock:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except (OSError, AttributeError):
                pass  # Already closed: nothing left to flush.

    def abort(self):
        """Drops the connection at once without logging out, as a network failure would (a
        reset, SO_LINGER 0): the server keeps the session for its resume grace. With
        ``auto_reconnect`` the next read or send reconnects and resumes. For tests and
        demos."""
        with self._cond:
            sock = self.sock
        _close_quietly(sock, abort=True)

    def close(self, linger=1.0, logout=True):
        """Closes gracefully: logs out first when logged in (unless ``logout`` is False), then
        half-closes and waits up to ``linger`` seconds for the server to close its side (so
        everything sent is processed, not reset), then closes. Never reconnects."""
        self._closed.set()
        with self._cond:
            sock = self.sock
            self.sock = None
            self._gen += 1
            self._cond.notify_all()
        if sock is None:
            return
        with self._send_lock:
            try:
                if logout and self._token is not None:
                    sock.sendall(encode_frame({"system": "logout"}))
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # Already closed by the peer: nothing left to flush.
        self._token = None
        deadline = time.monotonic() + linger
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                    break
                if not sock.recv(_CHUNK):
                    break
        except (OSError, ValueError):
            pass
        sock.close()

    # --- sending

    def send(self, message):
        """Sends one message (any JSON object), framed. Returns the connection generation it
        went out on (it changes at each reconnect)."""
        return self._send_frame(encode_frame(message))

    def _send_frame(self, frame, keepalive=False):
        """Sends a frame on the current connection. With auto-reconnect, a send that fails
        with the connection waits for the reconnect and goes out on the new one."""
        while True:
            with self._cond:
                while self._reconnecting:
                    self._cond.wait()
                sock, gen = self.sock, self._gen
                if sock is not None and keepalive:
                    self._keepalive_pending += 1
            if sock is None:
                raise self._failure or ConnectionClosed("not connected")
            try:
                with self._send_lock:
                    sock.sendall(frame)
            except (OSError, ValueError) as err:
                if keepalive:
                    with self._cond:
                        if self._gen == gen:
                            self._keepalive_pending -= 1
                self._recover(gen, _lost(err))
                continue
            self._last_send = time.monotonic()
            return gen

    def login(self, user, password=""):
        """Logs in and returns the reply (``code`` 202, ``detail`` ``{"user", "resume",
        "idle_timeout"}``, the user as registered whatever case ``user`` has). Raises
        ``Invalid`` (bad name), ``Conflict`` (name taken by a guest), ``Forbidden`` ("403
        Access denied.": the name is registered and ``password`` is wrong or missing),
        ``RateLimited`` (too many failed logins) or ``Unavailable``. The lobby's history,
        join and list events follow. Starts the keep-alive.

        A registered user who is logged in elsewhere (or whose lost connection waits for a
        resume) takes that session over: the reply's detail has ``"resumed": true`` and the
        rooms' member lists follow instead of the lobby's join. The password is kept for a
        fresh login after an expired session (auto-reconnect)."""
        with self._cond:
            self._seqs.clear()
            self._anchors.clear()
        reply = self._request({"system": "login", "options": {"user": user, "pass": password}})
        with self._cond:
            self._password = password
            self._session(reply.get("detail", {}), user)
        self._start_keepalive()
        return reply

    def register(self, user, password):
        """Registers ``user`` as an account with ``password`` (protocol.md §10.1) and returns
        the reply (``code`` 201 "Account created.", ``detail`` ``{"user": U}``). It does not
        log in: call ``login`` next, on this connection or another. Raises ``Conflict`` (409:
        the name is registered, or a guest is logged in with it right now), ``Invalid`` (422:
        a bad name, or a password under 8 characters or over 1024 bytes) or ``Unavailable``
        (503: the server holds its limit of accounts, or is too busy hashing: try again)."""
        message = {"system": "register", "options": {"user": user, "pass": password}}
        return self._request(message, accept=lambda response: response.get("code") == 201)

    def change_password(self, old, new):
        """Changes the logged-in account's password (protocol.md §10.3) and returns the reply
        (``code`` 200, "Password changed."). Sessions stay as they are; from now on a fresh
        login after an expired session (auto-reconnect) sends ``new``. Raises ``Forbidden``
        (a wrong ``old``, which counts towards the throttle of failed logins; or a guest),
        ``Invalid`` (``new`` under 8 characters or over 1024 bytes), ``NotLoggedIn`` or
        ``Unavailable`` (busy: try again)."""
        message = {"system": "password", "options": {"old": old, "new": new}}
        reply = self._request(message, accept=_answers_password)
        with self._cond:
            self._password = new
        return reply

    def resume(self, token, rooms=None):
        """Takes back a detached session on this (fresh) connection and returns the reply
        (202, ``detail`` as for login plus ``"resumed": true``). ``rooms`` maps each room to
        the last seq received there (default: ``last_seqs``); per room, the events after it
        follow as history frames (``"history": true``), then the game state, then your
        ``back`` event. A room whose missed events are gone is announced by a
        ``MissedEventsGone`` raised from ``events()`` before its whole kept history. Raises
        ``SessionExpired`` when the token is unknown, used or expired: log in afresh."""
        if rooms is None:
            rooms = self.last_seqs
        options = {"token": token, "rooms": dict(rooms)}
        reply = self._request({"system": "resume", "options": options})
        with self._cond:
            self._session(reply.get("detail", {}), self.user)
        self._start_keepalive()
        return reply

    def logout(self, wait=True, timeout=5.0):
        """Logs out: the user leaves every room at once and the server closes the connection
        (no reconnect follows). With ``wait``, returns the reply (200 "Logged out."); without,
        returns at once, and a reader thread gets the reply as a ``system`` event and then the
        end of the stream."""
        self._closed.set()
        frame = encode_frame({"system": "logout"})
        self._token = None
        if not wait:
            self._send_frame(frame)
            return None
        return self._request(frame, timeout)

    def ping(self):
        """Round trip; returns the reply (``code`` 200, ``msg`` "pong")."""
        return self._request({"system": "ping"})

    def rooms_page(self, after=None, limit=None):
        """One page of the room directory: ``(rooms, next)``, rooms a list of ``{"room": NAME,
        "users": COUNT}`` sorted by name, at most ``limit`` (server default 100, at most 500)
        after the room named ``after``; ``next`` is the ``after`` of the next page, or None
        on the last one."""
        options = {}
        if after is not None:
            options["after"] = after
        if limit is not None:
            options["limit"] = limit
        message = {"system": "rooms"}
        if options:
            message["options"] = options
        detail = self._request(message).get("detail", {})
        return detail.get("rooms", []), detail.get("next")

    def rooms(self, limit=None):
        """The whole room directory, every page followed: a list of ``{"room", "users"}``."""
        rooms, after = [], None
        while True:
            page, after = self.rooms_page(after, limit)
            rooms.extend(page)
            if after is None:
                return rooms

    def history(self, room, before=None, after=None, limit=None, timeout=10.0):
        """Kept history events of a room you are in, next to a seq: give ``before`` (events
        with a smaller seq, the newest of them) or ``after`` (events with a larger seq, the
        oldest of them). Returns at most ``limit`` (server default 50, at most 100) events in
        seq order, as ``events()`` yields them; an empty list when none are kept in that
        range. Reads until the answer, like ``ping``: other frames are kept for later."""
        if (before is None) == (after is None):
            raise ValueError("give exactly one of before and after")
        data = {"before": before} if before is not None else {"after": after}
        if limit is not None:
            data["limit"] = limit
        message = {"room": room, "type": "history", "data": data}

        def answer(frame):
            info = frame.get("info")
            if info == "user":
                if frame.get("room") == room and frame.get("history") and not frame.get(
                    "replayed"
                ):
                    return self._flatten(frame)
                return None
            detail = (frame.get("response") or {}).get("detail") or {}
            if detail.get("room") == room and detail.get("type") == "history":
                if info == "error":
                    raise error_from_response(frame["response"])
                return []
            return None

        return self._await(encode_frame(message), answer, timeout)

    def join(self, room):
        """Joins a room (created if new). The room's history, your join event and the member
        list follow as events."""
        self._room(room, "join", "")

    def leave(self, room):
        """Leaves a room."""
        self._room(room, "leave", "")

    def list(self, room):
        """Asks for a room's members; they arrive as a ``list`` event."""
        self._room(room, "list", "")

    def msg(self, room, data):
        """Says something (any JSON value) to everyone in the room, yourself included."""
        self._room(room, "msg", data)

    def transform(self, room, pos, rot, parts=None):
        """Streams a pose. ``pos`` is (x, y, z) or a dict; ``rot`` is Euler (x, y, z) or a
        quaternion (x, y, z, w), or a dict. The server sends the room the latest pose of each
        user once per tick, so sending faster than its fps costs bandwidth, nothing else.

        ``parts`` maps tracked parts beside the head (``"left_hand"``, ``"right_hand"``, ...)
        to ``(pos, rot)`` pairs, or to ``None`` to drop a part (a hand that lost tracking);
        parts left out stay as they were (protocol.md §11)."""
        data = {"pos": vec3(pos), "rot": rotation(rot)}
        if parts:
            data["parts"] = {
                name: None if part is None else {"pos": vec3(part[0]), "rot": rotation(part[1])}
                for name, part in parts.items()
            }
        self._room(room, "transform", data)

    def claim(self, room, obj, ttl=None):
        """Asks to become the only owner of shared object ``obj`` (for ``ttl`` seconds, when
        given; claiming again refreshes it). Everyone gets a ``claim`` event; if someone else
        holds it, a 409 error frame names the owner (protocol.md §13)."""
        data = {"object": obj}
        if ttl is not None:
            data["ttl"] = ttl
        self._room(room, "claim", data)

    def release(self, room, obj, remove=False):
        """Gives up shared object ``obj`` (and forgets it with ``remove=True``)."""
        data = {"object": obj}
        if remove:
            data["remove"] = True
        self._room(room, "release", data)

    def object(self, room, obj, pos=None, rot=None, state=None):
        """Moves shared object ``obj`` (its owner only): a pose (``pos`` and ``rot``, as for
        ``transform``) and/or any JSON ``state``. Coalesced and sent on the tick."""
        data = {"object": obj}
        if pos is not None or rot is not None:
            data["pos"], data["rot"] = vec3(pos), rotation(rot)
        if state is not None:
            data["state"] = state
        self._room(room, "object", data)

    def game(self, room, data):
        """A game command: ``{"start": "tictactoe"}``, ``{"join": True}``, ``{"move": 4}``,
        ``{"restart": True}``. The new state arrives as a ``game`` event."""
        self._room(room, "game", data)

    def _room(self, room, kind, data):
        self.send({"room": room, "type": kind, "data": data})

    # --- receiving

    def recv(self, timeout=None):
        """The next frame, decoded: ``{"info": "system"|"error"|"user", ...}``, or after an
        auto-reconnect ``{"info": "reconnect", "reconnect": INFO}`` (see ``events()``).

        Waits at most ``timeout`` seconds (``None``: forever) and raises ``TimeoutError``;
        a partly received frame stays buffered for the next call. Raises ``ConnectionClosed``
        at the end of the stream. Error frames are returned, not raised.

        Do not mix with ``events()`` in one loop: events that ``events()`` has taken out of a
        frame but not yet yielded are kept for ``events()`` only.
        """
        if self._pending:
            return self._pending.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._read_frame(deadline)

    def events(self, timeout=None, deadline=None):
        """Yields room events, one dict per event of each ``"info": "user"`` frame:
        ``{"time", "user", "type", "data", "seq", "room", "history", "replayed"}``, where
        ``seq`` is the event's number in its room (None for transform and list), ``room`` is
        the frame's room, ``history`` is True for a joiner's backlog, a history query's answer
        and a resume's replay, and ``replayed`` is True for the events an auto-reconnect
        replayed (missed while the connection was down).

        Stops (returns) when no frame arrives for ``timeout`` seconds, or at ``deadline`` (a
        ``time.monotonic()`` value); with neither, runs until the connection closes, which
        raises ``ConnectionClosed``. An error frame is raised as its ``RoomcastError``
        subclass. A success reply (e.g. to a ``rooms`` request sent with ``send``) is yielded
        as ``{"type": "system", "room": None, "history": False, "user": None, **response}``.

        After an auto-reconnect, the first event is ``{"type": "reconnect", "room": None,
        "user": U, "history": False, ...}`` with: ``resumed`` (True; False when the session had
        expired and the client logged in afresh), ``missed`` (how many missed history events
        are replayed), ``missed_types`` (the same per type: ``{"msg": 3, "away": 1}``),
        ``gaps`` (rooms where missed events were no longer kept, so some may be lost),
        ``rejoined`` (rooms re-joined after a fresh login), ``attempts`` (connections tried),
        ``downtime`` (seconds), ``cause`` (why the connection was lost) and ``generation``
        (the connection's number). The replayed events follow it.
        """
        while True:
            wait = timeout
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            # Pop before yielding: a caller that stops early (as wait_for does) loses nothing,
            # and the rest of a frame's events wait here for the next call.
            while self._events:
                yield self._events.popleft()
            try:
                frame = self.recv(wait)
            except TimeoutError:
                return
            self._events.extend(self._flatten(frame))

    def wait_for(self, match, timeout=5.0):
        """Reads events until ``match(event)`` is true and returns that event; raises
        ``TimeoutError`` after ``timeout`` seconds. Events before it are consumed."""
        deadline = time.monotonic() + timeout
        for event in self.events(deadline=deadline):
            if match(event):
                return event
        raise TimeoutError(f"no matching event within {timeout} s")

    def _flatten(self, frame):
        """A frame's events as a list; an error frame is raised."""
        info = frame.get("info")
        if info == "user":
            room = frame.get("room")
            history = frame.get("history") is True
            replayed = frame.get("replayed") is True
            return [
                dict(event, seq=event.get("seq"), room=room, history=history, replayed=replayed)
                for event in frame.get("payload", [])
            ]
        if info == "error":
            raise error_from_response(frame.get("response", {}))
        if info == "system":
            response = frame.get("response", {})
            return [dict(response, type="system", room=None, history=False, user=None)]
        if info == "reconnect":
            return [dict(frame["reconnect"], type="reconnect", room=None, history=False)]
        raise ProtocolError(f"unknown frame: {frame!r}")

    def _request(self, message, timeout=10.0, accept=None):
        """Sends a system command and returns its reply's ``response``, or raises it as a
        ``RoomcastError``. Frames read on the way are kept for ``recv``/``events``, including
        errors that carry a room: those answer earlier room messages, and success replies
        that ``accept(response)``, when given, says are not this command's answer."""
        frame = message if isinstance(message, bytes) else encode_frame(message)

        def answer(got):
            info = got.get("info")
            response = got.get("response", {})
            if info == "error" and "room" not in (response.get("detail") or {}):
                raise error_from_response(response)
            if info == "system" and (accept is None or accept(response)):
                return response
            return None

        return self._await(frame, answer, timeout)

    def _await(self, frame, answer, timeout):
        """Sends ``frame`` and reads until ``answer(frame)`` returns something other than
        None. If the connection is replaced meanwhile, the request is sent again on the new
        one (its answer on the old one is lost)."""
        gen = self._send_frame(frame)
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                got = self._read_frame(deadline)
                if got.get("info") == "reconnect":
                    skipped.append(got)
                    if got["reconnect"]["generation"] > gen:
                        gen = self._send_frame(frame)
                    continue
                result = answer(got)
                if result is not None:
                    return result
                skipped.append(got)
        finally:
            self._pending.extend(skipped)

    def _read_frame(self, deadline):
        """The next frame of the connection: a reconnect's frames first, then the buffer,
        filled from the socket until it holds a whole frame.

        Why a buffer and a loop: one ``recv`` returns whatever bytes have arrived, which may
        be a fragment of a frame or several frames at once (see ``recv_exact``).
        """
        while True:
            with self._cond:
                while self._reconnecting:  # Another thread reconnects: its replay comes first.
                    if not self._cond.wait(_left(deadline)):
                        raise TimeoutError("no frame from the server in time")
                if self._inbox:
                    return self._inbox.popleft()
                frame = self._take_buffered()
                if frame is not None:
                    return frame
                sock, gen = self.sock, self._gen
            if sock is None:
                raise self._failure or ConnectionClosed("not connected")
            try:
                ready = select.select([sock], [], [], _left(deadline))[0]
                chunk = sock.recv(_CHUNK) if ready else None
                if chunk == b"":
                    raise ConnectionClosed("the server closed the connection")
            except (OSError, ValueError) as err:  # ValueError: closed by another thread.
                self._recover(gen, _lost(err))
                continue
            if chunk is None:
                raise TimeoutError("no frame from the server in time")
            with self._cond:
                if self._gen == gen and not self._reconnecting:
                    self._buf += chunk

    def _take_buffered(self):
        """Decodes the next whole frame in the buffer and notes it (caller holds ``_cond``);
        None when there is none. Pongs of keep-alive pings are dropped here."""
        while True:
            frame = _split_frame(self._buf)
            if frame is None or self._note(frame):
                return frame

    def _note(self, frame):
        """Learns from a frame read off the connection; False if the reader must not see it."""
        info = frame.get("info")
        if info == "user":
            self._track(frame)
            return True
        if _is_pong(frame) and self._keepalive_pending > 0:
            self._keepalive_pending -= 1
            return False
        response = frame.get("response") or {}
        code = response.get("code")
        if info == "error" and (code == 413 or (code == 409 and not response.get("detail"))):
            self._final = error_from_response(response)  # Taken over, or our bug: stay down.
        return True

    def _track(self, frame):
        """Remembers the last seq per room; our own live leave forgets the room."""
        room = frame.get("room")
        live = frame.get("history") is not True
        for event in frame.get("payload", []):
            if live and event.get("type") == "leave" and event.get("user") == self.user:
                self._seqs.pop(room, None)
                self._anchors.pop(room, None)
                continue
            last = self._seqs.setdefault(room, None)
            seq = event.get("seq")
            if isinstance(seq, int) and (last is None or seq > last):
                self._seqs[room] = seq
                self._anchors[room] = (seq, event.get("time"), event.get("user"), event.get("type"))

    def _session(self, detail, user):
        """Takes in a 202's detail (caller holds ``_cond``)."""
        self.user = detail.get("user", user)
        self._token = detail.get("resume")
        idle = detail.get("idle_timeout")
        if isinstance(idle, (int, float)):
            self._idle_timeout = float(idle)
        self._final = None

    # --- keep-alive

    def _start_keepalive(self):
        if not self.keepalive or self._closed.is_set():
            return
        thread = self._keepalive_thread
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(target=self._keepalive_loop, name="roomcast-keepalive")
        thread.daemon = True
        self._keepalive_thread = thread
        thread.start()

    def _keepalive_loop(self):
        """Pings whenever nothing was sent for ``keepalive_interval`` seconds."""
        while not self._closed.is_set():
            interval = self.keepalive_interval
            if interval is None:
                self._closed.wait(1.0)  # No idle timeout (a reconnect may bring one).
                continue
            wait = self._last_send + interval - time.monotonic()
            if wait > 0:
                self._closed.wait(wait)
                continue
            try:
                self._send_frame(_PING, keepalive=True)
            except (OSError, ValueError):
                return  # The connection is gone for good; the reader hears why.

    # --- reconnecting

    def _recover(self, gen, error):
        """The connection of generation ``gen`` failed with ``error``. Returns once a newer
        connection is in place (reconnecting if this thread is the first to notice), or
        raises: ``error`` itself when the client does not reconnect, ``ReconnectFailed`` when
        it gave up."""
        with self._cond:
            while self._reconnecting:
                self._cond.wait()
            if self._gen != gen and (self.sock is not None or self._failure is not None):
                if self.sock is None:
                    raise self._failure
                return  # Another thread already reconnected.
            # Whole frames already received are kept (and their seqs count; a 409 or 413
            # among them forbids reconnecting); a partial one is dropped: the resume replays
            # what it held.
            try:
                while True:
                    frame = self._take_buffered()
                    if frame is None:
                        break
                    self._inbox.append(frame)
            except ProtocolError:
                pass
            if not self._may_reconnect():
                raise error
            self._reconnecting = True
            old, self.sock = self.sock, None
            self._buf = bytearray()
            self._keepalive_pending = 0
        _close_quietly(old)  # Wakes a reader still blocked on it.
        try:
            sock, wire_buf, frames, info = self._reconnect(error)
        except BaseException as err:
            failure = err
            if not isinstance(err, ConnectionClosed):
                failure = ReconnectFailed(f"not reconnected: {err!r}", 0)
                failure.__cause__ = err
            with self._cond:
                self._failure = failure
                self._gen += 1
                self._reconnecting = False
                self._cond.notify_all()
            if failure is err or not isinstance(err, Exception):
                raise  # ReconnectFailed, closed meanwhile, or Ctrl-C.
            raise failure from err
        with self._cond:
            # The seqs of the handshake's frames count only now that the reader gets them.
            if info["resumed"]:
                for room in info["gaps"]:  # Start over from its whole kept history.
                    self._seqs[room] = None
                    self._anchors.pop(room, None)
            else:
                self._seqs.clear()
                self._anchors.clear()
            for frame in frames:
                if frame.get("info") == "user":
                    self._track(frame)
            self.sock = sock
            self._gen += 1
            info["generation"] = self._gen
            self._inbox.append({"info": "reconnect", "reconnect": info})
            self._inbox.extend(frames)
            self._buf = wire_buf
            self._last_send = time.monotonic()
            self._reconnecting = False
            self._cond.notify_all()
        if self.on_reconnect is not None:
            self.on_reconnect(dict(info))

    def _may_reconnect(self):
        return (
            self.auto_reconnect
            and self._address is not None
            and self._token is not None
            and self._final is None
            and self._failure is None
            and not self._closed.is_set()
        )

    def _reconnect(self, cause):
        """Connects again with backoff and resumes (or logs in afresh). Returns the new
        socket, the bytes read past the handshake, the frames for the reader and the info
        of the ``reconnect`` event. Runs with ``_reconnecting`` set: no other thread reads."""
        started = time.monotonic()
        last_error = cause
        for attempt in range(1, self.reconnect_attempts + 1):
            if attempt > 1:
                delay = min(self.reconnect_max_delay, self.reconnect_delay * 2 ** (attempt - 2))
                if self._closed.wait(delay * random.uniform(0.5, 1.0)):
                    break
            if self._closed.is_set():
                break
            sock = None
            try:
                sock = _open_socket(self._address[0], self._address[1], self.timeout)
                wire = _Wire(sock)
                frames, info = self._resume_over(wire)
                if info is None:
                    frames, info = self._login_over(wire)
            except Forbidden as err:
                # The fresh login was refused: the password was changed elsewhere. It would be
                # refused again, and each try counts towards the server's throttle.
                _close_quietly(sock)
                failure = ReconnectFailed(
                    f"not reconnected: the session had expired and the fresh login as "
                    f"{self.user} was refused: {err}",
                    attempt,
                )
                raise failure from err
            except (OSError, ValueError, RoomcastError) as err:
                _close_quietly(sock)
                last_error = err
                continue
            with self._cond:
                if self._closed.is_set():
                    _close_quietly(sock)
                    break
            info.update(
                attempts=attempt,
                downtime=round(time.monotonic() - started, 3),
                cause=str(cause) or type(cause).__name__,
                user=self.user,
            )
            return sock, wire.buf, frames, info
        else:
            failure = ReconnectFailed(
                f"gave up reconnecting after {self.reconnect_attempts} attempts (the last: "
                f"{last_error}); the connection was lost with: {cause}",
                self.reconnect_attempts,
            )
            raise failure from last_error
        raise ConnectionClosed("closed while reconnecting")

    def _resume_over(self, wire):
        """Sends resume and a ping on a new connection and reads up to the pong, which comes
        after every replayed frame and the ``back`` events. Returns the frames for the reader
        and the reconnect info; the info is None when the session expired."""
        seen = self.last_seqs
        resume = {"system": "resume", "options": {"token": self._token, "rooms": seen}}
        wire.sock.sendall(encode_frame(resume) + _PING)
        deadline = time.monotonic() + self.timeout
        resumed = None
        frames = []
        replayed = collections.Counter()
        gaps = []
        while True:
            frame = wire.read(deadline)
            info = frame.get("info")
            response = frame.get("response") or {}
            detail = response.get("detail") or {}
            if info == "user":
                frame = self._replayed(frame, seen, replayed)
                if frame is not None:
                    frames.append(frame)
            elif _is_pong(frame):
                break
            elif info == "system" and response.get("code") == 202 and resumed is None:
                resumed = True
                with self._cond:
                    self._session(detail, self.user)
            elif info == "error" and response.get("code") == 410:
                if "room" in detail:  # Missed events gone: its whole kept history follows.
                    gaps.append(detail["room"])
                    seen.pop(detail["room"], None)
                else:
                    resumed = False  # Session expired; the pong still follows.
            elif info == "error":
                raise error_from_response(response)  # 503 full or shutting down: retry.
            else:
                frames.append(frame)
        if resumed is None:
            raise ProtocolError("the server did not answer the resume")
        if not resumed:
            return [], None
        info = {"resumed": True, "rejoined": [], "gaps": sorted(gaps)}
        info.update(missed=sum(replayed.values()), missed_types=dict(replayed))
        return frames, info

    def _replayed(self, frame, seen, replayed):
        """A frame of a resume: events at or before the last seq seen are dropped (never
        twice), the history ones counted and marked replayed. None when nothing is left."""
        room = frame.get("room")
        last = seen.get(room)
        payload = [
            event
            for event in frame.get("payload", [])
            if last is None or not isinstance(event.get("seq"), int) or event["seq"] > last
        ]
        if not payload:
            return None
        frame = dict(frame, payload=payload)
        if frame.get("history") is True:
            frame["replayed"] = True
            replayed.update(event.get("type") for event in payload)
        return frame

    def _login_over(self, wire):
        """The session expired: logs in afresh on ``wire``, re-joins the rooms (and leaves the
        lobby if it was not in it), reads up to the pong. A re-joined room whose history still
        holds the last event received gets only the events after it, as a replay; the others
        get their history as any joiner does, and are reported as gaps."""
        with self._cond:
            rooms = list(self._seqs)
            anchors = dict(self._anchors)
        login = {"system": "login", "options": {"user": self.user, "pass": self._password}}
        out = [encode_frame(login)]
        out += [encode_frame({"room": r, "type": "join"}) for r in rooms if r != "lobby"]
        in_lobby = "lobby" in rooms
        if not in_lobby:
            out.append(encode_frame({"room": "lobby", "type": "leave"}))
        wire.sock.sendall(b"".join(out) + _PING)
        deadline = time.monotonic() + self.timeout
        frames = []
        while True:
            frame = wire.read(deadline)
            info = frame.get("info")
            response = frame.get("response") or {}
            if _is_pong(frame):
                break
            if info == "system" and response.get("code") == 202:
                with self._cond:
                    self._session(response.get("detail") or {}, self.user)
                continue
            if info == "error" and "user" in (response.get("detail") or {}):
                raise error_from_response(response)  # Login refused (name taken, full).
            if info == "user" and frame.get("room") == "lobby" and not in_lobby:
                continue  # Joined by the login only to leave again.
            frames.append(frame)
        replayed = collections.Counter()
        gaps = [room for room in rooms if not _splice(frames, room, anchors.get(room), replayed)]
        info = {"resumed": False, "rejoined": rooms, "gaps": sorted(gaps)}
        info.update(missed=sum(replayed.values()), missed_types=dict(replayed))
        return frames, info


def _splice(frames, room, anchor, replayed):
    """In the history frames of ``room`` (in place): drops the events up to the ``anchor``
    (the last event received before the loss, matched on seq, time, user and type) and marks
    the rest replayed. False when the history does not hold the anchor (then it stays as a
    joiner's history)."""
    if anchor is None:
        return False
    indexes = [
        i
        for i, frame in enumerate(frames)
        if frame.get("info") == "user" and frame.get("room") == room and frame.get("history")
    ]
    events = [event for i in indexes for event in frames[i].get("payload", [])]
    keys = [(e.get("seq"), e.get("time"), e.get("user"), e.get("type")) for e in events]
    if anchor not in keys:
        return False
    seq = anchor[0]
    for i in indexes:
        payload = [e for e in frames[i]["payload"] if e.get("seq", seq + 1) > seq]
        frames[i] = dict(frames[i], payload=payload, replayed=True)
        replayed.update(e.get("type") for e in payload)
    frames[:] = [f for f in frames if f.get("info") != "user" or f.get("payload")]
    return True


def _left(deadline):
    """Seconds until ``deadline`` (None: no limit)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _lost(err):
    """An exception describing a lost connection (a ValueError is a socket closed here)."""
    if isinstance(err, OSError):
        return err
    return ConnectionClosed("the connection was closed")


# --- command line -------------------------------------------------------------------------


def _main(argv=None):
    """``python3 roomcast_client.py [--host H] [--port P]``: log in, ping, list rooms, log
    out: a quick check that a server answers."""
    parser = argparse.ArgumentParser(
        description="Checks that a roomcast server answers: logs in, pings, lists the rooms, "
        "logs out. Import this file as a module (roomcast_client) to write your own client."
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--user", default=f"py-{int(time.time()) % 100000}")
    parser.add_argument(
        "--password", default="", help="needed for a registered name; a guest's is ignored"
    )
    args = parser.parse_args(argv)
    try:
        client = Client(args.host, args.port, keepalive=False)
    except OSError as err:
        print(
            f"roomcast_client.py: cannot connect to {args.host}:{args.port}: {err}. "
            "Is the server running (cargo run)?",
            file=sys.stderr,
        )
        return 1
    try:
        with client:
            reply = client.login(args.user, args.password)
            user, idle = reply["detail"].get("user"), reply["detail"].get("idle_timeout")
            print(f"{reply['msg']} as {user}; idle timeout {idle} s")
            start = time.monotonic()
            client.ping()
            print(f"ping: {(time.monotonic() - start) * 1000:.2f} ms")
            rooms = client.rooms()
            print("rooms:", ", ".join(f"{r['room']} ({r['users']})" for r in rooms) or "none")
    except RoomcastError as err:
        print(f"roomcast_client.py: refused: {err.code} {err.msg}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"roomcast_client.py: connection lost: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
