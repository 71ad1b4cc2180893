/*
 * ostinato.h - single-header C/C++ client for the Ostinato control protocol (version 1).
 *
 * Needs libzmq (link with -lzmq).  C89 compatible, usable from C++ and Unreal.
 * Sends never block (ZMQ_DONTWAIT); replies are read with a poll and a timeout, so a game
 * frame never waits on the music server unless it asks to.
 *
 *   ost_client c;
 *   if (ost_open(&c, "tcp://127.0.0.1:5555", 500) != 0) return 1;
 *   id = ost_mood(&c, 0.5, 0.8, OST_KEEP, "bar");     non-blocking; returns the request id
 *   ost_wait_reply(&c, id, buf, sizeof buf);           1 ok, 0 error reply, -1 timeout
 *   ost_close(&c);
 *
 * ost_mood_ex, ost_state_ex and ost_key_ex also take the optional `tonality` (0 free .. 1
 * strict, OST_KEEP: not sent) and `critic` (discriminator drafts per beat 0..16, sent as a
 * JSON integer; OST_KEEP_CRITIC: not sent); ost_mood, ost_state and ost_key are the same
 * calls with both left out.
 *
 * Voices (a server whose model is an ensemble model: melody, bass, harmony, drums): an array
 * of ost_voice, each a voice name with play (OST_PLAY_ON, OST_PLAY_OFF, OST_PLAY_AUTO: layering
 * by intensity and arousal) and its program (0..127), channel (0..15, 9 = MIDI channel 10) and
 * octave (-3..3), any of them OST_VOICE_KEEP (not sent), goes with ost_mood_voices,
 * ost_state_voices or ost_open_session_voices; changes take effect at the next bar line.
 *
 *   static const ost_voice pad[] = {{"drums", OST_PLAY_OFF, OST_VOICE_KEEP, OST_VOICE_KEEP,
 *                                    OST_VOICE_KEEP},
 *                                   {"harmony", OST_VOICE_KEEP, 89, OST_VOICE_KEEP, OST_VOICE_KEEP}};
 *   id = ost_mood_voices(&c, pad, 2, NULL);                  drums off, the harmony a warm pad
 *
 * Repetition (0 through-composed .. 1 a loop: how much the music repeats itself along its
 * session's form, from the next bar line): ost_mood_repetition (the session's, until changed),
 * ost_state_repetition (over the preset's) and ost_open_session_repetition; OST_KEEP leaves it
 * out (mood: the session's stays; state, open: the preset's, else the server's default).
 *
 *   id = ost_mood_repetition(&c, 0.8, "bar");              recalls and loops from the next bar
 *
 * Style (a server whose model is told styles, listed in the hello reply's capabilities.styles:
 * the texture asked of the model, as the collection it learned it from plays, "game",
 * "baroque", "classical" or "renaissance", from the transition): ost_mood_style (the
 * session's, until changed) and ost_state_style (over the preset's); NULL leaves it out (mood:
 * the session's stays; state: the preset's, else none).  The replies carry the "style" in
 * effect (null: none, the mix of them all).
 *
 *   id = ost_mood_style(&c, "baroque", "bar");             Bach's texture from the next bar
 *
 * Themes (on any server; the melody states them): ost_theme_notes sends a leitmotif as
 * n_notes rows of three doubles (pitch, start_beat, duration_beats), ost_theme_name one of
 * states.toml's [themes], ost_theme_free goes back to free composition.
 *
 *   static const double motif[] = {62, 0, 1,  65, 1, 1,  69, 2, 1};   D F A: D minor
 *   id = ost_theme_notes(&c, motif, 3, 0.2, "bar", OST_KEEP);
 *
 * A server started with CurveZMQ keys (needed off loopback) answers only clients that set
 * them after ost_open: ost_set_keys(&c, server_public, client_public, client_secret), each
 * the 40-character Z85 string from `ostinato keys`' files (ost_load_key reads one).
 *
 * The event stream (what the server plays, each event with its scheduled time t_ns on the
 * server's monotonic clock): ost_events_open subscribes, ost_event_recv reads one event;
 * ost_sync_clock measures the server's clock against ost_now_ns, and ost_event_due_in_ns
 * says how long until an event is due, to schedule each note at its time:
 *
 *   static const char *const notes[] = {"note_on", "note_off", NULL};
 *   ost_events ev;
 *   ost_events_open(&ev, "tcp://127.0.0.1:5556", notes);
 *   ost_sync_clock(&c, 5);                                   blocks: 5 pings
 *   while (ost_event_recv(&ev, buf, sizeof buf, 0) > 0)      once a frame, never blocks
 *       play_at(buf, ost_event_due_in_ns(&c, buf));          ns from now; negative: late
 *   ost_events_close(&ev);
 *
 * Playing along (see sync_example.c): every transition argument is a string, "now", "beat",
 * "bar", "phrase", "bars:N" (N 1..64) or "cue:NAME"; ost_cue places a named cue, ost_position
 * asks where the music is (its next downbeat's t_ns: start a cutscene there), ost_stinger_notes
 * sends a stinger as notes.  The sync events "beat", "bar" and "phrase" (with "bar",
 * "beat_in_bar", "phrase", "bar_in_phrase", "bpm") come only to a subscriber that names them
 * (types NULL: every other type); their t_ns is a note's on that beat, so they are scheduled
 * as notes are:
 *
 *   static const char *const sync[] = {"beat", "cue", NULL};
 *   ost_events_open(&ev, NULL, sync);
 *   ost_cue(&c, "door", "bar", OST_KEEP);                     the boss door, on the next bar
 *   while (ost_event_recv(&ev, buf, sizeof buf, 0) > 0)
 *       at(ost_event_due_in_ns(&c, buf), flash_or_open, buf); a "beat" flashes, a "cue" opens
 *
 * t_ns is a 64-bit integer, ost_ns (read it with ost_json_ns, print it with ost_format_ns).
 * ost_now_ns needs CLOCK_MONOTONIC, which in strict C (-std=c89) this header asks glibc for
 * with _POSIX_C_SOURCE when it is included first (define OST_NO_POSIX_SOURCE not to); after
 * another system header it declares the call itself (Linux).
 *
 * Numbers are written with sprintf into small fixed buffers (bounded formats) and the
 * decimal comma of a non-C locale is turned back into a point; every string is appended
 * with bounds checks and JSON escaping.  Messages are built on the stack (1 KiB); only one
 * longer than that (a theme of many notes) is built in a malloc'd buffer, freed before the
 * call returns.  The reply readers are minimal: they find "key":
 * in the server's compact JSON, which is all a game needs (ok, id, code, field, message).
 */
#ifndef OSTINATO_H
#define OSTINATO_H

/* ost_now_ns reads CLOCK_MONOTONIC, which glibc declares in strict C89/C99 (-std=c89, no
 * feature macro) only for _POSIX_C_SOURCE.  Defining it here only adds POSIX's names, and only
 * takes effect if this header comes before any system header; otherwise ost_now_ns still reads
 * the same clock (see ost_now_ns). */
#if defined(__STRICT_ANSI__) && !defined(_WIN32) && !defined(__APPLE__) && \
    !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE) && !defined(OST_NO_POSIX_SOURCE)
#define _POSIX_C_SOURCE 199309L
#endif

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#if defined(_WIN32)
#include <windows.h>
#elif defined(__APPLE__)
#include <mach/mach_time.h>
#else
#include <time.h>
#endif

#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)
#define OST_API static inline
#elif defined(__GNUC__)
#define OST_API static __inline__
#elif defined(_MSC_VER)
#define OST_API static __inline
#else
#define OST_API static
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define OST_PROTOCOL_VERSION 1
#define OST_DEFAULT_ADDRESS "tcp://127.0.0.1:5555"
#define OST_MAX_MESSAGE 65536
/* Pass OST_KEEP for a mood axis (or tonality) to keep its current value: the field is not sent. */
#define OST_KEEP (-1.0e300)
/* Pass OST_KEEP_CRITIC for critic to leave it out (an int, so OST_KEEP cannot serve).  Any
 * other value is sent as is: the server answers one outside 0..16 with out_of_range. */
#define OST_KEEP_CRITIC (-1)

/* A voice's setting (ost_mood_voices, ost_state_voices, ost_open_session_voices): name is
 * "melody", "bass", "harmony" or "drums"; play one of OST_PLAY_*; program 0..127, channel
 * 0..15 (0-based: 9 is MIDI channel 10), octave -3..3 (drums: 0).  OST_VOICE_KEEP leaves a
 * member out (a voice with every member left out is refused by the server, naming it). */
#define OST_PLAY_OFF 0
#define OST_PLAY_ON 1
#define OST_PLAY_AUTO 2
#define OST_VOICE_KEEP (-1000)

typedef struct ost_voice {
    const char *name;
    int play;
    int program;
    int channel;
    int octave;
} ost_voice;

/* Nanoseconds, a 64-bit signed integer: the event stream's t_ns (CLOCK_MONOTONIC) is past a
 * double's 53 exact bits after about 104 days of uptime.  C89 has no long long, so GCC and
 * clang are told it is meant (__extension__); print one with ost_format_ns. */
#if defined(_MSC_VER)
typedef __int64 ost_ns;
#elif defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)
typedef long long ost_ns;
#elif defined(__GNUC__)
__extension__ typedef long long ost_ns;
#else
typedef long long ost_ns; /* a C89 compiler without long long has no 64-bit integer to offer */
#endif

typedef struct ost_client {
    void *ctx;
    void *sock;
    char address[256];
    char session[65];     /* default session for messages; "" = the server's "main" */
    int timeout_ms;
    long next_id;
    char curve_server[41]; /* CurveZMQ keys (Z85), "" = none: set with ost_set_keys */
    char curve_public[41];
    char curve_secret[41];
    ost_ns clock_offset_ns; /* server's clock minus this machine's: set by ost_sync_clock (0 after ost_open) */
} ost_client;

typedef struct ost__buf {
    char *data;      /* cap bytes, NUL-terminated; NULL: an allocation failed (overflow set) */
    size_t cap;
    size_t len;
    int overflow;
} ost__buf;

#define OST__STACK 1024 /* bytes of a message built on the stack */

OST_API void ost__init(ost__buf *b, char *data, size_t cap)
{
    b->data = data;
    b->cap = data != NULL ? cap : 0;
    b->len = 0;
    b->overflow = data == NULL;
    if (data != NULL) data[0] = 0;
}

OST_API void ost__cat(ost__buf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n >= b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

OST_API void ost__cat_string(ost__buf *b, const char *s)
{
    char esc[8];
    ost__cat(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            esc[2] = 0;
        } else if (ch < 0x20) {
            sprintf(esc, "\\u%04x", (unsigned)ch);
        } else {
            esc[0] = (char)ch;
            esc[1] = 0;
        }
        ost__cat(b, esc);
    }
    ost__cat(b, "\"");
}

OST_API void ost__cat_number(ost__buf *b, double v)
{
    char num[40];
    char *p;
    if (v != v || v > DBL_MAX || v < -DBL_MAX) {
        b->overflow = 1; /* NaN and infinities are not JSON */
        return;
    }
    sprintf(num, "%.9g", v);
    for (p = num; *p; p++) {
        if (*p == ',') *p = '.'; /* a game may have set a decimal-comma locale */
    }
    ost__cat(b, num);
}

/* A MIDI pitch: a whole number goes as a JSON integer (62, not 62.0); any other number as
 * it is, for the server to refuse naming the note. */
OST_API void ost__cat_pitch(ost__buf *b, double v)
{
    char num[24];
    if (v >= -2147483647.0 && v <= 2147483647.0 && (double)(long)v == v) {
        sprintf(num, "%ld", (long)v);
        ost__cat(b, num);
    } else {
        ost__cat_number(b, v);
    }
}

OST_API void ost__field_string(ost__buf *b, const char *key, const char *value)
{
    if (value == NULL) return;
    ost__cat(b, ",\"");
    ost__cat(b, key);
    ost__cat(b, "\":");
    ost__cat_string(b, value);
}

OST_API void ost__field_number(ost__buf *b, const char *key, double value)
{
    if (value == OST_KEEP) return;
    ost__cat(b, ",\"");
    ost__cat(b, key);
    ost__cat(b, "\":");
    ost__cat_number(b, value);
}

/* An integer member: critic must arrive as a JSON integer (3, not 3.0, which is bad_type). */
OST_API void ost__field_int(ost__buf *b, const char *key, int value, int keep)
{
    char num[24];
    if (value == keep) return;
    sprintf(num, "%d", value);
    ost__cat(b, ",\"");
    ost__cat(b, key);
    ost__cat(b, "\":");
    ost__cat(b, num);
}

/* One member "key":value of a voice's object, after *sep ("" first, then ","); play is
 * written as JSON true, false or "auto" (any other value as the integer it is, for the
 * server to refuse naming it); nothing for OST_VOICE_KEEP. */
OST_API const char *ost__play(int play)
{
    return play == OST_PLAY_OFF ? "false" : play == OST_PLAY_ON ? "true" : "\"auto\"";
}

OST_API void ost__voice_member(ost__buf *b, const char **sep, const char *key, int value, int is_play)
{
    char num[24];
    if (value == OST_VOICE_KEEP) return;
    sprintf(num, "%d", value);
    ost__cat(b, *sep);
    ost__cat(b, "\"");
    ost__cat(b, key);
    ost__cat(b, "\":");
    ost__cat(b, is_play && value >= OST_PLAY_OFF && value <= OST_PLAY_AUTO ? ost__play(value) : num);
    *sep = ",";
}

/* ,"voices":{...} from n ost_voice: a voice with only play (OST_PLAY_*) as the shorthand
 * true, false or "auto", else an object of the members given.  Nothing for n 0 (or NULL). */
OST_API void ost__field_voices(ost__buf *b, const ost_voice *voices, int n)
{
    const ost_voice *v;
    const char *sep;
    int i;
    if (voices == NULL || n <= 0) return;
    ost__cat(b, ",\"voices\":{");
    for (i = 0; i < n; i++) {
        v = &voices[i];
        ost__cat(b, i ? "," : "");
        ost__cat_string(b, v->name != NULL ? v->name : "");
        ost__cat(b, ":");
        if (v->program == OST_VOICE_KEEP && v->channel == OST_VOICE_KEEP &&
            v->octave == OST_VOICE_KEEP && v->play >= OST_PLAY_OFF && v->play <= OST_PLAY_AUTO) {
            ost__cat(b, ost__play(v->play));
            continue;
        }
        sep = "";
        ost__cat(b, "{");
        ost__voice_member(b, &sep, "play", v->play, 1);
        ost__voice_member(b, &sep, "program", v->program, 0);
        ost__voice_member(b, &sep, "channel", v->channel, 0);
        ost__voice_member(b, &sep, "octave", v->octave, 0);
        ost__cat(b, "}");
    }
    ost__cat(b, "}");
}

OST_API int ost__connect(ost_client *c)
{
    int zero = 0;
    int hwm = 1000;
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (c->sock == NULL) return -1;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (c->curve_server[0] && /* fails if this libzmq was built without CURVE */
        (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, c->curve_server, 40) != 0 ||
         zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, c->curve_public, 40) != 0 ||
         zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, c->curve_secret, 40) != 0)) {
        zmq_close(c->sock);
        c->sock = NULL;
        return -1;
    }
    if (zmq_connect(c->sock, c->address) != 0) {
        zmq_close(c->sock);
        c->sock = NULL;
        return -1;
    }
    return 0;
}

/* Connect to the server at address (NULL: OST_DEFAULT_ADDRESS).  0 on success, -1 on error. */
OST_API int ost_open(ost_client *c, const char *address, int timeout_ms)
{
    memset(c, 0, sizeof *c);
    if (address == NULL) address = OST_DEFAULT_ADDRESS;
    if (strlen(address) >= sizeof c->address) return -1;
    strcpy(c->address, address);
    c->timeout_ms = timeout_ms;
    c->next_id = 1;
    c->ctx = zmq_ctx_new();
    if (c->ctx == NULL) return -1;
    if (ost__connect(c) != 0) {
        zmq_ctx_term(c->ctx);
        c->ctx = NULL;
        return -1;
    }
    return 0;
}

OST_API void ost_close(ost_client *c)
{
    if (c->sock != NULL) zmq_close(c->sock);
    if (c->ctx != NULL) zmq_ctx_term(c->ctx);
    c->sock = NULL;
    c->ctx = NULL;
}

/* Talk CurveZMQ to a server started with keys: the server's public key and this client's
 * key pair, each a 40-character Z85 string.  The socket is reconnected with them (call it
 * before sending).  0 ok, -1 if a key is not 40 characters or libzmq has no CURVE. */
OST_API int ost_set_keys(ost_client *c, const char *server_public, const char *client_public,
                         const char *client_secret)
{
    if (strlen(server_public) != 40 || strlen(client_public) != 40 || strlen(client_secret) != 40)
        return -1;
    strcpy(c->curve_server, server_public);
    strcpy(c->curve_public, client_public);
    strcpy(c->curve_secret, client_secret);
    if (c->sock != NULL) zmq_close(c->sock);
    c->sock = NULL;
    return ost__connect(c);
}

/* Read one key from a file `ostinato keys` wrote: which is "public-key" or "secret-key";
 * out gets the 40-character Z85 string.  1 found, 0 not (or the file cannot be read). */
OST_API int ost_load_key(const char *path, const char *which, char out[41])
{
    char line[256];
    const char *p;
    size_t n = strlen(which);
    int found = 0;
    FILE *f = fopen(path, "r");
    out[0] = 0;
    if (f == NULL) return 0;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        for (p = line; *p == ' ' || *p == '\t'; p++) {
        }
        if (strncmp(p, which, n) != 0) continue;
        for (p += n; *p == ' ' || *p == '='; p++) {
        }
        if (*p == '"' && strlen(p) > 41 && p[41] == '"') {
            memcpy(out, p + 1, 40);
            out[40] = 0;
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* Default session for later messages (NULL or "": the server's "main"). 0 ok, -1 too long. */
OST_API int ost_set_session(ost_client *c, const char *session)
{
    if (session == NULL) session = "";
    if (strlen(session) >= sizeof c->session) return -1;
    strcpy(c->session, session);
    return 0;
}

/* Send one message without blocking.  fields: extra JSON members such as "\"bpm\":120",
 * or NULL.  session: NULL for the client's default.  Returns the request id, or -1 if the
 * message is over OST_MAX_MESSAGE bytes (or no memory for it) or the send queue is full /
 * the server is not connected. */
OST_API long ost_send(ost_client *c, const char *type, const char *session, const char *fields)
{
    char stack[OST__STACK];
    ost__buf b;
    char num[24];
    long id = c->next_id++;
    long sent;
    size_t need;
    if (session == NULL && c->session[0]) session = c->session;
    /* escaping makes a character at most 6 ("\u001f"); the fields are JSON already */
    need = 64 + 6 * (strlen(type) + (session != NULL ? strlen(session) : 0)) +
           (fields != NULL ? strlen(fields) : 0);
    if (need > OST_MAX_MESSAGE + 1) need = OST_MAX_MESSAGE + 1;
    ost__init(&b, need <= sizeof stack ? stack : (char *)malloc(need),
              need <= sizeof stack ? sizeof stack : need);
    ost__cat(&b, "{\"type\":");
    ost__cat_string(&b, type);
    sprintf(num, "%ld", id);
    ost__cat(&b, ",\"id\":");
    ost__cat(&b, num);
    ost__field_string(&b, "session", session);
    if (fields != NULL && fields[0]) {
        ost__cat(&b, ",");
        ost__cat(&b, fields);
    }
    ost__cat(&b, "}");
    sent = (b.overflow || b.len > OST_MAX_MESSAGE ||
            zmq_send(c->sock, b.data, b.len, ZMQ_DONTWAIT) < 0) ? -1 : id;
    if (b.data != stack) free(b.data);
    return sent;
}

/* The typed senders build the field list and call ost_send; NULL strings are omitted
 * (the server's default applies), as are OST_KEEP numbers and an OST_KEEP_CRITIC critic. */
OST_API long ost__send_buf(ost_client *c, const char *type, const char *session, ost__buf *f)
{
    if (f->overflow) return -1;
    return ost_send(c, type, session, f->len ? f->data + 1 : NULL); /* skip the leading comma */
}

#define OST__FIELDS(f) char f##_stack[OST__STACK]; ost__buf f; ost__init(&f, f##_stack, sizeof f##_stack)

/* mood with tonality (0..1, OST_KEEP: the session's value stays) and critic (0..16, OST_KEEP_CRITIC:
 * the session's value stays; above 0 needs a server started with --critic). */
OST_API long ost_mood_ex(ost_client *c, double valence, double arousal, double intensity,
                         const char *transition, double tonality, int critic)
{
    OST__FIELDS(f);
    ost__field_number(&f, "valence", valence);
    ost__field_number(&f, "arousal", arousal);
    ost__field_number(&f, "intensity", intensity);
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "tonality", tonality);
    ost__field_int(&f, "critic", critic, OST_KEEP_CRITIC);
    return ost__send_buf(c, "mood", NULL, &f);
}

OST_API long ost_mood(ost_client *c, double valence, double arousal, double intensity,
                      const char *transition)
{
    return ost_mood_ex(c, valence, arousal, intensity, transition, OST_KEEP, OST_KEEP_CRITIC);
}

/* state with tonality and critic overriding the preset's (OST_KEEP, OST_KEEP_CRITIC: the
 * preset's, else the server's default). */
OST_API long ost_state_ex(ost_client *c, const char *name, const char *transition, double tonality,
                          int critic)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "tonality", tonality);
    ost__field_int(&f, "critic", critic, OST_KEEP_CRITIC);
    return ost__send_buf(c, "state", NULL, &f);
}

OST_API long ost_state(ost_client *c, const char *name, const char *transition)
{
    return ost_state_ex(c, name, transition, OST_KEEP, OST_KEEP_CRITIC);
}

/* The ensemble's voices (a server with an ensemble model; another answers out_of_range on
 * field voices): n_voices settings (ost_voice), at the next bar line after the transition.
 * ost_mood_voices: a mood that changes the voices alone (voices not given keep theirs). */
OST_API long ost_mood_voices(ost_client *c, const ost_voice *voices, int n_voices,
                             const char *transition)
{
    OST__FIELDS(f);
    ost__field_string(&f, "transition", transition);
    ost__field_voices(&f, voices, n_voices);
    return ost__send_buf(c, "mood", NULL, &f);
}

/* state with voices over the preset's (the session's earlier settings do not carry over). */
OST_API long ost_state_voices(ost_client *c, const char *name, const char *transition,
                              const ost_voice *voices, int n_voices)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_string(&f, "transition", transition);
    ost__field_voices(&f, voices, n_voices);
    return ost__send_buf(c, "state", NULL, &f);
}

/* Repetition, 0..1 (OST_KEEP: not sent), at the next bar line the music reaches; the server
 * answers one outside 0..1 with out_of_range on field repetition.
 * ost_mood_repetition: a mood that changes the repetition alone (it stays until changed). */
OST_API long ost_mood_repetition(ost_client *c, double repetition, const char *transition)
{
    OST__FIELDS(f);
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "repetition", repetition);
    return ost__send_buf(c, "mood", NULL, &f);
}

/* state with repetition overriding the preset's (OST_KEEP: the preset's, else the server's). */
OST_API long ost_state_repetition(ost_client *c, const char *name, const char *transition,
                                  double repetition)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "repetition", repetition);
    return ost__send_buf(c, "state", NULL, &f);
}

/* Style, one of "game", "baroque", "classical", "renaissance" (NULL: not sent), from the
 * transition; a server whose model is told no styles answers out_of_range on field style,
 * any server one it does not know bad_choice on field style.
 * ost_mood_style: a mood that changes the style alone (it stays until changed). */
OST_API long ost_mood_style(ost_client *c, const char *style, const char *transition)
{
    OST__FIELDS(f);
    ost__field_string(&f, "transition", transition);
    ost__field_string(&f, "style", style);
    return ost__send_buf(c, "mood", NULL, &f);
}

/* state with style overriding the preset's (NULL: the preset's, else none). */
OST_API long ost_state_style(ost_client *c, const char *name, const char *transition,
                             const char *style)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_string(&f, "transition", transition);
    ost__field_string(&f, "style", style);
    return ost__send_buf(c, "state", NULL, &f);
}

OST_API long ost_tempo(ost_client *c, double bpm, double ramp_beats, const char *transition)
{
    OST__FIELDS(f);
    ost__field_number(&f, "bpm", bpm);
    ost__field_number(&f, "ramp_beats", ramp_beats);
    ost__field_string(&f, "transition", transition);
    return ost__send_buf(c, "tempo", NULL, &f);
}

/* key with tonality and critic, as ost_mood_ex (OST_KEEP, OST_KEEP_CRITIC: the session's values stay). */
OST_API long ost_key_ex(ost_client *c, const char *key, const char *mode, const char *transition,
                        double tonality, int critic)
{
    OST__FIELDS(f);
    ost__field_string(&f, "key", key);
    ost__field_string(&f, "mode", mode);
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "tonality", tonality);
    ost__field_int(&f, "critic", critic, OST_KEEP_CRITIC);
    return ost__send_buf(c, "key", NULL, &f);
}

OST_API long ost_key(ost_client *c, const char *key, const char *mode, const char *transition)
{
    return ost_key_ex(c, key, mode, transition, OST_KEEP, OST_KEEP_CRITIC);
}

/* A stinger of states.toml's by name, over the current harmony at the transition point
 * (NULL: "beat").  The reply says whether it "played" (with its "beat" and "t_ns"), or not,
 * with the "reason" and "next_beat" (within its min_interval_beats). */
OST_API long ost_stinger(ost_client *c, const char *name, const char *transition)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_string(&f, "transition", transition);
    return ost__send_buf(c, "stinger", NULL, &f);
}

/* ,"notes":[[p,s,d],...] into a malloc'd buffer of its own size (f->data NULL, overflow set,
 * if there is no memory).  -1 for n_notes below 0 or notes NULL with n_notes above 0. */
OST_API int ost__notes_buf(ost__buf *f, const double *notes, int n_notes)
{
    int i;
    /* a note is at most 3 numbers of 16 characters and "[,,]," */
    size_t cap = n_notes > 0 ? 160 + (size_t)n_notes * 56 : 160;
    if (n_notes < 0 || (notes == NULL && n_notes > 0)) return -1;
    if (cap > OST_MAX_MESSAGE + 1) cap = OST_MAX_MESSAGE + 1; /* longer: over the limit anyway */
    ost__init(f, (char *)malloc(cap), cap);
    ost__cat(f, ",\"notes\":[");
    for (i = 0; i < n_notes && !f->overflow; i++) {
        ost__cat(f, i ? ",[" : "[");
        ost__cat_pitch(f, notes[3 * i]);
        ost__cat(f, ",");
        ost__cat_number(f, notes[3 * i + 1]);
        ost__cat(f, ",");
        ost__cat_number(f, notes[3 * i + 2]);
        ost__cat(f, "]");
    }
    ost__cat(f, "]");
    return 0;
}

/* A stinger of your own: n_notes rows of three doubles (pitch, start_beat, duration_beats) in
 * any key, moved to the session's key and over its harmony, checked as a theme's notes are
 * (a bad one: out_of_range on field notes).  min_interval_beats (0..64; OST_KEEP: 0) and
 * queue ("drop" or "queue"; NULL: "drop") say what happens to it within that many beats of
 * its last playing.  -1 as ost_theme_notes. */
OST_API long ost_stinger_notes(ost_client *c, const double *notes, int n_notes,
                               const char *transition, double min_interval_beats,
                               const char *queue)
{
    ost__buf f;
    long id;
    if (ost__notes_buf(&f, notes, n_notes) != 0) return -1;
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "min_interval_beats", min_interval_beats);
    ost__field_string(&f, "queue", queue);
    id = ost__send_buf(c, "stinger", NULL, &f);
    free(f.data);
    return id;
}

/* Place cue name (1..64 of A-Z a-z 0-9 _ . -) at the next grid point at ("beat", "bar",
 * "phrase", "bars:N"; NULL: "bar") or, if beat is not OST_KEEP, at that beat of the session.
 * The reply gives its "beat" and "t_ns"; the event stream announces it with a "cue" event
 * when it plays, and a transition "cue:NAME" lands there.  Placing a name again moves it. */
OST_API long ost_cue(ost_client *c, const char *name, const char *at, double beat)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_string(&f, "at", at);
    ost__field_number(&f, "beat", beat);
    return ost__send_buf(c, "cue", NULL, &f);
}

/* Where the music is: the reply has "beat", "bar", "beat_in_bar", "phrase", "bar_in_phrase",
 * "phrase_bars", "bpm", "key", "mode", "state", "transport", "t_ns" (the server's now),
 * "next_downbeat" and "next_phrase" (beats), "next_downbeat_t_ns" and "next_phrase_t_ns"
 * (read them with ost_json_ns; ost_due_in_ns says how long until then) and "cues". */
OST_API long ost_position(ost_client *c) { return ost_send(c, "position", NULL, NULL); }

/* Themes: the melody states a leitmotif, in the session's key and mode, and it comes back
 * through the form, on any server (a theme model's, `serve --model theme.npz`, also steers
 * the music towards it and blends).  variation (0 close to the theme ..
 * 1 free) and blend_beats (0..64: beats over which the music moves to it; 0 starts its
 * phrase at the transition): OST_KEEP leaves them out, for the server's defaults (0.3, 0).
 * transition: as everywhere (see the top); NULL: "bar".  The reply's "theme" object says what was
 * understood ("key", "bars", "notes", "source"): read it with
 * ost_json_string(strstr(reply, "\"theme\":{"), "key", ...) (the reply's own "key" comes first). */

/* A theme given as notes: n_notes rows of three doubles, pitch (MIDI, sent as a JSON integer
 * when whole), start_beat, duration_beats, in any key.  The server refuses a bad theme
 * (fewer than 3 notes, more than 8 bars, ...) naming field notes.  -1 as ost_send, also for
 * n_notes below 0, a NaN or infinity (not JSON), or notes NULL with n_notes above 0. */
OST_API long ost_theme_notes(ost_client *c, const double *notes, int n_notes, double variation,
                             const char *transition, double blend_beats)
{
    ost__buf f;
    long id;
    if (ost__notes_buf(&f, notes, n_notes) != 0) return -1;
    ost__field_number(&f, "variation", variation);
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "blend_beats", blend_beats);
    id = ost__send_buf(c, "theme", NULL, &f);
    free(f.data);
    return id;
}

/* A theme by its name in states.toml's [themes] (an unknown name: bad_choice on name). */
OST_API long ost_theme_name(ost_client *c, const char *name, double variation,
                            const char *transition, double blend_beats)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_number(&f, "variation", variation);
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "blend_beats", blend_beats);
    return ost__send_buf(c, "theme", NULL, &f);
}

/* Back to free composition (on any server): at the transition, or over blend_beats beats. */
OST_API long ost_theme_free(ost_client *c, const char *transition, double blend_beats)
{
    OST__FIELDS(f);
    ost__field_string(&f, "action", "free");
    ost__field_string(&f, "transition", transition);
    ost__field_number(&f, "blend_beats", blend_beats);
    return ost__send_buf(c, "theme", NULL, &f);
}

OST_API long ost_open_session(ost_client *c, const char *id, const char *state)
{
    OST__FIELDS(f);
    ost__field_string(&f, "action", "open");
    ost__field_string(&f, "state", state);
    return ost__send_buf(c, "session", id, &f);
}

/* open a session whose voices start from its preset's with these on top. */
OST_API long ost_open_session_voices(ost_client *c, const char *id, const char *state,
                                     const ost_voice *voices, int n_voices)
{
    OST__FIELDS(f);
    ost__field_string(&f, "action", "open");
    ost__field_string(&f, "state", state);
    ost__field_voices(&f, voices, n_voices);
    return ost__send_buf(c, "session", id, &f);
}

/* open a session with its repetition over its preset's (OST_KEEP: the preset's, else the
 * server's); the reply carries its "repetition" and "form". */
OST_API long ost_open_session_repetition(ost_client *c, const char *id, const char *state,
                                         double repetition)
{
    OST__FIELDS(f);
    ost__field_string(&f, "action", "open");
    ost__field_string(&f, "state", state);
    ost__field_number(&f, "repetition", repetition);
    return ost__send_buf(c, "session", id, &f);
}

OST_API long ost_close_session(ost_client *c, const char *id)
{
    return ost_send(c, "session", id, "\"action\":\"close\"");
}

OST_API long ost_hello(ost_client *c) { return ost_send(c, "hello", NULL, NULL); }
OST_API long ost_start(ost_client *c) { return ost_send(c, "start", NULL, NULL); }
OST_API long ost_stop(ost_client *c) { return ost_send(c, "stop", NULL, NULL); }
OST_API long ost_pause(ost_client *c) { return ost_send(c, "pause", NULL, NULL); }
OST_API long ost_ping(ost_client *c) { return ost_send(c, "ping", NULL, NULL); }

/* Wait up to timeout_ms (0: just look) for any reply; copies it, NUL-terminated, into buf.
 * Returns its length, 0 if none came, -1 on error.  Longer replies are cut to size - 1. */
OST_API int ost_poll_reply(ost_client *c, char *buf, size_t size, int timeout_ms)
{
    zmq_pollitem_t item;
    int n;
    item.socket = c->sock;
    item.fd = 0;
    item.events = ZMQ_POLLIN;
    item.revents = 0;
    n = zmq_poll(&item, 1, timeout_ms);
    if (n <= 0) return n;
    n = zmq_recv(c->sock, buf, size - 1, ZMQ_DONTWAIT);
    if (n < 0) return -1;
    if ((size_t)n > size - 1) n = (int)(size - 1);
    buf[n] = 0;
    return n;
}

/* Find "key": in a reply (json NULL: none) and copy its string value (unescaped) into out.
 * Returns 1 if found as a string, 0 if absent or not a string (out is then "").  The first
 * "key": counts: for a member of a nested object start at the object, e.g. at
 * strstr(reply, "\"theme\":{") (NULL when the reply has no such object). */
OST_API int ost_json_string(const char *json, const char *key, char *out, size_t size)
{
    char pattern[80];
    const char *p;
    size_t n = 0;
    out[0] = 0;
    if (json == NULL || strlen(key) > sizeof pattern - 4) return 0;
    sprintf(pattern, "\"%s\":", key);
    p = strstr(json, pattern);
    if (p == NULL) return 0;
    p += strlen(pattern);
    if (*p != '"') return 0;
    for (p++; *p && *p != '"' && n + 1 < size; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            if (*p == 'n') out[n++] = '\n';
            else if (*p == 't') out[n++] = '\t';
            else if (*p == 'u') { out[n++] = '?'; p += strlen(p) >= 5 ? 4 : 0; }
            else out[n++] = *p;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = 0;
    return 1;
}

/* Find "key": in a reply (json NULL: none) and read its number.  Returns 1 if found, 0 if not. */
OST_API int ost_json_number(const char *json, const char *key, double *out)
{
    char pattern[80];
    const char *p;
    char *end;
    if (json == NULL || strlen(key) > sizeof pattern - 4) return 0;
    sprintf(pattern, "\"%s\":", key);
    p = strstr(json, pattern);
    if (p == NULL) return 0;
    p += strlen(pattern);
    *out = strtod(p, &end);
    return end != p;
}

OST_API int ost_reply_ok(const char *reply)
{
    return strncmp(reply, "{\"ok\":true", 10) == 0;
}

/* Wait up to the client's timeout for the reply to request id (other replies are skipped).
 * Returns 1 for an ok reply, 0 for an error reply (read code/field/allowed/message from buf),
 * -1 if none came in time: the socket is then recreated so a late reply cannot be taken
 * for the answer to a later request. */
OST_API int ost_wait_reply(ost_client *c, long id, char *buf, size_t size)
{
    double got;
    int left = c->timeout_ms;
    int step;
    while (left > 0) {
        step = left < 10 ? left : 10;
        if (ost_poll_reply(c, buf, size, step) > 0) {
            if (ost_json_number(buf, "id", &got) && (long)got == id)
                return ost_reply_ok(buf) ? 1 : 0;
            continue; /* a reply to an earlier request: skip it */
        }
        left -= step;
    }
    zmq_close(c->sock);
    c->sock = NULL;
    ost__connect(c);
    buf[0] = 0;
    return -1;
}

/* Send-and-wait helper: 1 ok, 0 error reply, -1 timeout or send failure. */
OST_API int ost_request(ost_client *c, long id, char *buf, size_t size)
{
    if (id < 0) {
        buf[0] = 0;
        return -1;
    }
    return ost_wait_reply(c, id, buf, size);
}

/* ---------------------------------------------------------------- clocks and the event stream */

/* This machine's monotonic clock, in nanoseconds: the clock of the server's t_ns when the
 * server runs on this machine (its Python's time.monotonic_ns).  POSIX:
 * clock_gettime(CLOCK_MONOTONIC); macOS: mach_absolute_time; Windows: QueryPerformanceCounter.
 * Between machines (or on Windows and macOS, where Python may read another clock) only
 * differences mean something: ost_sync_clock measures the server's offset from it. */
#if defined(_WIN32)
OST_API ost_ns ost_now_ns(void)
{
    LARGE_INTEGER f, t;
    ost_ns ticks, freq;
    if (!QueryPerformanceFrequency(&f) || !QueryPerformanceCounter(&t) || f.QuadPart <= 0) return 0;
    ticks = (ost_ns)t.QuadPart;
    freq = (ost_ns)f.QuadPart;
    return ticks / freq * 1000000000 + ticks % freq * 1000000000 / freq;
}
#elif defined(__APPLE__)
OST_API ost_ns ost_now_ns(void)
{
    mach_timebase_info_data_t tb;
    ost_ns t = (ost_ns)mach_absolute_time();
    if (mach_timebase_info(&tb) != 0 || tb.denom == 0) return t;
    return t / tb.denom * tb.numer + t % tb.denom * tb.numer / tb.denom;
}
#else
#if !defined(CLOCK_MONOTONIC) && defined(__linux__)
/* Strict C (-std=c89 or c99) with a system header included before this one: glibc and musl
 * then declare neither clock_gettime nor struct timespec, so the call is declared here as
 * their C library has it (time_t and the nanoseconds as long, 64-bit on x32; clockid_t int)
 * with Linux's CLOCK_MONOTONIC, 1. */
#if defined(__x86_64__) && defined(__ILP32__)
struct ost__timespec { ost_ns tv_sec; ost_ns tv_nsec; };
#else
struct ost__timespec { long tv_sec; long tv_nsec; };
#endif
extern int clock_gettime(int clock_id, struct ost__timespec *ts);
#define OST__TIMESPEC struct ost__timespec
#define OST__MONOTONIC 1
#elif defined(CLOCK_MONOTONIC)
#define OST__TIMESPEC struct timespec
#define OST__MONOTONIC CLOCK_MONOTONIC
#else
#error "ostinato.h: no CLOCK_MONOTONIC: include ostinato.h before any system header, or define _POSIX_C_SOURCE 199309L"
#endif
OST_API ost_ns ost_now_ns(void)
{
    OST__TIMESPEC ts;
    if (clock_gettime(OST__MONOTONIC, &ts) != 0) return 0;
    return (ost_ns)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif

/* Write v in decimal into out (24 bytes hold any), for C89's printf, which has no %lld.
 * Returns out. */
OST_API char *ost_format_ns(ost_ns v, char out[24])
{
    char digits[24];
    int n = 0, i = 0, d;
    if (v < 0) out[i++] = '-';
    do {
        d = (int)(v % 10);
        digits[n++] = (char)('0' + (d < 0 ? -d : d)); /* negative digits: v may be the minimum */
        v /= 10;
    } while (v != 0);
    while (n > 0) out[i++] = digits[--n];
    out[i] = 0;
    return out;
}

/* Find "key": in a reply or event (json NULL: none) and read its value as a 64-bit integer,
 * exactly (ost_json_number's double keeps only 53 bits): the t_ns of events and of pong.
 * Returns 1 if found, 0 if absent, not an integer (1.5, 1e9, "12") or out of range. */
OST_API int ost_json_ns(const char *json, const char *key, ost_ns *out)
{
    /* the least ost_ns, -2^63, built without a long long literal (C89 has none) */
    const ost_ns least = -((((ost_ns)1 << 62) - 1) * 2 + 1) - 1;
    char pattern[80];
    const char *p;
    ost_ns v = 0;
    int negative, d;
    if (json == NULL || strlen(key) > sizeof pattern - 4) return 0;
    sprintf(pattern, "\"%s\":", key);
    p = strstr(json, pattern);
    if (p == NULL) return 0;
    p += strlen(pattern);
    negative = *p == '-';
    if (negative) p++;
    if (*p < '0' || *p > '9') return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        d = *p - '0';
        if (v < (least + d) / 10) return 0; /* summed as a negative number: -2^63 fits */
        v = v * 10 - d;
    }
    if (*p == '.' || *p == 'e' || *p == 'E' || (!negative && v == least)) return 0;
    *out = negative ? v : -v;
    return 1;
}

/* Measure the server's clock against this one: `pings` pings, each waited for with the
 * client's timeout (so this blocks: call it at start-up or on a loading screen, not in a
 * frame).  The one with the shortest round trip sets c->clock_offset_ns to the server's t_ns
 * minus this machine's clock halfway through it.  A ping left unanswered ends the
 * measurement with the pings so far.  0 ok, -1 if the first ping was not answered (the
 * offset is then left as it was).  On one Linux machine the offset is about 0 (one clock). */
OST_API int ost_sync_clock(ost_client *c, int pings)
{
    char reply[512];
    ost_ns sent, got, server, best = -1;
    int i;
    for (i = 0; i < pings; i++) {
        sent = ost_now_ns();
        /* as the C# client does: no answer within the timeout ends it, so an absent server
         * costs one timeout rather than one per ping */
        if (ost_request(c, ost_ping(c), reply, sizeof reply) != 1) break;
        got = ost_now_ns();
        if (!ost_json_ns(reply, "t_ns", &server)) continue;
        if (best < 0 || got - sent < best) {
            best = got - sent;
            c->clock_offset_ns = server - (sent + best / 2);
        }
    }
    return best < 0 ? -1 : 0;
}

/* Nanoseconds from now until the server's time t_ns (negative: past), on this machine's
 * clock through c's offset (c NULL: offset 0, client and server on one Linux machine). */
OST_API ost_ns ost_due_in_ns(const ost_client *c, ost_ns t_ns)
{
    return t_ns - (ost_now_ns() + (c != NULL ? c->clock_offset_ns : 0));
}

/* Nanoseconds until an event (its "t_ns") is due: negative, late.  0 for JSON without a t_ns. */
OST_API ost_ns ost_event_due_in_ns(const ost_client *c, const char *event_json)
{
    ost_ns t_ns;
    return ost_json_ns(event_json, "t_ns", &t_ns) ? ost_due_in_ns(c, t_ns) : 0;
}

#define OST_DEFAULT_EVENTS "tcp://127.0.0.1:5556"

/* A subscriber to the server's event stream (ZeroMQ SUB): what it plays, one JSON object
 * per event, e.g. {"v":1,"type":"note_on","session":"main","seq":123,"t_ns":...,"beat":16.25,
 * "channel":0,"pitch":60,"velocity":90,"voice":"melody"}. */
typedef struct ost_events {
    void *ctx;
    void *sock;
    char address[256];
    char types[256];       /* the types subscribed to, each NUL-terminated, one after another */
    int n_types;           /* 0: every event but the sync ones (the server decides) */
    char curve_server[41]; /* CurveZMQ keys (Z85), "" = none: set with ost_events_set_keys */
    char curve_public[41];
    char curve_secret[41];
} ost_events;

OST_API int ost__events_connect(ost_events *e)
{
    char prefix[300];
    const char *t = e->types;
    int zero = 0;
    int i;
    e->sock = zmq_socket(e->ctx, ZMQ_SUB);
    if (e->sock == NULL) return -1;
    zmq_setsockopt(e->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (e->curve_server[0] &&
        (zmq_setsockopt(e->sock, ZMQ_CURVE_SERVERKEY, e->curve_server, 40) != 0 ||
         zmq_setsockopt(e->sock, ZMQ_CURVE_PUBLICKEY, e->curve_public, 40) != 0 ||
         zmq_setsockopt(e->sock, ZMQ_CURVE_SECRETKEY, e->curve_secret, 40) != 0))
        goto fail;
    if (e->n_types == 0 && zmq_setsockopt(e->sock, ZMQ_SUBSCRIBE, "", 0) != 0) goto fail;
    for (i = 0; i < e->n_types; i++, t += strlen(t) + 1) {
        /* events start {"v":1,"type":"<type>", so a prefix subscription filters by type;
         * "" is every event but beat, bar and phrase, which need their own prefix */
        if (t[0]) sprintf(prefix, "{\"v\":1,\"type\":\"%s\"", t);
        else prefix[0] = 0;
        if (zmq_setsockopt(e->sock, ZMQ_SUBSCRIBE, prefix, strlen(prefix)) != 0) goto fail;
    }
    if (zmq_connect(e->sock, e->address) == 0) return 0;
fail:
    zmq_close(e->sock);
    e->sock = NULL;
    return -1;
}

/* Subscribe to the event stream at address (NULL: OST_DEFAULT_EVENTS).  types: the event
 * types to receive, a NULL-terminated list such as {"note_on", "note_off", NULL} (copied),
 * or NULL for every event but the sync ones ("beat", "bar", "phrase": they come only when
 * named, e.g. {"beat", "bar", "cue", NULL}).  0 on success, -1 on error (the types over 200
 * bytes in all). */
OST_API int ost_events_open(ost_events *e, const char *address, const char *const *types)
{
    size_t used = 0, n;
    memset(e, 0, sizeof *e);
    if (address == NULL) address = OST_DEFAULT_EVENTS;
    if (strlen(address) >= sizeof e->address) return -1;
    strcpy(e->address, address);
    for (; types != NULL && *types != NULL; types++, e->n_types++) {
        n = strlen(*types) + 1;
        if (used + n > 200) return -1; /* a prefix is then under sizeof prefix, too */
        memcpy(e->types + used, *types, n);
        used += n;
    }
    e->ctx = zmq_ctx_new();
    if (e->ctx == NULL) return -1;
    if (ost__events_connect(e) != 0) {
        zmq_ctx_term(e->ctx);
        e->ctx = NULL;
        return -1;
    }
    return 0;
}

OST_API void ost_events_close(ost_events *e)
{
    if (e->sock != NULL) zmq_close(e->sock);
    if (e->ctx != NULL) zmq_ctx_term(e->ctx);
    e->sock = NULL;
    e->ctx = NULL;
}

/* CurveZMQ keys for a stream the server publishes with keys, as ost_set_keys: the socket is
 * reconnected with them (call it before receiving).  0 ok, -1 bad key or no CURVE. */
OST_API int ost_events_set_keys(ost_events *e, const char *server_public, const char *client_public,
                                const char *client_secret)
{
    if (strlen(server_public) != 40 || strlen(client_public) != 40 || strlen(client_secret) != 40)
        return -1;
    strcpy(e->curve_server, server_public);
    strcpy(e->curve_public, client_public);
    strcpy(e->curve_secret, client_secret);
    if (e->sock != NULL) zmq_close(e->sock);
    e->sock = NULL;
    return ost__events_connect(e);
}

/* Wait up to timeout_ms (0: just look, -1: forever) for the next event; copies it,
 * NUL-terminated, into buf.  Returns its length, 0 if none came, -1 on error.  A longer
 * event is cut to size - 1 (notes are under 200 bytes, a mood event under 1 KiB).  Read it
 * with ost_json_string (type, session, and a note's voice: "melody", "bass", "harmony",
 * "drums" or "stinger"), ost_json_number (seq, beat, channel, pitch, velocity) and
 * ost_json_ns or ost_event_due_in_ns (t_ns).  A gap in seq means events were dropped. */
OST_API int ost_event_recv(ost_events *e, char *buf, size_t size, int timeout_ms)
{
    zmq_pollitem_t item;
    int n;
    if (size == 0 || e->sock == NULL) return -1;
    item.socket = e->sock;
    item.fd = 0;
    item.events = ZMQ_POLLIN;
    item.revents = 0;
    n = zmq_poll(&item, 1, timeout_ms);
    if (n <= 0) {
        buf[0] = 0;
        return n;
    }
    n = zmq_recv(e->sock, buf, size - 1, ZMQ_DONTWAIT);
    if (n < 0) {
        buf[0] = 0;
        return -1;
    }
    if ((size_t)n > size - 1) n = (int)(size - 1);
    buf[n] = 0;
    return n;
}

#ifdef __cplusplus
}
#endif

#endif /* OSTINATO_H */
