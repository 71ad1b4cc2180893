/*
 * example.c - drive an Ostinato server from C.
 *
 *   cc -std=c89 -Wall -o example example.c -lzmq
 *   ./example [tcp://127.0.0.1:5555 [keys/server.key keys/client.key_secret]]
 *
 * With the two key files (from `ostinato keys`) it talks CurveZMQ, as a server started
 * with --server-key/--client-keys requires.
 *
 * Exit status: 0 done, 2 server unavailable, 1 anything else.
 */
#include "ostinato.h"

static char reply[4096];

/* The ensemble's voices: the drums out, the harmony a warm pad (GM 89) an octave down, the
 * bass left to layering. */
static const ost_voice pad[] = {
    {"drums", OST_PLAY_OFF, OST_VOICE_KEEP, OST_VOICE_KEEP, OST_VOICE_KEEP},
    {"harmony", OST_VOICE_KEEP, 89, OST_VOICE_KEEP, -1},
    {"bass", OST_PLAY_AUTO, OST_VOICE_KEEP, OST_VOICE_KEEP, OST_VOICE_KEEP}};
static const ost_voice bad_voice[] = {
    {"bass", OST_VOICE_KEEP, 128, OST_VOICE_KEEP, OST_VOICE_KEEP}};

/* A theme in D minor: pitch, start_beat, duration_beats per note. */
static const double motif[] = {62, 0, 1,  65, 1, 1,  69, 2, 1,  74, 3, 1,  72, 4, 0.5,  70, 4.5, 0.5};

/* Wait for one reply and print it as "<what> ok" or "<what> error <code> <field>".  An ok
 * reply that carries tonality and critic (mood, state and key: the session's in effect after
 * the change; hello: the server's defaults) also gives "<what> tonality <t> critic <k>"; one
 * that carries repetition (those, and a session's open) "<what> repetition <r>"; one with a
 * style in effect (the session's, once it has one; null: none) "<what> style <s>"; one with a
 * theme (what the server understood of it) "<what> theme <key> <notes> notes". */
static int show(ost_client *c, const char *what, long id)
{
    char code[64], field[64], key[64], style[64];
    double tonality, critic, repetition, notes;
    const char *theme;
    int r = ost_request(c, id, reply, sizeof reply);
    if (r == 1) {
        printf("%s ok\n", what);
        if (ost_json_number(reply, "tonality", &tonality) && ost_json_number(reply, "critic", &critic))
            printf("%s tonality %g critic %g\n", what, tonality, critic);
        if (ost_json_number(reply, "repetition", &repetition))
            printf("%s repetition %g\n", what, repetition);
        if (ost_json_string(reply, "style", style, sizeof style))   /* null: none */
            printf("%s style %s\n", what, style);
        theme = strstr(reply, "\"theme\":{"); /* the reply's own "key" is the session's */
        if (ost_json_string(theme, "key", key, sizeof key) && ost_json_number(theme, "notes", &notes))
            printf("%s theme %s %g notes\n", what, key, notes);
    } else if (r == 0) {
        ost_json_string(reply, "code", code, sizeof code);
        ost_json_string(reply, "field", field, sizeof field);
        printf("%s error %s %s\n", what, code, field);
    } else {
        printf("%s unavailable\n", what);
    }
    return r;
}

int main(int argc, char **argv)
{
    ost_client c;
    char server_public[41], client_public[41], client_secret[41];
    char states[512];
    double t_ns = 0;
    long ids[3];
    int i, got;

    if (ost_open(&c, argc > 1 ? argv[1] : NULL, 1000) != 0) {
        fprintf(stderr, "cannot open a ZeroMQ socket\n");
        return 1;
    }
    if (argc > 3) {
        if (!ost_load_key(argv[2], "public-key", server_public) ||
            !ost_load_key(argv[3], "public-key", client_public) ||
            !ost_load_key(argv[3], "secret-key", client_secret) ||
            ost_set_keys(&c, server_public, client_public, client_secret) != 0) {
            fprintf(stderr, "cannot use the keys %s and %s\n", argv[2], argv[3]);
            ost_close(&c);
            return 1;
        }
        printf("keys %.8s...\n", server_public);
    }
    if (show(&c, "hello", ost_hello(&c)) < 0) {
        fprintf(stderr, "Ostinato server unavailable at %s\n", c.address);
        ost_close(&c);
        return 2;
    }
    if (ost_json_string(reply, "server", states, sizeof states)) printf("server %s\n", states);

    /* Game events -> music. */
    show(&c, "mood", ost_mood(&c, 0.5, 0.8, OST_KEEP, "now"));   /* valence, arousal; keep intensity */
    show(&c, "state", ost_state(&c, "combat", NULL));               /* boss fight starts */
    show(&c, "tempo", ost_tempo(&c, 150.0, 4.0, "beat"));
    show(&c, "key", ost_key(&c, "d", "minor", NULL));
    /* Tonality (0 free .. 1 strict) and critic (drafts per beat; 0 off) with the _ex calls. */
    show(&c, "mood-ex", ost_mood_ex(&c, OST_KEEP, OST_KEEP, OST_KEEP, "now", 0.9, 0));
    show(&c, "state-ex", ost_state_ex(&c, "combat", NULL, 0.25, OST_KEEP_CRITIC));
    show(&c, "key-ex", ost_key_ex(&c, "a", NULL, "beat", 0.75, 0));
    show(&c, "bad-tonality", ost_mood_ex(&c, OST_KEEP, OST_KEEP, OST_KEEP, NULL, 1.5,
                                         OST_KEEP_CRITIC));   /* out of range on purpose */
    show(&c, "critic-3",   /* refused (out_of_range critic) unless the server has a critic */
         ost_mood_ex(&c, OST_KEEP, OST_KEEP, OST_KEEP, NULL, OST_KEEP, 3));
    show(&c, "mood-kept", ost_mood(&c, OST_KEEP, OST_KEEP, 0.6, NULL));  /* tonality, critic stay */
    show(&c, "stinger", ost_stinger(&c, "hit", "now"));
    show(&c, "start", ost_start(&c));
    show(&c, "bad-tempo", ost_tempo(&c, 1000.0, 0.0, NULL));       /* out of range on purpose */
    show(&c, "open", ost_open_session(&c, "player2", "stealth"));
    ost_set_session(&c, "player2");
    show(&c, "mood2", ost_mood(&c, OST_KEEP, 0.2, OST_KEEP, NULL));
    ost_set_session(&c, NULL);
    show(&c, "close", ost_close_session(&c, "player2"));
    if (show(&c, "ping", ost_ping(&c)) == 1 && ost_json_number(reply, "t_ns", &t_ns))
        printf("server clock %.0f ns\n", t_ns);

    /* In a game loop: fire and forget, then collect replies once a frame. */
    ids[0] = ost_mood(&c, OST_KEEP, 0.9, 1.0, "beat");
    ids[1] = ost_stinger(&c, "danger", NULL);
    ids[2] = ost_pause(&c);
    for (i = 0, got = 0; got < 3 && i < 200; i++) {
        if (ost_poll_reply(&c, reply, sizeof reply, 10) > 0) {
            got++;
            printf("async %s\n", ost_reply_ok(reply) ? "ok" : "error");
        }
    }
    printf("async replies %d of 3 (ids %ld %ld %ld)\n", got, ids[0], ids[1], ids[2]);

    /* A leitmotif (the melody states it, on any server); OST_KEEP: the server's default
     * variation (0.3) or blend (0 beats). */
    show(&c, "theme-notes", ost_theme_notes(&c, motif, 6, 0.2, "now", OST_KEEP));
    show(&c, "theme-name", ost_theme_name(&c, "hero", OST_KEEP, NULL, 2.0));  /* states.toml's */
    show(&c, "theme-bad", ost_theme_notes(&c, motif, 2, OST_KEEP, NULL, OST_KEEP));  /* too few */
    show(&c, "theme-free", ost_theme_free(&c, "beat", OST_KEEP));          /* on any server */
    /* The voices (refused out_of_range on voices unless the server's model is an ensemble
     * model); they change at the next bar line. */
    show(&c, "voices", ost_mood_voices(&c, pad, 3, NULL));
    show(&c, "state-voices", ost_state_voices(&c, "calm", "bar", pad, 1));
    show(&c, "bad-voices", ost_mood_voices(&c, bad_voice, 1, NULL));  /* program 128: refused */
    /* Repetition (0 through-composed .. 1 a loop), along the session's form, from the next bar. */
    show(&c, "repetition", ost_mood_repetition(&c, 0.6, NULL));
    show(&c, "state-repetition", ost_state_repetition(&c, "combat", "bar", 0.9));
    show(&c, "open-repetition", ost_open_session_repetition(&c, "player3", "calm", 0.3));
    show(&c, "close-repetition", ost_close_session(&c, "player3"));
    show(&c, "bad-repetition", ost_mood_repetition(&c, 1.5, NULL));  /* out of range on purpose */
    /* Style (refused out_of_range on style unless the server's model is told styles): a
     * collection's texture, from the transition. */
    show(&c, "style", ost_mood_style(&c, "baroque", NULL));
    show(&c, "state-style", ost_state_style(&c, "combat", "bar", "game"));
    show(&c, "bad-style", ost_mood_style(&c, "jazz", NULL));  /* no such style: bad_choice */
    show(&c, "stop", ost_stop(&c));
    ost_close(&c);
    return 0;
}
