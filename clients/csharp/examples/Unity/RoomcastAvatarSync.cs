// roomcast for Unity: puts this headset (and its hands) in a room and shows everyone else's.
//
// Add it to any GameObject, drag the rig's camera and controllers onto Head, Left Hand and
// Right Hand (XR Origin: Main Camera, Left Controller, Right Controller), set Host, User and
// Room, press Play. Others in the room appear as a head and two hands (or your prefabs) and
// move smoothly: the server sends poses once per tick, and each avatar plays them back a
// little in the past, blending between ticks (PoseInterpolator).
//
// Threads: the client reads and writes the network on its own threads; this script only
// drains its event queue in Update, on Unity's main thread, which is the only thread allowed
// to touch GameObjects.

using System.Collections.Generic;
using Roomcast;
using UnityEngine;

public class RoomcastAvatarSync : MonoBehaviour
{
    [Header("Server")]
    public string host = "127.0.0.1";
    public int port = 42069;
    [Tooltip("1 to 32 of A-Z a-z 0-9 _ - . ; unique on the server while logged in")]
    public string user = "quest";
    public string password = "";
    public string room = "vr";

    [Header("This rig")]
    public Transform head;
    public Transform leftHand;
    public Transform rightHand;
    [Tooltip("Poses sent per second. The server forwards one per tick (--fps, 20 by default), so more than about twice that buys nothing.")]
    [Range(1, 120)]
    public float sendRate = 30f;

    [Header("Other users")]
    [Tooltip("Optional. Without it, a sphere stands in for a head.")]
    public GameObject headPrefab;
    [Tooltip("Optional. Without it, a cube stands in for a hand.")]
    public GameObject handPrefab;
    [Tooltip("Seconds behind the newest pose that avatars are drawn: about two ticks hides a late one.")]
    public float interpolationDelay = 0.1f;

    /// <summary>One other user in the room, as drawn.</summary>
    public sealed class RemoteAvatar
    {
        public string User;
        public GameObject Root;
        public Transform Head;
        public Transform LeftHand;
        public Transform RightHand;
        public PoseInterpolator Poses;
    }

    RoomcastClient client;
    float nextSendAt;
    readonly Dictionary<string, RemoteAvatar> avatars = new Dictionary<string, RemoteAvatar>();

    /// <summary>The connection, to chat or play through it as well.</summary>
    public RoomcastClient Client { get { return client; } }

    /// <summary>The others in the room, by user name.</summary>
    public IDictionary<string, RemoteAvatar> RemoteAvatars { get { return avatars; } }

    // --- Unity and roomcast types: the same four numbers, Unity floats both ways ---

    public static Vec3 ToRoomcast(Vector3 v) { return new Vec3(v.x, v.y, v.z); }
    public static Vector3 ToUnity(Vec3 v) { return new Vector3(v.X, v.Y, v.Z); }
    public static Quat ToRoomcast(Quaternion q) { return new Quat(q.x, q.y, q.z, q.w); }
    public static Quaternion ToUnity(Quat q) { return new Quaternion(q.X, q.Y, q.Z, q.W); }

    static Pose PoseOf(Transform t) { return new Pose(ToRoomcast(t.position), ToRoomcast(t.rotation)); }

    void Start()
    {
        client = new RoomcastClient(new RoomcastOptions
        {
            Host = host,
            Port = port,
            User = user,
            Password = password,
            Log = line => Debug.Log(line), // Debug.Log may be called from any thread
        });
        client.Connect();
        client.Join(room); // queued: it goes out once the login is accepted
    }

    void Update()
    {
        if (client == null)
        {
            return;
        }
        double now = Time.unscaledTimeAsDouble;
        RoomcastEvent next;
        while (client.TryDequeue(out next))
        {
            Handle(next, now);
        }
        if (head != null && client.State == ConnectionState.LoggedIn && Time.unscaledTime >= nextSendAt)
        {
            nextSendAt = Time.unscaledTime + 1f / System.Math.Max(1f, sendRate);
            var pose = new AvatarPose(PoseOf(head));
            if (leftHand != null)
            {
                pose.With("left_hand", PoseOf(leftHand));
            }
            if (rightHand != null)
            {
                pose.With("right_hand", PoseOf(rightHand));
            }
            client.Transform(room, pose);
        }
        foreach (var avatar in avatars.Values)
        {
            Draw(avatar, now);
        }
    }

    void Handle(RoomcastEvent next, double now)
    {
        switch (next.Kind)
        {
            case EventKind.Transform:
                var moved = (RoomEvent)next;
                if (moved.Room == room && moved.User != client.User)
                {
                    var pose = moved.Pose;
                    if (pose != null)
                    {
                        AvatarOf(moved.User).Poses.Add(moved.Time, pose, now);
                    }
                }
                break;
            case EventKind.Leave:
                var left = (RoomEvent)next;
                if (left.Room == room && !left.IsHistory)
                {
                    Remove(left.User);
                }
                break;
            case EventKind.Away:
            case EventKind.Back:
                // Away: their connection dropped and the session waits for them. Hide, and
                // show again when they are back (their next pose moves them on).
                var gone = (RoomEvent)next;
                RemoteAvatar avatar;
                if (gone.Room == room && !gone.IsHistory && avatars.TryGetValue(gone.User, out avatar))
                {
                    avatar.Root.SetActive(next.Kind == EventKind.Back);
                }
                break;
            case EventKind.Error:
                Debug.LogWarning("roomcast: " + next);
                break;
            case EventKind.Closed:
                Debug.LogWarning("roomcast: closed: " + ((ClosedEvent)next).Reason);
                foreach (var user in new List<string>(avatars.Keys))
                {
                    Remove(user);
                }
                break;
        }
    }

    RemoteAvatar AvatarOf(string name)
    {
        RemoteAvatar avatar;
        if (avatars.TryGetValue(name, out avatar))
        {
            return avatar;
        }
        var root = new GameObject("roomcast " + name);
        root.transform.SetParent(transform, false);
        avatar = new RemoteAvatar
        {
            User = name,
            Root = root,
            Head = Part(root, headPrefab, PrimitiveType.Sphere, 0.2f, "Head"),
            LeftHand = Part(root, handPrefab, PrimitiveType.Cube, 0.08f, "LeftHand"),
            RightHand = Part(root, handPrefab, PrimitiveType.Cube, 0.08f, "RightHand"),
            Poses = new PoseInterpolator { Delay = interpolationDelay },
        };
        avatar.LeftHand.gameObject.SetActive(false); // until a pose brings hands
        avatar.RightHand.gameObject.SetActive(false);
        avatars[name] = avatar;
        return avatar;
    }

    static Transform Part(GameObject root, GameObject prefab, PrimitiveType shape, float size, string label)
    {
        GameObject part;
        if (prefab != null)
        {
            part = Instantiate(prefab);
        }
        else
        {
            part = GameObject.CreatePrimitive(shape);
            part.transform.localScale = new Vector3(size, size, size);
        }
        part.name = label;
        part.transform.SetParent(root.transform, false);
        return part.transform;
    }

    static void Draw(RemoteAvatar avatar, double now)
    {
        var pose = avatar.Poses.Sample(now);
        if (pose == null)
        {
            return;
        }
        Place(avatar.Head, pose.Head);
        Pose hand;
        bool hasLeft = pose.Parts.TryGetValue("left_hand", out hand);
        avatar.LeftHand.gameObject.SetActive(hasLeft);
        if (hasLeft)
        {
            Place(avatar.LeftHand, hand);
        }
        bool hasRight = pose.Parts.TryGetValue("right_hand", out hand);
        avatar.RightHand.gameObject.SetActive(hasRight);
        if (hasRight)
        {
            Place(avatar.RightHand, hand);
        }
    }

    static void Place(Transform target, Pose pose)
    {
        target.position = ToUnity(pose.Position);
        target.rotation = ToUnity(pose.Rotation);
    }

    void Remove(string name)
    {
        RemoteAvatar avatar;
        if (avatars.TryGetValue(name, out avatar))
        {
            Destroy(avatar.Root);
            avatars.Remove(name);
        }
    }

    void OnDestroy()
    {
        // Logs out, so the others see this user leave at once rather than go away.
        if (client != null)
        {
            client.Dispose();
            client = null;
        }
    }
}
