// roomcast C# client: what the server says, as typed events, and the codes it uses
// (protocol.md §2 and §4).

using System;
using System.Collections.Generic;

namespace Roomcast
{
    /// <summary>What an event is about. Room events first, then replies, then the client's own
    /// connection events.</summary>
    public enum EventKind
    {
        /// <summary>Someone (you too) joined a room. History event.</summary>
        Join,
        /// <summary>Someone (you too) left a room, or their session ended. History event.</summary>
        Leave,
        /// <summary>The members of a room (to you only: after your join, or a List request).</summary>
        List,
        /// <summary>A message; <see cref="RoomEvent.Data"/> is any JSON. History event.</summary>
        Msg,
        /// <summary>A user's latest pose, on the room's tick; see <see cref="RoomEvent.Pose"/>.</summary>
        Transform,
        /// <summary>A game's whole state after a command (protocol.md §3.10). History event.</summary>
        Game,
        /// <summary>A user's connection dropped; their session waits for a resume. History event.</summary>
        Away,
        /// <summary>A user resumed their session. History event.</summary>
        Back,
        /// <summary>A room event of a type this client does not know (newer servers may add some).</summary>
        OtherRoomEvent,
        /// <summary>A success reply (200..299): pong, rooms, logged out, ...</summary>
        Reply,
        /// <summary>An error reply (400..599), with its <see cref="ErrorCode"/>.</summary>
        Error,
        /// <summary>Login (or a resume) was accepted: 202.</summary>
        LoggedIn,
        /// <summary>The connection was lost; <see cref="ConnectionLostEvent.WillReconnect"/> says
        /// whether the client is coming back on its own.</summary>
        ConnectionLost,
        /// <summary>The client is back on a new connection, with the missed events following.</summary>
        Reconnected,
        /// <summary>The client is finished: closed, logged out, refused for good, or gave up.
        /// Always the last event.</summary>
        Closed,
    }

    /// <summary>The codes of protocol.md §4.</summary>
    public enum ErrorCode
    {
        None = 0,
        Ok = 200,
        Accepted = 202,
        BadRequest = 400,
        NotLoggedIn = 401,
        Forbidden = 403,
        NotInRoom = 404,
        TimedOut = 408,
        Conflict = 409,
        Gone = 410,
        TooLarge = 413,
        Invalid = 422,
        RateLimited = 429,
        Unavailable = 503,
    }

    /// <summary>Anything the client hands the game loop.</summary>
    public abstract class RoomcastEvent
    {
        public abstract EventKind Kind { get; }
    }

    /// <summary>One event of a room (protocol.md §2.3). A frame may carry several; each becomes
    /// its own <see cref="RoomEvent"/>, in order.</summary>
    public sealed class RoomEvent : RoomcastEvent
    {
        readonly EventKind kind;

        public RoomEvent(string room, JsonValue evt, bool history, bool replayed)
        {
            Room = room;
            User = evt["user"].AsString ?? "";
            Type = evt["type"].AsString ?? "";
            Time = evt["time"].AsDouble();
            long seq;
            Seq = evt["seq"].TryGetLong(out seq) ? seq : (long?)null;
            Data = evt["data"];
            IsHistory = history;
            IsReplayed = replayed;
            kind = KindOf(Type);
        }

        public override EventKind Kind { get { return kind; } }

        /// <summary>The room the event belongs to.</summary>
        public string Room { get; }
        /// <summary>Who caused it (for a list, and a game state sent to a joiner: you).</summary>
        public string User { get; }
        /// <summary>The type as sent: join, leave, list, msg, transform, game, away, back, ...</summary>
        public string Type { get; }
        /// <summary>Server time, UNIX seconds.</summary>
        public double Time { get; }
        /// <summary>The event's number in its room's history (protocol.md §9.1); null on state
        /// (transform, list, a game state sent to a joiner).</summary>
        public long? Seq { get; }
        /// <summary>The data as sent: "" for join/leave/away/back, names for list, any JSON for msg.</summary>
        public JsonValue Data { get; }
        /// <summary>From a history frame: a joiner's backlog, a history query's answer, or a
        /// replay after a reconnect. Events that happened before you saw them live.</summary>
        public bool IsHistory { get; }
        /// <summary>Missed while the connection was down, and replayed after the reconnect.</summary>
        public bool IsReplayed { get; }

        /// <summary>For a list event: the members, sorted; otherwise null.</summary>
        public string[] Members
        {
            get
            {
                if (kind != EventKind.List)
                {
                    return null;
                }
                var names = new List<string>();
                foreach (var item in Data.Items)
                {
                    if (item.IsString)
                    {
                        names.Add(item.AsString);
                    }
                }
                return names.ToArray();
            }
        }

        /// <summary>For a transform event: the head pose and any parts; otherwise (or if the
        /// data is not a pose) null. Read once, on first use.</summary>
        public AvatarPose Pose
        {
            get
            {
                if (kind == EventKind.Transform && !poseRead)
                {
                    pose = AvatarPose.Parse(Data);
                    poseRead = true;
                }
                return pose;
            }
        }

        AvatarPose pose;
        bool poseRead;

        /// <summary>For a msg whose data is a string: the string; otherwise null.</summary>
        public string Text
        {
            get { return kind == EventKind.Msg ? Data.AsString : null; }
        }

        public override string ToString()
        {
            return "#" + Room + " " + Type + " " + User + (Seq.HasValue ? " seq " + Seq.Value : "")
                + (IsReplayed ? " (replayed)" : IsHistory ? " (history)" : "") + " " + Data;
        }

        static EventKind KindOf(string type)
        {
            switch (type)
            {
                case "join": return EventKind.Join;
                case "leave": return EventKind.Leave;
                case "list": return EventKind.List;
                case "msg": return EventKind.Msg;
                case "transform": return EventKind.Transform;
                case "game": return EventKind.Game;
                case "away": return EventKind.Away;
                case "back": return EventKind.Back;
                default: return EventKind.OtherRoomEvent;
            }
        }
    }

    /// <summary>A system reply (2xx) or an error (4xx, 5xx): protocol.md §2.1, §2.2.</summary>
    public sealed class ReplyEvent : RoomcastEvent
    {
        public ReplyEvent(JsonValue response, bool isError)
        {
            long code;
            Code = response["code"].TryGetLong(out code) ? (int)code : 0;
            Message = response["msg"].AsString ?? "";
            Detail = response["detail"].IsObject ? response["detail"] : JsonValue.NewObject();
            Time = response["time"].AsDouble();
            IsError = isError;
        }

        public override EventKind Kind { get { return IsError ? EventKind.Error : EventKind.Reply; } }

        public int Code { get; }
        /// <summary>The code as a name (<see cref="ErrorCode.None"/> for a code not in the table).</summary>
        public ErrorCode ErrorCode
        {
            get { return Enum.IsDefined(typeof(ErrorCode), Code) ? (ErrorCode)Code : ErrorCode.None; }
        }
        /// <summary>For people. Branch on <see cref="Code"/> and <see cref="Detail"/>, not on this.</summary>
        public string Message { get; }
        /// <summary>Always an object: <c>{"room":R,"type":K}</c> for a room message's error,
        /// <c>{"user":U}</c> for a login's, rooms for a rooms reply, ...</summary>
        public JsonValue Detail { get; }
        public double Time { get; }
        public bool IsError { get; }
        /// <summary>The room of the message this answers, if any.</summary>
        public string Room { get { return Detail["room"].AsString; } }
        /// <summary>The type of the room message this answers (msg, join, ...), if any.</summary>
        public string Type { get { return Detail["type"].AsString; } }

        /// <summary>The server closes the connection after this reply (408, 413, 400 for a
        /// zero-length frame aside, 409 takeover, 503 without a room).</summary>
        public bool ClosesConnection
        {
            get
            {
                bool aboutSomething = Detail.Has("room") || Detail.Has("user");
                switch (Code)
                {
                    case 408:
                    case 413:
                        return true;
                    case 409:
                    case 503:
                        return !aboutSomething;
                    default:
                        return false;
                }
            }
        }

        /// <summary>The server's fixed text for its shutdown (protocol.md §2.2).</summary>
        public bool IsShutdown { get { return Code == 503 && Message == "Server shutting down."; } }

        public override string ToString()
        {
            return Code + " " + Message + " " + Detail;
        }
    }

    /// <summary>202 "Access granted." for a login or a resume.</summary>
    public sealed class LoggedInEvent : RoomcastEvent
    {
        public LoggedInEvent(string user, double idleTimeout, bool resumed)
        {
            User = user;
            IdleTimeout = idleTimeout;
            Resumed = resumed;
        }

        public override EventKind Kind { get { return EventKind.LoggedIn; } }
        /// <summary>The name as the server knows it.</summary>
        public string User { get; }
        /// <summary>Seconds the connection may stay silent (0: no limit). The client pings on its own.</summary>
        public double IdleTimeout { get; }
        public bool Resumed { get; }
    }

    /// <summary>The connection broke.</summary>
    public sealed class ConnectionLostEvent : RoomcastEvent
    {
        public ConnectionLostEvent(string reason, bool willReconnect)
        {
            Reason = reason;
            WillReconnect = willReconnect;
        }

        public override EventKind Kind { get { return EventKind.ConnectionLost; } }
        public string Reason { get; }
        /// <summary>True: a <see cref="ReconnectedEvent"/> (or a <see cref="ClosedEvent"/> if
        /// every attempt fails) follows. Sends wait meanwhile.</summary>
        public bool WillReconnect { get; }
    }

    /// <summary>Back on a new connection. The events missed meanwhile follow it, marked
    /// <see cref="RoomEvent.IsReplayed"/>; none is lost or repeated unless a room is listed
    /// in <see cref="Gaps"/>.</summary>
    public sealed class ReconnectedEvent : RoomcastEvent
    {
        public ReconnectedEvent(bool resumed, int missedEvents, int missedMsgs, string[] gaps, string[] rejoined, int attempts, double downtime)
        {
            Resumed = resumed;
            MissedEvents = missedEvents;
            MissedMsgs = missedMsgs;
            Gaps = gaps;
            Rejoined = rejoined;
            Attempts = attempts;
            Downtime = downtime;
        }

        public override EventKind Kind { get { return EventKind.Reconnected; } }
        /// <summary>True: the session was resumed. False: it had expired (410 "Session
        /// expired."), so the client logged in afresh and joined its rooms again.</summary>
        public bool Resumed { get; }
        /// <summary>History events replayed (msg, join, leave, game, away, back).</summary>
        public int MissedEvents { get; }
        /// <summary>Msg events among them.</summary>
        public int MissedMsgs { get; }
        /// <summary>Rooms whose missed events were no longer kept: their whole kept history
        /// follows instead (as history, not replayed), so some events may be missing there.</summary>
        public string[] Gaps { get; }
        /// <summary>Rooms joined again after a fresh login (empty after a resume).</summary>
        public string[] Rejoined { get; }
        /// <summary>Connections tried.</summary>
        public int Attempts { get; }
        /// <summary>Seconds from the loss to being back.</summary>
        public double Downtime { get; }
    }

    /// <summary>The end: nothing more comes, and sends are dropped.</summary>
    public sealed class ClosedEvent : RoomcastEvent
    {
        public ClosedEvent(string reason, ReplyEvent error)
        {
            Reason = reason;
            Error = error;
        }

        public override EventKind Kind { get { return EventKind.Closed; } }
        public string Reason { get; }
        /// <summary>The error that ended it (a refused login, 409 takeover, 413, 503
        /// shutdown), or null.</summary>
        public ReplyEvent Error { get; }
    }
}
