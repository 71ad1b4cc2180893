/*
 * c_events_test.c - ostinato.h's event stream, clocks and 64-bit t_ns, for test_c.py.
 *
 *   c_events_test offline ADDRESS         nothing listening at ADDRESS: parsing, clock, failures
 *   c_events_test play CONTROL EVENTS N   clock sync, then N notes with their due-in
 *   c_events_test listen EVENTS MS [SERVER_KEY CLIENT_KEY_SECRET]   one event of any type
 *
 * Compiled with -DOST_TEST_SYSTEM_HEADER_FIRST, a system header comes before ostinato.h (in
 * strict C its clock is then declared by ostinato.h itself).
 */
#ifdef OST_TEST_SYSTEM_HEADER_FIRST
#include <stdio.h>
#endif
#include "ostinato.h"

static char buf[4096];

static void show_ns(const char *label, const char *json)
{
    char text[24];
    ost_ns v = 7;
    int found = ost_json_ns(json, "t_ns", &v);
    printf("ns %s %d %s\n", label, found, ost_format_ns(v, text));
}

static int offline(const char *address)
{
    static const char *const none[] = {NULL};
    static const char *const long_types[] = {
        "a_type_name_of_fifty_characters_more_or_less_xxxxx", "a_type_name_of_fifty_characters_more_or_less_xxxxx",
        "a_type_name_of_fifty_characters_more_or_less_xxxxx", "a_type_name_of_fifty_characters_more_or_less_xxxxx",
        NULL};
    char text[24];
    ost_client c;
    ost_events e;
    ost_ns a, b;

    show_ns("above-2^53", "{\"v\":1,\"type\":\"note_on\",\"seq\":1,\"t_ns\":9007199254740993,\"beat\":1.5}");
    show_ns("max", "{\"t_ns\":9223372036854775807}");
    show_ns("min", "{\"t_ns\":-9223372036854775808}");
    show_ns("negative", "{\"t_ns\":-42,\"x\":1}");
    show_ns("zero", "{\"t_ns\":0}");
    show_ns("over", "{\"t_ns\":9223372036854775808}");
    show_ns("under", "{\"t_ns\":-9223372036854775809}");
    show_ns("fraction", "{\"t_ns\":1.5}");
    show_ns("exponent", "{\"t_ns\":1e9}");
    show_ns("string", "{\"t_ns\":\"12\"}");
    show_ns("missing", "{\"rtt_ns\":12}");
    show_ns("null", NULL);
    printf("due-without-t_ns %s\n", ost_format_ns(ost_event_due_in_ns(NULL, "{\"v\":1}"), text));

    a = ost_now_ns();
    b = ost_now_ns();
    printf("now %s\n", ost_format_ns(a, text));
    printf("monotonic %d\n", b >= a);

    if (ost_open(&c, address, 100) != 0) return 1;
    printf("offset-after-open %s\n", ost_format_ns(c.clock_offset_ns, text));
    printf("nosync %d\n", ost_sync_clock(&c, 2));
    ost_close(&c);

    if (ost_events_open(&e, address, none) != 0) return 1; /* an empty list: every event */
    printf("idle %d\n", ost_event_recv(&e, buf, sizeof buf, 0));
    printf("idle-wait %d\n", ost_event_recv(&e, buf, sizeof buf, 20));
    printf("size-0 %d\n", ost_event_recv(&e, buf, 0, 0));
    ost_events_close(&e);
    printf("too-many-types %d\n", ost_events_open(&e, address, long_types));
    return 0;
}

static int play(const char *control, const char *events, int n)
{
    static const char *const notes[] = {"note_on", "note_off", NULL};
    static const char *const states[] = {"state", NULL};
    char type[32], text[4][24], small[16];
    ost_client c;
    ost_events e, quiet;
    ost_ns before, due, after, t_ns;
    double seq, pitch;
    int i, len;

    if (ost_open(&c, control, 2000) != 0) return 1;
    if (ost_sync_clock(&c, 5) != 0) {
        printf("sync failed\n");
        return 1;
    }
    printf("sync 0 offset %s\n", ost_format_ns(c.clock_offset_ns, text[0]));
    if (ost_events_open(&e, events, notes) != 0 || ost_events_open(&quiet, events, states) != 0)
        return 1;
    for (i = 0; i < n; i++) {
        len = ost_event_recv(&e, buf, sizeof buf, 10000);
        before = ost_now_ns();
        due = ost_event_due_in_ns(&c, buf);
        after = ost_now_ns();
        if (len <= 0 || (size_t)len != strlen(buf)) {
            printf("recv %d\n", len);
            return 1;
        }
        ost_json_string(buf, "type", type, sizeof type);
        if (!ost_json_number(buf, "seq", &seq) || !ost_json_number(buf, "pitch", &pitch) ||
            !ost_json_ns(buf, "t_ns", &t_ns))
            return 1;
        /* type seq t_ns due_in pitch, then the clock read before and after due_in */
        printf("event %s %.0f %s %s %.0f", type, seq, ost_format_ns(t_ns, text[0]),
               ost_format_ns(due, text[1]), pitch);
        printf(" %s %s\n", ost_format_ns(before, text[2]), ost_format_ns(after, text[3]));
        printf("raw %s\n", buf);
    }
    len = ost_event_recv(&e, small, sizeof small, 10000); /* a frame cut to fit */
    printf("cut %d %d\n", len, (int)strlen(small));
    printf("state-timeout %d\n", ost_event_recv(&quiet, buf, sizeof buf, 50));
    ost_events_close(&quiet);
    ost_events_close(&e);
    ost_close(&c);
    return 0;
}

static int listen(const char *events, int timeout_ms, const char *server_key, const char *client_key)
{
    char server_public[41], client_public[41], client_secret[41], text[24];
    ost_events e;
    ost_ns t_ns = 0;
    if (ost_events_open(&e, events, NULL) != 0) return 1;
    if (server_key != NULL &&
        (!ost_load_key(server_key, "public-key", server_public) ||
         !ost_load_key(client_key, "public-key", client_public) ||
         !ost_load_key(client_key, "secret-key", client_secret) ||
         ost_events_set_keys(&e, server_public, client_public, client_secret) != 0)) {
        printf("bad keys\n");
        return 1;
    }
    if (ost_event_recv(&e, buf, sizeof buf, timeout_ms) > 0 && ost_json_ns(buf, "t_ns", &t_ns)) {
        printf("heard %s\n", ost_format_ns(t_ns, text));
        printf("raw %s\n", buf);
    } else {
        printf("heard nothing\n");
    }
    ost_events_close(&e);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "offline") == 0) return offline(argv[2]);
    if (argc == 5 && strcmp(argv[1], "play") == 0) return play(argv[2], argv[3], atoi(argv[4]));
    if ((argc == 4 || argc == 6) && strcmp(argv[1], "listen") == 0)
        return listen(argv[2], atoi(argv[3]), argc == 6 ? argv[4] : NULL, argc == 6 ? argv[5] : NULL);
    fprintf(stderr, "usage: c_events_test offline ADDRESS | play CONTROL EVENTS N | "
                    "listen EVENTS MS [SERVER_KEY CLIENT_KEY_SECRET]\n");
    return 1;
}
