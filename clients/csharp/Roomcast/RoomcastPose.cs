// roomcast C# client: poses (a position and a rotation), their wire shape, and the
// interpolation that turns pose ticks into smooth motion.
//
// The library has its own Vec3 and Quat so that it builds outside Unity; the Unity example
// (RoomcastAvatarSync.cs) maps them onto Vector3 and Quaternion with four one-line helpers.

using System;
using System.Collections.Generic;

namespace Roomcast
{
    /// <summary>A position, in the sender's units (Unity: metres, y up).</summary>
    public struct Vec3 : IEquatable<Vec3>
    {
        public float X, Y, Z;

        public Vec3(float x, float y, float z)
        {
            X = x;
            Y = y;
            Z = z;
        }

        public static Vec3 Lerp(Vec3 a, Vec3 b, float t)
        {
            return new Vec3(a.X + (b.X - a.X) * t, a.Y + (b.Y - a.Y) * t, a.Z + (b.Z - a.Z) * t);
        }

        public bool Equals(Vec3 other)
        {
            return X == other.X && Y == other.Y && Z == other.Z;
        }

        public override bool Equals(object obj)
        {
            return obj is Vec3 && Equals((Vec3)obj);
        }

        public override int GetHashCode()
        {
            return X.GetHashCode() ^ (Y.GetHashCode() * 397) ^ (Z.GetHashCode() * 7919);
        }

        public override string ToString()
        {
            return string.Format(System.Globalization.CultureInfo.InvariantCulture, "({0}, {1}, {2})", X, Y, Z);
        }

        /// <summary>The wire shape: <c>{"x":..,"y":..,"z":..}</c>.</summary>
        public JsonValue ToJson()
        {
            return JsonValue.NewObject().Set("x", X).Set("y", Y).Set("z", Z);
        }
    }

    /// <summary>A rotation as a unit quaternion (Unity's x, y, z, w).</summary>
    public struct Quat : IEquatable<Quat>
    {
        public float X, Y, Z, W;

        public static readonly Quat Identity = new Quat(0, 0, 0, 1);

        public Quat(float x, float y, float z, float w)
        {
            X = x;
            Y = y;
            Z = z;
            W = w;
        }

        /// <summary>Euler angles in degrees, applied as Unity's <c>Quaternion.Euler</c> does:
        /// around z, then x, then y. The protocol allows a rotation without <c>w</c>; such a
        /// rotation is read as these angles.</summary>
        public static Quat FromEulerDegrees(float x, float y, float z)
        {
            double rad = Math.PI / 360.0; // half angle in radians per degree
            double cx = Math.Cos(x * rad), sx = Math.Sin(x * rad);
            double cy = Math.Cos(y * rad), sy = Math.Sin(y * rad);
            double cz = Math.Cos(z * rad), sz = Math.Sin(z * rad);
            // q = qy * qx * qz
            return new Quat(
                (float)(cy * sx * cz + sy * cx * sz),
                (float)(sy * cx * cz - cy * sx * sz),
                (float)(cy * cx * sz - sy * sx * cz),
                (float)(cy * cx * cz + sy * sx * sz));
        }

        /// <summary>Spherical interpolation along the shorter arc; <paramref name="t"/> in 0..1.</summary>
        public static Quat Slerp(Quat a, Quat b, float t)
        {
            double dot = a.X * b.X + a.Y * b.Y + a.Z * b.Z + a.W * b.W;
            if (dot < 0)
            {
                // q and -q are the same rotation: take the shorter way.
                b = new Quat(-b.X, -b.Y, -b.Z, -b.W);
                dot = -dot;
            }
            double wa, wb;
            if (dot > 0.9995)
            {
                // Nearly equal: a normalized lerp is exact enough and avoids dividing by ~0.
                wa = 1 - t;
                wb = t;
            }
            else
            {
                double theta = Math.Acos(dot);
                double sin = Math.Sin(theta);
                wa = Math.Sin((1 - t) * theta) / sin;
                wb = Math.Sin(t * theta) / sin;
            }
            return new Quat(
                (float)(wa * a.X + wb * b.X),
                (float)(wa * a.Y + wb * b.Y),
                (float)(wa * a.Z + wb * b.Z),
                (float)(wa * a.W + wb * b.W)).Normalized();
        }

        /// <summary>This rotation scaled to unit length (identity for a zero quaternion).</summary>
        public Quat Normalized()
        {
            double length = Math.Sqrt(X * X + Y * Y + Z * Z + W * W);
            if (length < 1e-12)
            {
                return Identity;
            }
            return new Quat((float)(X / length), (float)(Y / length), (float)(Z / length), (float)(W / length));
        }

        public bool Equals(Quat other)
        {
            return X == other.X && Y == other.Y && Z == other.Z && W == other.W;
        }

        public override bool Equals(object obj)
        {
            return obj is Quat && Equals((Quat)obj);
        }

        public override int GetHashCode()
        {
            return X.GetHashCode() ^ (Y.GetHashCode() * 397) ^ (Z.GetHashCode() * 7919) ^ (W.GetHashCode() * 104729);
        }

        public override string ToString()
        {
            return string.Format(System.Globalization.CultureInfo.InvariantCulture, "({0}, {1}, {2}, {3})", X, Y, Z, W);
        }

        /// <summary>The wire shape: <c>{"x":..,"y":..,"z":..,"w":..}</c>.</summary>
        public JsonValue ToJson()
        {
            return JsonValue.NewObject().Set("x", X).Set("y", Y).Set("z", Z).Set("w", W);
        }
    }

    /// <summary>Where one tracked thing is: the head, or a part such as a hand.</summary>
    public struct Pose : IEquatable<Pose>
    {
        public Vec3 Position;
        public Quat Rotation;

        public static readonly Pose Identity = new Pose(new Vec3(0, 0, 0), Quat.Identity);

        public Pose(Vec3 position, Quat rotation)
        {
            Position = position;
            Rotation = rotation;
        }

        public static Pose Lerp(Pose a, Pose b, float t)
        {
            return new Pose(Vec3.Lerp(a.Position, b.Position, t), Quat.Slerp(a.Rotation, b.Rotation, t));
        }

        public bool Equals(Pose other)
        {
            return Position.Equals(other.Position) && Rotation.Equals(other.Rotation);
        }

        public override bool Equals(object obj)
        {
            return obj is Pose && Equals((Pose)obj);
        }

        public override int GetHashCode()
        {
            return Position.GetHashCode() ^ (Rotation.GetHashCode() * 31);
        }

        public override string ToString()
        {
            return "pos " + Position + " rot " + Rotation;
        }

        /// <summary>The wire shape: <c>{"pos":{x,y,z},"rot":{x,y,z,w}}</c>.</summary>
        public JsonValue ToJson()
        {
            return JsonValue.NewObject().Set("pos", Position.ToJson()).Set("rot", Rotation.ToJson());
        }

        /// <summary>Reads <c>{"pos":{x,y,z},"rot":{x,y,z[,w]}}</c>; false when a field is
        /// missing or not a number. A rotation without <c>w</c> is Euler degrees
        /// (<see cref="Quat.FromEulerDegrees"/>).</summary>
        public static bool TryParse(JsonValue data, out Pose pose)
        {
            pose = Identity;
            JsonValue pos = data["pos"], rot = data["rot"];
            double px, py, pz, rx, ry, rz, rw;
            if (!pos["x"].TryGetDouble(out px) || !pos["y"].TryGetDouble(out py) || !pos["z"].TryGetDouble(out pz)
                || !rot["x"].TryGetDouble(out rx) || !rot["y"].TryGetDouble(out ry) || !rot["z"].TryGetDouble(out rz))
            {
                return false;
            }
            pose.Position = new Vec3((float)px, (float)py, (float)pz);
            if (rot["w"].TryGetDouble(out rw))
            {
                pose.Rotation = new Quat((float)rx, (float)ry, (float)rz, (float)rw);
            }
            else if (rot["w"].IsUndefined)
            {
                pose.Rotation = Quat.FromEulerDegrees((float)rx, (float)ry, (float)rz);
            }
            else
            {
                return false;
            }
            return true;
        }
    }

    /// <summary>
    /// One user's transform: the head pose (the protocol's <c>pos</c> and <c>rot</c>), and
    /// named parts such as <c>left_hand</c> and <c>right_hand</c> under <c>parts</c>.
    /// </summary>
    /// <remarks>
    /// Parts travel inside the same transform data: <c>{"pos":..,"rot":..,"parts":{"left_hand":
    /// {"pos":..,"rot":..}}}</c>. A server that does not know <c>parts</c> yet ignores the key
    /// (protocol.md §8) and forwards the head only; then <see cref="Parts"/> is empty.
    /// </remarks>
    public sealed class AvatarPose
    {
        /// <summary>Most parts read from one transform (the rest are ignored): bounds what a
        /// peer's frame can make this client allocate.</summary>
        public const int MaxParts = 16;

        public Pose Head;
        public readonly Dictionary<string, Pose> Parts = new Dictionary<string, Pose>(StringComparer.Ordinal);

        public AvatarPose() { }

        public AvatarPose(Pose head)
        {
            Head = head;
        }

        /// <summary>Adds or replaces a part; returns this, so calls chain.</summary>
        public AvatarPose With(string part, Pose pose)
        {
            Parts[part] = pose;
            return this;
        }

        /// <summary>The transform data to send.</summary>
        public JsonValue ToJson()
        {
            JsonValue data = Head.ToJson();
            if (Parts.Count > 0)
            {
                JsonValue parts = JsonValue.NewObject();
                foreach (var part in Parts)
                {
                    parts.Set(part.Key, part.Value.ToJson());
                }
                data.Set("parts", parts);
            }
            return data;
        }

        /// <summary>Reads a transform event's data; null when the head pose is not valid.
        /// Parts that are not valid poses are skipped.</summary>
        public static AvatarPose Parse(JsonValue data)
        {
            Pose head;
            if (!Pose.TryParse(data, out head))
            {
                return null;
            }
            var avatar = new AvatarPose(head);
            JsonValue parts = data["parts"];
            foreach (string name in parts.Keys)
            {
                Pose pose;
                if (avatar.Parts.Count < MaxParts && Pose.TryParse(parts[name], out pose))
                {
                    avatar.Parts[name] = pose;
                }
            }
            return avatar;
        }

        /// <summary>Interpolated between two samples: parts present in both are blended, a part
        /// only in <paramref name="b"/> is taken from it.</summary>
        public static AvatarPose Lerp(AvatarPose a, AvatarPose b, float t)
        {
            var result = new AvatarPose(Pose.Lerp(a.Head, b.Head, t));
            foreach (var part in b.Parts)
            {
                Pose from;
                result.Parts[part.Key] = a.Parts.TryGetValue(part.Key, out from) ? Pose.Lerp(from, part.Value, t) : part.Value;
            }
            return result;
        }
    }

    /// <summary>
    /// Smooth motion from pose ticks: the server sends each user's latest pose once per tick
    /// (every 1/fps s, 50 ms at the default 20 fps), so drawing each pose as it arrives
    /// moves avatars in steps. This buffer keeps the last few samples with their server time
    /// and plays them back a little in the past (<see cref="Delay"/>), blending between the
    /// two samples around the playback time.
    /// </summary>
    /// <remarks>
    /// Time is passed in (seconds on any local monotonic clock, e.g. Unity's
    /// <c>Time.unscaledTimeAsDouble</c>), so it is testable without waiting. The server's
    /// clock is mapped onto the local one from the samples themselves: the offset of the
    /// fastest-arriving sample, which the jitter of later ones cannot shrink. Not thread-safe:
    /// use it on the thread that drains the client's events (Unity's main thread).
    /// </remarks>
    public sealed class PoseInterpolator
    {
        /// <summary>Samples kept (a few ticks are all that interpolation needs).</summary>
        public const int Capacity = 8;

        /// <summary>How far behind the newest sample playback runs, in seconds. About two ticks
        /// (0.1 s at 20 fps) hides a late tick; smaller is more current and more jerky.</summary>
        public double Delay = 0.1;

        readonly double[] times = new double[Capacity];
        readonly AvatarPose[] poses = new AvatarPose[Capacity];
        int count;
        int newest = -1;
        double offset; // server time minus local time, for the fastest sample so far
        bool hasOffset;

        /// <summary>Samples held.</summary>
        public int Count { get { return count; } }

        /// <summary>The newest sample, or null.</summary>
        public AvatarPose Latest { get { return count == 0 ? null : poses[newest]; } }

        /// <summary>Adds a sample: <paramref name="serverTime"/> is the event's <c>time</c>,
        /// <paramref name="localNow"/> the local clock when it was taken from the queue. A
        /// sample not newer than the newest is ignored (ticks never go back).</summary>
        public void Add(double serverTime, AvatarPose pose, double localNow)
        {
            if (pose == null || (count > 0 && serverTime <= times[newest]))
            {
                return;
            }
            double sampleOffset = serverTime - localNow;
            if (!hasOffset || sampleOffset > offset)
            {
                offset = sampleOffset;
                hasOffset = true;
            }
            else
            {
                // Let the offset follow slowly downwards too, so a clock drift or a one-off
                // early sample does not stretch the delay for ever.
                offset += (sampleOffset - offset) * 0.01;
            }
            newest = (newest + 1) % Capacity;
            times[newest] = serverTime;
            poses[newest] = pose;
            if (count < Capacity)
            {
                count++;
            }
        }

        /// <summary>The pose to draw at <paramref name="localNow"/>; null before any sample.
        /// Holds the newest pose when playback is past it (no guessing ahead), and the oldest
        /// when before it.</summary>
        public AvatarPose Sample(double localNow)
        {
            if (count == 0)
            {
                return null;
            }
            double at = localNow + offset - Delay;
            int oldest = (newest - count + 1 + Capacity) % Capacity;
            if (at <= times[oldest])
            {
                return poses[oldest];
            }
            for (int i = 0; i < count - 1; i++)
            {
                int a = (oldest + i) % Capacity;
                int b = (a + 1) % Capacity;
                if (at < times[b])
                {
                    float t = (float)((at - times[a]) / (times[b] - times[a]));
                    return AvatarPose.Lerp(poses[a], poses[b], t);
                }
            }
            return poses[newest];
        }

        /// <summary>Forgets every sample (e.g. when the user left and came back).</summary>
        public void Clear()
        {
            count = 0;
            newest = -1;
            hasOffset = false;
            for (int i = 0; i < Capacity; i++)
            {
                poses[i] = null;
            }
        }
    }
}
