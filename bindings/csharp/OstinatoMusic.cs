// OstinatoMusic.cs - a Unity component that turns game events into Ostinato messages.
// Add it to a GameObject, then call its methods from gameplay code (or UnityEvents).
// With eventsAddress set it also follows the event stream: MusicEvent is raised in Update for
// each event, with the seconds until it is due (see README: "Event stream and scheduling").
// Outside Unity this file compiles to nothing.
#if UNITY_5_3_OR_NEWER
using UnityEngine;
using Ostinato;

public class OstinatoMusic : MonoBehaviour
{
    public string address = Client.DefaultAddress;
    public int timeoutMs = 200;
    public string startState = "explore";
    [Range(-1f, 1f)] public float startTonality = -1f; // 0 free .. 1 strict; below 0: the preset's
    public int startCritic = -1;                         // critic drafts per beat; below 0: the preset's
    public string eventsAddress = "";                    // e.g. EventListener.DefaultAddress; empty: no events
    // empty: every event but the sync ones; add "beat", "bar", "phrase" (opt-in) and "cue" to
    // play along: their dueIn is a note's on that beat
    public string[] eventTypes = { "note_on", "note_off" };

    // Each event received, in Update, with the seconds until it is due on this machine:
    // e.g. source.PlayScheduled(AudioSettings.dspTime + System.Math.Max(0, dueIn)).
    public event System.Action<OstinatoEvent, double> MusicEvent;

    Client client;
    EventListener events;

    void Start()
    {
        client = new Client(address, timeoutMs);
        try
        {
            client.State(startState, "now", null,
                         startTonality >= 0 ? (double?)startTonality : null,
                         startCritic >= 0 ? (int?)startCritic : null);
            client.Start();
            if (!string.IsNullOrEmpty(eventsAddress))
            {
                events = new EventListener(eventsAddress, eventTypes);
                client.SyncClock(4); // blocks a few round trips, once
            }
        }
        catch (OstinatoUnavailableException e)
        {
            Debug.LogWarning("Ostinato: " + e.Message);
        }
        catch (OstinatoServerException e) // e.g. startCritic above 0 on a server without a critic
        {
            Debug.LogWarning("Ostinato: " + e.Code + " " + e.Field + ": " + e.Message);
        }
    }

    // Fire and forget from gameplay; replies are read once a frame in Update.
    public void SetState(string state) { Send("state", "name", state); }
    public void OnHealth(float fraction) { Send("mood", "arousal", Mathf.Clamp01(1f - fraction)); }
    public void OnEnemiesNear(int count) { Send("mood", "intensity", Mathf.Clamp01(count / 8f)); }
    public void OnHit() { Send("stinger", "name", "hit", "transition", "now"); }
    public void OnBossAppears() { Send("stinger", "name", "danger"); Send("state", "name", "boss"); }
    // 0 free (the model's own pitches) .. 1 strict (scale notes only); the session keeps it.
    public void SetTonality(float tonality) { Send("mood", "tonality", Mathf.Clamp01(tonality)); }
    // Drafts of each beat the critic judges (0 off, up to 16); above 0 needs `serve --critic`.
    public void SetCritic(int drafts) { Send("mood", "critic", drafts); }
    // 0 through-composed .. 1 a loop: how much the music repeats itself along its form, from
    // the next bar line; the session keeps it.
    public void SetRepetition(float repetition)
    {
        Send("mood", "repetition", System.Math.Round((double)Mathf.Clamp01(repetition), 6));
    }
    // A collection's texture ("game", "baroque", "classical", "renaissance") from the next bar
    // line, on a server whose model is told styles; the session keeps it.
    public void SetStyle(string style) { Send("mood", "style", style); }
    // A theme of states.toml's [themes] (the hero's, a place's) from the next bar; variation 0
    // plays it note for note .. 1 composes freely, on any server.
    public void PlayTheme(string name, float variation)
    {
        Send("theme", "name", name, "variation", System.Math.Round((double)Mathf.Clamp01(variation), 6));
    }
    // Back to free composition, moving there over a bar.
    public void StopTheme() { Send("theme", "action", "free", "blend_beats", 4.0); }
    // A named cue at the next grid point at ("beat", "bar", "phrase", "bars:4"): MusicEvent
    // raises its "cue" event (with "cue" in eventTypes) when it plays: open the door then.
    public void PlaceCue(string cueName, string at) { Send("cue", "name", cueName, "at", at); }
    // A preset from a grid point or a cue: transition "phrase", "bars:8", "cue:door", ...
    public void SetStateAt(string state, string transition) { Send("state", "name", state, "transition", transition); }

    void Send(string type, params object[] fields)
    {
        try { client.SendNowait(type, null, fields); }
        catch (OstinatoUnavailableException e) { Debug.LogWarning("Ostinato: " + e.Message); }
    }

    void Update()
    {
        Reply reply;
        while ((reply = client.PollReply()) != null)
            if (!reply.Ok) Debug.LogWarning("Ostinato: " + reply.GetString("message"));
        OstinatoEvent e;
        while (events != null && events.TryReceive(out e, 0))
            if (MusicEvent != null) MusicEvent(e, client.DueIn(e));
    }

    void OnDestroy()
    {
        if (events != null) events.Dispose();
        if (client != null) client.Dispose();
    }
}
#endif
