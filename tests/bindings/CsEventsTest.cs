// CsEventsTest.cs - the C# event listener and clock sync against a playing server
// (tests/bindings/test_csharp.py compiles it against Ostinato.dll and checks what it prints).
//
//   mono CsEventsTest.exe CONTROL_ADDRESS EVENTS_ADDRESS DEAD_ADDRESS [COUNT]
//
// One line per fact, space-separated, the raw JSON (which has no spaces) last:
//   sync <offset_ns> <round_trip_ns> <stopwatch_frequency> <high_resolution>
//   event <type> <seq> <t_ns> <due_in_ns> <pitch> <local_ns_at_receipt> <offset_ns> <due_in_s> <json>
//   received <n>
//   ... (see below)
// Exit status: 0 done, 2 server unavailable.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using Ostinato;

public static class CsEventsTest
{
    static string I(long v) { return v.ToString(CultureInfo.InvariantCulture); }
    static string D(double v) { return v.ToString("R", CultureInfo.InvariantCulture); }

    public static int Main(string[] args)
    {
        string control = args[0], events = args[1], dead = args[2];
        int count = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 20;

        // Parsing: 2^53 + 1 is not a double; a marker has no note fields.
        OstinatoEvent big = OstinatoEvent.Parse(
            "{\"v\":1,\"type\":\"note_on\",\"session\":\"main\",\"seq\":9007199254740995,\"t_ns\":9007199254740993," +
            "\"beat\":16.25,\"channel\":3,\"pitch\":60,\"velocity\":90,\"voice\":\"bass\"}");
        Console.WriteLine("parse " + big.Type + " " + big.Session + " " + I(big.Seq) + " " + I(big.TNs) + " " +
                          D(big.Beat) + " " + big.Channel + " " + big.Pitch + " " + big.Velocity + " " + big.IsNote +
                          " " + big.Voice);
        OstinatoEvent tempo = OstinatoEvent.Parse(
            "{\"v\":1,\"type\":\"tempo\",\"session\":\"p2\",\"seq\":7,\"t_ns\":-5,\"beat\":0.0,\"bpm\":140.5}");
        double bpm;
        tempo.TryGetNumber("bpm", out bpm);
        Console.WriteLine("marker " + tempo.Type + " " + tempo.Session + " " + I(tempo.TNs) + " " + tempo.Channel + " " +
                          tempo.Pitch + " " + tempo.Velocity + " " + tempo.IsNote + " " + D(bpm) + " " +
                          (tempo.Voice == null));
        OstinatoEvent none;
        bool parsed = OstinatoEvent.TryParse("{\"ok\":true,\"type\":\"pong\",\"t_ns\":1.5}", out none);
        Console.WriteLine("not-event " + parsed + " " + (none == null));
        try { OstinatoEvent.Parse("{\"v\":1,\"seq\":1}"); Console.WriteLine("bad-parse no-exception"); }
        catch (FormatException) { Console.WriteLine("bad-parse FormatException"); }

        // No server: SyncClock throws the usual exception after the first ping's timeout.
        using (var nobody = new Client(dead, 200))
        {
            try { nobody.SyncClock(); Console.WriteLine("sync-dead no-exception"); }
            catch (OstinatoUnavailableException) { Console.WriteLine("sync-dead unavailable"); }
        }

        using (var music = new Client(control, 2000))
        using (var notes = new EventListener(events, "note_on", "note_off"))
        using (var states = new EventListener(events, new List<string> { "state" }))
        using (var all = new EventListener(events))
        {
            long offset;
            try { offset = music.SyncClock(); }
            catch (OstinatoUnavailableException error)
            {
                Console.Error.WriteLine("Ostinato server unavailable: " + error.Message);
                return 2;
            }
            Console.WriteLine("sync " + I(offset) + " " + I(music.ClockRoundTripNs) + " " +
                              I(Stopwatch.Frequency) + " " + Stopwatch.IsHighResolution);

            int got = 0;
            OstinatoEvent e;
            while (got < count && notes.TryReceive(out e, 5000))
            {
                long local = Client.LocalNowNs();
                long dueNs = music.DueInNs(e, local);
                double dueS = music.DueIn(e); // read later than local: at most dueNs
                Console.WriteLine("event " + e.Type + " " + I(e.Seq) + " " + I(e.TNs) + " " + I(dueNs) + " " +
                                  e.Pitch + " " + I(local) + " " + I(music.ClockOffsetNs) + " " + D(dueS) + " " + e.Json);
                got++;
            }
            Console.WriteLine("received " + got);

            // Every type: something comes (notes at least).
            bool any = all.TryReceive(out e, 5000);
            Console.WriteLine("all " + any + " " + (any ? e.Type : "-"));

            // A type that never comes here: false, after about the timeout; a poll (0) at once.
            var clock = Stopwatch.StartNew();
            bool gotState = states.TryReceive(out e, 300);
            Console.WriteLine("state-wait " + gotState + " " + (e == null) + " " + clock.ElapsedMilliseconds);
            clock = Stopwatch.StartNew();
            bool polled = states.TryReceive(out e, 0);
            Console.WriteLine("state-poll " + polled + " " + clock.ElapsedMilliseconds);
        }
        return 0;
    }
}
