"""A session's theme: the melody states it (``Runtime.lead_at``) and the form brings it
back; with a theme model its latent z also steers what is composed, and a blend moves z
along a great circle while the music goes on.

Functions of the server's music (``realtime.sessions.Sessions``), as ``realtime.transition``
is: ``set_theme`` is what a ``theme`` message does; ``lead`` and ``theme_latent`` what a
change of mode does to a session's theme; ``blend`` and ``announce_returns`` run on the
generator thread, under its lock.
"""
import numpy as np

from engine.sampler.memory import LOG as LEAD_LOG
from engine.sampler.theme import latent, slerp

from realtime.mood import mode_of


def set_theme(music, sess, motif, variation, unit, blend_beats):
    """Compose from ``motif`` (None: free composition) at ``variation``: the melody
    states it from ``unit`` (``lead``: note for note at variation 0, a share of its
    notes re-composed above), and it comes back through the session's form; with a
    theme model it is also encoded in the session's mode, z = (1 - variation) mu,
    which steers what is composed, and with ``blend_beats`` the latent moves there
    along a great circle instead (the music goes on: nothing is stated).  Returns
    the reply's mood fields and beat."""
    z = theme_latent(music, sess, motif, variation)
    s = sess.slot
    if music.theme is not None and blend_beats > 0:  # the music goes on: no change
        tick = music.when_tick(sess, unit, music.clock.now_ns())
        reply = dict(beat=tick / music.tpb, critic=music.critic_of(sess),
                     **music.describe(sess.mood))
        # the latent moves from here, a sixteenth at a time
        z0 = np.zeros(music.theme.z_dim) if sess.z is None else sess.z
        # a conductor model's positions: the new theme's bars (the old one's when
        # the blend goes back to free composition)
        bars = motif.bars if motif is not None else (
            sess.theme[0].bars if sess.theme is not None else None)
        music.blends[s] = (sess, z0, z, tick, tick + int(round(blend_beats * music.tpb)),
                           -1, bars)
    else:
        stop_blend(music, s)
        theme = None
        if music.theme is not None:
            bias, state = music.theme.bias(z, None if motif is None else motif.bars)
            theme = (bias, state if motif is not None else None)
        reply = music.change(sess, sess.mood, unit, "theme", theme=theme,
                            lead=lead(music, sess, motif, variation))
    sess.theme = None if motif is None else (motif, variation)
    sess.z = None if motif is None else z
    sess.theme_heard = int(round(reply["beat"] * music.tpb))  # stated there: no return
    return reply


def lead(music, sess, motif, variation):
    """``Runtime.lead_at``'s theme for ``motif`` at ``variation`` in the session's
    mode and key (``Motif.lead``); (None,) for none, and at variation 1, free
    composition."""
    if motif is None:
        return (None,)
    sess.theme_mode = mode_of(sess.mood)
    return motif.lead(variation, sess.theme_mode,
                      None if music.weights.key_relative else sess.mood.key) or (None,)


def theme_latent(music, sess, motif, variation):
    """z for ``motif`` at ``variation`` in the session's mode (None: free, z = 0)."""
    if motif is None or music.theme is None:
        return None if music.theme is None else np.zeros(music.theme.z_dim)
    mode = mode_of(sess.mood)
    sess.theme_mode = mode
    mu, _ = music.theme.encode(motif.tokens(music.vocab, mode))
    return latent(mu, variation)


def announce_returns(music):
    """Announce each time a session's theme comes back through its form (the
    runtime's log of statements and returns past the last one announced: a rewind
    that composes one again at the same beat announces nothing new)."""
    rt = music.rt
    for sess in music.sessions.values():
        s = sess.slot
        n = int(rt.l_logn[s])
        if sess.theme is None or not n or rt.l_log[s, (n - 1) % LEAD_LOG] <= sess.theme_heard:
            continue  # nothing newer than what was announced (no list made)
        variation = sess.theme[1]
        for tick in rt.lead_log(s):
            if tick > sess.theme_heard:
                sess.theme_heard = tick
                music.marker("theme_return", sess, beat=tick / music.tpb,
                            theme=sess.theme_desc, variation=variation)


def stop_blend(music, s):
    """Session s's latent stops where it is (a change takes over)."""
    music.blends.pop(s, None)


def blend(music):
    """Move each blending session's latent on, a sixteenth of a beat at a time by where
    its music is composed up to (on the generator thread, under its lock)."""
    rt = music.rt
    for s, (sess, z0, z1, t0, t1, done, bars) in list(music.blends.items()):
        step = 0 if rt.gen_tick[s] < t0 else (rt.gen_tick[s] - t0) * 4 // music.tpb + 1
        last = (t1 - t0) * 4 // music.tpb + 1
        step = min(step, last)
        if step <= done:
            continue
        f = min(1.0, step / last)
        rt.set_theme(s, music.theme.bias(slerp(z0, z1, f), bars)[0])
        if f >= 1.0:
            del music.blends[s]
        else:
            music.blends[s] = (sess, z0, z1, t0, t1, step, bars)
