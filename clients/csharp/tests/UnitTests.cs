// Unit tests with no network: the JSON reader and writer, typed events read from frames
// captured from a running server (protocol.md), poses, and interpolation on injected times.

using System;
using System.Text;

namespace Roomcast.Tests
{
    public static class UnitTests
    {
        public static void RunAll(Runner runner)
        {
            runner.Run("json: scalars", JsonScalars);
            runner.Run("json: strings and escapes", JsonStrings);
            runner.Run("json: numbers keep their text", JsonNumbers);
            runner.Run("json: containers, order, navigation", JsonContainers);
            runner.Run("json: malformed input is refused with a position", JsonMalformed);
            runner.Run("json: nesting is bounded", JsonDepth);
            runner.Run("json: writer", JsonWriter);
            runner.Run("json: captured frames round-trip", JsonCapturedRoundTrip);
            runner.Run("framing: a ping frame as protocol.md shows it", FramingPing);
            runner.Run("events: room events from captured frames", EventsFromFrames);
            runner.Run("events: replies and their codes", EventsReplies);
            runner.Run("poses: wire shape with parts", PoseWireShape);
            runner.Run("poses: reading, Euler rotations, bad poses", PoseParsing);
            runner.Run("poses: quaternion math", QuatMath);
            runner.Run("interpolation: plays back between ticks", Interpolation);
        }

        static JsonValue P(string text)
        {
            return JsonValue.Parse(text);
        }

        static void JsonScalars()
        {
            Check.Equal(JsonKind.Null, P("null").Kind, "null");
            Check.Equal(true, P(" true ").AsBool(), "true with whitespace");
            Check.Equal(false, P("false").AsBool(true), "false");
            Check.Equal(JsonKind.Number, P("-0").Kind, "-0");
            Check.Equal(1.5, P("1.5").AsDouble(), "1.5");
            Check.Equal(1000.0, P("1e3").AsDouble(), "1e3");
            Check.Equal(-0.02, P("-2E-2").AsDouble(), "-2E-2");
            Check.Equal("x", P("\"x\"").AsString, "string");
            Check.Equal(null, P("1").AsString, "a number is not a string");
            Check.Equal(7.0, P("\"7\"").AsDouble(7), "a string is not a number: fallback");
        }

        static void JsonStrings()
        {
            Check.Equal("a\"b\\c/d\b\f\n\r\t", P("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"").AsString, "escapes");
            Check.Equal("café", P("\"caf\\u00e9\"").AsString, "\\u escape");
            Check.Equal("😀", P("\"\\ud83d\\ude00\"").AsString, "surrogate pair");
            Check.Equal("cafe ☕", P("\"cafe ☕\"").AsString, "raw non-ASCII");
            Check.Equal("", P("\"\"").AsString, "empty");
        }

        static void JsonNumbers()
        {
            var big = P("123456789012345678901234567890");
            Check.Equal("123456789012345678901234567890", big.ToJson(), "a big integer is written back as sent");
            long value;
            Check.That(!big.TryGetLong(out value), "a big integer is not a long");
            Check.Equal("1.50", P("1.50").ToJson(), "a float spelling survives");
            Check.Equal("1e999", P("1e999").ToJson(), "out of a double's range: kept as text");
            Check.That(double.IsPositiveInfinity(P("1e999").AsDouble()), "1e999 reads as infinity");
            Check.Equal(0.0, P("1e-999").AsDouble(), "1e-999 reads as 0");
            Check.Equal(5L, P("5").AsLong(), "5");
            Check.Equal(5L, P("5.0").AsLong(), "5.0 is whole");
            Check.Equal(1000L, P("1e3").AsLong(), "1e3 is whole");
            Check.That(!P("5.5").TryGetLong(out value), "5.5 is not whole");
            Check.Equal(long.MaxValue, P("9223372036854775807").AsLong(), "long.MaxValue");
            Check.Equal(-1L, P("\"5\"").AsLong(-1), "a string is not a long");
        }

        static void JsonContainers()
        {
            var v = P("{\"b\":1,\"a\":[true,{\"c\":null}],\"b\":2}");
            Check.Equal("b,a", string.Join(",", v.Keys), "key order of first appearance");
            Check.Equal(2L, v["b"].AsLong(), "a repeated key keeps the last value");
            Check.Equal(JsonKind.Null, v["a"][1]["c"].Kind, "nested null");
            Check.That(v["a"][1]["missing"].IsUndefined, "a missing key is undefined");
            Check.That(v["a"][7].IsUndefined, "an index out of range is undefined");
            Check.That(v["b"]["x"][0]["y"].IsUndefined, "indexing a number is undefined, not an exception");
            Check.Equal(2.5, v["nope"]["x"].AsDouble(2.5), "fallback through a missing path");
            Check.Equal(2, v.Count, "object count");
            Check.Equal(0, v["b"].Count, "a number has no items");
            Check.That(v.Has("a") && !v.Has("c"), "Has");
            Check.Equal(0, P("[]").Count, "empty array");
            Check.Equal(0, P("{}").Count, "empty object");
            Check.That(JsonValue.DeepEquals(P("{\"x\":1,\"y\":[2]}"), P("{\"y\":[2.0],\"x\":1.0}")), "deep equality ignores key order and number spelling");
            Check.That(!JsonValue.DeepEquals(P("[1,2]"), P("[2,1]")), "arrays are ordered");
        }

        static void JsonMalformed()
        {
            string[] bad =
            {
                "", "   ", "{", "{\"a\":}", "{\"a\" 1}", "{a:1}", "[1,]", "[1 2]", "01", "1.", "-", "1e", "+1", ".5",
                "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"a\u0001b\"", "tru", "nul", "NaN", "Infinity", "{} x", "[1]]",
                "{\"a\":1,}", "'a'",
            };
            foreach (var text in bad)
            {
                JsonValue value;
                string error;
                Check.That(!JsonValue.TryParse(text, out value, out error), "refused: " + text);
                Check.That(error != null && error.Contains("at character"), "the error says where: " + error);
            }
            try
            {
                JsonValue.Parse("[1,\n2,}");
                Check.That(false, "a trailing comma must throw");
            }
            catch (JsonException err)
            {
                Check.Equal(6, err.Position, "position of the fault");
            }
        }

        static void JsonDepth()
        {
            string ok = new string('[', 200) + new string(']', 200);
            Check.Equal(1, P(ok).Count, "200 levels read");
            string deep = new string('[', 100000) + new string(']', 100000);
            JsonValue value;
            string error;
            Check.That(!JsonValue.TryParse(deep, out value, out error), "100000 levels refused, not a stack overflow");
            Check.That(error.Contains("nested deeper"), error);
        }

        static void JsonWriter()
        {
            var obj = JsonValue.NewObject()
                .Set("s", "q\"b\\n\nt\t\u0001é☕")
                .Set("i", 42)
                .Set("l", 9007199254740993L)
                .Set("f", 1.6f)
                .Set("d", 0.1 + 0.2)
                .Set("b", true)
                .Set("n", JsonValue.Null)
                .Set("a", JsonValue.NewArray(1, "two", JsonValue.NewArray()));
            string text = obj.ToJson();
            Check.Equal("{\"s\":\"q\\\"b\\\\n\\nt\\t\\u0001é☕\",\"i\":42,\"l\":9007199254740993,\"f\":1.6,\"d\":0.30000000000000004,"
                + "\"b\":true,\"n\":null,\"a\":[1,\"two\",[]]}", text, "compact JSON");
            Check.That(JsonValue.DeepEquals(obj, P(text)), "reads back the same");
            Check.Equal(0.30000000000000004, P(text)["d"].AsDouble(), "a double round-trips exactly");
            obj.Set("i", 43);
            Check.That(obj.ToJson().StartsWith("{\"s\":") && obj.ToJson().Contains("\"i\":43,\"l\""), "Set replaces in place");
            Check.Throws<JsonException>(() => JsonValue.FromDouble(double.NaN), "NaN has no JSON");
            Check.Throws<JsonException>(() => JsonValue.FromFloat(float.PositiveInfinity), "infinity has no JSON");
            Check.Throws<JsonException>(() => JsonValue.NewArray(JsonValue.Undefined).ToJson(), "undefined has no JSON");
            Check.Throws<InvalidOperationException>(() => P("[]").Set("a", 1), "Set on an array");
            Check.Equal("null", JsonValue.FromString(null).ToJson(), "a null string is JSON null");
            Check.Equal("\"\\u001f\"", ((JsonValue)"\u001f").ToJson(), "control characters escaped");
        }

        // Frames as the server sent them (protocol.md); compact, so parse and write give the
        // same text.
        public const string ResumeReply = "{\"info\":\"system\",\"response\":{\"time\":1796130612.6427016,\"code\":202,\"msg\":\"Access granted.\",\"detail\":{\"idle_timeout\":120.0,\"resume\":\"83cc9ef082bd9ddfd4f2afa36f2ed684\",\"resumed\":true,\"user\":\"alice\"}}}";
        public const string Replay = "{\"info\":\"user\",\"room\":\"lobby\",\"history\":true,\"payload\":[{\"time\":1796130612.1410131,\"user\":\"alice\",\"type\":\"away\",\"seq\":3,\"data\":\"\"},{\"time\":1796130612.341527,\"user\":\"bob\",\"type\":\"msg\",\"seq\":4,\"data\":\"are you there?\"}]}";
        public const string Tick = "{\"info\":\"user\",\"room\":\"vr\",\"payload\":[{\"time\":1795271062.6228678,\"user\":\"alice\",\"type\":\"transform\",\"data\":{\"pos\":{\"x\":2.0,\"y\":1.6,\"z\":-2.0},\"rot\":{\"x\":0.0,\"y\":0.7071,\"z\":0.0,\"w\":0.7071}}},{\"time\":1795271062.6228678,\"user\":\"bob\",\"type\":\"transform\",\"data\":{\"pos\":{\"x\":1.0,\"y\":1.7,\"z\":0.25},\"rot\":{\"x\":0.0,\"y\":180.0,\"z\":0.0}}}]}";
        public const string ListFrame = "{\"info\":\"user\",\"room\":\"lobby\",\"payload\":[{\"time\":1796130611.2384043,\"user\":\"alice\",\"type\":\"list\",\"data\":[\"alice\",\"bob\"]}]}";
        public const string NotInRoom = "{\"info\":\"error\",\"response\":{\"time\":1795269278.1499565,\"code\":404,\"msg\":\"You are not in room \\\"nowhere\\\".\",\"detail\":{\"room\":\"nowhere\",\"type\":\"leave\"}}}";
        public const string Takeover = "{\"info\":\"error\",\"response\":{\"time\":1796130615.550083,\"code\":409,\"msg\":\"Session resumed on another connection; closing.\",\"detail\":{}}}";
        public const string AlreadyIn = "{\"info\":\"error\",\"response\":{\"time\":1795269269.7237904,\"code\":409,\"msg\":\"You are already in room \\\"lobby\\\".\",\"detail\":{\"room\":\"lobby\",\"type\":\"join\"}}}";
        public const string Shutdown = "{\"info\":\"error\",\"response\":{\"time\":1795269355.3109083,\"code\":503,\"msg\":\"Server shutting down.\",\"detail\":{}}}";
        public const string Gap = "{\"info\":\"error\",\"response\":{\"time\":1796130615.249466,\"code\":410,\"msg\":\"Missed events are no longer kept; the room's whole kept history follows.\",\"detail\":{\"room\":\"lobby\"}}}";
        public const string Game = "{\"info\":\"user\",\"room\":\"ttt\",\"payload\":[{\"time\":1795269403.7335548,\"user\":\"alice\",\"type\":\"game\",\"data\":{\"board\":[\"O\",\"O\",\"X\",null,\"X\",null,\"X\",null,null],\"forfeit\":null,\"game\":\"tictactoe\",\"line\":[2,4,6],\"moves\":5,\"players\":{\"O\":\"bob\",\"X\":\"alice\"},\"status\":\"won\",\"turn\":null,\"winner\":\"alice\"}}]}";

        static void JsonCapturedRoundTrip()
        {
            foreach (var frame in new[] { ResumeReply, Replay, Tick, ListFrame, NotInRoom, Takeover, Shutdown, Gap, Game })
            {
                Check.Equal(frame, P(frame).ToJson(), "round trip");
            }
        }

        static void FramingPing()
        {
            byte[] frame = RoomcastClient.Encode(P("{\"system\":\"ping\"}"));
            Check.Equal("00-00-00-11", BitConverter.ToString(frame, 0, 4), "header: 17 bytes, big-endian");
            Check.Equal("{\"system\":\"ping\"}", Encoding.UTF8.GetString(frame, 4, frame.Length - 4), "body");
            byte[] utf8 = RoomcastClient.Encode(P("\"☕\""));
            Check.Equal(5, utf8[3], "the length counts UTF-8 bytes, not characters");
        }

        static RoomEvent[] Events(string text)
        {
            var frame = P(text);
            var events = new RoomEvent[frame["payload"].Count];
            for (int i = 0; i < events.Length; i++)
            {
                events[i] = new RoomEvent(frame["room"].AsString, frame["payload"][i], frame["history"].AsBool(), false);
            }
            return events;
        }

        static void EventsFromFrames()
        {
            var replay = Events(Replay);
            Check.Equal(2, replay.Length, "every event of the payload");
            Check.Equal(EventKind.Away, replay[0].Kind, "away");
            Check.Equal(3L, replay[0].Seq.Value, "seq");
            Check.Equal(EventKind.Msg, replay[1].Kind, "msg");
            Check.Equal("are you there?", replay[1].Text, "msg text");
            Check.That(replay[1].IsHistory, "history flag");
            Check.Equal(1796130612.341527, replay[1].Time, "time");

            var tick = Events(Tick);
            Check.Equal(EventKind.Transform, tick[0].Kind, "transform");
            Check.That(!tick[0].Seq.HasValue, "a transform has no seq");
            var alice = tick[0].Pose;
            Check.Equal(new Vec3(2f, 1.6f, -2f), alice.Head.Position, "alice's position");
            Check.Equal(new Quat(0f, 0.7071f, 0f, 0.7071f), alice.Head.Rotation, "alice's quaternion");
            Check.Equal(0, alice.Parts.Count, "no parts");
            var bob = tick[1].Pose.Head.Rotation; // Euler y = 180
            Check.Near(1.0, Math.Abs(bob.Y), 1e-6, "Euler 180 about y: |y|");
            Check.Near(0.0, bob.W, 1e-6, "Euler 180 about y: w");

            var list = Events(ListFrame)[0];
            Check.Equal("alice,bob", string.Join(",", list.Members), "members");
            Check.That(list.Pose == null && list.Text == null, "typed accessors of other kinds are null");

            var game = Events(Game)[0];
            Check.Equal(EventKind.Game, game.Kind, "game");
            Check.Equal("alice", game.Data["winner"].AsString, "game state");
            Check.Equal(4L, game.Data["line"][1].AsLong(), "winning line");

            var future = new RoomEvent("r", P("{\"time\":1.0,\"user\":\"u\",\"type\":\"dance\",\"seq\":9,\"data\":{}}"), false, false);
            Check.Equal(EventKind.OtherRoomEvent, future.Kind, "an unknown type is kept, not dropped");
            Check.Equal("dance", future.Type, "its type");
        }

        static ReplyEvent Reply(string text)
        {
            var frame = P(text);
            return new ReplyEvent(frame["response"], frame["info"].AsString == "error");
        }

        static void EventsReplies()
        {
            var granted = Reply(ResumeReply);
            Check.Equal(EventKind.Reply, granted.Kind, "a 2xx is a reply");
            Check.Equal(ErrorCode.Accepted, granted.ErrorCode, "202");
            Check.Equal("83cc9ef082bd9ddfd4f2afa36f2ed684", granted.Detail["resume"].AsString, "token");

            var missing = Reply(NotInRoom);
            Check.Equal(EventKind.Error, missing.Kind, "an error");
            Check.Equal(ErrorCode.NotInRoom, missing.ErrorCode, "404");
            Check.Equal("nowhere", missing.Room, "room of the refused message");
            Check.Equal("leave", missing.Type, "type of the refused message");
            Check.That(!missing.ClosesConnection, "a 404 keeps the connection");

            Check.That(Reply(Takeover).ClosesConnection, "409 takeover closes");
            Check.That(!Reply(AlreadyIn).ClosesConnection, "409 already in the room does not");
            Check.That(Reply(Shutdown).IsShutdown && Reply(Shutdown).ClosesConnection, "503 shutdown");
            Check.Equal("lobby", Reply(Gap).Room, "410 gap names its room");
            var odd = Reply("{\"info\":\"error\",\"response\":{\"code\":418,\"msg\":\"teapot\",\"detail\":5}}");
            Check.Equal(ErrorCode.None, odd.ErrorCode, "a code outside the table");
            Check.That(odd.Detail.IsObject && odd.Detail.Count == 0, "detail is always an object");
        }

        static void PoseWireShape()
        {
            var pose = new AvatarPose(new Pose(new Vec3(1f, 1.6f, -2f), new Quat(0f, 0.7071f, 0f, 0.7071f)))
                .With("left_hand", new Pose(new Vec3(-0.2f, 1.1f, -1.7f), Quat.Identity))
                .With("right_hand", new Pose(new Vec3(0.2f, 1.1f, -1.7f), Quat.Identity));
            Check.Equal("{\"pos\":{\"x\":1,\"y\":1.6,\"z\":-2},\"rot\":{\"x\":0,\"y\":0.7071,\"z\":0,\"w\":0.7071},"
                + "\"parts\":{\"left_hand\":{\"pos\":{\"x\":-0.2,\"y\":1.1,\"z\":-1.7},\"rot\":{\"x\":0,\"y\":0,\"z\":0,\"w\":1}},"
                + "\"right_hand\":{\"pos\":{\"x\":0.2,\"y\":1.1,\"z\":-1.7},\"rot\":{\"x\":0,\"y\":0,\"z\":0,\"w\":1}}}}",
                pose.ToJson().ToJson(), "head as pos/rot, hands under parts, floats written short");
            var back = AvatarPose.Parse(P(pose.ToJson().ToJson()));
            Check.Equal(pose.Head, back.Head, "head reads back");
            Check.Equal(pose.Parts["left_hand"], back.Parts["left_hand"], "left hand reads back");
            Check.Equal(pose.Parts["right_hand"], back.Parts["right_hand"], "right hand reads back");
            Check.Equal("{\"pos\":{\"x\":0,\"y\":0,\"z\":0},\"rot\":{\"x\":0,\"y\":0,\"z\":0,\"w\":1}}",
                new AvatarPose(Pose.Identity).ToJson().ToJson(), "no parts key without parts");
        }

        static void PoseParsing()
        {
            Check.That(AvatarPose.Parse(P("{\"pos\":{\"x\":1,\"y\":2},\"rot\":{\"x\":0,\"y\":0,\"z\":0}}")) == null, "missing pos.z");
            Check.That(AvatarPose.Parse(P("{\"pos\":{\"x\":1,\"y\":2,\"z\":\"3\"},\"rot\":{\"x\":0,\"y\":0,\"z\":0}}")) == null, "pos.z a string");
            Check.That(AvatarPose.Parse(P("{\"pos\":{\"x\":1,\"y\":2,\"z\":3},\"rot\":{\"x\":0,\"y\":0,\"z\":0,\"w\":null}}")) == null, "rot.w null");
            Check.That(AvatarPose.Parse(P("[1,2,3]")) == null, "not an object");
            var parts = JsonValue.NewObject();
            for (int i = 0; i < 40; i++)
            {
                parts.Set("p" + i, Pose.Identity.ToJson());
            }
            parts.Set("broken", P("{\"pos\":1}"));
            var many = AvatarPose.Parse(Pose.Identity.ToJson().Set("parts", parts));
            Check.Equal(AvatarPose.MaxParts, many.Parts.Count, "parts are bounded");
            Check.That(!many.Parts.ContainsKey("broken"), "a broken part is skipped");
        }

        static void QuatMath()
        {
            var yaw = Quat.FromEulerDegrees(0, 90, 0);
            Check.Near(0.70710678, yaw.Y, 1e-6, "90 about y: y");
            Check.Near(0.70710678, yaw.W, 1e-6, "90 about y: w");
            var pitch = Quat.FromEulerDegrees(90, 0, 0);
            Check.Near(0.70710678, pitch.X, 1e-6, "90 about x: x");
            // Unity applies z, then x, then y: q = qy * qx * qz.
            var all = Quat.FromEulerDegrees(30, 40, 50);
            var expected = Mul(Mul(Quat.FromEulerDegrees(0, 40, 0), Quat.FromEulerDegrees(30, 0, 0)), Quat.FromEulerDegrees(0, 0, 50));
            Check.Near(expected.X, all.X, 1e-6, "zxy order: x");
            Check.Near(expected.Y, all.Y, 1e-6, "zxy order: y");
            Check.Near(expected.Z, all.Z, 1e-6, "zxy order: z");
            Check.Near(expected.W, all.W, 1e-6, "zxy order: w");

            var half = Quat.Slerp(Quat.Identity, yaw, 0.5f);
            var yaw45 = Quat.FromEulerDegrees(0, 45, 0);
            Check.Near(yaw45.Y, half.Y, 1e-5, "slerp halfway to 90 is 45: y");
            Check.Near(yaw45.W, half.W, 1e-5, "slerp halfway to 90 is 45: w");
            var negated = new Quat(-yaw.X, -yaw.Y, -yaw.Z, -yaw.W);
            var shortWay = Quat.Slerp(Quat.Identity, negated, 0.5f);
            Check.Near(45.0, AngleDegrees(Quat.Identity, shortWay), 1e-3, "slerp takes the shorter arc");
            Check.Equal(Quat.Identity, new Quat(0, 0, 0, 0).Normalized(), "a zero quaternion normalizes to identity");
        }

        static Quat Mul(Quat a, Quat b)
        {
            return new Quat(
                a.W * b.X + a.X * b.W + a.Y * b.Z - a.Z * b.Y,
                a.W * b.Y - a.X * b.Z + a.Y * b.W + a.Z * b.X,
                a.W * b.Z + a.X * b.Y - a.Y * b.X + a.Z * b.W,
                a.W * b.W - a.X * b.X - a.Y * b.Y - a.Z * b.Z);
        }

        static double AngleDegrees(Quat a, Quat b)
        {
            double dot = Math.Abs(a.X * b.X + a.Y * b.Y + a.Z * b.Z + a.W * b.W);
            return 2 * Math.Acos(Math.Min(1, dot)) * 180 / Math.PI;
        }

        static AvatarPose At(float x)
        {
            return new AvatarPose(new Pose(new Vec3(x, 1.6f, 0), Quat.Identity)).With("left_hand", new Pose(new Vec3(x, 1f, 0), Quat.Identity));
        }

        static void Interpolation()
        {
            var buffer = new PoseInterpolator { Delay = 0.1 };
            Check.That(buffer.Sample(0) == null, "nothing before the first sample");
            // Ticks 50 ms apart on the server's clock; the second arrives 10 ms late.
            buffer.Add(100.00, At(0), 5.00);
            buffer.Add(100.05, At(1), 5.06);
            buffer.Add(100.10, At(2), 5.10);
            // Offset server - local = 95.0 (the fastest samples); playback at local 5.125 is
            // server 100.025: halfway between the first two ticks.
            var mid = buffer.Sample(5.125);
            Check.Near(0.5, mid.Head.Position.X, 1e-4, "halfway between the first two ticks");
            Check.Near(0.5, mid.Parts["left_hand"].Position.X, 1e-4, "parts are blended too");
            Check.Near(1.8, buffer.Sample(5.19).Head.Position.X, 1e-4, "80% of the way to the third tick");
            Check.Equal(2f, buffer.Sample(9.0).Head.Position.X, "past the newest: holds it, never guesses ahead");
            Check.Equal(0f, buffer.Sample(1.0).Head.Position.X, "before the oldest: the oldest");
            buffer.Add(100.05, At(9), 5.2);
            Check.Equal(2f, buffer.Latest.Head.Position.X, "an older tick is ignored");
            for (int i = 3; i < 20; i++)
            {
                buffer.Add(100 + i * 0.05, At(i), 5 + i * 0.05);
            }
            Check.Equal(PoseInterpolator.Capacity, buffer.Count, "bounded");
            Check.Near(18.5, buffer.Sample(5 + 0.95 + 0.025 + 0.1 - 0.05).Head.Position.X, 1e-3, "after wrapping around");
            buffer.Clear();
            Check.That(buffer.Sample(6) == null && buffer.Count == 0, "cleared");
        }
    }
}
