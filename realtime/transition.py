"""A session's change of mood at a transition point (now, the next beat, bar or phrase,
an N-bar grid, a cue).

``change`` is what a mood, state, key or theme message does to the model and the
sequencer: "now" regenerates everything not yet played and starts the new music with a
note at once; the others switch the model's controls, transposition and velocity at that
tick (or a pickup before it) and leave what comes before it as it was composed.
"""
from realtime import themes
from realtime.mood import bpm_of, form_of, mode_of, repetition_of, velocity_of


def change(music, sess, mood, unit, what, theme=None, layers=None, lead=None,
           pickup_beats=0.0, ramp_beats=0.0, **extra):
    """Switch ``sess`` of ``music`` (``realtime.sessions.Sessions``) to ``mood`` at the
    transition point ``unit``; ``theme`` (``Runtime.theme_at``'s bias and state) takes
    effect there too, and so does ``lead`` (``Runtime.lead_at``'s notes, variation and
    length: the theme the melody states note for note from there).  A session that
    composes from a theme and changes mode has it encoded again in the new mode, and
    states it again from the transition point in that mode.  An ensemble's voices (its ``layers``, or these new
    ones) follow the mood from the first bar line at or after the transition point: a
    voice enters or leaves there, never mid-bar.  A new repetition or form is handed to the
    sampler, which follows it from the next bar line its music reaches.

    ``pickup_beats`` (not with "now"): the new music's anacrusis, or pre-entry: the
    model composes with the new controls (and key) from that many beats before the
    transition point, so its phrase leads into the downbeat; the voices, the theme and the
    tempo change on the downbeat itself.  The downbeat is the grid's first with room for
    the whole pickup before it (at a cue, which does not move, the pickup starts at the
    playhead at the latest).  ``ramp_beats``: a new tempo is reached over that many beats
    from the transition point.  Returns the reply's fields: the beat and the mood (with the
    voices that play, and from which beat; ``pickup_beat`` with a pickup)."""
    rt, seq, tpb = music.rt, music.seq, music.tpb
    s = sess.slot
    old_bpm = bpm_of(sess.mood)
    old_form = (repetition_of(sess.mood, music.repetition), form_of(sess.mood))
    sess.mood = mood
    if lead is None and sess.theme is not None and mode_of(mood) != sess.theme_mode:
        lead = themes.lead(music, sess, *sess.theme)
        if theme is None and music.theme is not None:
            sess.z = themes.theme_latent(music, sess, *sess.theme)
            # the same phrase goes on, re-keyed
            theme = (music.theme.bias(sess.z, sess.theme[0].bars)[0], None)
            themes.stop_blend(music, s)
    now = music.clock.now_ns()
    ctl, shift, bias = music.model_request(mood)
    rt.max_note_ticks[s] = music.max_note_ticks(mood)  # a guard: at once
    # a drafted continuation not yet fed was composed under the old settings: from
    # here the session goes on as without a critic, drafting anew where it is
    rt.drop_draft(s)
    music.apply_critic(sess)
    if unit == "now":
        tick = seq.boundary(s, now, "now")
        rt.rewind(s, -1)  # everything not yet played is regenerated
        held = rt.sounding[s].copy()  # the old notes, which the model hears end below
        music.release(s, now, stingers=False)  # the old music stops at once
        rt.queue(s, rt.shifts_to(s, tick))
        voices = music.voicing.change(sess, layers or sess.layers, mood, tick, now)
        rt.ctl_base[s] = ctl
        rt.pc_bias[s] = bias
        rt.switch_tick[s] = -1
        seq.set_transpose(s, shift)  # nothing unplayed is left of the old key
        rt.enter(s)  # the new music starts with a note in every voice, at once
        if theme is not None:
            rt.theme_at(s, tick, *theme)
        if lead is not None:
            rt.lead_at(s, tick, *lead)
        seq.asap_tick[s] = tick
        seq.asap_ns[s] = now
        music.compose_now(s)
        # the model hears the old notes end just after the new one starts: each fed
        # token is a step, and these need not delay the first note (a critic
        # session's draft goes only as far as that note: it drafts on after them)
        rt.drop_draft(s)
        rt.queue(s, rt.release_all(s, held))
    else:
        tick = music.when_tick(sess, unit, now)
        at = tick  # where the new controls start: the downbeat, or its pickup
        if pickup_beats:
            pickup, head = int(round(pickup_beats * tpb)), seq.boundary(s, now, "now")
            if tick - pickup < head and not unit.startswith("cue:"):
                # the grid's first downbeat with room for the whole pickup before it
                tick = music.when_tick(sess, unit, seq.tick_ns(s, head + pickup))
            at = max(head, tick - pickup)
        # a change the model has not reached yet is replaced by this one (one pending
        # switch per session), and so is its transposition
        unreached = int(rt.switch_tick[s])
        if rt.gen_tick[s] >= at:
            # composed again from the transition tick: notes at that tick are the new
            # music's, so that they take its transposition (collect switches by tick)
            rt.rewind(s, at - 1)
        if rt.gen_tick[s] >= at:  # held there by events already played
            rt.ctl_base[s] = ctl
            rt.pc_bias[s] = bias
            rt.switch_tick[s] = -1
        else:
            rt.next_ctl[s] = ctl
            rt.next_bias[s] = bias
            rt.switch_tick[s] = at
        seq.queue_transpose(s, at, shift, drop_from=unreached if unreached >= 0 else None)
        voices = music.voicing.change(sess, layers or sess.layers, mood, tick, now)
        if theme is not None:
            rt.theme_at(s, tick, *theme)
        if lead is not None:
            rt.lead_at(s, tick, *lead)
    if (repetition_of(mood, music.repetition), form_of(mood)) != old_form:
        music.apply_form(sess)  # after any rewind: from the bar line the music reaches next
    if unit == "now":
        seq.velocity[s] = velocity_of(mood)
        seq.vel_tick[s] = -1
    else:  # louder or softer from the transition point (its pickup), not before
        seq.next_vel[s] = velocity_of(mood)
        seq.vel_tick[s] = at
    if what == "state":
        sess.state = extra.get("name")
    if bpm_of(mood) != old_bpm:
        seq.set_tempo(s, tick, bpm_of(mood), ramp_beats, now=now)
        music.marker("tempo", sess, beat=tick / tpb, bpm=bpm_of(mood))
    info = dict(music.describe(mood), critic=music.critic_of(sess))
    if voices[0] is not None:
        info.update(voices=voices[0], voices_beat=voices[1])
    if unit != "now" and at != tick:
        info["pickup_beat"] = at / tpb
    music.marker("mood", sess, beat=tick / tpb, transition=unit, **info, **extra)
    return dict(beat=tick / tpb, **info)
