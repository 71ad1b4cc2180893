"""The evaluation of multi-voice music: texture figures on constructed textures with known
answers, and on real Bach chorales of music21's corpus (key, consonance, the fresh critic
against shuffled-pitch chorales and against themselves)."""
import json

import numpy as np
import pytest

from engine.ensemble import BASS, DRUMS, HARMONY, MELODY
from engine.errors import InvalidMessage
from engine.evaluation import ensemble as ev
from engine.evaluation import texture_critic as tc
from engine.evaluation import texture as tx
from engine.notes import NOTE_DTYPE

B = 12  # ticks per beat


def piece(*rows):
    """Notes from (start beat, end beat, pitch, voice) rows."""
    return np.array([(round(s * B), round(e * B), p, 80, v) for s, e, p, v in rows], NOTE_DTYPE)


# -- consonance --------------------------------------------------------------------------
def test_c_major_triad_on_beat_one_is_consonant():
    notes = piece((0, 1, 48, BASS), (0, 1, 55, HARMONY), (0, 1, 64, MELODY))
    assert tx.consonance_counts(notes) == (3, 3)
    assert tx.strong_beat_consonance(notes) == 1.0


def test_tritone_is_dissonant():
    assert tx.strong_beat_consonance(piece((0, 1, 60, BASS), (0, 1, 66, MELODY))) == 0.0


def test_fourth_is_consonant_above_the_bass_only():
    # C3 G3 C4: the fourth G3-C4 lies between upper voices
    assert tx.strong_beat_consonance(
        piece((0, 1, 48, BASS), (0, 1, 55, HARMONY), (0, 1, 60, MELODY))) == 1.0
    # G3 C4: a fourth against the bass (a bare 6/4)
    assert tx.strong_beat_consonance(piece((0, 1, 55, BASS), (0, 1, 60, MELODY))) == 0.0


def test_only_strong_beats_count_and_held_notes_sound_there():
    # a tritone struck on beat 2 is left out; beat 1's octave counts
    assert tx.consonance_counts(piece((0, 1, 48, BASS), (0, 1, 60, MELODY),
                                      (1, 2, 54, BASS), (1, 2, 60, MELODY))) == (1, 1)
    # a tritone held over beats 1-4 is heard on beats 1 and 3
    assert tx.consonance_counts(piece((0, 4, 48, BASS), (0, 4, 54, MELODY))) == (0, 2)
    # drums are not pitches
    assert tx.consonance_counts(piece((0, 1, 48, BASS), (0, 1, 42, DRUMS))) == (0, 0)
    assert tx.strong_beats(4) == (0, 2) and tx.strong_beats(3) == (0,)


# -- chords and the bass -----------------------------------------------------------------
def test_chord_templates():
    w = np.zeros(12)
    w[[0, 4]] = 1                       # C-E: C major beats A minor (C sounds, A does not)
    assert tx.chord_of(w) == (0, "major")
    w = np.zeros(12)
    w[[11, 2, 5]] = 1                   # B-D-F
    assert tx.chord_of(w) == (11, "diminished")
    w = np.zeros(12)
    w[[9, 0, 4]] = 1
    assert tx.chord_of(w) == (9, "minor")
    assert tx.chord_of(np.zeros(12)) is None


def test_bass_on_the_root_of_c_major():
    upper = [(0, 1, 60, HARMONY), (0, 1, 64, HARMONY), (0, 1, 67, MELODY)]
    on_c = tx.bass_root_share(piece((0, 1, 48, BASS), *upper))
    on_e = tx.bass_root_share(piece((0, 1, 52, BASS), *upper))
    assert on_c == dict(share=1.0, onsets=1, source="estimated")
    assert on_e["share"] == 0.0
    # a bass struck on beat 2 is not on a strong beat
    assert tx.bass_root_share(piece((1, 2, 48, BASS), *[(1, 2) + u[2:] for u in upper]))[
        "onsets"] == 0


def test_bass_root_follows_an_explicit_plan():
    notes = piece((0, 1, 45, BASS), (0, 1, 60, HARMONY), (0, 1, 64, MELODY),
                  (2, 3, 43, BASS), (2, 3, 62, HARMONY), (2, 3, 67, MELODY))
    plan = [(0, 9, "minor"), (2 * B, 7, "major")]
    assert tx.bass_root_share(notes, plan=plan) == dict(share=1.0, onsets=2, source="plan")
    assert tx.bass_root_share(notes, plan=[(0, 0, "major")])["share"] == 0.0


# -- crossings ---------------------------------------------------------------------------
def test_melody_below_the_harmony_half_the_time():
    notes = piece((0, 4, 60, MELODY), (0, 2, 64, HARMONY), (2, 4, 55, HARMONY),
                  (0, 4, 48, BASS))
    c = tx.crossings(notes)
    assert c["melody_below_harmony"] == 0.5
    assert c["bass_above_harmony"] == 0.0 and c["bass_above_melody"] == 0.0
    assert c["any"] == 0.5


def test_bass_above_the_harmony_and_unisons():
    c = tx.crossings(piece((0, 4, 60, BASS), (0, 1, 55, HARMONY), (1, 4, 60, HARMONY)))
    assert c["bass_above_harmony"] == 0.25      # a unison (beats 2-4) is no crossing
    assert np.isnan(c["melody_below_harmony"])  # no melody


# -- drums -------------------------------------------------------------------------------
def groove(bar, snare_beats=(1, 3)):
    rows = [(bar * 4 + b, bar * 4 + b + 0.5, 36, DRUMS) for b in (0, 2)]
    rows += [(bar * 4 + b, bar * 4 + b + 0.5, 38, DRUMS) for b in snare_beats]
    rows += [(bar * 4 + h / 2, bar * 4 + h / 2 + 0.25, 42, DRUMS) for h in range(8)]
    return rows


def test_drum_bar_with_snare_on_two_and_four():
    d = tx.drum_figures(piece(*groove(0)))
    assert d["backbeat"] == 1.0 and d["onsets_per_bar"] == 12.0
    assert np.isnan(d["repetition"])            # one bar: nothing to compare


def test_two_identical_drum_bars_repeat():
    assert tx.drum_figures(piece(*groove(0), *groove(1)))["repetition"] == 1.0
    d = tx.drum_figures(piece(*groove(0), *groove(1, snare_beats=(0, 3))))
    assert d["repetition"] == 0.0 and d["backbeat"] == 0.75


def test_density_per_voice():
    notes = piece(*[(b, b + 1, 72, MELODY) for b in range(8)], (0, 8, 40, BASS),
                  *[(b, b + 0.5, 42, DRUMS) for b in np.arange(0, 8, 0.5)])
    assert tx.voice_density(notes) == dict(melody=1.0, bass=0.125, harmony=0.0, drums=2.0)
    got = tx.density_adherence([notes], [dict(melody=2.0, drums=2.0)])
    assert got["melody"]["abs_error"] == 1.0 and got["melody"]["ratio"] == 0.5
    assert got["drums"]["abs_error"] == 0.0 and "bass" not in got


def test_bad_input_names_the_field():
    with pytest.raises(InvalidMessage) as e:   # a MIDI drum channel is not a voice id
        tx.strong_beat_consonance(np.array([(0, 12, 36, 80, 9)], NOTE_DTYPE))
    assert e.value.field == "channel"
    with pytest.raises(InvalidMessage) as e:
        tx.key_accuracy([piece((0, 1, 60, MELODY))], [])
    assert e.value.field == "keys"


def test_windows_are_whole_bars_from_zero():
    notes = piece(*[(b, b + 1, 60 + b % 5, MELODY) for b in range(64)])   # 16 bars
    ws = tc.windows(notes)
    assert len(ws) == 3                          # bars 0-7, 4-11, 8-15
    assert all(w["start"].min() == 0 and w["end"].max() == 8 * 4 * B for w in ws)
    assert np.array_equal(ws[1]["pitch"], notes["pitch"][16:48])
    f = tc.window_features(ws[0])
    assert len(f) == len(tc.feature_names())
    assert f[tc.feature_names().index("melody_density")] == 1.0


# -- real chorales -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bach():
    return ev.chorales(60)


def test_chorales_are_four_voices_on_the_bar(bach):
    assert len(bach) == 60
    for c in bach:
        assert set(c.notes["channel"].tolist()) == {MELODY, BASS, HARMONY}
        # soprano above bass nearly always (crossing share measured 0.0 over 40 chorales)
        assert tx.crossings(c.notes)["bass_above_melody"] < 0.05
    # bwv1.6 starts with a one-beat pickup: shifted to beat 4 of bar 0
    first = next(c for c in bach if c.name == "bwv1.6.mxl")
    assert first.notes["start"].min() == 3 * B and first.key == (5, 0)


def test_music21_hears_the_annotated_key_of_most_chorales(bach):
    some = [c for c in bach[:12] if c.key is not None]
    acc = tx.key_accuracy([c.notes for c in some], [c.key for c in some])
    # measured: 11 of the first 12 (92 %); one in six missed would still pass
    assert acc["pieces"] >= 10 and acc["key_and_mode"] >= 0.8


def test_chorales_are_consonant_on_strong_beats(bach):
    cons = [tx.strong_beat_consonance(c.notes) for c in bach]
    # measured over these 60: mean 0.94, lowest 0.86
    assert np.mean(cons) > 0.9 and min(cons) > 0.8
    roots = [tx.bass_root_share(c.notes)["share"] for c in bach]
    assert 0.5 < np.nanmean(roots) < 0.8         # measured 0.64: inversions are common


def test_critic_tells_chorales_from_shuffled_pitches_and_not_from_themselves(bach):
    real = [c.notes for c in bach]
    rng = np.random.default_rng(1)
    shuffled = [ev.shuffle_pitches(n, rng) for n in real]
    assert tx.strong_beat_consonance(shuffled[0]) < tx.strong_beat_consonance(real[0])
    cfg = ev.EnsembleEvalConfig(bootstrap=200)
    fake = tc.critic_auc(real, shuffled, seed=0, cfg=cfg)
    assert fake["auc"]["lo"] > 0.9
    same = tc.real_vs_real(real, seed=0, cfg=cfg)
    assert abs(same["auc"]["mean"] - 0.5) < 0.15
    assert same["bootstrap"]["lo"] < 0.5 < same["bootstrap"]["hi"]


def test_evaluate_ensemble_is_json_with_intervals(bach):
    real = [c.notes for c in bach[:30]]
    rng = np.random.default_rng(2)
    gen = dict(shuffled=[ev.shuffle_pitches(n, rng) for n in real])
    cfg = ev.EnsembleEvalConfig(splits=2, bootstrap=50)
    res = ev.evaluate_ensemble(real, gen, seed=3, cfg=cfg,
                               keys=dict(real=[c.key for c in bach[:30]]))
    json.dumps(res, allow_nan=False)
    r, s = res["sets"]["real"], res["sets"]["shuffled"]
    assert r["consonance"]["lo"] < r["consonance"]["mean"] < r["consonance"]["hi"]
    assert r["consonance"]["mean"] == pytest.approx(
        np.mean([tx.strong_beat_consonance(n) for n in real]))
    assert s["consonance"]["hi"] < r["consonance"]["lo"]
    assert r["drums_backbeat"]["n"] == 0 and r["drums_onsets_per_bar"]["mean"] == 0.0
    assert r["chord_source"] == ["estimated"] and "key" in r and "key" not in s
    assert s["critic"]["auc"]["mean"] > r["critic"]["auc"]["mean"]
    with pytest.raises(InvalidMessage):
        ev.evaluate_ensemble(real, dict(real=real))


def test_the_arrangers_plan_is_used_for_the_bass(bach):
    from engine.arranger import PLAN_DTYPE, arrange
    a = arrange(0, 0, 8, groove="calm", seed=1)   # bass on whole-bar roots
    assert a.plan.dtype == PLAN_DTYPE
    assert tx.plan_chord_at(a.plan, 0) == (int(a.plan["root"][0]), "major")
    got = tx.bass_root_share(a.notes, plan=a.plan)
    assert got["source"] == "plan" and got["share"] == 1.0 and got["onsets"] == 8
    # the same bass against a plan a fifth away misses every root
    moved = a.plan.copy()
    moved["root"] = (moved["root"] + 7) % 12
    assert tx.bass_root_share(a.notes, plan=moved)["share"] == 0.0


def test_entry_writes_the_figures(bach, tmp_path, capsys):
    out = tmp_path / "ens.json"
    ev.main(["--pieces", "12", "--out", str(out)])
    res = json.loads(out.read_text())
    assert set(res["sets"]) == {"real", "arranger", "arranger_on_real_melody"}
    assert res["sets"]["arranger"]["chord_source"] == ["plan"]
    assert res["sets"]["real"]["key"]["pieces"] == 12
    assert res["sets"]["arranger"]["drums_onsets_per_bar"]["mean"] > 0
    assert json.loads(capsys.readouterr().out) == res
