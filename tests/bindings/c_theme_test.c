/*
 * c_theme_test.c - run by test_c.py against a live server with a theme model: the edges of
 * ost_theme_notes that example.c does not show.  Prints one line per case:
 * "<case> <id or -1> ok|error <code> <field>|unsent" (and "<case> theme <key> <notes>").
 */
#include "ostinato.h"

static char reply[4096];

static void show(ost_client *c, const char *what, long id)
{
    char code[64], field[64], message[256], key[64];
    double notes;
    const char *theme;
    int r;
    if (id < 0) {
        printf("%s unsent\n", what);
        return;
    }
    r = ost_request(c, id, reply, sizeof reply);
    if (r == 1) {
        printf("%s ok\n", what);
        theme = strstr(reply, "\"theme\":{");
        if (ost_json_string(theme, "key", key, sizeof key) && ost_json_number(theme, "notes", &notes))
            printf("%s theme %s %g\n", what, key, notes);
    } else if (r == 0) {
        ost_json_string(reply, "code", code, sizeof code);
        ost_json_string(reply, "field", field, sizeof field);
        ost_json_string(reply, "message", message, sizeof message);
        printf("%s error %s %s: %s\n", what, code, field, message);
    } else {
        printf("%s unavailable\n", what);
    }
}

int main(int argc, char **argv)
{
    static double many[100 * 3]; /* a message of over 2 KiB: built off the stack */
    static double huge[6000 * 3]; /* over OST_MAX_MESSAGE: never sent */
    double triad[9] = {62, 0, 1,  65, 1, 1,  69, 2, 1};
    double zero = argc > 99 ? 1.0 : 0.0; /* not a constant: no compiler folds 0/0 */
    int i;
    ost_client c;

    if (ost_open(&c, argc > 1 ? argv[1] : NULL, 5000) != 0) return 1;
    for (i = 0; i < 100; i++) { /* 25 pitches, 4 beats of chords */
        many[3 * i] = 48 + i % 25;
        many[3 * i + 1] = i / 25;
        many[3 * i + 2] = 1.0;
    }
    for (i = 0; i < 6000; i++) {
        huge[3 * i] = 127.0;
        huge[3 * i + 1] = 1.0 / 3.0 + i;
        huge[3 * i + 2] = 1.0 / 3.0;
    }
    show(&c, "many", ost_theme_notes(&c, many, 100, 0.5, "now", 1.5));
    show(&c, "huge", ost_theme_notes(&c, huge, 6000, OST_KEEP, NULL, OST_KEEP));
    show(&c, "none", ost_theme_notes(&c, NULL, 0, OST_KEEP, NULL, OST_KEEP));
    show(&c, "null", ost_theme_notes(&c, NULL, 3, OST_KEEP, NULL, OST_KEEP));
    show(&c, "negative", ost_theme_notes(&c, triad, -1, OST_KEEP, NULL, OST_KEEP));
    triad[6] = 69.5;
    show(&c, "fraction", ost_theme_notes(&c, triad, 3, OST_KEEP, NULL, OST_KEEP));
    triad[6] = zero / zero;
    show(&c, "nan", ost_theme_notes(&c, triad, 3, OST_KEEP, NULL, OST_KEEP));
    triad[6] = 69.0;
    show(&c, "variation", ost_theme_notes(&c, triad, 3, 1.5, NULL, OST_KEEP));
    show(&c, "villain", ost_theme_name(&c, "villain", OST_KEEP, "beat", OST_KEEP));
    show(&c, "hero", ost_theme_name(&c, "hero", 0.75, "beat", OST_KEEP));
    show(&c, "free", ost_theme_free(&c, NULL, 3.0));
    ost_close(&c);
    return 0;
}
