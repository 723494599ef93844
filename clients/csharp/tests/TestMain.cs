// The C# test program, run by tests/csharp_client.rs (cargo test) under Mono:
//
//   mono RoomcastTests.exe unit                      JSON, events, poses, interpolation, and the
//                                                    client against an in-process fake server
//   mono RoomcastTests.exe live    --port P ...      against a real server, with a Rust peer
//   mono RoomcastTests.exe expired --port P ...      a session that expired while away
//   mono RoomcastTests.exe unity   --port P ...      the Unity example, on UnityEngine stubs
//
// Each prints a line per check group and ends with "N passed, M failed"; the exit status is 0
// only when nothing failed. The live modes print "step: ..." lines that the Rust side waits
// for before it acts (cuts the proxy, sends as the peer).

using System;
using System.Collections.Generic;
using System.Diagnostics;

namespace Roomcast.Tests
{
    /// <summary>A failed check: ends the test it is in.</summary>
    public sealed class CheckFailed : Exception
    {
        public CheckFailed(string message) : base(message) { }
    }

    public static class Check
    {
        public static int Checks;

        public static void That(bool condition, string what)
        {
            Checks++;
            if (!condition)
            {
                throw new CheckFailed(what);
            }
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            Checks++;
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
            {
                throw new CheckFailed(what + ": expected <" + expected + ">, got <" + actual + ">");
            }
        }

        public static void Near(double expected, double actual, double tolerance, string what)
        {
            Checks++;
            if (Math.Abs(expected - actual) > tolerance)
            {
                throw new CheckFailed(what + ": expected " + expected + " ± " + tolerance + ", got " + actual);
            }
        }

        public static void Throws<E>(Action action, string what) where E : Exception
        {
            Checks++;
            try
            {
                action();
            }
            catch (E)
            {
                return;
            }
            catch (Exception other)
            {
                throw new CheckFailed(what + ": threw " + other.GetType().Name + " instead of " + typeof(E).Name + ": " + other.Message);
            }
            throw new CheckFailed(what + ": did not throw " + typeof(E).Name);
        }
    }

    /// <summary>Named tests, run in order; a test fails at its first failed check.</summary>
    public sealed class Runner
    {
        int passed, failed;
        readonly Stopwatch clock = Stopwatch.StartNew();

        public void Run(string name, Action test)
        {
            var started = clock.Elapsed.TotalSeconds;
            try
            {
                test();
                passed++;
                Console.WriteLine("ok   " + name + " (" + (clock.Elapsed.TotalSeconds - started).ToString("0.000") + " s)");
            }
            catch (Exception err)
            {
                failed++;
                Console.WriteLine("FAIL " + name + ": " + err.GetType().Name + ": " + err.Message);
                Console.WriteLine(err.StackTrace);
            }
        }

        public bool Failed { get { return failed > 0; } }

        public int Finish()
        {
            Console.WriteLine("csharp: " + passed + " passed, " + failed + " failed");
            return failed == 0 ? 0 : 1;
        }
    }

    public static class TestMain
    {
        public static int Main(string[] args)
        {
            // UTF-8 both ways whatever the locale says (a pipe in CI has none): chat carries ☕.
            Console.SetOut(new System.IO.StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false)) { AutoFlush = true });
            if (args.Length == 0)
            {
                Console.Error.WriteLine("usage: RoomcastTests.exe unit | live|expired|unity --host H --port P [--direct-port D]");
                return 2;
            }
            var options = new Dictionary<string, string>();
            for (int i = 1; i + 1 < args.Length; i += 2)
            {
                options[args[i]] = args[i + 1];
            }
            var runner = new Runner();
            switch (args[0])
            {
                case "unit":
                    UnitTests.RunAll(runner);
                    FakeServerTests.RunAll(runner);
                    break;
                case "live":
                    LiveTests.Live(runner, options);
                    break;
                case "expired":
                    LiveTests.Expired(runner, options);
                    break;
                case "unity":
                    UnityTests.Run(runner, options);
                    break;
                default:
                    Console.Error.WriteLine("unknown mode " + args[0]);
                    return 2;
            }
            return runner.Finish();
        }
    }
}
