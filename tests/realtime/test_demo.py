"""`ostinato demo` end to end: a real server, a real ZeroMQ game client, a virtual MIDI
port and audio on a real JACK server; its files read back with mido, wave and matplotlib."""
import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import matplotlib.image
import mido
import numpy as np
import pytest

from realtime.cli import main as cli_main
from engine.notes import make_notes
from realtime.demo import CUE, SCRIPT, Section, describe_beats, section_stats
from realtime.sessions import STINGER_CHANNEL

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 20
# a status line ("[  8.0 s]   main [...]: ...") may come between a request and its reply
ACK = re.compile(r"game → (?:state (?P<state>\w+)|mood [^\n]+?) "
                 r"\((?P<when>now|beat|bar|cue:\w+|no transition: states.toml's rule)\)\n"
                 r"(?:\[[^\]]+\]   [^\n]*\n)*"
                 r"\[[^\]]+\] music: from beat (?P<beat>[\d.]+): \w+#? (?:major|minor), "
                 r"(?P<bpm>[\d.]+) BPM")
ROW = re.compile(r"^    (?P<label>\S.{0,17}?)\s+(?P<beat>[\d.]+)\s+(?P<bpm>[\d.]+)\s+(?P<sec>[\d.]+)"
                 r"\s+(?P<rate>[\d.]+)\s+(?P<vel>[\d.]+)  (?P<voices>[a-z ]*)$", re.M)


@pytest.fixture(scope="module")
def demo(jack_server, theme_model, tmp_path_factory):
    """One 20 s demo run in a fresh interpreter, serving a theme model (the shipped
    generator with random z weights); returns (stdout, out dir, port name)."""
    out = tmp_path_factory.mktemp("demo")
    name = f"ostinato-demo-{os.getpid()}"
    argv = ["demo", "--seconds", str(SECONDS), "--out-dir", str(out), "--model", str(theme_model),
            "--api", "jack", "--port-name", name, "--audio"]
    # the serve path must not need torch: checked after the whole run
    code = ("import sys, realtime.cli; rc = realtime.cli.main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'the demo imported torch'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=90, env=dict(os.environ, JACK_NO_START_SERVER="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "lost client" not in done.stdout + done.stderr  # the game quit; nothing was lost
    return done.stdout, out, name


def test_the_output_tells_what_the_game_sent_and_what_the_music_did(demo):
    text, _, name = demo
    for step in SCRIPT:
        assert f"game → {step.describe()}" in text
    for state in ("explore", "stealth", "combat", "victory", "calm"):
        assert f"game → state {state}" in text
    assert f"MIDI port: '{name}:out'" in text and "audio: not available" not in text
    status = re.findall(r"^\[\s*[\d.]+ s\]   main.*notes/s.*$", text, re.M)
    assert len(status) >= SECONDS - 2  # one a second
    assert any("[combat]: C minor, 140 BPM" in line for line in status), text
    assert "no notes left sounding" in text


def test_the_hero_theme_enters_and_is_varied_and_both_are_marked(demo):
    text, _, _ = demo
    # states.toml's hero: ten notes over two bars in D minor, played in the session's key
    entries = re.findall(r"music: from beat [\d.]+: theme in D minor, 2 bars, 10 notes, played "
                         r"in \w+#? (major|minor)", text)
    assert len(entries) == sum(s.kind == "theme" for s in SCRIPT) == 2, text
    assert entries[1] == "minor"  # the second comes in combat, in C minor
    assert re.search(r"2 theme entries, \d+ returns of the theme .* and 1 cue marked", text), text


def test_demo_mid_has_balanced_notes_the_stingers_and_every_tempo(demo):
    text, out, _ = demo
    mid = mido.MidiFile(out / "demo.mid")
    sounding, stinger_notes = set(), 0
    for msg in mido.merge_tracks(mid.tracks):
        if msg.type == "note_on" and msg.velocity > 0:
            assert (msg.channel, msg.note) not in sounding
            sounding.add((msg.channel, msg.note))
            stinger_notes += msg.channel == STINGER_CHANNEL
        elif msg.type in ("note_on", "note_off"):
            assert (msg.channel, msg.note) in sounding, msg
            sounding.discard((msg.channel, msg.note))
    assert sounding == set()
    # "danger" as stealth → combat's bridge, a "hit" in the fight, "victory" as combat →
    # victory's bridge (states.toml's rules), each note of them in the recording
    played = re.findall(r"stinger (\w+) at beat [\d.]+(?: \(queued[^)]*\))?: ([^(\n]+)", text)
    assert sorted(name for name, _ in played) == ["danger", "hit", "victory"], text
    assert stinger_notes == sum(len(notes.split()) for _, notes in played)
    tempo, tick = {}, 0
    for msg in mid.tracks[0]:
        tick += msg.time
        if msg.type == "set_tempo":
            tempo[tick] = mido.tempo2bpm(msg.tempo)
    acks = [(float(m["beat"]), float(m["bpm"])) for m in ACK.finditer(text)]
    assert len(acks) == sum(s.kind in ("state", "mood") for s in SCRIPT), text
    for beat, bpm in acks:  # each change's tempo from the beat the server said
        assert tempo[round(beat * mid.ticks_per_beat)] == pytest.approx(bpm, abs=0.01)
    performed = float(re.search(r"server stopped after ([\d.]+) s", text)[1])
    assert abs(mid.length - performed) < 1.5  # so the tempo map is the one played


def test_demo_wav_is_the_performance_and_not_silent(demo):
    text, out, _ = demo
    length = mido.MidiFile(out / "demo.mid").length
    with wave.open(str(out / "demo.wav"), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 2, 2)
        frames = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    if "(FluidSynth" in text:  # FluidSynth renders until its player ends, releases included
        assert length - 0.05 <= seconds <= length + 5.0  # 3.05 s measured
    else:
        assert seconds == pytest.approx(length + 1.0, abs=0.05)  # the synth's 1 s release tail
    audio = np.frombuffer(frames, "<i2").reshape(-1, 2) / 32768.0
    quarter = 48000 * SECONDS // 4
    for i in range(4):  # sound throughout, louder than -60 dBFS
        assert np.abs(audio[i * quarter:(i + 1) * quarter]).max() > 1e-3, i


def test_demo_png_is_a_piano_roll_with_the_changes_marked(demo):
    _, out, _ = demo
    img = matplotlib.image.imread(out / "demo.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 500
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    assert ((r > 0.7) & (g < 0.3) & (b < 0.4)).sum() > 100  # the crimson mood lines
    assert ((b > 0.5) & (r < 0.4)).sum() > 100               # the blue notes
    # the beat events' ticks (teal, along the bottom): one column of them per beat at least
    teal = (r < 0.15) & (g > 0.5) & (b > 0.5) & (np.abs(g - b) < 0.1)
    assert teal.any(axis=0).sum() >= SECONDS, teal.any(axis=0).sum()


def test_the_summary_shows_the_music_respond(demo):
    text, _, _ = demo
    rows = {m["label"].strip(): m for m in ROW.finditer(text)}
    for label in ("menu", "explore", "stealth", "combat", "victory", "calm"):
        assert label in rows, text
    assert any(k.startswith("mood ") for k in rows)
    combat, calm = rows["combat"], rows["calm"]
    # combat asks 3.5 notes a beat at 140 BPM and velocity 96; calm 1.1 at 72 and 54
    assert float(combat["rate"]) > float(calm["rate"])
    assert float(combat["vel"]) > float(calm["vel"])


def test_section_stats_counts_per_second_and_keeps_stingers_apart():
    # 120 BPM for beats 0-4 (2 s), 60 BPM for beats 4-6 (2 s); ticks of 12 a beat
    notes = make_notes([(0, 6, 60, 40, 0), (12, 18, 62, 60, 0), (24, 30, 64, 80, 0),
                        (30, 36, 84, 120, STINGER_CHANNEL), (48, 60, 65, 100, 0),
                        (60, 72, 67, 100, 0)])
    stats = section_stats(notes, [Section("a", 0.0, 120.0), Section("b", 4.0, 60.0)], 6.0)
    assert [s["label"] for s in stats] == ["a", "b"]
    a, b = stats
    assert a["seconds"] == pytest.approx(2.0) and b["seconds"] == pytest.approx(2.0)
    assert (a["notes"], a["stinger_notes"], b["notes"]) == (3, 1, 2)
    assert a["per_second"] == pytest.approx(1.5) and b["per_second"] == pytest.approx(1.0)
    assert a["mean_velocity"] == pytest.approx(60.0) and b["mean_velocity"] == pytest.approx(100.0)
    # a section that never sounded (overridden at its own beat) is left out
    assert len(section_stats(notes, [Section("a", 0.0, 120.0), Section("b", 6.0, 60.0)], 6.0)) == 1


@pytest.mark.parametrize("argv, field", [
    (["--seconds", "5"], "--seconds"),
    (["--seconds", "nan"], "--seconds"),
    (["--seconds", "99999"], "--seconds"),
    (["--soundfont", "/no/such.sf2"], "--soundfont"),
])
def test_bad_arguments_are_named_with_their_range(argv, field, capsys, tmp_path):
    assert cli_main(["demo", "--out-dir", str(tmp_path), *argv]) == 1
    err = capsys.readouterr().err
    assert field in err and ("20..3600" in err or "file" in err)
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_an_out_dir_that_is_a_file_is_a_clear_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli_main(["demo", "--out-dir", str(blocker / "sub"), "--seconds", "20"]) == 1
    assert "cannot create the output folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ensemble_demo(tmp_path_factory):
    """One 20 s run of the demo as `make demo` runs it: the shipped ensemble, no JACK."""
    out = tmp_path_factory.mktemp("ensemble-demo")
    argv = ["demo", "--seconds", str(SECONDS), "--out-dir", str(out), "--midi", "none"]
    done = subprocess.run([sys.executable, "-m", "realtime.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, out


def test_the_ensemble_demo_layers_the_voices_by_state(ensemble_demo):
    """Issue 27's targets on the shipped presets, as the recording measures them: combat
    plays all four voices (drums among them), stealth at most two, calm at least two."""
    text, _ = ensemble_demo
    assert "voices melody (channel 0), bass (channel 1), harmony (channel 2), drums (channel 9)" \
        in text
    # what the server says each state plays, from its bar line ...
    for state, voices in (("stealth", "bass harmony"), ("combat", "melody bass harmony drums"),
                          ("calm", "melody harmony")):
        assert re.search(rf"game → state {state} \([^)\n]+\)\n(?:\[[^\]]+\]   [^\n]*\n)*"
                         rf"\[[^\]]+\] music: [^\n]*; voices {voices} from beat", text), text
    # ... and what the recording heard there (a section of 2 to 4 s is too short for every
    # voice to be sure to sound: the server test plays 16 beats of each)
    rows = {m["label"].strip(): m["voices"].split() for m in ROW.finditer(text)}
    assert "drums" in rows["combat"], text
    assert set(rows["stealth"]) <= {"bass", "harmony"}, text
    assert set(rows["calm"]) <= {"melody", "harmony"}, text


def test_the_ensemble_demo_states_the_hero_theme_in_its_melody_and_marks_its_returns(
        ensemble_demo):
    """The listening check of issue 28: the melody plays the hero's theme note for note
    (variation 0) from the beat the server named until the next change of state, and every
    return the event stream announced is marked."""
    text, out = ensemble_demo
    beat = float(re.search(r"music: from beat ([\d.]+): theme in D minor, 2 bars, 10 notes, "
                           r"played in C major", text)[1])
    until = min(float(m["beat"]) for m in ACK.finditer(text) if m["state"] and
                float(m["beat"]) > beat)
    mid = mido.MidiFile(out / "demo.mid")  # the melody's own track (it may double a pitch
    tpb = mid.ticks_per_beat               # another voice holds: read_midi would merge them)
    tick, got = 0, []
    for msg in next(t for t in mid.tracks if t.name == "melody"):
        tick += msg.time
        if msg.type == "note_on" and msg.velocity and beat <= tick / tpb < min(until - 0.01,
                                                                                beat + 8):
            got.append((round(tick / tpb - beat, 3), msg.note))
    hero = [(0, 62), (1, 65), (2, 69), (3, 74), (4, 72), (4.5, 70), (5, 69), (6, 67),
            (6.5, 65), (7, 62)]  # states.toml's, in D minor: moved to C and made major
    want = [(b, {63: 64, 68: 69, 70: 71}.get(p - 2, p - 2)) for b, p in hero
            if b < until - 0.01 - beat]  # both bars, unless the next change comes first
    assert len(want) >= 3 and got == want, (got, want)
    returns = re.search(r"the theme came back at beat ([\d., ]+) \(", text)
    count = len(returns[1].split(",")) if returns else 0
    assert f"2 theme entries, {count} returns of the theme" in text, text


def test_the_ensemble_demo_writes_a_track_per_voice_with_its_program(ensemble_demo):
    text, out = ensemble_demo
    mid = mido.MidiFile(out / "demo.mid")
    performed = float(re.search(r"server stopped after ([\d.]+) s", text)[1])
    assert abs(mid.length - performed) < 1.5  # every message on the performance's timeline
    programs = {}
    for track in mid.tracks:
        for msg in track:
            if msg.type == "program_change":
                programs.setdefault(track.name, set()).add(msg.program)
    names = {t.name for t in mid.tracks}
    assert {"melody", "bass", "harmony", "drums"} <= names
    assert 33 in programs["bass"] and 89 in programs["harmony"]  # stealth's and calm's pad
    on = {}
    for track in mid.tracks:
        for msg in track:
            if msg.type in ("note_on", "note_off"):
                key = (msg.channel, msg.note)
                if msg.type == "note_on" and msg.velocity:
                    on[key] = on.get(key, 0) + 1
                else:
                    on[key] = on.get(key, 0) - 1
    assert all(v == 0 for v in on.values())  # every note-on ended, on every channel


BEATS = re.compile(r"stream: (?P<n>\d+) beat events from beat (?P<first>[\d.]+) to "
                   r"(?P<last>[\d.]+) \((?P<missing>\d+) missing\), (?P<bars>\d+) bar and "
                   r"(?P<phrases>\d+) phrase events")


def test_describe_beats_counts_what_came_and_what_is_missing():
    beats = [(0.0, "beat"), (0.0, "bar"), (0.0, "phrase"), (1.0, "beat"), (3.0, "beat"),
             (4.0, "beat"), (4.0, "bar")]
    assert describe_beats(beats) == ("4 beat events from beat 0 to 4 (1 missing), 2 bar and "
                                     "1 phrase events")
    assert describe_beats([]) == "no beat events received"


def test_the_ensemble_demo_shows_the_beat_events_it_received(ensemble_demo):
    """The display's beat line and the picture's ticks come from the stream's opt-in beat
    and bar events: every beat of the performance came, a bar event at every 4th."""
    text, out = ensemble_demo
    lines = re.findall(r"^\[\s*[\d.]+ s\]   main beat: ([|. ]+)  \(bar (\d+) beat ([1-4])\)$",
                       text, re.M)
    assert len(lines) >= SECONDS - 2, text  # a beat line with each status line
    assert any("|" in drawn for drawn, _, _ in lines) and any("." in d for d, _, _ in lines)
    m = BEATS.search(text)
    assert m, text
    first, last = float(m["first"]), float(m["last"])
    assert m["missing"] == "0" and int(m["n"]) == last - first + 1
    assert int(m["bars"]) == len([b for b in range(int(first), int(last) + 1) if b % 4 == 0])
    # from the first beat to the end of the recording (less the beat it stopped in)
    mid = mido.MidiFile(out / "demo.mid")
    end = max(sum(msg.time for msg in track) for track in mid.tracks) / mid.ticks_per_beat
    assert first == 0 and end - 2 <= last <= end, (last, end)
    assert f"{m['n']} beat ticks" in text


def test_the_ensemble_demo_changes_state_at_the_cue_it_placed(ensemble_demo):
    """The cue: its ack promises a beat and t_ns, the stream announces it at that beat,
    and the state change asked for at ``cue:door`` lands there (its ack says that beat
    and t_ns, and the recording's melody, which stealth leaves out, stops there)."""
    text, out = ensemble_demo
    placed = re.search(rf"music: cue {CUE} placed at beat ([\d.]+) \(t_ns (\d+), in ", text)
    assert placed, text
    beat, t_ns = float(placed[1]), int(placed[2])
    assert f"stream: cue {CUE} plays at beat {beat:g} (main)" in text
    stealth = next(m for m in ACK.finditer(text) if m["when"] == f"cue:{CUE}")
    assert stealth["state"] == "stealth" and float(stealth["beat"]) == beat
    ack = re.search(rf"rule transitions\[\d+\]: at the cue:{CUE} \(t_ns (\d+), in ", text)
    assert ack and int(ack[1]) == t_ns, text
    # the announcement came after the request and before the next change was asked for
    at = text.index(f"stream: cue {CUE} plays")
    assert text.index(f"game → state stealth (cue:{CUE})") < at < text.index("game → state combat")
    combat = next(float(m["beat"]) for m in ACK.finditer(text) if m["state"] == "combat")
    mid = mido.MidiFile(out / "demo.mid")
    tick, onsets = 0, []
    for msg in next(t for t in mid.tracks if t.name == "melody"):
        tick += msg.time
        if msg.type == "note_on" and msg.velocity:
            onsets.append(tick / mid.ticks_per_beat)
    assert any(beat - 8 <= b < beat for b in onsets), onsets  # the theme, up to the cue
    assert not any(beat <= b < combat for b in onsets), onsets  # stealth: no melody


def test_the_ensemble_demo_says_what_the_rule_decided(ensemble_demo):
    """Victory is asked for with no transition: states.toml's combat → victory rule puts it
    at the bar with the victory stinger as a bridge, and the log says so."""
    text, _ = ensemble_demo
    m = re.search(r"game → state victory \(no transition: states.toml's rule\)\n"
                  r"(?:\[[^\]]+\]   [^\n]*\n)*"
                  r"\[[^\]]+\] music: from beat (?P<beat>[\d.]+): [^\n]*; rule "
                  r"(?P<rule>transitions\[\d+\]): at the bar, bridge stinger victory at beat "
                  r"(?P<stinger>[\d.]+): [^\n]* \(t_ns \d+, in -?[\d.]+ s\)", text)
    assert m, text
    assert float(m["beat"]) % 4 == 0 and m["stinger"] == m["beat"]
