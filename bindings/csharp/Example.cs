// Example.cs - drive an Ostinato server from a .NET console program.
//
//   mcs -target:library -out:Ostinato.dll Ostinato.cs
//   mcs -r:Ostinato.dll -out:Example.exe Example.cs
//   mono Example.exe [tcp://127.0.0.1:5555 [keys/server.key keys/client.key_secret]]
//                                                  (Ostinato.dll.config next to Ostinato.dll)
// With the two key files (from `ostinato keys`) it talks CurveZMQ to a keyed server.
//
// Exit status: 0 done, 2 server unavailable.
using System;
using System.Globalization;
using System.Threading;
using Ostinato;

public static class Example
{
    // Prints "<what> ok" or "<what> error <code> <field>".  An ok reply that carries tonality
    // and critic (mood, state and key: the session's in effect after the change) also gives
    // "<what> tonality <t> critic <k>"; one that carries repetition (those, and a session's
    // open) "<what> repetition <r>"; one with a style in effect (the session's, once it has
    // one; null: none) "<what> style <s>"; one with a theme (what the server understood of it)
    // "<what> theme <key> <notes> notes".
    static void Show(string what, Func<Reply> request)
    {
        try
        {
            Reply reply = request();
            Console.WriteLine(what + " ok");
            double tonality, critic, repetition, notes;
            if (reply.TryGetNumber("tonality", out tonality) && reply.TryGetNumber("critic", out critic))
                Console.WriteLine(what + " tonality " + tonality.ToString(CultureInfo.InvariantCulture) +
                                  " critic " + critic.ToString(CultureInfo.InvariantCulture));
            if (reply.TryGetNumber("repetition", out repetition))
                Console.WriteLine(what + " repetition " + repetition.ToString(CultureInfo.InvariantCulture));
            string style = reply.GetString("style");
            if (style != null) Console.WriteLine(what + " style " + style);
            Reply theme = reply.GetObject("theme");
            if (theme != null && theme.TryGetNumber("notes", out notes))
                Console.WriteLine(what + " theme " + theme.GetString("key") + " " +
                                  notes.ToString(CultureInfo.InvariantCulture) + " notes");
        }
        catch (OstinatoServerException e)
        {
            Console.WriteLine(what + " error " + e.Code + " " + e.Field);
        }
    }

    public static int Main(string[] args)
    {
        string address = args.Length > 0 ? args[0] : Client.DefaultAddress;
        string serverKey = null, clientPublic = null, clientSecret = null;
        if (args.Length > 2)
        {
            serverKey = Client.LoadKey(args[1], "public-key");
            clientPublic = Client.LoadKey(args[2], "public-key");
            clientSecret = Client.LoadKey(args[2], "secret-key");
            Console.WriteLine("keys " + serverKey.Substring(0, 8) + "...");
        }
        using (var music = new Client(address, 1000, null, serverKey, clientPublic, clientSecret))
        {
            Reply hello;
            try
            {
                hello = music.Hello();
            }
            catch (OstinatoUnavailableException e)
            {
                Console.Error.WriteLine("Ostinato server unavailable: " + e.Message);
                return 2;
            }
            Console.WriteLine("server " + hello.GetString("server") + " states " + hello.GetRaw("states"));

            // Game events -> music.
            Show("mood", () => music.Mood(valence: 0.5, arousal: 0.8, transition: "now"));
            Show("state", () => music.State("combat"));
            Show("tempo", () => music.Tempo(150, rampBeats: 4));
            Show("key", () => music.Key("d", "minor"));
            // Tonality (0 free .. 1 strict) and critic (drafts per beat; 0 off) are optional.
            Show("mood-ex", () => music.Mood(transition: "now", tonality: 0.9, critic: 0));
            Show("state-ex", () => music.State("combat", tonality: 0.25));
            Show("key-ex", () => music.Key("a", transition: "beat", tonality: 0.75, critic: 0));
            Show("bad-tonality", () => music.Mood(tonality: 1.5));   // out of range on purpose
            Show("critic-3", () => music.Mood(critic: 3));   // refused unless the server has a critic
            Show("mood-kept", () => music.Mood(intensity: 0.6));   // tonality and critic stay
            Show("stinger", () => music.Stinger("hit", "now"));
            Show("start", () => music.Start());
            Show("bad-tempo", () => music.Tempo(1000));   // out of range on purpose
            Show("open", () => music.OpenSession("player2", "stealth"));
            Show("mood2", () => music.Mood(arousal: 0.2, session: "player2"));
            Show("close", () => music.CloseSession("player2"));
            double t;
            if (music.Ping().TryGetNumber("t_ns", out t)) Console.WriteLine("server clock " + t.ToString("F0"));

            // In a game loop: fire and forget, then collect replies once a frame.
            music.SendNowait("mood", null, "arousal", 0.9, "intensity", 1.0);
            music.SendNowait("stinger", null, "name", "danger");
            music.SendNowait("pause", null);
            int got = 0;
            for (int frame = 0; frame < 200 && got < 3; frame++)
            {
                Reply r;
                while ((r = music.PollReply()) != null) { got++; Console.WriteLine("async " + (r.Ok ? "ok" : "error")); }
                Thread.Sleep(10);
            }
            Console.WriteLine("async replies " + got + " of 3");

            // A leitmotif, {pitch, startBeat, durationBeats} per note: the melody states it, on
            // any server.
            double[][] motif = {
                new double[] { 62, 0, 1 }, new double[] { 65, 1, 1 }, new double[] { 69, 2, 1 },
                new double[] { 74, 3, 1 }, new double[] { 72, 4, 0.5 }, new double[] { 70, 4.5, 0.5 } };
            Show("theme-notes", () => music.Theme(motif, variation: 0.2, transition: "now"));
            Show("theme-name", () => music.Theme(name: "hero", blendBeats: 2));   // states.toml's
            Show("theme-bad", () => music.Theme(new[] { motif[0], motif[1] }));  // too few notes
            Show("theme-free", () => music.FreeTheme("beat"));                   // on any server
            // The ensemble's voices (refused out_of_range on voices unless the server's model is
            // an ensemble model): the drums out, the harmony a warm pad an octave down, the bass
            // left to layering; they change at the next bar line.
            var pad = new Voices().Off("drums").Set("harmony", program: 89, octave: -1).Auto("bass");
            Show("voices", () => music.Mood(voices: pad));
            Show("state-voices", () => music.State("calm", voices: new Voices().Off("drums")));
            Show("bad-voices", () => music.Mood(voices: new Voices().Set("bass", program: 128)));
            // Repetition (0 through-composed .. 1 a loop), along the session's form, from the next bar.
            Show("repetition", () => music.Mood(repetition: 0.6));
            Show("state-repetition", () => music.State("combat", repetition: 0.9));
            Show("open-repetition", () => music.OpenSession("player3", "calm", repetition: 0.3));
            Show("close-repetition", () => music.CloseSession("player3"));
            Show("bad-repetition", () => music.Mood(repetition: 1.5));   // out of range on purpose
            // Style (refused out_of_range on style unless the server's model is told styles): a
            // collection's texture, from the transition.
            Show("style", () => music.Mood(style: "baroque"));
            Show("state-style", () => music.State("combat", "bar", style: "game"));
            Show("bad-style", () => music.Mood(style: "jazz"));   // no such style: bad_choice
            Show("stop", () => music.Stop());
        }
        return 0;
    }
}
