// The client against a scripted server in this process (a TcpListener on 127.0.0.1:0): the
// frames it writes, and what it does with every answer that decides its life (keep-alive,
// dead connections, resume and its replay, an expired session, the refusals that end it).
// The real server is exercised by the live modes; here each server answer is exact.

using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Roomcast.Tests
{
    public static class FakeServerTests
    {
        public static void RunAll(Runner runner)
        {
            runner.Run("client: sends wait for the login; queued poses coalesce", SendsWaitForLogin);
            runner.Run("client: keep-alive pings; a silent connection is resumed exactly once", KeepAliveAndResume);
            runner.Run("client: an expired session logs in afresh and splices the history", ExpiredSession);
            runner.Run("client: 409 takeover, 413 and 503 shutdown end it; 408 and a broken frame do not", FinalRefusals);
            runner.Run("client: a refused login ends it", RefusedLogin);
            runner.Run("client: logout ends it", LogoutEnds);
            runner.Run("client: nobody listening", NobodyListening);
            runner.Run("client: Close during a login that is not answered yet", CloseDuringLogin);
        }

        const string Granted = "{\"info\":\"system\",\"response\":{\"time\":1.0,\"code\":202,\"msg\":\"Access granted.\",\"detail\":{\"idle_timeout\":IDLE,\"resume\":\"TOKEN\",\"user\":\"alice\"}}}";
        const string Pong = "{\"info\":\"system\",\"response\":{\"time\":1.0,\"code\":200,\"msg\":\"pong\",\"detail\":{}}}";

        static string GrantedFrame(string token, double idle, bool resumed = false)
        {
            string frame = Granted.Replace("TOKEN", token).Replace("IDLE", idle.ToString("0.0##", System.Globalization.CultureInfo.InvariantCulture));
            return resumed ? frame.Replace("\"user\":\"alice\"", "\"user\":\"alice\",\"resumed\":true") : frame;
        }

        static string Event(string room, string user, string type, long seq, string data, bool history = false, double time = 1.0)
        {
            return "{\"info\":\"user\",\"room\":\"" + room + "\"," + (history ? "\"history\":true," : "") + "\"payload\":["
                + EventBody(user, type, seq, data, time) + "]}";
        }

        static string EventBody(string user, string type, long seq, string data, double time = 1.0)
        {
            return "{\"time\":" + time.ToString("0.0###", System.Globalization.CultureInfo.InvariantCulture) + ",\"user\":\"" + user
                + "\",\"type\":\"" + type + "\"" + (seq > 0 ? ",\"seq\":" + seq : "") + ",\"data\":" + data + "}";
        }

        static RoomcastClient NewClient(int port, Action<RoomcastOptions> tune = null)
        {
            var options = new RoomcastOptions
            {
                Port = port,
                User = "alice",
                Password = "pw",
                FirstBackoffSeconds = 0.01,
                MaxBackoffSeconds = 0.05,
                ReconnectAttempts = 5,
                ReplyTimeoutSeconds = 3,
                PongTimeoutSeconds = 0.3,
            };
            if (tune != null)
            {
                tune(options);
            }
            return new RoomcastClient(options);
        }

        /// <summary>The next event, which must come within 5 s.</summary>
        public static RoomcastEvent Next(RoomcastClient client)
        {
            var next = client.WaitForEvent(5);
            Check.That(next != null, "an event within 5 s");
            return next;
        }

        public static T Next<T>(RoomcastClient client, EventKind kind) where T : RoomcastEvent
        {
            var next = Next(client);
            Check.Equal(kind, next.Kind, "event kind (" + Describe(next) + ")");
            return (T)next;
        }

        static string Describe(RoomcastEvent e)
        {
            var closed = e as ClosedEvent;
            if (closed != null)
            {
                return "closed: " + closed.Reason;
            }
            var lost = e as ConnectionLostEvent;
            return lost != null ? "lost: " + lost.Reason : e.ToString();
        }

        static void LogIn(FakeServer server, RoomcastClient client, out FakePeer peer, double idle = 120, string token = "t1")
        {
            client.Connect();
            peer = server.Accept();
            var login = peer.Read();
            Check.Equal("login", login["system"].AsString, "the first frame is the login");
            Check.Equal("alice", login["options"]["user"].AsString, "user");
            Check.Equal("pw", login["options"]["pass"].AsString, "password");
            peer.Send(GrantedFrame(token, idle));
            var loggedIn = Next<LoggedInEvent>(client, EventKind.LoggedIn);
            Check.Equal("alice", loggedIn.User, "logged in as");
            Check.Equal(idle, loggedIn.IdleTimeout, "idle timeout");
        }

        static void SendsWaitForLogin()
        {
            using (var server = new FakeServer())
            {
                var client = NewClient(server.Port);
                client.Connect();
                Check.That(client.Join("den"), "a join queued before the login");
                for (int i = 0; i < 10; i++)
                {
                    client.Transform("den", new Pose(new Vec3(i, 1.6f, 0), Quat.Identity));
                }
                client.Msg("den", "after");
                var peer = server.Accept();
                Check.Equal("login", peer.Read()["system"].AsString, "the login goes first, alone");
                Check.That(!peer.HasData(0.1), "nothing else before the login is accepted");
                peer.Send(GrantedFrame("t1", 120));
                var join = peer.Read();
                Check.Equal("{\"room\":\"den\",\"type\":\"join\"}", join.ToJson(), "the join, as queued");
                var pose = peer.Read();
                Check.Equal("transform", pose["type"].AsString, "then one transform");
                Check.Equal(9.0, pose["data"]["pos"]["x"].AsDouble(), "the newest of the ten poses, in the first one's place");
                Check.Equal("{\"room\":\"den\",\"type\":\"msg\",\"data\":\"after\"}", peer.Read().ToJson(), "then the msg");
                Check.Equal(EventKind.LoggedIn, Next(client).Kind, "logged in");
                Check.Equal(ConnectionState.LoggedIn, client.State, "state");
                client.Close(0.2);
                Check.Equal("logout", peer.Read()["system"].AsString, "Close logs out");
                Check.Equal(ConnectionState.Closed, client.State, "closed");
                Check.That(!client.Msg("den", "late"), "a send after Close is refused");
            }
        }

        static void KeepAliveAndResume()
        {
            using (var server = new FakeServer())
            {
                var client = NewClient(server.Port);
                FakePeer peer;
                // An idle timeout of 0.3 s: a ping every 0.1 s without other sends.
                LogIn(server, client, out peer, 0.3);
                peer.Send(Event("den", "bob", "msg", 7, "\"m7\""));
                var m7 = Next<RoomEvent>(client, EventKind.Msg);
                Check.Equal(7L, m7.Seq.Value, "live msg");
                Check.Equal("ping", peer.Read()["system"].AsString, "a keep-alive ping");
                peer.Send(Pong);
                Check.Equal("ping", peer.Read()["system"].AsString, "and another, a third of the idle timeout later");
                // No answer now: after PongTimeout with no byte received, the client gives the
                // connection up and resumes on a new one.
                var lost = Next<ConnectionLostEvent>(client, EventKind.ConnectionLost);
                Check.That(lost.WillReconnect, "will reconnect");
                var peer2 = server.Accept();
                var resume = peer2.Read();
                Check.Equal("{\"system\":\"resume\",\"options\":{\"token\":\"t1\",\"rooms\":{\"den\":7}}}", resume.ToJson(), "resume with the token and the last seq");
                Check.Equal("ping", peer2.Read()["system"].AsString, "a ping right behind the resume");
                peer2.Send(GrantedFrame("t2", 0.3, true)
                    + "\n" + "{\"info\":\"user\",\"room\":\"den\",\"history\":true,\"payload\":[" + EventBody("bob", "msg", 7, "\"m7\"") + "," + EventBody("bob", "msg", 8, "\"m8\"") + "]}"
                    + "\n" + Event("den", "alice", "back", 9, "\"\"")
                    + "\n" + Pong);
                var back = Next<ReconnectedEvent>(client, EventKind.Reconnected);
                Check.That(back.Resumed, "resumed");
                Check.Equal(1, back.MissedEvents, "one missed event (seq 7 was already seen)");
                Check.Equal(1, back.MissedMsgs, "one missed msg");
                var m8 = Next<RoomEvent>(client, EventKind.Msg);
                Check.Equal(8L, m8.Seq.Value, "m8, once");
                Check.That(m8.IsReplayed && m8.IsHistory, "replayed");
                var backEvent = Next<RoomEvent>(client, EventKind.Back);
                Check.That(!backEvent.IsReplayed, "the back event is live");
                Check.Equal("t2", client.ResumeToken, "the newest token");
                Check.Equal(9L, client.LastSeqs["den"], "last seq");
                Check.Equal("ping", peer2.Read()["system"].AsString, "keep-alive on the new connection");
                Check.That(client.QueuedEvents == 0, "the pongs of keep-alive pings are not events");
                client.Close(0.2);
            }
        }

        static void ExpiredSession()
        {
            using (var server = new FakeServer())
            {
                var client = NewClient(server.Port);
                FakePeer peer;
                LogIn(server, client, out peer);
                peer.Send(Event("lobby", "alice", "join", 1, "\"\""));
                peer.Send(Event("lobby", "alice", "leave", 2, "\"\""));
                peer.Send(Event("den", "alice", "join", 5, "\"\"", false, 2.0));
                peer.Send(Event("den", "bob", "msg", 6, "\"m6\"", false, 2.5));
                for (int i = 0; i < 4; i++)
                {
                    Next(client);
                }
                Check.Equal("den", string.Join(",", client.Rooms), "in den only (left the lobby)");
                peer.Reset();
                Check.Equal(EventKind.ConnectionLost, Next(client).Kind, "lost");
                var peer2 = server.Accept();
                Check.Equal("{\"system\":\"resume\",\"options\":{\"token\":\"t1\",\"rooms\":{\"den\":6}}}", peer2.Read().ToJson(), "resume");
                peer2.Read(); // ping
                peer2.Send("{\"info\":\"error\",\"response\":{\"time\":3.0,\"code\":410,\"msg\":\"Session expired.\",\"detail\":{}}}\n" + Pong);
                var login = peer2.Read();
                Check.Equal("login", login["system"].AsString, "logs in afresh on the same connection");
                // A registered account's login is answered late (its password is hashed off the
                // server's loop): nothing may go out behind the login until its 202.
                Check.That(!peer2.HasData(0.1), "nothing behind the login before its answer");
                peer2.Send(GrantedFrame("t3", 120) + "\n" + Event("lobby", "alice", "join", 12, "\"\""));
                Check.Equal("{\"room\":\"den\",\"type\":\"join\"}", peer2.Read().ToJson(), "joins den again");
                Check.Equal("{\"room\":\"lobby\",\"type\":\"leave\"}", peer2.Read().ToJson(), "leaves the lobby the login put it in");
                Check.Equal("ping", peer2.Read()["system"].AsString, "and pings, to find the end");
                peer2.Send("{\"info\":\"user\",\"room\":\"den\",\"history\":true,\"payload\":[" + EventBody("alice", "join", 5, "\"\"", 2.0)
                    + "," + EventBody("bob", "msg", 6, "\"m6\"", 2.5) + "," + EventBody("alice", "leave", 7, "\"\"", 3.0)
                    + "," + EventBody("bob", "msg", 8, "\"m8\"", 3.1) + "]}"
                    + "\n" + Event("den", "alice", "join", 13, "\"\"", false, 4.0)
                    + "\n" + Event("lobby", "alice", "leave", 14, "\"\"")
                    + "\n" + Pong);
                var back = Next<ReconnectedEvent>(client, EventKind.Reconnected);
                Check.That(!back.Resumed, "not resumed: logged in afresh");
                Check.Equal("den", string.Join(",", back.Rejoined), "rejoined");
                Check.Equal(0, back.Gaps.Length, "no gap: the history still held m6");
                Check.Equal(2, back.MissedEvents, "the leave and m8");
                var leave = Next<RoomEvent>(client, EventKind.Leave);
                Check.That(leave.IsReplayed && leave.Seq == 7, "the session's end, replayed");
                var m8 = Next<RoomEvent>(client, EventKind.Msg);
                Check.That(m8.IsReplayed && m8.Seq == 8, "m8 replayed, m6 not again");
                var join = Next<RoomEvent>(client, EventKind.Join);
                Check.That(join.Room == "den" && join.Seq == 13, "the new join in den; nothing of the lobby");
                Check.Equal("den", string.Join(",", client.Rooms), "still in den only");
                Check.Equal("t3", client.ResumeToken, "the new session's token");
                client.Close(0.2);
            }
        }

        static void FinalRefusals()
        {
            var final = new[]
            {
                UnitTests.Takeover,
                "{\"info\":\"error\",\"response\":{\"time\":1.0,\"code\":413,\"msg\":\"Frame of 70000 bytes is over the limit of 65536 bytes; closing.\",\"detail\":{\"max_frame\":65536}}}",
                UnitTests.Shutdown,
            };
            foreach (var frame in final)
            {
                using (var server = new FakeServer())
                {
                    var client = NewClient(server.Port);
                    FakePeer peer;
                    LogIn(server, client, out peer);
                    peer.Send(frame);
                    peer.Close();
                    var error = Next<ReplyEvent>(client, EventKind.Error);
                    var closed = Next<ClosedEvent>(client, EventKind.Closed);
                    Check.That(closed.Error != null && closed.Error.Code == error.Code, "closed for good by " + error.Code);
                    Check.Equal(ConnectionState.Closed, client.State, "no reconnect after " + error.Code);
                    Check.That(!server.HasConnection(0.2), "no new connection after " + error.Code);
                    client.Close(0.1);
                }
            }
            var comeback = new[]
            {
                "{\"info\":\"error\",\"response\":{\"time\":1.0,\"code\":408,\"msg\":\"Silent for 2 s; closing.\",\"detail\":{}}}",
                "\u0000", // an empty body with a zero header: a broken stream
            };
            foreach (var frame in comeback)
            {
                using (var server = new FakeServer())
                {
                    var client = NewClient(server.Port);
                    FakePeer peer;
                    LogIn(server, client, out peer);
                    if (frame == "\u0000")
                    {
                        peer.SendRaw(new byte[] { 0, 0, 0, 0 });
                    }
                    else
                    {
                        peer.Send(frame);
                        Check.Equal(408, Next<ReplyEvent>(client, EventKind.Error).Code, "the 408 is handed on");
                        peer.Close();
                    }
                    Check.That(Next<ConnectionLostEvent>(client, EventKind.ConnectionLost).WillReconnect, "coming back");
                    Check.Equal("resume", server.Accept().Read()["system"].AsString, "resumes");
                    client.Close(0.1);
                }
            }
        }

        static void RefusedLogin()
        {
            using (var server = new FakeServer())
            {
                var client = NewClient(server.Port);
                client.Connect();
                var peer = server.Accept();
                peer.Read();
                peer.Send("{\"info\":\"error\",\"response\":{\"time\":1.0,\"code\":409,\"msg\":\"User name alice is already logged in.\",\"detail\":{\"user\":\"alice\"}}}");
                var error = Next<ReplyEvent>(client, EventKind.Error);
                Check.Equal(ErrorCode.Conflict, error.ErrorCode, "409");
                Check.Equal(409, Next<ClosedEvent>(client, EventKind.Closed).Error.Code, "closed by the refusal");
                Check.That(!server.HasConnection(0.2), "no second try");
                client.Close(0.1);
            }
        }

        static void LogoutEnds()
        {
            using (var server = new FakeServer())
            {
                var client = NewClient(server.Port);
                FakePeer peer;
                LogIn(server, client, out peer);
                client.Logout();
                Check.That(!client.Msg("den", "x"), "no sends after a logout");
                Check.Equal("logout", peer.Read()["system"].AsString, "logout sent");
                peer.Send("{\"info\":\"system\",\"response\":{\"time\":1.0,\"code\":200,\"msg\":\"Logged out.\",\"detail\":{}}}");
                peer.Close();
                Check.Equal("Logged out.", Next<ReplyEvent>(client, EventKind.Reply).Message, "the reply");
                Check.Equal("logged out", Next<ClosedEvent>(client, EventKind.Closed).Reason, "then the end");
                Check.That(!server.HasConnection(0.2), "no reconnect after a logout");
            }
        }

        static void CloseDuringLogin()
        {
            using (var server = new FakeServer())
            {
                var client = NewClient(server.Port, o => o.ReplyTimeoutSeconds = 30);
                client.Connect();
                client.Join("den");
                var peer = server.Accept();
                Check.Equal("login", peer.Read()["system"].AsString, "login");
                var watch = System.Diagnostics.Stopwatch.StartNew();
                client.Close(0.5);
                Check.That(watch.Elapsed.TotalSeconds < 2, "Close does not wait for the login's answer: " + watch.Elapsed);
                Check.That(peer.IsClosed(), "the connection being set up is closed");
                Check.Equal(ConnectionState.Closed, client.State, "closed");
                Check.Equal("closed", Next<ClosedEvent>(client, EventKind.Closed).Reason, "reason");
                Check.That(client.WaitForEvent(0.2) == null, "nothing after the end");
            }
        }

        static void NobodyListening()
        {
            int port;
            using (var server = new FakeServer())
            {
                port = server.Port;
            }
            var client = NewClient(port);
            client.Connect();
            var closed = Next<ClosedEvent>(client, EventKind.Closed);
            Check.That(closed.Reason.StartsWith("cannot connect to 127.0.0.1:" + port), closed.Reason);
            client.Close(0.1);
        }
    }

    /// <summary>A listening socket on 127.0.0.1:0 that the test answers by hand.</summary>
    public sealed class FakeServer : IDisposable
    {
        readonly TcpListener listener;

        public FakeServer()
        {
            listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            Port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        public int Port { get; }

        public FakePeer Accept()
        {
            var accepting = listener.AcceptTcpClientAsync();
            Check.That(accepting.Wait(5000), "a connection within 5 s");
            return new FakePeer(accepting.Result);
        }

        /// <summary>Whether a connection waits to be accepted within <paramref name="seconds"/>.</summary>
        public bool HasConnection(double seconds)
        {
            return listener.Server.Poll((int)(seconds * 1000000), SelectMode.SelectRead);
        }

        public void Dispose()
        {
            listener.Stop();
        }
    }

    /// <summary>The server's end of one client connection.</summary>
    public sealed class FakePeer
    {
        readonly TcpClient tcp;
        readonly NetworkStream stream;

        public FakePeer(TcpClient tcp)
        {
            this.tcp = tcp;
            tcp.NoDelay = true;
            tcp.ReceiveTimeout = 5000;
            stream = tcp.GetStream();
        }

        /// <summary>The next frame the client sent (within 5 s).</summary>
        public JsonValue Read()
        {
            byte[] header = ReadExactly(4);
            int length = (header[0] << 24) | (header[1] << 16) | (header[2] << 8) | header[3];
            Check.That(length > 0 && length < 1 << 20, "a sane frame length: " + length);
            return JsonValue.Parse(Encoding.UTF8.GetString(ReadExactly(length)));
        }

        byte[] ReadExactly(int count)
        {
            var bytes = new byte[count];
            int have = 0;
            while (have < count)
            {
                int n = stream.Read(bytes, have, count - have);
                Check.That(n > 0, "the client closed the connection");
                have += n;
            }
            return bytes;
        }

        /// <summary>True when the client closed its end (EOF or reset) within 5 s.</summary>
        public bool IsClosed()
        {
            var buffer = new byte[256];
            try
            {
                while (stream.Read(buffer, 0, buffer.Length) > 0)
                {
                    // frames still in flight before the end
                }
                return true;
            }
            catch (System.IO.IOException err)
            {
                var socket = err.InnerException as SocketException;
                return socket != null && socket.SocketErrorCode == SocketError.ConnectionReset;
            }
        }

        public bool HasData(double seconds)
        {
            return tcp.Client.Poll((int)(seconds * 1000000), SelectMode.SelectRead);
        }

        /// <summary>Sends frames: the text's lines, each framed, in one write.</summary>
        public void Send(string lines)
        {
            var all = new List<byte>();
            foreach (var line in lines.Split('\n'))
            {
                all.AddRange(RoomcastClient.Encode(JsonValue.Parse(line)));
            }
            SendRaw(all.ToArray());
        }

        public void SendRaw(byte[] bytes)
        {
            stream.Write(bytes, 0, bytes.Length);
        }

        public void Close()
        {
            tcp.Client.Shutdown(SocketShutdown.Both);
            tcp.Close();
        }

        /// <summary>Ends the connection with a reset, as a failing network does.</summary>
        public void Reset()
        {
            tcp.Client.LingerState = new LingerOption(true, 0);
            tcp.Close();
        }
    }
}
