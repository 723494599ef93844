// roomcast C# client: the session. A reader thread that feeds a thread-safe event queue, a
// sender thread with keep-alive pings (§9.6), and automatic reconnect with resume (§9.3);
// frames and sockets are RoomcastWire.cs.
//
// Threads: the game calls everything here from any thread (Unity: the main thread). Two
// background threads per client do the I/O: the reader ("roomcast-read") owns connecting,
// logging in, reading and reconnecting; the sender ("roomcast-send") writes queued frames and
// pings. Nothing here calls back into game code: events wait in a queue until the game takes
// them (TryDequeue, once per frame), because Unity's API may only be used on the main thread.

using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Sockets;
using System.Threading;

namespace Roomcast
{
    /// <summary>Where to connect and who to be; how hard to try to stay connected.</summary>
    public sealed class RoomcastOptions
    {
        public string Host = "127.0.0.1";
        public int Port = 42069;
        /// <summary>1 to 32 of A-Z a-z 0-9 _ - . (protocol.md §7).</summary>
        public string User = "";
        /// <summary>Any password is accepted until the server has accounts.</summary>
        public string Password = "";

        /// <summary>Reconnect and resume when a logged-in connection is lost (protocol.md §9.3).</summary>
        public bool AutoReconnect = true;
        /// <summary>Connections tried before giving up. With the backoff below, about 35 s:
        /// past the server's 30 s resume grace, after which the client logs in afresh.</summary>
        public int ReconnectAttempts = 20;
        /// <summary>Wait before the first reconnect; it doubles up to <see cref="MaxBackoffSeconds"/>,
        /// each wait shortened by a random jitter of up to half (so a crowd of headsets that lost
        /// the same Wi-Fi does not come back in lockstep).</summary>
        public double FirstBackoffSeconds = 0.1;
        public double MaxBackoffSeconds = 2.0;

        public double ConnectTimeoutSeconds = 5;
        /// <summary>How long a login or a resume (its whole replay) may take.</summary>
        public double ReplyTimeoutSeconds = 10;
        /// <summary>A keep-alive ping unanswered for this long, with not a byte received
        /// meanwhile, means a dead connection (a headset that slept, a network that changed:
        /// such a socket may never report an error). The client then reconnects.</summary>
        public double PongTimeoutSeconds = 10;

        /// <summary>Events held for the game. When the game does not take them (paused), the
        /// reader stops reading: the server then skips pose ticks for this client, and past its
        /// limit cuts the connection, which the client resumes once the game drains again.</summary>
        public int MaxQueuedEvents = 65536;
        /// <summary>Frames waiting to be sent (while connecting or reconnecting); past it a send
        /// returns false. Poses do not pile up: a newer pose for a room replaces a queued one.</summary>
        public int MaxQueuedSends = 1024;

        /// <summary>Diagnostics, called from the background threads (Unity's Debug.Log may be
        /// called from any thread).</summary>
        public Action<string> Log;
    }

    /// <summary>Where the client is in its life.</summary>
    public enum ConnectionState
    {
        NotStarted,
        Connecting,
        LoggedIn,
        Reconnecting,
        Closed,
    }

    /// <summary>
    /// A roomcast client for Unity and .NET: connect, log in, join rooms, chat, stream poses,
    /// play games; events arrive in a queue that the game drains once per frame.
    /// </summary>
    /// <remarks>
    /// <para>Every method is thread-safe and returns at once: sends are queued and written by the
    /// sender thread (none blocks the game on the network). Sends made before the login is
    /// accepted wait for it, and so do sends made while reconnecting.</para>
    /// <para>Room messages get no success reply: their events are the answer, and a refusal comes
    /// back as an <see cref="EventKind.Error"/> event whose <see cref="ReplyEvent.Room"/> and
    /// <see cref="ReplyEvent.Type"/> say which message it answers.</para>
    /// </remarks>
    public sealed class RoomcastClient : IDisposable
    {
        /// <summary>Largest frame accepted from the server (see <see cref="Wire.MaxFrame"/>).</summary>
        public const int MaxFrame = Wire.MaxFrame;

        /// <summary>Keep-alive interval until the login reply tells the idle timeout: a third of
        /// the server's default 120 s.</summary>
        const double DefaultPingEverySeconds = 40;
        /// <summary>What one write may carry: enough to batch a burst, small enough that a pose
        /// queued behind it is not held long.</summary>
        const int MaxBatchBytes = 64 * 1024;

        static readonly byte[] PingFrame = Encode(JsonValue.NewObject().Set("system", "ping"));

        readonly RoomcastOptions options;
        readonly Random jitter = new Random();

        // Everything below up to the inbox is guarded by `gate`.
        readonly object gate = new object();
        readonly LinkedList<Outgoing> outbox = new LinkedList<Outgoing>();
        readonly Dictionary<string, LinkedListNode<Outgoing>> queuedPoses = new Dictionary<string, LinkedListNode<Outgoing>>(StringComparer.Ordinal);
        Connection live; // the connection the sender writes to; null while (re)connecting
        Connection setup; // a connection still logging in or resuming (closed by Shutdown)
        ConnectionState state = ConnectionState.NotStarted;
        bool closing;     // Close() or Dispose(): stop everything
        bool loggingOut;  // Logout(): the connection's end is expected, do not come back
        ReplyEvent finalError; // 409 takeover, 413, 503 shutdown: do not come back
        string user;
        string token;
        double idleTimeout = -1; // unknown until the login reply
        // Per room, in the order first seen: the last history seq received, and that event
        // (seq, time, user, type) to find it again in a history after a fresh login.
        readonly List<string> rooms = new List<string>();
        readonly Dictionary<string, long> lastSeq = new Dictionary<string, long>(StringComparer.Ordinal);
        readonly Dictionary<string, Anchor> anchors = new Dictionary<string, Anchor>(StringComparer.Ordinal);
        double lastSend;
        int autoPings;       // keep-alive pings whose pongs are still owed (their pongs are hidden)
        double autoPingSent; // when the oldest of them went out
        volatile bool readerBlocked; // the reader waits for room in a full inbox
        double lastReceive;

        readonly object inboxGate = new object();
        readonly Queue<RoomcastEvent> inbox = new Queue<RoomcastEvent>();
        bool finished; // the Closed event is queued

        Thread reader;
        Thread sender;

        public RoomcastClient(RoomcastOptions options)
        {
            if (options == null)
            {
                throw new ArgumentNullException("options");
            }
            this.options = options;
        }

        // --- state ------------------------------------------------------------------------

        public ConnectionState State { get { lock (gate) { return state; } } }

        /// <summary>The user name the server accepted; null before login.</summary>
        public string User { get { lock (gate) { return user; } } }

        /// <summary>The newest resume token (single-use; each login or resume brings a new one).</summary>
        public string ResumeToken { get { lock (gate) { return token; } } }

        /// <summary>The server's idle timeout in seconds (0: none); negative until logged in.</summary>
        public double IdleTimeout { get { lock (gate) { return idleTimeout; } } }

        /// <summary>The rooms this client is in, as the events it received tell, in join order.</summary>
        public string[] Rooms { get { lock (gate) { return rooms.ToArray(); } } }

        /// <summary>Per room, the last history seq received: what a resume continues from.</summary>
        public Dictionary<string, long> LastSeqs
        {
            get { lock (gate) { return new Dictionary<string, long>(lastSeq, StringComparer.Ordinal); } }
        }

        // --- life -------------------------------------------------------------------------

        /// <summary>Starts connecting and logging in, in the background. Returns at once; a
        /// <see cref="LoggedInEvent"/> (or an error and a <see cref="ClosedEvent"/>) follows.
        /// Sends may be made right away: they go out once the login is accepted.</summary>
        public void Connect()
        {
            lock (gate)
            {
                if (state != ConnectionState.NotStarted)
                {
                    throw new InvalidOperationException("Connect may be called once per client");
                }
                state = ConnectionState.Connecting;
                lastSend = Now();
            }
            reader = new Thread(ReaderMain) { IsBackground = true, Name = "roomcast-read" };
            sender = new Thread(SenderMain) { IsBackground = true, Name = "roomcast-send" };
            reader.Start();
            sender.Start();
        }

        /// <summary>Logs out: the user leaves every room at once (others see a leave, not an
        /// away) and the server closes the connection; a <see cref="ClosedEvent"/> follows. No
        /// reconnect after it. While reconnecting, it just stops: the server ends the session
        /// when its resume grace runs out.</summary>
        public void Logout()
        {
            bool stopNow;
            lock (gate)
            {
                if (loggingOut || closing)
                {
                    return;
                }
                loggingOut = true;
                stopNow = live == null;
                if (!stopNow)
                {
                    EnqueueLocked(Encode(JsonValue.NewObject().Set("system", "logout")), null);
                }
            }
            if (stopNow)
            {
                Shutdown("logged out while not connected", null);
            }
        }

        /// <summary>Closes: logs out first when logged in and connected (waiting up to
        /// <paramref name="lingerSeconds"/> for the server to confirm), then stops both threads.
        /// Idempotent.</summary>
        public void Close(double lingerSeconds = 1.0)
        {
            bool wait;
            lock (gate)
            {
                wait = live != null && token != null && !closing;
            }
            if (wait)
            {
                Logout();
                WaitUntilFinished(lingerSeconds);
            }
            Shutdown("closed", null);
            JoinThreads(lingerSeconds);
        }

        public void Dispose()
        {
            Close();
        }

        /// <summary>Drops the connection at once, as a network failure would (a reset): the
        /// server keeps the session for its resume grace, and with <see cref="RoomcastOptions.AutoReconnect"/>
        /// the client comes back and resumes. For tests and demos.</summary>
        public void Abort()
        {
            Connection connection;
            lock (gate)
            {
                connection = live;
            }
            if (connection != null)
            {
                connection.Close(true);
            }
        }

        // --- events -----------------------------------------------------------------------

        /// <summary>The next event, if one is waiting. Call it in a loop once per frame.</summary>
        public bool TryDequeue(out RoomcastEvent next)
        {
            lock (inboxGate)
            {
                if (inbox.Count == 0)
                {
                    next = null;
                    return false;
                }
                next = inbox.Dequeue();
                Monitor.PulseAll(inboxGate); // a reader waiting for room
                return true;
            }
        }

        /// <summary>Waits up to <paramref name="timeoutSeconds"/> for the next event; null when
        /// none came. For console programs and tests; a game uses <see cref="TryDequeue"/>.</summary>
        public RoomcastEvent WaitForEvent(double timeoutSeconds)
        {
            double deadline = Now() + timeoutSeconds;
            lock (inboxGate)
            {
                while (inbox.Count == 0)
                {
                    double left = deadline - Now();
                    if (left <= 0)
                    {
                        return null;
                    }
                    Monitor.Wait(inboxGate, Millis(left));
                }
                var next = inbox.Dequeue();
                Monitor.PulseAll(inboxGate);
                return next;
            }
        }

        /// <summary>Events waiting.</summary>
        public int QueuedEvents { get { lock (inboxGate) { return inbox.Count; } } }

        // --- sending ----------------------------------------------------------------------
        // Each returns false when the message was not queued: the client is closed, or the
        // send queue is full.

        /// <summary>Joins (and creates, if new) a room: its history, your join and the member
        /// list follow as events.</summary>
        public bool Join(string room) { return SendRoom(room, "join", null); }

        public bool Leave(string room) { return SendRoom(room, "leave", null); }

        /// <summary>Asks for the members; a <see cref="EventKind.List"/> event answers.</summary>
        public bool List(string room) { return SendRoom(room, "list", null); }

        /// <summary>Says something to everyone in the room (you included): any JSON value,
        /// e.g. a string: <c>client.Msg("lobby", "hello")</c>.</summary>
        public bool Msg(string room, JsonValue data) { return SendRoom(room, "msg", data ?? JsonValue.Null); }

        /// <summary>Streams the head pose, and optional parts (hands: "left_hand",
        /// "right_hand"). The server sends each user's latest pose once per tick, so sending
        /// faster than its fps costs only bandwidth; a pose still queued here is replaced by a
        /// newer one for the same room.</summary>
        public bool Transform(string room, AvatarPose pose)
        {
            if (pose == null)
            {
                throw new ArgumentNullException("pose");
            }
            var message = RoomMessage(room, "transform", pose.ToJson());
            return Enqueue(Encode(message), room);
        }

        /// <summary>Streams the head pose alone.</summary>
        public bool Transform(string room, Pose head) { return Transform(room, new AvatarPose(head)); }

        /// <summary>A game command (protocol.md §3.10); the new state comes as a
        /// <see cref="EventKind.Game"/> event.</summary>
        public bool Game(string room, JsonValue command) { return SendRoom(room, "game", command); }

        public bool GameStart(string room, string game) { return Game(room, JsonValue.NewObject().Set("start", game)); }
        public bool GameJoin(string room) { return Game(room, JsonValue.NewObject().Set("join", true)); }
        public bool GameMove(string room, JsonValue move) { return Game(room, JsonValue.NewObject().Set("move", move)); }
        public bool GameRestart(string room) { return Game(room, JsonValue.NewObject().Set("restart", true)); }

        /// <summary>Kept history next to a seq (protocol.md §9.5): give <paramref name="before"/>
        /// or <paramref name="after"/>. The answer is one history frame, or a 200 reply when
        /// nothing is kept in the range.</summary>
        public bool History(string room, long? before, long? after, int limit = 50)
        {
            if (before.HasValue == after.HasValue)
            {
                throw new ArgumentException("give exactly one of before and after");
            }
            var data = JsonValue.NewObject();
            if (before.HasValue)
            {
                data.Set("before", before.Value);
            }
            else
            {
                data.Set("after", after.Value);
            }
            data.Set("limit", limit);
            return SendRoom(room, "history", data);
        }

        /// <summary>A round trip: a 200 "pong" reply answers.</summary>
        public bool Ping() { return Send(JsonValue.NewObject().Set("system", "ping")); }

        /// <summary>One page of the room directory: a 200 reply whose detail holds
        /// <c>"rooms":[{"room","users"}]</c> and, when more follow, <c>"next"</c>.</summary>
        public bool RoomsPage(string after = null, int limit = 100)
        {
            var opts = JsonValue.NewObject().Set("limit", limit);
            if (after != null)
            {
                opts.Set("after", after);
            }
            return Send(JsonValue.NewObject().Set("system", "rooms").Set("options", opts));
        }

        /// <summary>Any message, as is. Prefer the typed methods.</summary>
        public bool Send(JsonValue message)
        {
            return Enqueue(Encode(message), null);
        }

        bool SendRoom(string room, string type, JsonValue data)
        {
            return Enqueue(Encode(RoomMessage(room, type, data)), null);
        }

        static JsonValue RoomMessage(string room, string type, JsonValue data)
        {
            if (room == null)
            {
                throw new ArgumentNullException("room");
            }
            var message = JsonValue.NewObject().Set("room", room).Set("type", type);
            if (data != null)
            {
                message.Set("data", data);
            }
            return message;
        }

        bool Enqueue(byte[] frame, string poseRoom)
        {
            lock (gate)
            {
                if (closing || loggingOut || state == ConnectionState.Closed)
                {
                    return false;
                }
                return EnqueueLocked(frame, poseRoom);
            }
        }

        bool EnqueueLocked(byte[] frame, string poseRoom)
        {
            LinkedListNode<Outgoing> queued;
            if (poseRoom != null && queuedPoses.TryGetValue(poseRoom, out queued))
            {
                queued.Value.Frame = frame; // the newer pose supersedes the unsent one
                return true;
            }
            if (outbox.Count >= options.MaxQueuedSends)
            {
                LogLine("send queue full (" + options.MaxQueuedSends + " frames): message dropped");
                return false;
            }
            var node = outbox.AddLast(new Outgoing { Frame = frame, PoseRoom = poseRoom });
            if (poseRoom != null)
            {
                queuedPoses[poseRoom] = node;
            }
            Monitor.PulseAll(gate);
            return true;
        }

        // --- framing ----------------------------------------------------------------------

        /// <summary>One frame: a 4-byte big-endian length, then the JSON as UTF-8 (§1.1).</summary>
        public static byte[] Encode(JsonValue message)
        {
            return Wire.Encode(message);
        }

        // --- the reader thread ------------------------------------------------------------

        void ReaderMain()
        {
            Connection connection;
            try
            {
                connection = Open();
            }
            catch (Exception err)
            {
                Shutdown("cannot connect to " + options.Host + ":" + options.Port + ": " + Describe(err), null);
                return;
            }
            try
            {
                if (!LogIn(connection))
                {
                    connection.Close(false);
                    return;
                }
            }
            catch (Exception err)
            {
                connection.Close(false);
                Shutdown("login failed: " + Describe(err), null);
                return;
            }
            while (connection != null)
            {
                string reason = ReadLive(connection);
                connection = AfterLoss(connection, reason);
            }
        }

        /// <summary>Sends the login and reads up to its answer. True once accepted (the
        /// connection is then live); false after a refusal (already reported).</summary>
        bool LogIn(Connection connection)
        {
            var login = JsonValue.NewObject().Set("system", "login").Set(
                "options", JsonValue.NewObject().Set("user", options.User).Set("pass", options.Password));
            connection.Write(Encode(login));
            double deadline = Now() + options.ReplyTimeoutSeconds;
            while (true)
            {
                JsonValue frame = connection.ReadBefore(deadline, OnReceive);
                if (frame == null)
                {
                    Shutdown("the server closed the connection before answering the login", null);
                    return false;
                }
                string info = frame["info"].AsString;
                JsonValue response = frame["response"];
                long code = response["code"].AsLong();
                if (info == "system" && code == 202)
                {
                    var loggedIn = NoteSession(response["detail"], false);
                    if (!Publish(connection))
                    {
                        return false; // closed meanwhile (and reported)
                    }
                    Deliver(loggedIn);
                    return true;
                }
                if (info == "error")
                {
                    var error = new ReplyEvent(response, true);
                    Deliver(error);
                    Shutdown("login refused: " + error.Code + " " + error.Message, error);
                    return false;
                }
                HandleFrame(frame); // nothing else is expected before the 202; pass it on
            }
        }

        /// <summary>Reads the live connection until it fails; returns why.</summary>
        string ReadLive(Connection connection)
        {
            try
            {
                while (true)
                {
                    JsonValue frame = connection.ReadBefore(double.PositiveInfinity, OnReceive);
                    if (frame == null)
                    {
                        return "the server closed the connection";
                    }
                    HandleFrame(frame);
                }
            }
            catch (Exception err)
            {
                return Describe(err);
            }
        }

        /// <summary>One frame of the live connection: tracked, turned into events, queued.</summary>
        void HandleFrame(JsonValue frame)
        {
            string info = frame["info"].AsString;
            if (info == "user")
            {
                string room = frame["room"].AsString ?? "";
                bool history = frame["history"].AsBool();
                lock (gate)
                {
                    Track(room, frame["payload"], history);
                }
                foreach (var evt in frame["payload"].Items)
                {
                    Deliver(new RoomEvent(room, evt, history, false));
                }
                return;
            }
            if (info != "system" && info != "error")
            {
                return; // an unknown shape from a newer server: ignored (protocol.md §8)
            }
            JsonValue response = frame["response"];
            var reply = new ReplyEvent(response, info == "error");
            lock (gate)
            {
                if (IsPong(reply) && autoPings > 0)
                {
                    autoPings--;
                    autoPingSent = Now();
                    return; // the answer to our own keep-alive
                }
                if (reply.Code == 202)
                {
                    NoteSessionLocked(reply.Detail);
                }
                if (reply.Code == 200 && reply.Message == "Logged out.")
                {
                    loggingOut = true;
                }
                if (reply.IsError && reply.ClosesConnection && (reply.Code == 409 || reply.Code == 413 || reply.IsShutdown))
                {
                    // Taken over elsewhere, our own oversized frame, or the server is going
                    // away: coming back would take the session back, fail again, or find no one.
                    finalError = reply;
                }
            }
            Deliver(reply);
        }

        /// <summary>After the live connection failed: reconnects when allowed and returns the new
        /// live connection, or reports the end and returns null.</summary>
        Connection AfterLoss(Connection connection, string reason)
        {
            bool reconnect, loggedOut;
            ReplyEvent error;
            lock (gate)
            {
                if (live == connection)
                {
                    live = null;
                }
                error = finalError;
                loggedOut = loggingOut;
                reconnect = options.AutoReconnect && token != null && !closing && !loggingOut && finalError == null;
                if (reconnect)
                {
                    state = ConnectionState.Reconnecting;
                }
            }
            connection.Close(false);
            if (!reconnect)
            {
                string why;
                if (loggedOut)
                {
                    why = "logged out";
                }
                else if (error != null)
                {
                    why = error.Code + " " + error.Message;
                }
                else
                {
                    why = reason;
                }
                Shutdown(why, error);
                return null;
            }
            LogLine("connection lost (" + reason + "); reconnecting");
            Deliver(new ConnectionLostEvent(reason, true));
            return Reconnect(reason);
        }

        Connection Reconnect(string cause)
        {
            double started = Now();
            double backoff = options.FirstBackoffSeconds;
            string lastError = cause;
            for (int attempt = 1; attempt <= Math.Max(1, options.ReconnectAttempts); attempt++)
            {
                double wait = backoff * (0.5 + 0.5 * jitter.NextDouble());
                backoff = Math.Min(backoff * 2, options.MaxBackoffSeconds);
                lock (gate)
                {
                    double until = Now() + wait;
                    while (!closing && !loggingOut && Now() < until)
                    {
                        Monitor.Wait(gate, Millis(until - Now()));
                    }
                    if (closing || loggingOut)
                    {
                        break;
                    }
                }
                Connection connection = null;
                try
                {
                    connection = Open();
                    Comeback back = Resume(connection) ?? LogInAgain(connection);
                    ReconnectedEvent reconnected = back.Finish(attempt, Now() - started);
                    ApplyComeback(back);
                    if (!Publish(connection))
                    {
                        connection.Close(false);
                        break;
                    }
                    LogLine("reconnected after " + attempt + " attempt(s): " + (back.Resumed ? "resumed" : "logged in afresh")
                        + ", " + back.MissedEvents + " missed events replayed");
                    Deliver(reconnected);
                    foreach (var evt in back.Events)
                    {
                        Deliver(evt);
                    }
                    return connection;
                }
                catch (FinalRefusal refusal)
                {
                    if (connection != null)
                    {
                        connection.Close(false);
                    }
                    lock (gate)
                    {
                        finalError = refusal.Reply;
                    }
                    Deliver(refusal.Reply);
                    Shutdown(refusal.Reply.Code + " " + refusal.Reply.Message, refusal.Reply);
                    return null;
                }
                catch (Exception err)
                {
                    if (connection != null)
                    {
                        connection.Close(false);
                    }
                    lastError = Describe(err);
                    LogLine("reconnect attempt " + attempt + " failed: " + lastError);
                }
            }
            bool stopped;
            lock (gate)
            {
                stopped = closing || loggingOut;
            }
            Shutdown(stopped ? "closed while reconnecting" : "gave up reconnecting after " + options.ReconnectAttempts + " attempts (the last: " + lastError + ")", null);
            return null;
        }

        /// <summary>Sends resume and a ping in one write, and reads up to the pong: the server
        /// answers the resume whole before the ping, so the pong marks the end of the replay.
        /// Returns null when the session expired (410 "Session expired.").</summary>
        Comeback Resume(Connection connection)
        {
            Dictionary<string, long> seen;
            string resumeToken;
            lock (gate)
            {
                seen = new Dictionary<string, long>(lastSeq, StringComparer.Ordinal);
                resumeToken = token;
            }
            var roomsSeen = JsonValue.NewObject();
            foreach (var room in seen)
            {
                roomsSeen.Set(room.Key, room.Value);
            }
            var resume = JsonValue.NewObject().Set("system", "resume").Set(
                "options", JsonValue.NewObject().Set("token", resumeToken).Set("rooms", roomsSeen));
            connection.Write(Concat(Encode(resume), PingFrame));

            var back = new Comeback { Resumed = true };
            bool? resumed = null;
            double deadline = Now() + options.ReplyTimeoutSeconds;
            while (true)
            {
                JsonValue frame = connection.ReadBefore(deadline, OnReceive);
                if (frame == null)
                {
                    throw new IOException("the server closed the connection during the resume");
                }
                string info = frame["info"].AsString;
                JsonValue response = frame["response"];
                if (info == "user")
                {
                    string room = frame["room"].AsString ?? "";
                    bool history = frame["history"].AsBool();
                    long last;
                    bool known = seen.TryGetValue(room, out last);
                    var kept = new List<JsonValue>();
                    foreach (var evt in frame["payload"].Items)
                    {
                        long seq;
                        // Exactly once: what was received before the loss is not handed on again.
                        if (known && evt["seq"].TryGetLong(out seq) && seq <= last)
                        {
                            continue;
                        }
                        kept.Add(evt);
                    }
                    // A gap room's whole kept history is a resynchronization, not a replay.
                    back.AddFrame(room, kept, history, history && !back.Gaps.Contains(room));
                    continue;
                }
                var reply = new ReplyEvent(response, info == "error");
                if (IsPong(reply))
                {
                    break;
                }
                if (reply.Code == 202 && resumed == null)
                {
                    resumed = true;
                    lock (gate)
                    {
                        NoteSessionLocked(reply.Detail);
                    }
                    continue;
                }
                if (reply.Code == 410)
                {
                    string room = reply.Room;
                    if (room != null)
                    {
                        // The missed events are gone: the room's whole kept history follows,
                        // to start over from.
                        back.Gaps.Add(room);
                        seen.Remove(room);
                    }
                    else
                    {
                        resumed = false; // Session expired; the pong still follows.
                    }
                    continue;
                }
                if (reply.IsError)
                {
                    throw Refusal(reply);
                }
                back.AddReply(reply);
            }
            if (resumed == null)
            {
                throw new ProtocolException("the server did not answer the resume");
            }
            return resumed.Value ? back : null;
        }

        /// <summary>The session expired: logs in afresh on the same connection, then joins the
        /// rooms again (and leaves the lobby if it had left it) and reads up to a ping's pong. In
        /// a room whose kept history still holds the last event received, the events after it
        /// are handed on as replayed; other rooms' histories come as any joiner's.</summary>
        /// <remarks>The login goes alone and the rest only after its 202: a registered account's
        /// password is checked off the server's loop, and frames sent behind the login could be
        /// handled before it is accepted (and refused with 401).</remarks>
        Comeback LogInAgain(Connection connection)
        {
            List<string> wasIn;
            Dictionary<string, Anchor> marks;
            lock (gate)
            {
                wasIn = new List<string>(rooms);
                marks = new Dictionary<string, Anchor>(anchors, StringComparer.Ordinal);
            }
            bool inLobby = wasIn.Contains("lobby");
            var login = JsonValue.NewObject().Set("system", "login").Set(
                "options", JsonValue.NewObject().Set("user", options.User).Set("pass", options.Password));
            connection.Write(Encode(login));
            var rejoin = new List<byte[]>();
            foreach (var room in wasIn)
            {
                if (room != "lobby")
                {
                    rejoin.Add(Encode(RoomMessage(room, "join", null)));
                }
            }
            if (!inLobby)
            {
                rejoin.Add(Encode(RoomMessage("lobby", "leave", null)));
            }
            rejoin.Add(PingFrame);

            var back = new Comeback { Resumed = false, Rejoined = wasIn };
            var histories = new Dictionary<string, List<PendingFrame>>(StringComparer.Ordinal);
            bool accepted = false;
            double deadline = Now() + options.ReplyTimeoutSeconds;
            while (true)
            {
                JsonValue frame = connection.ReadBefore(deadline, OnReceive);
                if (frame == null)
                {
                    throw new IOException("the server closed the connection during the login");
                }
                string info = frame["info"].AsString;
                if (info == "user")
                {
                    string room = frame["room"].AsString ?? "";
                    if (room == "lobby" && !inLobby)
                    {
                        continue; // joined by the login only to leave again
                    }
                    bool history = frame["history"].AsBool();
                    var pending = back.AddFrame(room, new List<JsonValue>(frame["payload"].Items), history, false);
                    if (history && pending != null)
                    {
                        List<PendingFrame> list;
                        if (!histories.TryGetValue(room, out list))
                        {
                            histories[room] = list = new List<PendingFrame>();
                        }
                        list.Add(pending);
                    }
                    continue;
                }
                var reply = new ReplyEvent(frame["response"], info == "error");
                if (accepted && IsPong(reply))
                {
                    break;
                }
                if (reply.Code == 202 && !accepted)
                {
                    accepted = true;
                    lock (gate)
                    {
                        NoteSessionLocked(reply.Detail);
                    }
                    connection.Write(Concat(rejoin.ToArray()));
                    continue;
                }
                if (reply.IsError && (reply.Detail.Has("user") || reply.ClosesConnection))
                {
                    throw Refusal(reply); // the login itself was refused
                }
                back.AddReply(reply); // e.g. a room that is full now: the game hears of it
            }
            foreach (var room in wasIn)
            {
                List<PendingFrame> list;
                Anchor mark;
                if (!histories.TryGetValue(room, out list) || !marks.TryGetValue(room, out mark) || !Splice(list, mark))
                {
                    if (room != "lobby" || inLobby)
                    {
                        back.Gaps.Add(room);
                    }
                }
            }
            return back;
        }

        /// <summary>In a room's history frames after a fresh login: drops the events up to the
        /// anchor (the last one received before the loss, matched on seq, time, user and type,
        /// so a restarted server's reused seqs cannot fool it) and marks the rest replayed.
        /// False when the history does not hold the anchor.</summary>
        static bool Splice(List<PendingFrame> frames, Anchor mark)
        {
            bool found = false;
            foreach (var frame in frames)
            {
                foreach (var evt in frame.Events)
                {
                    long seq;
                    if (evt["seq"].TryGetLong(out seq) && seq == mark.Seq && evt["time"].AsDouble() == mark.Time
                        && evt["user"].AsString == mark.User && evt["type"].AsString == mark.Type)
                    {
                        found = true;
                    }
                }
            }
            if (!found)
            {
                return false;
            }
            foreach (var frame in frames)
            {
                frame.Events.RemoveAll(evt => evt["seq"].AsLong(long.MaxValue) <= mark.Seq);
                frame.Replayed = true;
            }
            return true;
        }

        void ApplyComeback(Comeback back)
        {
            lock (gate)
            {
                if (back.Resumed)
                {
                    foreach (var room in back.Gaps)
                    {
                        lastSeq.Remove(room);
                        anchors.Remove(room);
                    }
                }
                else
                {
                    rooms.Clear();
                    lastSeq.Clear();
                    anchors.Clear();
                }
                foreach (var frame in back.Frames)
                {
                    var payload = JsonValue.NewArray(frame.Events.ToArray());
                    Track(frame.Room, payload, frame.History);
                }
            }
        }

        FinalRefusal Refusal(ReplyEvent reply)
        {
            // A busy server (503 "Server full.") may let us in on the next attempt; anything
            // else that refuses a resume or a login will refuse it again.
            if (reply.Code == 503 && !reply.IsShutdown)
            {
                throw new IOException("refused for now: " + reply.Code + " " + reply.Message);
            }
            return new FinalRefusal(reply);
        }

        // --- the sender thread ------------------------------------------------------------

        void SenderMain()
        {
            var batch = new MemoryStream();
            var taken = new List<Outgoing>();
            while (true)
            {
                Connection connection;
                bool ping = false;
                Connection stale = null;
                taken.Clear();
                lock (gate)
                {
                    while (true)
                    {
                        if (closing || state == ConnectionState.Closed)
                        {
                            return;
                        }
                        connection = live;
                        double now = Now();
                        if (connection != null)
                        {
                            if (outbox.Count > 0)
                            {
                                int bytes = 0;
                                while (outbox.Count > 0 && (taken.Count == 0 || bytes + outbox.First.Value.Frame.Length <= MaxBatchBytes))
                                {
                                    var next = outbox.First.Value;
                                    outbox.RemoveFirst();
                                    if (next.PoseRoom != null)
                                    {
                                        queuedPoses.Remove(next.PoseRoom);
                                    }
                                    taken.Add(next);
                                    bytes += next.Frame.Length;
                                }
                                break;
                            }
                            double every = PingEvery();
                            if (every > 0 && now >= lastSend + every)
                            {
                                ping = true;
                                if (autoPings == 0)
                                {
                                    autoPingSent = now;
                                }
                                autoPings++;
                                break;
                            }
                            if (autoPings > 0 && now - autoPingSent > options.PongTimeoutSeconds
                                && lastReceive < autoPingSent && !readerBlocked && !connection.Closed)
                            {
                                stale = connection;
                                break;
                            }
                        }
                        Monitor.Wait(gate, Millis(NextSenderWake(connection, now)));
                    }
                }
                if (stale != null)
                {
                    LogLine("no answer to a keep-alive ping for " + options.PongTimeoutSeconds + " s: the connection is dead");
                    stale.Close(true); // the reader sees it fail, and reconnects
                    continue;
                }
                batch.SetLength(0);
                if (ping)
                {
                    batch.Write(PingFrame, 0, PingFrame.Length);
                }
                foreach (var item in taken)
                {
                    batch.Write(item.Frame, 0, item.Frame.Length);
                }
                try
                {
                    connection.Write(batch.GetBuffer(), (int)batch.Length);
                    lock (gate)
                    {
                        lastSend = Now();
                    }
                }
                catch (Exception err)
                {
                    // The write failed with the connection: what it carried is sent again once
                    // the client is back (poses excepted: a newer one will come).
                    lock (gate)
                    {
                        if (ping && autoPings > 0)
                        {
                            autoPings--;
                        }
                        for (int i = taken.Count - 1; i >= 0; i--)
                        {
                            if (taken[i].PoseRoom == null && !closing)
                            {
                                outbox.AddFirst(taken[i]);
                            }
                        }
                    }
                    LogLine("send failed: " + Describe(err));
                    connection.Close(true);
                }
            }
        }

        /// <summary>Seconds until the sender must look again: the next ping, or the pong
        /// deadline (caller holds the gate).</summary>
        double NextSenderWake(Connection connection, double now)
        {
            if (connection == null)
            {
                return 1.0; // woken by Publish; the timeout only guards against a missed pulse
            }
            double wake = double.PositiveInfinity;
            double every = PingEvery();
            if (every > 0)
            {
                wake = lastSend + every - now;
            }
            if (autoPings > 0)
            {
                wake = Math.Min(wake, autoPingSent + options.PongTimeoutSeconds - now);
            }
            return Math.Max(0.001, Math.Min(wake, 1.0));
        }

        /// <summary>A third of the idle timeout (so two pings may be lost before it bites); 0
        /// when the server has none (caller holds the gate).</summary>
        double PingEvery()
        {
            if (idleTimeout < 0)
            {
                return DefaultPingEverySeconds;
            }
            return idleTimeout > 0 ? idleTimeout / 3 : 0;
        }

        // --- shared helpers ---------------------------------------------------------------

        /// <summary>Makes a connection the one the sender writes to; false (and nothing done)
        /// once the client is closing or logging out.</summary>
        bool Publish(Connection connection)
        {
            lock (gate)
            {
                if (closing || loggingOut)
                {
                    return false;
                }
                setup = null;
                live = connection;
                state = ConnectionState.LoggedIn;
                autoPings = 0;
                lastSend = Now();
                lastReceive = Now();
                Monitor.PulseAll(gate);
                return true;
            }
        }

        LoggedInEvent NoteSession(JsonValue detail, bool resumed)
        {
            lock (gate)
            {
                NoteSessionLocked(detail);
                return new LoggedInEvent(user, idleTimeout, resumed);
            }
        }

        void NoteSessionLocked(JsonValue detail)
        {
            user = detail["user"].AsString ?? options.User;
            string fresh = detail["resume"].AsString;
            if (fresh != null)
            {
                token = fresh;
            }
            double idle;
            if (detail["idle_timeout"].TryGetDouble(out idle))
            {
                idleTimeout = idle;
            }
        }

        /// <summary>Remembers the last seq per room, and forgets a room on our own live leave
        /// (caller holds the gate).</summary>
        void Track(string room, JsonValue payload, bool history)
        {
            foreach (var evt in payload.Items)
            {
                if (!history && evt["type"].AsString == "leave" && evt["user"].AsString == user)
                {
                    rooms.Remove(room);
                    lastSeq.Remove(room);
                    anchors.Remove(room);
                    continue;
                }
                if (!rooms.Contains(room))
                {
                    rooms.Add(room);
                }
                long seq, last;
                if (evt["seq"].TryGetLong(out seq) && (!lastSeq.TryGetValue(room, out last) || seq > last))
                {
                    lastSeq[room] = seq;
                    anchors[room] = new Anchor
                    {
                        Seq = seq,
                        Time = evt["time"].AsDouble(),
                        User = evt["user"].AsString,
                        Type = evt["type"].AsString,
                    };
                }
            }
        }

        /// <summary>Queues an event for the game, waiting while the queue is full.</summary>
        void Deliver(RoomcastEvent next)
        {
            lock (inboxGate)
            {
                while (inbox.Count >= options.MaxQueuedEvents && !finished)
                {
                    bool stop;
                    lock (gate)
                    {
                        stop = closing;
                    }
                    if (stop)
                    {
                        return;
                    }
                    readerBlocked = true;
                    Monitor.Wait(inboxGate, 100);
                }
                readerBlocked = false;
                if (finished)
                {
                    return;
                }
                inbox.Enqueue(next);
                Monitor.PulseAll(inboxGate);
            }
        }

        /// <summary>The end: stops the threads' loops, drops unsent frames, closes the live
        /// connection and queues the <see cref="ClosedEvent"/> (once, always last).</summary>
        void Shutdown(string reason, ReplyEvent error)
        {
            Connection connection, unfinished;
            lock (gate)
            {
                closing = true;
                state = ConnectionState.Closed;
                connection = live;
                live = null;
                unfinished = setup;
                setup = null;
                outbox.Clear();
                queuedPoses.Clear();
                Monitor.PulseAll(gate);
            }
            // The Closed event first: closing the sockets wakes the reader, whose own account
            // of the failure must not be the one reported.
            bool first = false;
            lock (inboxGate)
            {
                if (!finished)
                {
                    finished = first = true;
                    inbox.Enqueue(new ClosedEvent(reason, error));
                    Monitor.PulseAll(inboxGate);
                }
            }
            if (connection != null)
            {
                connection.Close(false);
            }
            if (unfinished != null)
            {
                unfinished.Close(false); // wakes the reader waiting for a login or a resume
            }
            if (!first)
            {
                return;
            }
            LogLine("closed: " + reason);
        }

        void WaitUntilFinished(double seconds)
        {
            double deadline = Now() + seconds;
            lock (inboxGate)
            {
                while (!finished && Now() < deadline)
                {
                    Monitor.Wait(inboxGate, Millis(deadline - Now()));
                }
            }
        }

        void JoinThreads(double seconds)
        {
            foreach (var thread in new[] { reader, sender })
            {
                if (thread != null && thread != Thread.CurrentThread)
                {
                    thread.Join(Millis(seconds));
                }
            }
        }

        void OnReceive()
        {
            lock (gate)
            {
                lastReceive = Now();
            }
        }

        /// <summary>A new connection, registered as being set up, so that Close can end a login
        /// or a resume that waits for the server.</summary>
        Connection Open()
        {
            var connection = Connection.Open(options.Host, options.Port, options.ConnectTimeoutSeconds);
            lock (gate)
            {
                if (closing)
                {
                    connection.Close(false);
                    throw new IOException("closed");
                }
                setup = connection;
            }
            return connection;
        }

        void LogLine(string line)
        {
            var log = options.Log;
            if (log != null)
            {
                log("roomcast: " + line);
            }
        }

        static bool IsPong(ReplyEvent reply)
        {
            return !reply.IsError && reply.Code == 200 && reply.Message == "pong";
        }

        static byte[] Concat(params byte[][] parts)
        {
            int length = 0;
            foreach (var part in parts)
            {
                length += part.Length;
            }
            var all = new byte[length];
            int at = 0;
            foreach (var part in parts)
            {
                Buffer.BlockCopy(part, 0, all, at, part.Length);
                at += part.Length;
            }
            return all;
        }

        static string Describe(Exception err)
        {
            var inner = err.InnerException as SocketException;
            return inner != null ? inner.Message + " (" + inner.SocketErrorCode + ")" : err.Message;
        }

        static double Now()
        {
            return Wire.Now();
        }

        static int Millis(double seconds)
        {
            return Wire.Millis(seconds);
        }

        // --- small types ------------------------------------------------------------------

        sealed class Outgoing
        {
            public byte[] Frame;
            /// <summary>The room of a pose (a newer pose replaces it while queued); else null.</summary>
            public string PoseRoom;
        }

        struct Anchor
        {
            public long Seq;
            public double Time;
            public string User;
            public string Type;
        }

        sealed class PendingFrame
        {
            public string Room;
            public List<JsonValue> Events;
            public bool History;
            public bool Replayed;
        }

        /// <summary>What a resume or a fresh login brought, handed on once it is complete.</summary>
        sealed class Comeback
        {
            public bool Resumed;
            public List<string> Rejoined = new List<string>();
            public readonly List<string> Gaps = new List<string>();
            /// <summary>Room frames, for tracking seqs once they are handed on.</summary>
            public readonly List<PendingFrame> Frames = new List<PendingFrame>();
            /// <summary>Frames and replies in arrival order.</summary>
            readonly List<object> arrived = new List<object>();
            public readonly List<RoomcastEvent> Events = new List<RoomcastEvent>();
            public int MissedEvents;

            /// <summary>Keeps a frame's events; null when none is left.</summary>
            public PendingFrame AddFrame(string room, List<JsonValue> events, bool history, bool replayed)
            {
                if (events.Count == 0)
                {
                    return null;
                }
                var frame = new PendingFrame { Room = room, Events = events, History = history, Replayed = replayed };
                Frames.Add(frame);
                arrived.Add(frame);
                return frame;
            }

            public void AddReply(ReplyEvent reply)
            {
                arrived.Add(reply);
            }

            /// <summary>Turns what arrived into events (after splicing) and sums up.</summary>
            public ReconnectedEvent Finish(int attempts, double downtime)
            {
                int missedMsgs = 0;
                foreach (var item in arrived)
                {
                    var frame = item as PendingFrame;
                    if (frame == null)
                    {
                        Events.Add((ReplyEvent)item);
                        continue;
                    }
                    foreach (var evt in frame.Events)
                    {
                        var roomEvent = new RoomEvent(frame.Room, evt, frame.History, frame.Replayed);
                        if (frame.Replayed)
                        {
                            MissedEvents++;
                            if (roomEvent.Kind == EventKind.Msg)
                            {
                                missedMsgs++;
                            }
                        }
                        Events.Add(roomEvent);
                    }
                }
                return new ReconnectedEvent(Resumed, MissedEvents, missedMsgs, Gaps.ToArray(),
                    Resumed ? new string[0] : Rejoined.ToArray(), attempts, downtime);
            }
        }

        sealed class FinalRefusal : Exception
        {
            public readonly ReplyEvent Reply;

            public FinalRefusal(ReplyEvent reply)
                : base(reply.Code + " " + reply.Message)
            {
                Reply = reply;
            }
        }
    }
}
