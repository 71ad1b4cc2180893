/*
 * sync_example.c - play along with the music from C: flash on the beat, open a door on a
 * cue, start a cutscene on the next downbeat.
 *
 *   cc -std=c89 -Wall -o sync_example sync_example.c -lzmq
 *   ./sync_example [CONTROL [EVENTS [BEATS]]]      (defaults: the server's, 8 beats)
 *
 * Best against `ostinato serve --events-ahead 40`: the events then come up to 40 ms before
 * their time and each is done exactly at its t_ns, as a game's audio callback or frame loop
 * would do it (here a loop that sleeps in ost_event_recv until the next thing is due).
 *
 * Prints one line per thing done, at its time (t_ns and the ns it was late: a sleep's
 * grain, not the network's):
 *   position <beat> <bar> <bpm> <next_downbeat> <next_downbeat_t_ns>
 *   cue-placed door <beat> <t_ns>
 *   stinger played <1|0> <beat>                                   a fanfare at the cue
 *   beat <beat> <bar> <beat_in_bar> <bpm> <t_ns> <late_ns>      the crosshair flashes
 *   bar <beat> <bar> <t_ns> <late_ns>
 *   door <beat> <t_ns> <late_ns>                                 the cue plays: the door opens
 *   cutscene <t_ns> <late_ns>                                    position's next downbeat
 * Exit status: 0 done, 2 server unavailable, 1 anything else.
 */
#include "ostinato.h"

#define PENDING 64

/* Something to do at a time: an event's JSON, or "" for the cutscene. */
typedef struct due_thing {
    ost_ns t_ns;
    char json[512];
} due_thing;

/* A fanfare: pitch, start_beat, duration_beats per note, in any key (moved to the music's). */
static const double fanfare[] = {60, 0, 0.5,  64, 0.5, 0.5,  67, 1, 1};

static due_thing pending[PENDING];
static int n_pending = 0;
static char buf[4096];

static void schedule(ost_ns t_ns, const char *json)
{
    if (n_pending == PENDING) return; /* a game would grow its queue; 64 is plenty here */
    pending[n_pending].t_ns = t_ns;
    strncpy(pending[n_pending].json, json, sizeof pending[n_pending].json - 1);
    pending[n_pending].json[sizeof pending[n_pending].json - 1] = 0;
    n_pending++;
}

/* Do one thing whose time has come; returns 1 for a beat, 2 for the door, 3 for the cutscene. */
static int act(const ost_client *c, const due_thing *thing)
{
    char type[16], name[80], t[24], late[24];
    double beat = 0, bar = 0, in_bar = 0, bpm = 0;
    ost_format_ns(thing->t_ns, t);
    ost_format_ns(-ost_due_in_ns(c, thing->t_ns), late);
    if (!thing->json[0]) {
        printf("cutscene %s %s\n", t, late);
        return 3;
    }
    ost_json_string(thing->json, "type", type, sizeof type);
    ost_json_number(thing->json, "beat", &beat);
    ost_json_number(thing->json, "bar", &bar);
    ost_json_number(thing->json, "beat_in_bar", &in_bar);
    ost_json_number(thing->json, "bpm", &bpm);
    if (strcmp(type, "beat") == 0) {
        printf("beat %g %g %g %g %s %s\n", beat, bar, in_bar, bpm, t, late);
        return 1;
    }
    if (strcmp(type, "bar") == 0) {
        printf("bar %g %g %s %s\n", beat, bar, t, late);
        return 0;
    }
    if (strcmp(type, "cue") == 0 && ost_json_string(thing->json, "name", name, sizeof name) &&
        strcmp(name, "door") == 0) {
        printf("door %g %s %s\n", beat, t, late);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const types[] = {"beat", "bar", "cue", NULL}; /* sync types: opt-in */
    ost_client c;
    ost_events ev;
    ost_ns t_ns, next, due;
    double beat, bar, bpm, downbeat;
    char t[24];
    int beats = argc > 3 ? atoi(argv[3]) : 8;
    int flashed = 0, door = 0, cutscene = 0, subscribed = 0;
    int i, wait_ms, got;
    ost_ns deadline;

    if (ost_open(&c, argc > 1 ? argv[1] : NULL, 2000) != 0 ||
        ost_events_open(&ev, argc > 2 ? argv[2] : NULL, types) != 0) {
        fprintf(stderr, "cannot open ZeroMQ sockets\n");
        return 1;
    }
    if (ost_sync_clock(&c, 5) != 0) { /* the server's clock on this one's */
        fprintf(stderr, "Ostinato server unavailable at %s\n", c.address);
        ost_events_close(&ev);
        ost_close(&c);
        return 2;
    }
    deadline = ost_now_ns() + (ost_ns)30 * 1000000000;
    while ((flashed < beats || !door || !cutscene) && ost_now_ns() < deadline) {
        /* sleep in the socket until the next thing is due (at most 10 ms, as a frame) */
        wait_ms = 10;
        for (i = 0; i < n_pending; i++) {
            due = ost_due_in_ns(&c, pending[i].t_ns) / 1000000;
            if (due < wait_ms) wait_ms = due < 0 ? 0 : (int)due;
        }
        got = ost_event_recv(&ev, buf, sizeof buf, wait_ms);
        if (got > 0 && ost_json_ns(buf, "t_ns", &t_ns)) {
            schedule(t_ns, buf); /* a beat as a note: at its t_ns */
            if (!subscribed) {
                /* the stream is live: ask where the music is, and place the cue */
                subscribed = 1;
                if (ost_request(&c, ost_position(&c), buf, sizeof buf) != 1 ||
                    !ost_json_number(buf, "beat", &beat) || !ost_json_number(buf, "bar", &bar) ||
                    !ost_json_number(buf, "bpm", &bpm) ||
                    !ost_json_number(buf, "next_downbeat", &downbeat) ||
                    !ost_json_ns(buf, "next_downbeat_t_ns", &next)) {
                    fprintf(stderr, "position failed: %s\n", buf);
                    return 1;
                }
                printf("position %g %g %g %g %s\n", beat, bar, bpm, downbeat, ost_format_ns(next, t));
                schedule(next, ""); /* the cutscene starts on the next downbeat */
                /* the door opens on the bar after the next one (ost_cue(&c, "door", "bar",
                 * OST_KEEP): the next bar line, which may be too close for the fanfare below
                 * to be placed on it before it plays) */
                if (ost_request(&c, ost_cue(&c, "door", NULL, downbeat + 4), buf, sizeof buf) != 1 ||
                    !ost_json_number(buf, "beat", &beat) || !ost_json_ns(buf, "t_ns", &t_ns)) {
                    fprintf(stderr, "cue failed: %s\n", buf);
                    return 1;
                }
                printf("cue-placed door %g %s\n", beat, ost_format_ns(t_ns, t));
                /* a fanfare of our own lands on the door's cue; not again within 8 beats */
                if (ost_request(&c, ost_stinger_notes(&c, fanfare, 3, "cue:door", 8.0, "drop"),
                                buf, sizeof buf) != 1 || !ost_json_number(buf, "beat", &beat)) {
                    fprintf(stderr, "stinger failed: %s\n", buf);
                    return 1;
                }
                printf("stinger played %d %g\n", strstr(buf, "\"played\":true") != NULL, beat);
            }
        }
        for (i = 0; i < n_pending; i++) {
            if (ost_due_in_ns(&c, pending[i].t_ns) > 0) continue;
            switch (act(&c, &pending[i])) {
            case 1: flashed++; break;
            case 2: door = 1; break;
            case 3: cutscene = 1; break;
            default: break;
            }
            pending[i--] = pending[--n_pending];
        }
    }
    fflush(stdout);
    ost_events_close(&ev);
    ost_close(&c);
    return flashed >= beats && door && cutscene ? 0 : 1;
}
