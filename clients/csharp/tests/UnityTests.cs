// The Unity example, RoomcastAvatarSync, driven the way Unity drives a MonoBehaviour (its
// private Start, Update and OnDestroy called by reflection, Time advanced per frame) on the
// UnityEngine stubs, against a real server where a Rust client ("bob") streams a pose.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Reflection;
using System.Threading;
using UnityEngine;

namespace Roomcast.Tests
{
    public static class UnityTests
    {
        static readonly Stopwatch Clock = Stopwatch.StartNew();

        static void Message(RoomcastAvatarSync sync, string name)
        {
            var method = typeof(RoomcastAvatarSync).GetMethod(name, BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public);
            Check.That(method != null, "RoomcastAvatarSync has " + name);
            method.Invoke(sync, null);
        }

        /// <summary>One frame, as Unity runs it: the clock moves, then Update.</summary>
        static void Frame(RoomcastAvatarSync sync)
        {
            Thread.Sleep(16); // a 60 Hz frame; every loop below is bounded by a deadline
            double now = Clock.Elapsed.TotalSeconds;
            Time.deltaTime = (float)(now - Time.unscaledTimeAsDouble);
            Time.unscaledTimeAsDouble = now;
            Time.unscaledTime = (float)now;
            Time.time = (float)now;
            Message(sync, "Update");
        }

        public static void Run(Runner runner, Dictionary<string, string> args)
        {
            var rig = new GameObject("Rig");
            var head = new GameObject("Main Camera").transform;
            head.position = new Vector3(0.5f, 1.6f, -1f);
            head.rotation = new Quaternion(0, 0.7071068f, 0, 0.7071068f);
            var left = new GameObject("Left Controller").transform;
            left.position = new Vector3(0.3f, 1.1f, -0.8f);
            var right = new GameObject("Right Controller").transform;
            right.position = new Vector3(0.7f, 1.1f, -0.8f);
            var sync = rig.AddComponent<RoomcastAvatarSync>();
            sync.host = args["--host"];
            sync.port = int.Parse(args["--port"]);
            sync.user = "rig";
            sync.room = "vr";
            sync.head = head;
            sync.leftHand = left;
            sync.rightHand = right;
            sync.sendRate = 30;

            runner.Run("unity: the rig logs in, joins and sends its pose", () =>
            {
                Message(sync, "Start");
                double deadline = Clock.Elapsed.TotalSeconds + 5;
                while (Array.IndexOf(sync.Client.Rooms, "vr") < 0)
                {
                    Check.That(Clock.Elapsed.TotalSeconds < deadline, "joined vr within 5 s (" + sync.Client.State + ")");
                    Frame(sync);
                }
                Check.Equal(ConnectionState.LoggedIn, sync.Client.State, "logged in");
            });
            if (runner.Failed) return;
            Console.WriteLine("step: rig running");

            runner.Run("unity: bob's avatar appears and moves smoothly between ticks", () =>
            {
                // bob walks x from 0 to 1 in one second; ticks come at fps 10.
                var xs = new List<float>();
                double deadline = Clock.Elapsed.TotalSeconds + 8;
                RoomcastAvatarSync.RemoteAvatar bob = null;
                while (true)
                {
                    Check.That(Clock.Elapsed.TotalSeconds < deadline, "bob reached x = 1 within 8 s; seen " + xs.Count + " frames, last " + (xs.Count > 0 ? xs[xs.Count - 1] : float.NaN));
                    Frame(sync);
                    if (bob == null && !sync.RemoteAvatars.TryGetValue("bob", out bob))
                    {
                        continue;
                    }
                    float x = bob.Head.position.x;
                    xs.Add(x);
                    if (x >= 0.999f)
                    {
                        break;
                    }
                }
                Check.Equal("roomcast bob", bob.Root.name, "a GameObject per user");
                Check.Near(1.6, bob.Head.position.y, 1e-5, "bob's head height");
                Check.Near(1.0, bob.Head.rotation.w, 1e-5, "bob's rotation");
                Check.That(bob.Root.activeSelf, "shown");
                int blended = 0;
                for (int i = 1; i < xs.Count; i++)
                {
                    Check.That(xs[i] >= xs[i - 1] - 1e-6f, "never moves back: " + xs[i - 1] + " then " + xs[i]);
                    // bob sends x in steps of 0.02 only: a position off that grid can only be
                    // drawn between two ticks.
                    double steps = xs[i] * 50.0;
                    if (Math.Abs(steps - Math.Round(steps)) > 0.01)
                    {
                        blended++;
                    }
                }
                Check.That(blended >= 5, blended + " of " + xs.Count + " frames drawn between ticks: interpolated");
                Check.That(!sync.RemoteAvatars.ContainsKey("rig"), "no avatar for oneself");
            });
            if (runner.Failed) return;
            Console.WriteLine("step: bob seen");

            runner.Run("unity: bob leaves, his avatar goes; OnDestroy logs out", () =>
            {
                double deadline = Clock.Elapsed.TotalSeconds + 5;
                var root = sync.RemoteAvatars["bob"].Root;
                while (sync.RemoteAvatars.ContainsKey("bob"))
                {
                    Check.That(Clock.Elapsed.TotalSeconds < deadline, "bob's leave within 5 s");
                    Frame(sync);
                }
                Check.That(root.destroyedForTests, "destroyed");
                var client = sync.Client;
                Message(sync, "OnDestroy");
                Check.Equal(ConnectionState.Closed, client.State, "closed");
                RoomcastEvent last = null, next;
                while (client.TryDequeue(out next))
                {
                    last = next;
                }
                Check.That(last is ClosedEvent && ((ClosedEvent)last).Reason == "logged out", "logged out: " + (last == null ? "no event" : last.ToString()));
            });
        }
    }
}
