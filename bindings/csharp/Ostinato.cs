// Ostinato.cs - C# client for the Ostinato control protocol (version 1), for Unity and .NET.
//
// Talks to libzmq through P/Invoke.  The native library is imported as "libzmq":
//   Windows: libzmq.dll (rename the libzmq-v14x-mt-4_3_x.dll of the official build)
//   macOS:   libzmq.dylib (Homebrew: /opt/homebrew/lib/libzmq.dylib)
//   Linux:   libzmq.so; Debian/Ubuntu install only libzmq.so.5 unless libzmq3-dev is there,
//            so Mono reads Ostinato.dll.config (a dllmap "libzmq" -> "libzmq.so.5"), and on
//            .NET Core 3+ Client registers a NativeLibrary resolver that tries libzmq.so.5.
// In Unity put the native library under Assets/Plugins/<platform>/ (Unity ignores dllmap).
//
// Request methods (Mood, State, ...) block for at most Timeout milliseconds and throw
// OstinatoUnavailableException after that; SendNowait + PollReply never block.
//
// Theme(notes or name, ...) has the melody state a leitmotif, on any server; FreeTheme() goes
// back.
//
// A server started with CurveZMQ keys (needed off loopback) answers only a Client given
// serverKey, clientPublicKey and clientSecretKey: 40-character Z85 strings from the files
// `ostinato keys` writes (Client.LoadKey reads one).  Without them it gets no reply.
//
// EventListener subscribes to the event stream (what the server plays: notes and markers, each
// with its scheduled time t_ns on the server's clock); TryReceive never blocks longer than its
// timeout (0: a poll, for Update).  Client.SyncClock measures the offset between the server's
// clock and this process's Stopwatch, and Client.DueIn(event) says when an event is due here.
//
// Playing along (SyncExample.cs): an EventListener that names "beat", "bar" or "phrase" gets
// the sync events (opt-in), scheduled by DueIn as notes are; Cue places a named cue (a "cue"
// event when it plays, and the transition "cue:NAME"); Position says where the music is and
// when its next downbeat plays; StingerNotes sends a stinger as notes.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;

namespace Ostinato
{
    internal static class Zmq
    {
        public const string Lib = "libzmq";
        public const int SUB = 2, DEALER = 5, SUBSCRIBE = 6, LINGER = 17, SNDHWM = 23, RCVTIMEO = 27, DONTWAIT = 1;
        public const int CURVE_PUBLICKEY = 48, CURVE_SECRETKEY = 49, CURVE_SERVERKEY = 50;

        [DllImport(Lib)] public static extern IntPtr zmq_ctx_new();
        [DllImport(Lib)] public static extern int zmq_ctx_term(IntPtr context);
        [DllImport(Lib)] public static extern IntPtr zmq_socket(IntPtr context, int type);
        [DllImport(Lib)] public static extern int zmq_close(IntPtr socket);
        [DllImport(Lib)] public static extern int zmq_connect(IntPtr socket, [MarshalAs(UnmanagedType.LPStr)] string address);
        [DllImport(Lib)] public static extern int zmq_setsockopt(IntPtr socket, int option, ref int value, UIntPtr size);
        [DllImport(Lib)] public static extern int zmq_setsockopt(IntPtr socket, int option, byte[] value, UIntPtr size);
        [DllImport(Lib)] public static extern int zmq_send(IntPtr socket, byte[] buffer, UIntPtr size, int flags);
        [DllImport(Lib)] public static extern int zmq_recv(IntPtr socket, byte[] buffer, UIntPtr size, int flags);

        public static void SetOption(IntPtr socket, int option, int value)
        {
            zmq_setsockopt(socket, option, ref value, (UIntPtr)sizeof(int));
        }

        /// <summary>The three CurveZMQ keys (server public, client public, client secret), checked;
        /// null when all three are null.</summary>
        public static string[] CurveKeys(string serverKey, string clientPublicKey, string clientSecretKey)
        {
            if (serverKey == null && clientPublicKey == null && clientSecretKey == null) return null;
            var keys = new[] { serverKey, clientPublicKey, clientSecretKey };
            foreach (string key in keys)
                if (key == null || key.Length != 40)
                    throw new ArgumentException("CurveZMQ needs serverKey, clientPublicKey and clientSecretKey, each 40 Z85 characters");
            return keys;
        }

        /// <summary>Make socket a CurveZMQ client with keys (from CurveKeys; null: none), before it connects.</summary>
        public static void Secure(IntPtr socket, string[] keys)
        {
            if (keys == null) return;
            int[] options = { CURVE_SERVERKEY, CURVE_PUBLICKEY, CURVE_SECRETKEY };
            for (int i = 0; i < 3; i++)
            {
                byte[] key = Encoding.ASCII.GetBytes(keys[i]);
                if (zmq_setsockopt(socket, options[i], key, (UIntPtr)key.Length) != 0)
                    throw new OstinatoUnavailableException("this libzmq cannot use CurveZMQ keys (built without CURVE?)");
            }
        }

        static bool resolverSet;

        // .NET Core 3+ only (Mono uses the dllmap): find libzmq.so.5 when "libzmq" is not found.
        // Looked up by reflection so this file still compiles for Mono and Unity.
        public static void UseNativeLibraryFallback()
        {
            if (resolverSet) return;
            resolverSet = true;
            Type nl = Type.GetType("System.Runtime.InteropServices.NativeLibrary");
            Type resolverType = Type.GetType("System.Runtime.InteropServices.DllImportResolver");
            if (nl == null || resolverType == null) return;
            MethodInfo set = nl.GetMethod("SetDllImportResolver");
            MethodInfo resolve = typeof(Zmq).GetMethod("Resolve", BindingFlags.NonPublic | BindingFlags.Static);
            try
            {
                set.Invoke(null, new object[] { typeof(Zmq).Assembly, Delegate.CreateDelegate(resolverType, resolve) });
            }
            catch (TargetInvocationException) { } // a resolver was already set by the game
        }

        static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
        {
            if (name != Lib) return IntPtr.Zero;
            Type nl = Type.GetType("System.Runtime.InteropServices.NativeLibrary");
            MethodInfo tryLoad = nl.GetMethod("TryLoad", new[] { typeof(string), typeof(IntPtr).MakeByRefType() });
            foreach (string candidate in new[] { "libzmq", "libzmq.so.5", "libzmq.5.dylib" })
            {
                object[] args = { candidate, IntPtr.Zero };
                if ((bool)tryLoad.Invoke(null, args)) return (IntPtr)args[1];
            }
            return IntPtr.Zero;
        }
    }

    /// <summary>The server answered with an error reply.</summary>
    public class OstinatoServerException : Exception
    {
        public readonly string Code, Field, Allowed;
        public OstinatoServerException(Reply reply) : base(reply.GetString("message") ?? "error reply")
        {
            Code = reply.GetString("code");
            Field = reply.GetString("field");
            Allowed = reply.GetRaw("allowed");
        }
    }

    /// <summary>The server did not answer in time (is `ostinato serve` running?).</summary>
    public class OstinatoUnavailableException : Exception
    {
        public OstinatoUnavailableException(string message) : base(message) { }
    }

    /// <summary>A reply as JSON text, with minimal readers for the server's compact JSON.</summary>
    public class Reply
    {
        public readonly string Json;
        public Reply(string json) { Json = json; }
        public bool Ok { get { return Json.StartsWith("{\"ok\":true", StringComparison.Ordinal); } }
        public long Id { get { double v; return TryGetNumber("id", out v) ? (long)v : -1; } }

        /// <summary>The raw JSON text of a member's value (up to the next top-level comma).</summary>
        public string GetRaw(string key)
        {
            int start = Find(key);
            if (start < 0) return null;
            int depth = 0, i = start;
            bool inString = false;
            for (; i < Json.Length; i++)
            {
                char ch = Json[i];
                if (inString) { if (ch == '\\') i++; else if (ch == '"') inString = false; continue; }
                if (ch == '"') inString = true;
                else if (ch == '[' || ch == '{') depth++;
                else if (ch == ']' || ch == '}') { if (depth == 0) break; depth--; }
                else if (ch == ',' && depth == 0) break;
            }
            return Json.Substring(start, i - start);
        }

        /// <summary>A string member, unescaped; null if absent or not a string.</summary>
        public string GetString(string key)
        {
            int i = Find(key);
            if (i < 0 || i >= Json.Length || Json[i] != '"') return null;
            var sb = new StringBuilder();
            for (i++; i < Json.Length && Json[i] != '"'; i++)
            {
                char ch = Json[i];
                if (ch == '\\' && i + 1 < Json.Length)
                {
                    ch = Json[++i];
                    if (ch == 'n') ch = '\n';
                    else if (ch == 't') ch = '\t';
                    else if (ch == 'u' && i + 4 < Json.Length)
                    {
                        ch = (char)int.Parse(Json.Substring(i + 1, 4), NumberStyles.HexNumber);
                        i += 4;
                    }
                }
                sb.Append(ch);
            }
            return sb.ToString();
        }

        /// <summary>An object member as a Reply of its own (e.g. GetObject("theme").GetString("key"),
        /// where the reply's own "key" is another); null if absent or not an object.</summary>
        public Reply GetObject(string key)
        {
            string raw = GetRaw(key);
            return raw != null && raw.StartsWith("{", StringComparison.Ordinal) ? new Reply(raw) : null;
        }

        public bool TryGetNumber(string key, out double value)
        {
            value = 0;
            string raw = GetRaw(key);
            return raw != null && double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        }

        /// <summary>An integer member, exactly (all 64 bits, as t_ns needs: a double keeps 53);
        /// false if absent or not a JSON integer.</summary>
        public bool TryGetInteger(string key, out long value)
        {
            value = 0;
            string raw = GetRaw(key);
            return raw != null && long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);
        }

        int Find(string key)
        {
            string pattern = "\"" + key + "\":";
            int i = Json.IndexOf(pattern, StringComparison.Ordinal);
            return i < 0 ? -1 : i + pattern.Length;
        }

        public override string ToString() { return Json; }
    }

    /// <summary>A connection to an Ostinato control socket (a ZeroMQ DEALER). Dispose it.</summary>
    public class Client : IDisposable
    {
        public const string DefaultAddress = "tcp://127.0.0.1:5555";
        public readonly string Address;
        /// <summary>Milliseconds a request waits for its reply.</summary>
        public int Timeout;
        /// <summary>Default session for messages (null: the server's "main").</summary>
        public string Session;

        IntPtr context, socket;
        long nextId = 1;
        readonly byte[] buffer = new byte[65536];
        readonly string[] curveKeys; // server public, client public, client secret; null: none

        /// <summary>serverKey, clientPublicKey, clientSecretKey: CurveZMQ keys (Z85), all or none.</summary>
        public Client(string address = DefaultAddress, int timeoutMs = 1000, string session = null,
                      string serverKey = null, string clientPublicKey = null, string clientSecretKey = null)
        {
            Address = address;
            Timeout = timeoutMs;
            Session = session;
            curveKeys = Zmq.CurveKeys(serverKey, clientPublicKey, clientSecretKey);
            Zmq.UseNativeLibraryFallback();
            context = Zmq.zmq_ctx_new();
            if (context == IntPtr.Zero) throw new OstinatoUnavailableException("zmq_ctx_new failed");
            Connect();
        }

        void Connect()
        {
            socket = Zmq.zmq_socket(context, Zmq.DEALER);
            SetOption(Zmq.LINGER, 0);
            SetOption(Zmq.SNDHWM, 1000);
            Zmq.Secure(socket, curveKeys);
            if (Zmq.zmq_connect(socket, Address) != 0)
                throw new OstinatoUnavailableException("cannot connect to " + Address);
        }

        void SetOption(int option, int value) { Zmq.SetOption(socket, option, value); }

        /// <summary>One key from a file `ostinato keys` wrote: which is "public-key" or "secret-key".</summary>
        public static string LoadKey(string path, string which)
        {
            foreach (string raw in System.IO.File.ReadAllLines(path))
            {
                string line = raw.Trim();
                if (!line.StartsWith(which, StringComparison.Ordinal)) continue;
                int open = line.IndexOf('"'), close = line.LastIndexOf('"');
                if (close - open == 41) return line.Substring(open + 1, 40);
            }
            throw new ArgumentException("no " + which + " in " + path);
        }

        public void Dispose()
        {
            if (socket != IntPtr.Zero) { Zmq.zmq_close(socket); socket = IntPtr.Zero; }
            if (context != IntPtr.Zero) { Zmq.zmq_ctx_term(context); context = IntPtr.Zero; }
        }

        // ---------------------------------------------------------------- messages

        // transition (every call that has one): "now", "beat", "bar", "phrase" (the next
        // phrase of the session's form), "bars:N" (N 1..64: the next line of an N-bar grid)
        // or "cue:NAME" (a cue placed with Cue); the reply gives the beat and t_ns it takes
        // effect at.

        // tonality (0 free .. 1 strict: the prior over the mode's scale) and critic (drafts of
        // each beat the discriminator judges, 0..16, 0 off; above 0 needs `serve --critic`) are
        // optional on Mood, State and Key: null leaves them out (Mood, Key: the session's values stay;
        // State: the preset's, else the server's default).  The reply carries both in effect.
        // voices (Mood, State, OpenSession; a server with an ensemble model): the ensemble's
        // voices, a Voices value (see there); null leaves them out.
        // repetition (Mood, State, OpenSession): how much the music repeats itself along the
        // session's form, 0 through-composed .. 1 a loop, from the next bar line; null leaves
        // it out (Mood: the session's stays; State, OpenSession: the preset's, else the
        // server's default).  Replies carry it in effect; OpenSession's the session's form too.
        // style (Mood, State; a server whose model is told styles, Hello's
        // capabilities.styles): the texture asked of the model, as the collection it learned it
        // from plays, "game", "baroque", "classical" or "renaissance", from the transition; null
        // leaves it out (Mood: the session's stays; State: the preset's, else none).  Replies
        // carry the style in effect (GetString("style"), null: none); a model told no styles
        // throws out_of_range on style, an unknown style bad_choice on style.

        public Reply Hello() { return Request("hello", null); }
        public Reply Mood(double? valence = null, double? arousal = null, double? intensity = null,
                          string transition = "bar", string session = null,
                          double? tonality = null, int? critic = null, Voices voices = null,
                          double? repetition = null, string style = null)
        {
            return Request("mood", session, "valence", valence, "arousal", arousal, "intensity", intensity,
                           "transition", transition, "tonality", tonality, "critic", critic,
                           "voices", voices, "repetition", repetition, "style", style);
        }
        /// <summary>Switch to a preset; transition null: states.toml's rule for this pair of
        /// presets ([[transitions]]), else "bar" (the reply names the rule and pickup_beat).</summary>
        public Reply State(string name, string transition = null, string session = null,
                           double? tonality = null, int? critic = null, Voices voices = null,
                           double? repetition = null, string style = null)
        {
            return Request("state", session, "name", name, "transition", transition, "tonality", tonality,
                           "critic", critic, "voices", voices, "repetition", repetition, "style", style);
        }
        public Reply Tempo(double bpm, double rampBeats = 0, string transition = "beat", string session = null)
        {
            return Request("tempo", session, "bpm", bpm, "ramp_beats", rampBeats, "transition", transition);
        }
        public Reply Key(string key, string mode = null, string transition = "bar", string session = null,
                         double? tonality = null, int? critic = null)
        {
            return Request("key", session, "key", key, "mode", mode, "transition", transition,
                           "tonality", tonality, "critic", critic);
        }
        /// <summary>A stinger of states.toml's, over the current harmony at the transition.
        /// The reply's "played" says whether it plays (with its beat and t_ns) or, within its
        /// min_interval_beats, not (reason, next_beat).</summary>
        public Reply Stinger(string name, string transition = "beat", string session = null)
        {
            return Request("stinger", session, "name", name, "transition", transition);
        }
        /// <summary>A stinger of your own: rows of {pitch, startBeat, durationBeats} in any key
        /// (moved to the session's), checked as a theme's notes; minIntervalBeats (0..64) and
        /// queue ("drop" or "queue") say what happens to it within that many beats of its last
        /// playing; null leaves them out (0, "drop").</summary>
        public Reply StingerNotes(double[][] notes, string transition = "beat", double? minIntervalBeats = null,
                                  string queue = null, string session = null)
        {
            return Request("stinger", session, "notes", notes, "transition", transition,
                           "min_interval_beats", minIntervalBeats, "queue", queue);
        }
        /// <summary>Place cue name at the next grid point at ("beat", "bar", "phrase", "bars:N")
        /// or at beat (a beat of the session, ahead of it).  The reply gives its beat and t_ns;
        /// the stream announces it with a "cue" event when it plays, and a transition
        /// "cue:NAME" lands there.  Placing a name again moves it.</summary>
        public Reply Cue(string name, string at = "bar", double? beat = null, string session = null)
        {
            return Request("cue", session, "name", name, "at", at, "beat", beat);
        }
        /// <summary>Where the music is: beat, bar, beat_in_bar, phrase, bar_in_phrase, phrase_bars,
        /// bpm, key, mode, state, transport, t_ns (the server's now), next_downbeat and
        /// next_phrase (beats) with next_downbeat_t_ns and next_phrase_t_ns (read with
        /// TryGetInteger; DueIn(tNs) is how long until then here), and the cues waiting.</summary>
        public Reply Position(string session = null) { return Request("position", session); }
        /// <summary>Compose from a theme (a leitmotif), given once: notes as rows of
        /// {pitch (MIDI, sent as an integer when whole), startBeat, durationBeats}, in any key,
        /// or the name of one of states.toml's [themes].  variation: 0 close to the theme .. 1
        /// free; blendBeats: beats over which the music moves to it (0: its phrase starts at the
        /// transition); null leaves them out (the server's defaults, 0.3 and 0).  The reply's
        /// GetObject("theme") says what was understood (key, bars, notes, source).  Any server
        /// takes it: the melody states it.</summary>
        public Reply Theme(double[][] notes = null, string name = null, double? variation = null,
                           string transition = "bar", double? blendBeats = null, string session = null)
        {
            return Request("theme", session, "notes", notes, "name", name, "variation", variation,
                           "transition", transition, "blend_beats", blendBeats);
        }
        /// <summary>Back to free composition (fine on any server), at the transition or over blendBeats.</summary>
        public Reply FreeTheme(string transition = "bar", double? blendBeats = null, string session = null)
        {
            return Request("theme", session, "action", "free", "transition", transition, "blend_beats", blendBeats);
        }
        public Reply Start(string session = null) { return Request("start", session); }
        public Reply Stop(string session = null) { return Request("stop", session); }
        public Reply Pause(string session = null) { return Request("pause", session); }
        public Reply OpenSession(string id, string state = null, Voices voices = null,
                                 double? repetition = null)
        {
            return Request("session", id, "action", "open", "state", state, "voices", voices,
                           "repetition", repetition);
        }
        public Reply CloseSession(string id) { return Request("session", id, "action", "close"); }
        public Reply Ping() { return Request("ping", null); }

        // ---------------------------------------------------------------- clock

        /// <summary>The server's clock minus LocalNowNs(), in ns: set by SyncClock (0 before, which
        /// takes the Stopwatch for the server's clock).</summary>
        public long ClockOffsetNs;
        /// <summary>The round trip (ns) of the ping SyncClock used: the offset is good to half of it.</summary>
        public long ClockRoundTripNs;

        /// <summary>Measure ClockOffsetNs with up to pings pings (each waiting at most Timeout):
        /// of their replies' t_ns (the server's CLOCK_MONOTONIC) the one with the shortest round
        /// trip is taken against the middle of its round trip on LocalNowNs().  Returns the offset.
        /// Throws OstinatoUnavailableException if the first ping has no answer; a later one without
        /// an answer ends the measurement with the pings so far.  Blocks: call it at start (or now
        /// and then; the two clocks drift apart by parts per million), not every frame.</summary>
        public long SyncClock(int pings = 8)
        {
            if (pings < 1) throw new ArgumentOutOfRangeException("pings", "at least 1");
            long bestRoundTrip = long.MaxValue, bestOffset = 0;
            for (int i = 0; i < pings; i++)
            {
                long before = LocalNowNs(), server;
                Reply reply;
                try { reply = Ping(); }
                catch (OstinatoUnavailableException) { if (i == 0) throw; break; }
                long after = LocalNowNs();
                if (!reply.TryGetInteger("t_ns", out server)) continue; // not a server of protocol 1
                if (after - before < bestRoundTrip)
                {
                    bestRoundTrip = after - before;
                    bestOffset = server - (before + (after - before) / 2);
                }
            }
            if (bestRoundTrip == long.MaxValue)
                throw new OstinatoUnavailableException("no ping reply with t_ns from Ostinato at " + Address);
            ClockOffsetNs = bestOffset;
            ClockRoundTripNs = bestRoundTrip;
            return bestOffset;
        }

        /// <summary>This process's monotonic clock in ns: Stopwatch.GetTimestamp() converted
        /// without overflow.  Not necessarily the server's clock, even on one machine: SyncClock.</summary>
        public static long LocalNowNs()
        {
            long ticks = Stopwatch.GetTimestamp(), frequency = Stopwatch.Frequency;
            return ticks / frequency * 1000000000L + ticks % frequency * 1000000000L / frequency;
        }

        /// <summary>Seconds from now until e is due here (negative: past): e.TNs on the server's
        /// clock, moved to this one by ClockOffsetNs.  A double for Unity's audio clock:
        /// source.PlayScheduled(AudioSettings.dspTime + Math.Max(0, DueIn(e))).</summary>
        public double DueIn(OstinatoEvent e) { return DueInNs(e, LocalNowNs()) / 1e9; }

        /// <summary>Seconds from now until tNs, a time on the server's clock (e.g. a Position
        /// reply's next_downbeat_t_ns: start a cutscene on the downbeat).</summary>
        public double DueIn(long tNs) { return (tNs - (LocalNowNs() + ClockOffsetNs)) / 1e9; }

        /// <summary>Nanoseconds from localNowNs (a LocalNowNs() reading) until e is due:
        /// e.TNs - (localNowNs + ClockOffsetNs), exactly.</summary>
        public long DueInNs(OstinatoEvent e, long localNowNs) { return e.TNs - (localNowNs + ClockOffsetNs); }

        // ---------------------------------------------------------------- transport

        /// <summary>Send and wait for the reply; fields are name, value pairs (null values omitted).</summary>
        public Reply Request(string type, string session, params object[] fields)
        {
            long id = SendNowait(type, session, fields);
            var clock = Stopwatch.StartNew();
            while (true)
            {
                int left = Timeout - (int)clock.ElapsedMilliseconds;
                if (left <= 0) break;
                SetOption(Zmq.RCVTIMEO, left);
                Reply reply = Receive(0);
                if (reply == null) break;
                if (reply.Id != id) continue; // a late reply to an earlier request
                if (!reply.Ok) throw new OstinatoServerException(reply);
                return reply;
            }
            // A late reply would be read as the answer to the next request: start a fresh socket.
            Zmq.zmq_close(socket);
            Connect();
            throw new OstinatoUnavailableException("no reply from Ostinato at " + Address + " within " + Timeout + " ms");
        }

        /// <summary>Queue a message without blocking; returns its id (replies: PollReply).
        /// Values: strings, integers (written as JSON integers, as `critic` must be), other
        /// numbers (written as doubles), double[][] (a theme's notes: arrays of arrays, the
        /// first number of each row an integer when whole) or Voices (an object); null values
        /// are left out.</summary>
        public long SendNowait(string type, string session, params object[] fields)
        {
            long id = nextId++;
            var sb = new StringBuilder("{\"type\":");
            AppendString(sb, type);
            sb.Append(",\"id\":").Append(id.ToString(CultureInfo.InvariantCulture));
            session = session ?? Session;
            if (session != null) { sb.Append(",\"session\":"); AppendString(sb, session); }
            for (int i = 0; i + 1 < fields.Length; i += 2)
            {
                object value = fields[i + 1];
                if (value == null) continue;
                sb.Append(",\"").Append((string)fields[i]).Append("\":");
                if (value is string) AppendString(sb, (string)value);
                else if (value is double[][]) AppendNotes(sb, (double[][])value);
                else if (value is Voices) sb.Append(((Voices)value).ToJson());
                else if (value is int || value is long || value is short || value is byte)
                    sb.Append(Convert.ToInt64(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
                else sb.Append(Convert.ToDouble(value, CultureInfo.InvariantCulture).ToString("R", CultureInfo.InvariantCulture));
            }
            sb.Append('}');
            byte[] data = Encoding.UTF8.GetBytes(sb.ToString());
            if (Zmq.zmq_send(socket, data, (UIntPtr)data.Length, Zmq.DONTWAIT) < 0)
                throw new OstinatoUnavailableException("cannot send to Ostinato at " + Address + ": queue full");
            return id;
        }

        /// <summary>A reply if one has arrived, else null; never blocks.</summary>
        public Reply PollReply() { return Receive(Zmq.DONTWAIT); }

        Reply Receive(int flags)
        {
            int n = Zmq.zmq_recv(socket, buffer, (UIntPtr)buffer.Length, flags);
            if (n < 0) return null;
            return new Reply(Encoding.UTF8.GetString(buffer, 0, Math.Min(n, buffer.Length)));
        }

        static void AppendNotes(StringBuilder sb, double[][] rows)
        {
            sb.Append('[');
            for (int i = 0; i < rows.Length; i++)
            {
                if (i > 0) sb.Append(',');
                double[] row = rows[i];
                if (row == null) { sb.Append("null"); continue; } // the server refuses it by name
                sb.Append('[');
                for (int j = 0; j < row.Length; j++)
                {
                    if (j > 0) sb.Append(',');
                    double v = row[j];
                    if (j == 0 && v == Math.Floor(v) && Math.Abs(v) < 1e15) // a pitch: 62, not 62.0
                        sb.Append(((long)v).ToString(CultureInfo.InvariantCulture));
                    else sb.Append(v.ToString("R", CultureInfo.InvariantCulture));
                }
                sb.Append(']');
            }
            sb.Append(']');
        }

        internal static void AppendString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char ch in s)
            {
                if (ch == '"' || ch == '\\') sb.Append('\\').Append(ch);
                else if (ch < ' ') sb.Append("\\u").Append(((int)ch).ToString("x4"));
                else sb.Append(ch);
            }
            sb.Append('"');
        }
    }

    /// <summary>Whether a voice plays: forced on, forced off, or as layering by intensity and
    /// arousal decides (from the voice's `enter` level on).</summary>
    public enum Play { On, Off, Auto }

    /// <summary>A `voices` value (PROTOCOL.md "Voices"), for Mood, State and OpenSession on a
    /// server with an ensemble model: per voice ("melody", "bass", "harmony", "drums") whether
    /// it plays and its program (0..127), channel (0..15, 9 = MIDI channel 10) and octave
    /// (-3..3; drums 0); what is left null is not sent.  Changes take effect at the next bar
    /// line.  <c>new Voices().Off("drums").Set("harmony", program: 89)</c></summary>
    public class Voices
    {
        readonly List<KeyValuePair<string, string>> settings = new List<KeyValuePair<string, string>>();

        public Voices On(string voice) { return Set(voice, Play.On); }
        public Voices Off(string voice) { return Set(voice, Play.Off); }
        public Voices Auto(string voice) { return Set(voice, Play.Auto); }

        /// <summary>A voice's setting (a later one for the same voice replaces it).  Values
        /// outside their ranges are sent as they are, for the server to refuse naming them.</summary>
        public Voices Set(string voice, Play? play = null, int? program = null, int? channel = null,
                          int? octave = null)
        {
            var sb = new StringBuilder();
            if (program == null && channel == null && octave == null && play != null)
                sb.Append(Json(play.Value));   // the shorthand: true, false or "auto"
            else
            {
                sb.Append('{');
                string sep = "";
                if (play != null) { sb.Append("\"play\":").Append(Json(play.Value)); sep = ","; }
                Member(sb, ref sep, "program", program);
                Member(sb, ref sep, "channel", channel);
                Member(sb, ref sep, "octave", octave);
                sb.Append('}');
            }
            settings.RemoveAll(kv => kv.Key == voice);
            settings.Add(new KeyValuePair<string, string>(voice, sb.ToString()));
            return this;
        }

        /// <summary>The JSON object the message carries.</summary>
        public string ToJson()
        {
            var sb = new StringBuilder("{");
            for (int i = 0; i < settings.Count; i++)
            {
                if (i > 0) sb.Append(',');
                Client.AppendString(sb, settings[i].Key);
                sb.Append(':').Append(settings[i].Value);
            }
            return sb.Append('}').ToString();
        }

        public override string ToString() { return ToJson(); }

        static string Json(Play play) { return play == Play.On ? "true" : play == Play.Off ? "false" : "\"auto\""; }

        static void Member(StringBuilder sb, ref string sep, string key, int? value)
        {
            if (value == null) return;
            sb.Append(sep).Append('"').Append(key).Append("\":")
              .Append(value.Value.ToString(CultureInfo.InvariantCulture));
            sep = ",";
        }
    }

    /// <summary>One event of the stream (PROTOCOL.md "Event stream"): its common fields, read
    /// once; the other fields (a mood's valence, a tempo's bpm, ...) through the Reply readers
    /// (GetString, TryGetNumber, TryGetInteger, GetRaw, GetObject).  A reply's Ok and Id mean
    /// nothing here.</summary>
    public class OstinatoEvent : Reply
    {
        /// <summary>note_on, note_off, mood, transport, tempo, state, key, theme, theme_return,
        /// cue, stinger, or a sync type: beat, bar, phrase (each with bar, beat_in_bar, phrase,
        /// bar_in_phrase, bpm: TryGetNumber).</summary>
        public readonly string Type;
        public readonly string Session;
        /// <summary>The stream's counter: a gap means this subscriber dropped events.</summary>
        public readonly long Seq;
        /// <summary>When it sounds, in ns on the server's CLOCK_MONOTONIC (exact: read as an
        /// integer).  Client.DueIn(e) is how long until then here.</summary>
        public readonly long TNs;
        /// <summary>The musical position, in beats since start.</summary>
        public readonly double Beat;
        /// <summary>A note's channel (0..15), pitch (0..127) and velocity (0 on note_off); -1 on other events.</summary>
        public readonly int Channel, Pitch, Velocity;
        /// <summary>A note's voice: "melody", "bass", "harmony", "drums" or "stinger"; null
        /// on other events, or where the server knows no voice for the channel.</summary>
        public readonly string Voice;

        /// <summary>Read an event frame; FormatException if it has no string type or integer t_ns.</summary>
        public OstinatoEvent(string json) : base(json)
        {
            Type = GetString("type");
            if (Type == null || !TryGetInteger("t_ns", out TNs))
                throw new FormatException("not an Ostinato event (no type or integer t_ns): " + json);
            Session = GetString("session");
            if (!TryGetInteger("seq", out Seq)) Seq = -1;
            if (!TryGetNumber("beat", out Beat)) Beat = double.NaN;
            Channel = Int("channel");
            Pitch = Int("pitch");
            Velocity = Int("velocity");
            Voice = GetString("voice");
        }

        public static OstinatoEvent Parse(string json) { return new OstinatoEvent(json); }

        /// <summary>Parse without throwing: false (and null) when json is no event.</summary>
        public static bool TryParse(string json, out OstinatoEvent e)
        {
            try { e = new OstinatoEvent(json); return true; }
            catch (FormatException) { e = null; return false; }
        }

        public bool IsNote { get { return Type == "note_on" || Type == "note_off"; } }

        /// <summary>A beat, bar or phrase event (EventListener.SyncTypes).</summary>
        public bool IsSync { get { return Array.IndexOf(EventListener.SyncTypes, Type) >= 0; } }

        int Int(string key)
        {
            long v;
            return TryGetInteger(key, out v) && v >= int.MinValue && v <= int.MaxValue ? (int)v : -1;
        }
    }

    /// <summary>A subscription to the server's event stream (a ZeroMQ SUB socket). Dispose it.
    /// Events queue up in libzmq (up to its 1000 by default, then the newest are dropped: Seq
    /// shows the gap) until TryReceive reads them.  One thread at a time, as for Client.</summary>
    public class EventListener : IDisposable
    {
        public const string DefaultAddress = "tcp://127.0.0.1:5556";
        /// <summary>The sync events: sent only to a subscriber that names them.</summary>
        public static readonly string[] SyncTypes = { "beat", "bar", "phrase" };
        public readonly string Address;

        IntPtr context, socket;
        int receiveTimeout = int.MinValue; // RCVTIMEO as last set
        readonly byte[] buffer = new byte[65536];

        /// <summary>Subscribe at address to the events of these types (e.g. "note_on",
        /// "note_off", or "beat", "bar", "cue"); none (or null, or ""): every event but the
        /// sync ones (SyncTypes), which come only when named.  A sync event's TNs is a note's
        /// on that beat: schedule it with Client.DueIn as a note.</summary>
        public EventListener(string address = DefaultAddress, params string[] types)
            : this(address, (IEnumerable<string>)types) { }

        /// <summary>As above; serverKey, clientPublicKey, clientSecretKey: CurveZMQ keys (Z85),
        /// all or none, as for Client (a keyed server publishes only to keyed subscribers).</summary>
        public EventListener(string address, IEnumerable<string> types, string serverKey = null,
                             string clientPublicKey = null, string clientSecretKey = null)
        {
            Address = address;
            string[] curveKeys = Zmq.CurveKeys(serverKey, clientPublicKey, clientSecretKey);
            Zmq.UseNativeLibraryFallback();
            context = Zmq.zmq_ctx_new();
            if (context == IntPtr.Zero) throw new OstinatoUnavailableException("zmq_ctx_new failed");
            socket = Zmq.zmq_socket(context, Zmq.SUB);
            try { Subscribe(curveKeys, types); }
            catch { Dispose(); throw; }
        }

        void Subscribe(string[] curveKeys, IEnumerable<string> types)
        {
            Zmq.SetOption(socket, Zmq.LINGER, 0);
            Zmq.Secure(socket, curveKeys);
            var prefixes = new List<string>();
            if (types != null)
                foreach (string type in types)
                {
                    if (string.IsNullOrEmpty(type)) { prefixes.Clear(); break; }
                    // Events start {"v":1,"type":"...", so a prefix subscription filters by type.
                    prefixes.Add("{\"v\":1,\"type\":\"" + type + "\"");
                }
            if (prefixes.Count == 0) prefixes.Add("");
            foreach (string prefix in prefixes)
            {
                byte[] data = Encoding.UTF8.GetBytes(prefix);
                Zmq.zmq_setsockopt(socket, Zmq.SUBSCRIBE, data, (UIntPtr)data.Length);
            }
            if (Zmq.zmq_connect(socket, Address) != 0)
                throw new OstinatoUnavailableException("cannot connect to " + Address);
        }

        /// <summary>The next event, waiting at most timeoutMs (0: only what has arrived, for
        /// Update; below 0: until one comes).  False (e null) if none came in time.  Frames that
        /// are no event are skipped.</summary>
        public bool TryReceive(out OstinatoEvent e, int timeoutMs)
        {
            if (socket == IntPtr.Zero) throw new ObjectDisposedException("EventListener");
            long start = Stopwatch.GetTimestamp();
            while (true)
            {
                int wait = -1;
                if (timeoutMs >= 0)
                {
                    long elapsedMs = (Stopwatch.GetTimestamp() - start) * 1000 / Stopwatch.Frequency;
                    wait = (int)Math.Max(0, timeoutMs - elapsedMs);
                }
                if (wait != receiveTimeout) { Zmq.SetOption(socket, Zmq.RCVTIMEO, wait); receiveTimeout = wait; }
                int n = Zmq.zmq_recv(socket, buffer, (UIntPtr)buffer.Length, 0);
                if (n < 0) { e = null; return false; }
                if (n <= buffer.Length && OstinatoEvent.TryParse(Encoding.UTF8.GetString(buffer, 0, n), out e))
                    return true;
            }
        }

        public void Dispose()
        {
            if (socket != IntPtr.Zero) { Zmq.zmq_close(socket); socket = IntPtr.Zero; }
            if (context != IntPtr.Zero) { Zmq.zmq_ctx_term(context); context = IntPtr.Zero; }
        }
    }
}
