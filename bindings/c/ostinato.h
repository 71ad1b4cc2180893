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
 * Themes (a server whose model is a theme model): ost_theme_notes sends a leitmotif as
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
 * Numbers are written with sprintf into small fixed buffers (bounded formats) and the
 * decimal comma of a non-C locale is turned back into a point; every string is appended
 * with bounds checks and JSON escaping.  Messages are built on the stack (1 KiB); only one
 * longer than that (a theme of many notes) is built in a malloc'd buffer, freed before the
 * call returns.  The reply readers are minimal: they find "key":
 * in the server's compact JSON, which is all a game needs (ok, id, code, field, message).
 */
#ifndef OSTINATO_H
#define OSTINATO_H

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

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

OST_API long ost_stinger(ost_client *c, const char *name, const char *transition)
{
    OST__FIELDS(f);
    ost__field_string(&f, "name", name);
    ost__field_string(&f, "transition", transition);
    return ost__send_buf(c, "stinger", NULL, &f);
}

/* Themes: compose from a leitmotif, in the session's key and mode, its variations following
 * the mood.  They need a server whose model is a theme model (`serve --model theme.npz`);
 * another answers out_of_range on field notes (or name).  variation (0 close to the theme ..
 * 1 free) and blend_beats (0..64: beats over which the music moves to it; 0 starts its
 * phrase at the transition): OST_KEEP leaves them out, for the server's defaults (0.3, 0).
 * transition: "now", "beat", "bar"; NULL: "bar".  The reply's "theme" object says what was
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
    int i;
    /* a note is at most 3 numbers of 16 characters and "[,,]," */
    size_t cap = n_notes > 0 ? 128 + (size_t)n_notes * 56 : 128;
    if (n_notes < 0 || (notes == NULL && n_notes > 0)) return -1;
    if (cap > OST_MAX_MESSAGE + 1) cap = OST_MAX_MESSAGE + 1; /* longer: over the limit anyway */
    ost__init(&f, (char *)malloc(cap), cap);
    ost__cat(&f, ",\"notes\":[");
    for (i = 0; i < n_notes && !f.overflow; i++) {
        ost__cat(&f, i ? ",[" : "[");
        ost__cat_pitch(&f, notes[3 * i]);
        ost__cat(&f, ",");
        ost__cat_number(&f, notes[3 * i + 1]);
        ost__cat(&f, ",");
        ost__cat_number(&f, notes[3 * i + 2]);
        ost__cat(&f, "]");
    }
    ost__cat(&f, "]");
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

#ifdef __cplusplus
}
#endif

#endif /* OSTINATO_H */
