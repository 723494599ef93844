// roomcast C# client: the wire. Frames (a 4-byte big-endian length, then UTF-8 JSON:
// protocol.md §1.1) and one TCP connection that carries them. Internal: RoomcastClient is the
// API.

using System;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace Roomcast
{
    /// <summary>Framing constants and the clock shared by the client's parts.</summary>
    internal static class Wire
    {
        /// <summary>Largest frame accepted from the server. protocol.md §1.3 asks clients to
        /// accept 16 MiB, and names corners a few hundred bytes past it: 17 MiB covers them.</summary>
        public const int MaxFrame = 17 * 1024 * 1024;

        public static readonly Encoding Utf8Strict = new UTF8Encoding(false, true);

        /// <summary>One frame: a 4-byte big-endian length, then the JSON as UTF-8.</summary>
        public static byte[] Encode(JsonValue message)
        {
            byte[] body = Encoding.UTF8.GetBytes(message.ToJson());
            var frame = new byte[4 + body.Length];
            frame[0] = (byte)(body.Length >> 24);
            frame[1] = (byte)(body.Length >> 16);
            frame[2] = (byte)(body.Length >> 8);
            frame[3] = (byte)body.Length;
            Buffer.BlockCopy(body, 0, frame, 4, body.Length);
            return frame;
        }

        static readonly Stopwatch Clock = Stopwatch.StartNew();

        /// <summary>Monotonic seconds.</summary>
        public static double Now()
        {
            return Clock.Elapsed.TotalSeconds;
        }

        /// <summary>Seconds as a timeout in milliseconds (at least 1; infinite stays infinite).</summary>
        public static int Millis(double seconds)
        {
            if (double.IsInfinity(seconds) || seconds > int.MaxValue / 1000.0)
            {
                return Timeout.Infinite;
            }
            return Math.Max(1, (int)Math.Ceiling(seconds * 1000));
        }
    }

    /// <summary>Reads whole frames off a stream. One Read returns whatever has arrived: part
    /// of a frame, or several; this keeps a buffer and loops until a frame is whole.</summary>
    internal sealed class FrameReader
    {
        readonly Stream stream;
        byte[] buf = new byte[64 * 1024];
        int start, end;

        public FrameReader(Stream stream)
        {
            this.stream = stream;
        }

        /// <summary>The next frame's JSON object; null at a clean end of stream (between
        /// frames). Throws IOException when the stream fails or ends inside a frame, and
        /// ProtocolException for a frame that is not a JSON object.</summary>
        public JsonValue Read(Action received)
        {
            if (!Fill(4, received))
            {
                return null;
            }
            int length = (buf[start] << 24) | (buf[start + 1] << 16) | (buf[start + 2] << 8) | buf[start + 3];
            if (length <= 0 || length > Wire.MaxFrame)
            {
                throw new ProtocolException("bad frame length " + (uint)length + " (1.." + Wire.MaxFrame + " expected)");
            }
            if (!Fill(4 + length, received))
            {
                throw new IOException("the connection ended inside a frame");
            }
            string text;
            try
            {
                text = Wire.Utf8Strict.GetString(buf, start + 4, length);
            }
            catch (ArgumentException)
            {
                throw new ProtocolException("a frame that is not UTF-8");
            }
            start += 4 + length;
            JsonValue frame;
            string error;
            if (!JsonValue.TryParse(text, out frame, out error))
            {
                throw new ProtocolException("a frame that is not JSON: " + error);
            }
            if (!frame.IsObject)
            {
                throw new ProtocolException("a frame that is not a JSON object");
            }
            return frame;
        }

        /// <summary>Makes <paramref name="count"/> bytes available from <c>start</c>; false
        /// when the stream ends before any byte of them arrived.</summary>
        bool Fill(int count, Action received)
        {
            if (end - start >= count)
            {
                return true;
            }
            if (buf.Length - start < count)
            {
                // Move the partial frame to the front, growing the buffer for a big frame
                // (never past MaxFrame + 4: the length was checked), shrinking it back after.
                var bigger = count > buf.Length ? new byte[count] : buf;
                Buffer.BlockCopy(buf, start, bigger, 0, end - start);
                end -= start;
                start = 0;
                buf = bigger;
            }
            else if (start == end)
            {
                start = end = 0;
            }
            int before = end - start;
            while (end - start < count)
            {
                int n = stream.Read(buf, end, buf.Length - end);
                if (n <= 0)
                {
                    if (end - start == before && before == 0)
                    {
                        return false;
                    }
                    throw new IOException("the connection ended inside a frame");
                }
                end += n;
                received();
            }
            if (buf.Length > 1024 * 1024 && end - start <= 64 * 1024 && count <= 64 * 1024)
            {
                var smaller = new byte[64 * 1024];
                Buffer.BlockCopy(buf, start, smaller, 0, end - start);
                end -= start;
                start = 0;
                buf = smaller;
            }
            return true;
        }
    }

    /// <summary>The server sent something that is not a frame of JSON: the stream cannot be
    /// trusted any more, so the connection is dropped (and resumed).</summary>
    internal sealed class ProtocolException : IOException
    {
        public ProtocolException(string message) : base(message) { }
    }

    /// <summary>One TCP connection: its socket, a frame reader, and a write lock.</summary>
    internal sealed class Connection
    {
        readonly TcpClient tcp;
        readonly NetworkStream stream;
        readonly FrameReader frames;
        readonly object writeLock = new object();
        volatile bool closed;
        int receiveTimeout;

        Connection(TcpClient tcp)
        {
            this.tcp = tcp;
            stream = tcp.GetStream();
            frames = new FrameReader(stream);
        }

        public bool Closed { get { return closed; } }

        public static Connection Open(string host, int port, double timeoutSeconds)
        {
            var tcp = new TcpClient();
            try
            {
                var connecting = tcp.ConnectAsync(host, port);
                if (!connecting.Wait(Wire.Millis(timeoutSeconds)))
                {
                    throw new IOException("no connection within " + timeoutSeconds + " s");
                }
                // Nagle would hold a small frame back until the previous one is
                // acknowledged: a pose would leave up to a round trip late and miss its
                // tick. Frames are batched here already, so every write can go at once.
                tcp.NoDelay = true;
                return new Connection(tcp);
            }
            catch (AggregateException err)
            {
                tcp.Close();
                throw new IOException(err.InnerException != null ? err.InnerException.Message : err.Message, err.InnerException);
            }
            catch
            {
                tcp.Close();
                throw;
            }
        }

        /// <summary>The next frame, waiting at most until <paramref name="deadline"/>
        /// (seconds on <see cref="Now"/>; infinity: no limit); null at the end of the stream.</summary>
        public JsonValue ReadBefore(double deadline, Action received)
        {
            int timeout = 0; // 0: wait for ever
            if (!double.IsInfinity(deadline))
            {
                double left = deadline - Wire.Now();
                if (left <= 0)
                {
                    throw new IOException("no answer from the server in time");
                }
                timeout = Wire.Millis(left);
            }
            if (timeout != receiveTimeout)
            {
                tcp.ReceiveTimeout = timeout; // a system call: only when it changes
                receiveTimeout = timeout;
            }
            return frames.Read(received);
        }

        public void Write(byte[] bytes)
        {
            Write(bytes, bytes.Length);
        }

        public void Write(byte[] bytes, int count)
        {
            lock (writeLock)
            {
                stream.Write(bytes, 0, count);
            }
        }

        /// <summary>Closes; with <paramref name="reset"/>, as a network failure would (an RST,
        /// not a FIN). Wakes a thread blocked reading it.</summary>
        public void Close(bool reset)
        {
            if (closed)
            {
                return;
            }
            closed = true;
            try
            {
                if (reset)
                {
                    tcp.Client.LingerState = new LingerOption(true, 0);
                }
                // shutdown, unlike close, wakes a read blocked in another thread on Linux.
                tcp.Client.Shutdown(SocketShutdown.Both);
            }
            catch (Exception)
            {
                // Already closed by the peer or the other thread: nothing left to flush.
            }
            tcp.Close();
        }
    }
}
