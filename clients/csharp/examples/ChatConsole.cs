// A tiny terminal chat over roomcast, on the C# client. Run it in two terminals:
//
//   mcs -out:ChatConsole.exe examples/ChatConsole.cs Roomcast/*.cs
//   mono ChatConsole.exe --user alice            (dotnet: put the files in a console project)
//   mono ChatConsole.exe --user bob --room lobby --host 127.0.0.1 --port 42069
//
// Lines you type go to the current room. /join ROOM (and make it current), /leave ROOM,
// /who, /quit (or end of input). A lost connection is resumed on its own, and the missed
// messages are shown marked "(missed)".
//
// Two threads: the main one reads the keyboard and sends; a printer thread takes the client's
// events and prints them. A game would drain the same queue once per frame instead.

using System;
using System.Threading;
using Roomcast;

public static class ChatConsole
{
    public static int Main(string[] args)
    {
        // UTF-8 both ways whatever the locale says (a pipe in CI has none): chat carries ☕.
        Console.SetOut(new System.IO.StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false)) { AutoFlush = true });
        var input = new System.IO.StreamReader(Console.OpenStandardInput(), new System.Text.UTF8Encoding(false));
        string host = "127.0.0.1", user = null, room = "lobby";
        int port = 42069;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--host": host = args[i + 1]; break;
                case "--port":
                    if (!int.TryParse(args[i + 1], out port) || port < 1 || port > 65535)
                    {
                        Console.Error.WriteLine("--port needs a number from 1 to 65535, got " + args[i + 1]);
                        return 2;
                    }
                    break;
                case "--user": user = args[i + 1]; break;
                case "--room": room = args[i + 1]; break;
                default:
                    Console.Error.WriteLine("unknown option " + args[i]);
                    return 2;
            }
        }
        if (user == null)
        {
            Console.Error.WriteLine("usage: ChatConsole.exe --user NAME [--room ROOM] [--host H] [--port P]");
            return 2;
        }

        var client = new RoomcastClient(new RoomcastOptions { Host = host, Port = port, User = user });
        client.Connect();
        if (room != "lobby")
        {
            client.Join(room);
        }
        var current = room;
        var printer = new Thread(() => Print(client)) { IsBackground = true };
        printer.Start();

        string line;
        while ((line = input.ReadLine()) != null && client.State != ConnectionState.Closed)
        {
            line = line.Trim();
            if (line.Length == 0)
            {
                continue;
            }
            if (!line.StartsWith("/"))
            {
                client.Msg(current, line);
                continue;
            }
            var parts = line.Split(new[] { ' ' }, 2);
            string arg = parts.Length > 1 ? parts[1].Trim() : "";
            switch (parts[0])
            {
                case "/join":
                    client.Join(arg);
                    current = arg;
                    break;
                case "/leave":
                    client.Leave(arg);
                    break;
                case "/who":
                    client.List(current);
                    break;
                case "/quit":
                    line = null;
                    break;
                default:
                    Say("! commands: /join ROOM, /leave ROOM, /who, /quit");
                    break;
            }
            if (line == null)
            {
                break;
            }
        }
        client.Close(); // logs out: the others see a leave at once
        printer.Join(2000);
        Say("bye");
        return 0;
    }

    static readonly object ConsoleLock = new object();

    static void Say(string text)
    {
        lock (ConsoleLock)
        {
            Console.WriteLine(text);
            Console.Out.Flush();
        }
    }

    static void Print(RoomcastClient client)
    {
        while (true)
        {
            var next = client.WaitForEvent(1.0);
            if (next == null)
            {
                continue;
            }
            string text = Format(next);
            if (text != null)
            {
                Say(text);
            }
            if (next.Kind == EventKind.Closed)
            {
                return;
            }
        }
    }

    static string Format(RoomcastEvent next)
    {
        switch (next.Kind)
        {
            case EventKind.Msg:
                var msg = (RoomEvent)next;
                string said = msg.Text ?? msg.Data.ToJson();
                return "#" + msg.Room + " " + (msg.IsReplayed ? "(missed) " : msg.IsHistory ? "(earlier) " : "") + "<" + msg.User + "> " + said;
            case EventKind.Join:
            case EventKind.Leave:
            case EventKind.Away:
            case EventKind.Back:
                var e = (RoomEvent)next;
                if (e.IsHistory)
                {
                    return null;
                }
                string verb = e.Kind == EventKind.Join ? "joined" : e.Kind == EventKind.Leave ? "left" : e.Kind == EventKind.Away ? "is away from" : "is back in";
                return "* " + e.User + " " + verb + " #" + e.Room;
            case EventKind.List:
                var list = (RoomEvent)next;
                return "#" + list.Room + " * members: " + string.Join(", ", list.Members);
            case EventKind.LoggedIn:
                return "* logged in as " + ((LoggedInEvent)next).User;
            case EventKind.Error:
                var error = (ReplyEvent)next;
                return "! " + error.Code + " " + error.Message;
            case EventKind.ConnectionLost:
                return "* connection lost (" + ((ConnectionLostEvent)next).Reason + "), reconnecting";
            case EventKind.Reconnected:
                var back = (ReconnectedEvent)next;
                return "* reconnected (" + (back.Resumed ? "resumed" : "logged in again") + "), " + back.MissedMsgs + " missed messages";
            case EventKind.Closed:
                return "* closed: " + ((ClosedEvent)next).Reason;
            default:
                return null;
        }
    }
}
