// OstinatoMusic.cs - a Unity component that turns game events into Ostinato messages.
// Add it to a GameObject, then call its methods from gameplay code (or UnityEvents).
// Outside Unity this file compiles to nothing.
#if UNITY_5_3_OR_NEWER
using UnityEngine;
using Ostinato;

public class OstinatoMusic : MonoBehaviour
{
    public string address = Client.DefaultAddress;
    public int timeoutMs = 200;
    public string startState = "explore";

    Client client;

    void Start()
    {
        client = new Client(address, timeoutMs);
        try
        {
            client.State(startState, "now");
            client.Start();
        }
        catch (OstinatoUnavailableException e)
        {
            Debug.LogWarning("Ostinato: " + e.Message);
        }
    }

    // Fire and forget from gameplay; replies are read once a frame in Update.
    public void SetState(string state) { Send("state", "name", state); }
    public void OnHealth(float fraction) { Send("mood", "arousal", Mathf.Clamp01(1f - fraction)); }
    public void OnEnemiesNear(int count) { Send("mood", "intensity", Mathf.Clamp01(count / 8f)); }
    public void OnHit() { Send("stinger", "name", "hit", "transition", "now"); }
    public void OnBossAppears() { Send("stinger", "name", "danger"); Send("state", "name", "boss"); }

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
    }

    void OnDestroy()
    {
        if (client != null) client.Dispose();
    }
}
#endif
