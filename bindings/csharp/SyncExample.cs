// SyncExample.cs - play along with the music from .NET: flash on the beat, open a door on a
// cue, start a cutscene on the next downbeat.
//
//   mcs -target:library -out:Ostinato.dll Ostinato.cs
//   mcs -r:Ostinato.dll -out:SyncExample.exe SyncExample.cs
//   mono SyncExample.exe [CONTROL [EVENTS [BEATS]]]      (defaults: the server's, 8 beats)
//
// Best against `ostinato serve --events-ahead 40`: events then come up to 40 ms before their
// time, and each is done at its t_ns (here a loop that waits in TryReceive until the next
// thing is due; in Unity, Update or AudioSource.PlayScheduled at dspTime + DueIn(e)).
//
// Prints one line per thing done, at its time (t_ns, and the ns it was late: a wait's grain):
//   position <beat> <bar> <bpm> <next_downbeat> <next_downbeat_t_ns>
//   cue-placed door <beat> <t_ns>
//   stinger played <1|0> <beat>                                  a fanfare at the cue
//   beat <beat> <bar> <beat_in_bar> <bpm> <t_ns> <late_ns>       the crosshair flashes
//   bar <beat> <bar> <t_ns> <late_ns>
//   door <beat> <t_ns> <late_ns>                                 the cue plays: the door opens
//   cutscene <t_ns> <late_ns>                                    Position's next downbeat
// Exit status: 0 done, 2 server unavailable, 1 anything else.
using System;
using System.Collections.Generic;
using System.Globalization;
using Ostinato;

public static class SyncExample
{
    static string N(double v) { return v.ToString("R", CultureInfo.InvariantCulture); }
    static string I(long v) { return v.ToString(CultureInfo.InvariantCulture); }

    // A fanfare: {pitch, startBeat, durationBeats} per note, in any key (moved to the music's).
    static readonly double[][] Fanfare = {
        new double[] { 60, 0, 0.5 }, new double[] { 64, 0.5, 0.5 }, new double[] { 67, 1, 1 } };

    public static int Main(string[] args)
    {
        string control = args.Length > 0 ? args[0] : Client.DefaultAddress;
        string address = args.Length > 1 ? args[1] : EventListener.DefaultAddress;
        int beats = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 8;
        // What is due when: an event, or null for the cutscene.
        var pending = new List<KeyValuePair<long, OstinatoEvent>>();
        int flashed = 0;
        bool door = false, cutscene = false, placed = false;

        using (var music = new Client(control, 2000))
        using (var events = new EventListener(address, "beat", "bar", "cue")) // sync types: opt-in
        {
            try { music.SyncClock(5); }
            catch (OstinatoUnavailableException e)
            {
                Console.Error.WriteLine("Ostinato server unavailable: " + e.Message);
                return 2;
            }
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while ((flashed < beats || !door || !cutscene) && DateTime.UtcNow < deadline)
            {
                // wait in the socket until the next thing is due (at most 10 ms, as a frame)
                double wait = 0.010;
                foreach (var thing in pending) wait = Math.Min(wait, music.DueIn(thing.Key));
                OstinatoEvent e;
                if (events.TryReceive(out e, (int)Math.Max(0, wait * 1000)))
                {
                    pending.Add(new KeyValuePair<long, OstinatoEvent>(e.TNs, e)); // as a note
                    if (!placed)
                    {
                        placed = true; // the stream is live: ask where the music is, place the cue
                        Reply here = music.Position();
                        double beat, bar, bpm, downbeat;
                        long next;
                        here.TryGetNumber("beat", out beat);
                        here.TryGetNumber("bar", out bar);
                        here.TryGetNumber("bpm", out bpm);
                        here.TryGetNumber("next_downbeat", out downbeat);
                        here.TryGetInteger("next_downbeat_t_ns", out next);
                        Console.WriteLine("position " + N(beat) + " " + N(bar) + " " + N(bpm) + " " +
                                          N(downbeat) + " " + I(next));
                        pending.Add(new KeyValuePair<long, OstinatoEvent>(next, null));
                        // The door opens on the bar after the next one (Cue("door") would be the
                        // next bar line, which may come before the fanfare below is placed on it).
                        Reply cue = music.Cue("door", beat: downbeat + 4);
                        long cueNs;
                        cue.TryGetNumber("beat", out beat);
                        cue.TryGetInteger("t_ns", out cueNs);
                        Console.WriteLine("cue-placed door " + N(beat) + " " + I(cueNs));
                        Reply fanfare = music.StingerNotes(Fanfare, "cue:door", minIntervalBeats: 8, queue: "drop");
                        fanfare.TryGetNumber("beat", out beat);
                        Console.WriteLine("stinger played " + (fanfare.GetRaw("played") == "true" ? 1 : 0) + " " + N(beat));
                    }
                }
                for (int i = pending.Count - 1; i >= 0; i--)
                {
                    long tNs = pending[i].Key;
                    OstinatoEvent thing = pending[i].Value;
                    long late = -(long)Math.Round(music.DueIn(tNs) * 1e9);
                    if (late < 0) continue;
                    pending.RemoveAt(i);
                    if (thing == null)
                    {
                        Console.WriteLine("cutscene " + I(tNs) + " " + I(late));
                        cutscene = true;
                        continue;
                    }
                    double bar, inBar, bpm;
                    thing.TryGetNumber("bar", out bar);
                    thing.TryGetNumber("beat_in_bar", out inBar);
                    thing.TryGetNumber("bpm", out bpm);
                    if (thing.Type == "beat")
                    {
                        Console.WriteLine("beat " + N(thing.Beat) + " " + N(bar) + " " + N(inBar) + " " + N(bpm) +
                                          " " + I(tNs) + " " + I(late));
                        flashed++;
                    }
                    else if (thing.Type == "bar")
                        Console.WriteLine("bar " + N(thing.Beat) + " " + N(bar) + " " + I(tNs) + " " + I(late));
                    else if (thing.Type == "cue" && thing.GetString("name") == "door")
                    {
                        Console.WriteLine("door " + N(thing.Beat) + " " + I(tNs) + " " + I(late));
                        door = true;
                    }
                }
            }
        }
        return flashed >= beats && door && cutscene ? 0 : 1;
    }
}
