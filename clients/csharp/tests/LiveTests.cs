// The client against a real server (started by tests/csharp_client.rs), through a proxy that
// the Rust side can cut like a failing network, with a Rust client ("bob") in the same room.
//
// The Rust side waits for the "step: ..." lines printed here before it acts; everything the C#
// side expects from bob, it waits for with a timeout, so no step depends on sleeping.

using System;
using System.Collections.Generic;
using System.Net.Sockets;

namespace Roomcast.Tests
{
    public static class LiveTests
    {
        const double Wait = 10;

        static void Step(string text)
        {
            Console.WriteLine("step: " + text);
            Console.Out.Flush();
        }

        static RoomcastClient Connect(Dictionary<string, string> args, string user)
        {
            var client = new RoomcastClient(new RoomcastOptions
            {
                Host = args["--host"],
                Port = int.Parse(args["--port"]),
                User = user,
                Password = args.ContainsKey("--password") ? args["--password"] : "pw",
                FirstBackoffSeconds = 0.05,
                MaxBackoffSeconds = 0.5,
                Log = line => Console.WriteLine("log: " + line),
            });
            client.Connect();
            return client;
        }

        /// <summary>Events until one matches (the others are kept in <paramref name="seen"/>).</summary>
        static T Until<T>(RoomcastClient client, List<RoomcastEvent> seen, Func<T, bool> match, string what) where T : RoomcastEvent
        {
            double deadline = Environment.TickCount / 1000.0 + Wait;
            while (true)
            {
                double left = deadline - Environment.TickCount / 1000.0;
                var next = left > 0 ? client.WaitForEvent(left) : null;
                Check.That(next != null, "within " + Wait + " s: " + what);
                seen.Add(next);
                var typed = next as T;
                if (typed != null && match(typed))
                {
                    return typed;
                }
                if (next.Kind == EventKind.Closed)
                {
                    throw new CheckFailed(what + ": closed first: " + ((ClosedEvent)next).Reason);
                }
            }
        }

        static RoomEvent UntilRoom(RoomcastClient client, List<RoomcastEvent> seen, string room, EventKind kind, string user, string what)
        {
            return Until<RoomEvent>(client, seen, e => e.Room == room && e.Kind == kind && (user == null || e.User == user), what);
        }

        static void EverySeqOnce(List<RoomcastEvent> seen, string room)
        {
            long last = 0;
            foreach (var e in seen)
            {
                var r = e as RoomEvent;
                if (r == null || r.Room != room || !r.Seq.HasValue || (r.IsHistory && !r.IsReplayed))
                {
                    continue; // a joiner's history and a history query's answer are older by design
                }
                Check.That(r.Seq.Value > last, "seqs of #" + room + " rise, none twice: " + r.Seq.Value + " after " + last);
                last = r.Seq.Value;
            }
        }

        /// <summary>Login, join, chat both ways, poses on the tick, typed errors, a cut
        /// connection resumed with exactly the missed events, a takeover that ends it.</summary>
        public static void Live(Runner runner, Dictionary<string, string> args)
        {
            var seen = new List<RoomcastEvent>();
            var client = Connect(args, "alice");
            client.Join("den");

            runner.Run("live: login and join", () =>
            {
                var loggedIn = Until<LoggedInEvent>(client, seen, e => true, "logged in");
                Check.Equal("alice", loggedIn.User, "user");
                Check.Equal(120.0, loggedIn.IdleTimeout, "idle timeout of the login reply");
                Check.That(!string.IsNullOrEmpty(client.ResumeToken), "a resume token");
                var lobbyJoin = UntilRoom(client, seen, "lobby", EventKind.Join, "alice", "own lobby join");
                Check.That(lobbyJoin.Seq.HasValue && !lobbyJoin.IsHistory, "a live join with a seq");
                var bobJoined = UntilRoom(client, seen, "den", EventKind.Join, "bob", "bob's join in den's history");
                Check.That(bobJoined.IsHistory, "from the history frame");
                UntilRoom(client, seen, "den", EventKind.Join, "alice", "own den join");
                var list = UntilRoom(client, seen, "den", EventKind.List, null, "den's members");
                Check.Equal("alice,bob", string.Join(",", list.Members), "members");
                Check.Equal("lobby,den", string.Join(",", client.Rooms), "rooms");
            });
            if (runner.Failed) return;
            Step("joined den");

            runner.Run("live: chat both ways", () =>
            {
                client.Msg("den", JsonValue.NewObject().Set("text", "hello from C# ☕").Set("n", 1));
                var echo = UntilRoom(client, seen, "den", EventKind.Msg, "alice", "own msg echo");
                Check.Equal("{\"text\":\"hello from C# ☕\",\"n\":1}", echo.Data.ToJson(), "echo as sent");
                Step("said hello");
                var hi = UntilRoom(client, seen, "den", EventKind.Msg, "bob", "bob's msg");
                Check.Equal("hi alice ☕", hi.Text, "bob's text");
                Check.That(hi.Seq > echo.Seq, "seq after the echo");
            });
            if (runner.Failed) return;
            Step("heard bob");

            runner.Run("live: poses arrive on the tick", () =>
            {
                var bobPose = UntilRoom(client, seen, "den", EventKind.Transform, "bob", "bob's pose").Pose;
                Check.Equal(new Vec3(1f, 1.7f, 0.25f), bobPose.Head.Position, "bob's position");
                Check.Near(1.0, Math.Abs(bobPose.Head.Rotation.Y), 1e-5, "bob's Euler 180 about y");
                // 30 poses over ~0.6 s; the server (fps 10) forwards the latest once per tick.
                int sent = 30;
                var started = DateTime.UtcNow;
                for (int i = 0; i < sent; i++)
                {
                    var pose = new AvatarPose(new Pose(new Vec3(i * 0.1f, 1.6f, -2f), Quat.FromEulerDegrees(0, i, 0)))
                        .With("left_hand", new Pose(new Vec3(-0.2f, 1.1f, -1.7f), Quat.Identity))
                        .With("right_hand", new Pose(new Vec3(0.2f, 1.1f, -1.7f), Quat.Identity));
                    client.Transform("den", pose);
                    System.Threading.Thread.Sleep(20); // a 50 Hz headset; bounded: 30 iterations
                }
                float lastX = (sent - 1) * 0.1f;
                var own = new List<RoomEvent>();
                Until<RoomEvent>(client, seen, e =>
                {
                    if (e.Room == "den" && e.Kind == EventKind.Transform && e.User == "alice")
                    {
                        own.Add(e);
                        return e.Pose.Head.Position.X == lastX;
                    }
                    return false;
                }, "own last pose back");
                double seconds = (DateTime.UtcNow - started).TotalSeconds;
                Check.That(own.Count >= 2, "several ticks: " + own.Count);
                Check.That(own.Count <= seconds * 10 + 3, own.Count + " tick frames for " + sent + " poses in " + seconds.ToString("0.00") + " s at fps 10: coalesced");
                for (int i = 1; i < own.Count; i++)
                {
                    Check.That(own[i].Time > own[i - 1].Time, "one pose per tick, ticks in order");
                }
                var last = own[own.Count - 1].Pose;
                Check.Near(Quat.FromEulerDegrees(0, sent - 1, 0).Y, last.Head.Rotation.Y, 1e-6, "the last rotation");
                Check.Near(Quat.FromEulerDegrees(0, sent - 1, 0).W, last.Head.Rotation.W, 1e-6, "w travels too");
            });
            if (runner.Failed) return;
            Step("poses sent");

            runner.Run("live: errors come back typed", () =>
            {
                client.Msg("nowhere", "x");
                var notIn = Until<ReplyEvent>(client, seen, e => e.IsError, "the 404");
                Check.Equal(ErrorCode.NotInRoom, notIn.ErrorCode, "404 " + notIn.Message);
                Check.Equal("nowhere", notIn.Room, "its room");
                Check.Equal("msg", notIn.Type, "its type");
                client.Join("den");
                var again = Until<ReplyEvent>(client, seen, e => e.IsError, "the 409");
                Check.Equal(ErrorCode.Conflict, again.ErrorCode, "409 " + again.Message);
                Check.That(!again.ClosesConnection, "the connection stays");
                client.Send(JsonValue.Parse("{\"room\":\"den\",\"type\":\"transform\",\"data\":{\"pos\":{\"x\":1,\"y\":2},\"rot\":{\"x\":0,\"y\":0,\"z\":0}}}"));
                var invalid = Until<ReplyEvent>(client, seen, e => e.IsError, "the 422");
                Check.Equal(ErrorCode.Invalid, invalid.ErrorCode, "422 " + invalid.Message);
                client.Ping();
                var pong = Until<ReplyEvent>(client, seen, e => true, "the pong");
                Check.That(pong.Code == 200 && pong.Message == "pong", "a ping of our own is answered: " + pong);
                client.History("den", null, 0, 2);
                var oldest = Until<RoomEvent>(client, seen, e => e.IsHistory && e.Room == "den", "a history query's answer");
                Check.Equal(EventKind.Join, oldest.Kind, "the oldest kept event of den: bob's join");
            });
            if (runner.Failed) return;
            Step("errors ok");

            runner.Run("live: a cut connection resumes with exactly the missed events", () =>
            {
                var lost = Until<ConnectionLostEvent>(client, seen, e => true, "the cut");
                Check.That(lost.WillReconnect, "reconnecting: " + lost.Reason);
                var back = Until<ReconnectedEvent>(client, seen, e => true, "the resume");
                Check.That(back.Resumed, "resumed");
                Check.Equal(0, back.Gaps.Length, "nothing lost");
                Check.Equal(3, back.MissedMsgs, "m2, m3, m4 were missed");
                Check.Equal(5, back.MissedEvents, "and alice's away in den and in the lobby");
                UntilRoom(client, seen, "den", EventKind.Back, "alice", "own back event");
                Step("back");
                UntilRoom(client, seen, "den", EventKind.Msg, "bob", "m5");
                var said = new List<string>();
                foreach (var e in seen)
                {
                    var r = e as RoomEvent;
                    if (r != null && r.Room == "den" && r.Kind == EventKind.Msg && r.User == "bob")
                    {
                        said.Add(r.Text + (r.IsReplayed ? "*" : ""));
                    }
                }
                Check.Equal("hi alice ☕,m1,m2*,m3*,m4*,m5", string.Join(",", said), "every msg once, the missed ones replayed");
                EverySeqOnce(seen, "den");
                EverySeqOnce(seen, "lobby");
            });
            if (runner.Failed) return;

            runner.Run("live: a takeover ends the client, without a reconnect", () =>
            {
                // Another connection resumes this session (as the same user on another
                // network would): the client gets 409 and must not take it back.
                using (var other = new TcpClient(args["--host"], int.Parse(args["--direct-port"])))
                {
                    var stream = other.GetStream();
                    var resume = JsonValue.Parse("{\"system\":\"resume\",\"options\":{\"rooms\":{}}}");
                    resume["options"].Set("token", client.ResumeToken);
                    var frame = RoomcastClient.Encode(resume);
                    stream.Write(frame, 0, frame.Length);
                    var takeover = Until<ReplyEvent>(client, seen, e => e.IsError, "the 409 takeover");
                    Check.Equal(409, takeover.Code, "409");
                    var closed = Until<ClosedEvent>(client, seen, e => true, "the end");
                    Check.That(closed.Error != null && closed.Error.Code == 409, "closed by the takeover: " + closed.Reason);
                    Check.Equal(ConnectionState.Closed, client.State, "no reconnect");
                    var logout = RoomcastClient.Encode(JsonValue.Parse("{\"system\":\"logout\"}"));
                    stream.Write(logout, 0, logout.Length);
                    var buffer = new byte[4096];
                    other.ReceiveTimeout = 5000;
                    while (stream.Read(buffer, 0, buffer.Length) > 0)
                    {
                        // the 202, the replay, the logout reply: read to the server's close
                    }
                }
                Check.Equal(1, seen.FindAll(e => e.Kind == EventKind.ConnectionLost).Count, "one loss only: the cut");
            });
            Step("done");
        }

        /// <summary>With no resume grace: a cut connection finds its session expired, logs in
        /// afresh, re-joins its rooms (not the lobby, which it had left), replays what it
        /// missed; then the server's shutdown ends it without a reconnect.</summary>
        public static void Expired(Runner runner, Dictionary<string, string> args)
        {
            var seen = new List<RoomcastEvent>();
            var client = Connect(args, "carol");
            client.Join("den");
            client.Leave("lobby");

            runner.Run("expired: joined den, left the lobby", () =>
            {
                UntilRoom(client, seen, "den", EventKind.List, null, "den's list");
                UntilRoom(client, seen, "lobby", EventKind.Leave, "carol", "own lobby leave");
                Check.Equal("den", string.Join(",", client.Rooms), "in den only");
            });
            if (runner.Failed) return;
            Step("joined den");

            runner.Run("expired: logs in afresh and re-joins", () =>
            {
                UntilRoom(client, seen, "den", EventKind.Msg, "bob", "e0");
                Step("heard e0");
                var back = Until<ReconnectedEvent>(client, seen, e => true, "the comeback");
                Check.That(!back.Resumed, "the session had expired");
                Check.Equal("den", string.Join(",", back.Rejoined), "den re-joined");
                Check.Equal(0, back.Gaps.Length, "den's history still held the last event seen");
                Check.Equal(2, back.MissedMsgs, "e1 and e2 missed");
                UntilRoom(client, seen, "den", EventKind.Join, "carol", "own join again");
                Step("rejoined");
                UntilRoom(client, seen, "den", EventKind.Msg, "bob", "e3");
                var said = new List<string>();
                int comeback = seen.FindIndex(e => e.Kind == EventKind.Reconnected);
                for (int i = 0; i < seen.Count; i++)
                {
                    var r = seen[i] as RoomEvent;
                    if (r != null && r.Kind == EventKind.Msg)
                    {
                        said.Add(r.Room + ":" + r.Text + (r.IsReplayed ? "*" : ""));
                    }
                    Check.That(r == null || i < comeback || r.Room == "den", "nothing of the lobby after the comeback: " + r);
                }
                Check.Equal("den:e0,den:e1*,den:e2*,den:e3", string.Join(",", said), "every msg once");
                EverySeqOnce(seen, "den");
                Check.Equal("den", string.Join(",", client.Rooms), "still in den only");
            });
            if (runner.Failed) return;
            Step("ready for shutdown");

            runner.Run("expired: the server's shutdown ends it, without a reconnect", () =>
            {
                var bye = Until<ReplyEvent>(client, seen, e => e.IsError, "the 503");
                Check.That(bye.IsShutdown, "503 Server shutting down.: " + bye);
                var closed = Until<ClosedEvent>(client, seen, e => true, "the end");
                Check.That(closed.Error != null && closed.Error.IsShutdown, "closed by the shutdown: " + closed.Reason);
                Check.That(seen.FindIndex(e => e.Kind == EventKind.ConnectionLost) == seen.FindLastIndex(e => e.Kind == EventKind.ConnectionLost), "no second loss");
            });
            client.Close(0.1);
        }
    }
}
