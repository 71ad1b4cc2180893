"""General MIDI SoundFonts and FluidSynth: realistic sound where they are installed.

``render_fluidsynth`` renders a MIDI file offline with the ``fluidsynth`` program
(``fluidsynth_missing`` says why it cannot, where it cannot); ``default_soundfont`` is
also what the live FluidSynth preview (``realtime.audio.FluidSynthPort``) loads when none
is named.
"""
import os
import shutil
import subprocess

from engine.errors import OstinatoError
from engine.notes import open_midi

from realtime.synth import check_int


SOUNDFONTS = ("/usr/share/sounds/sf2/default-GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
              "/usr/share/sounds/sf2/FluidR3_GM.sf2")


def default_soundfont():
    """The first General MIDI SoundFont installed in Debian's usual place, or None."""
    return next((p for p in SOUNDFONTS if os.path.isfile(p)), None)


def fluidsynth_missing(soundfont=None):
    """Why ``render_fluidsynth`` cannot run here (the program or the SoundFont is not
    installed), or None when it can.  soundfont: the .sf2 to use (None: the default)."""
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (Debian: apt-get install fluidsynth)"
    sf2 = soundfont or default_soundfont()
    if sf2 is None or not os.path.isfile(sf2):
        return f"SoundFont not found: {sf2 or 'none of ' + ', '.join(SOUNDFONTS)}"
    return None


def render_fluidsynth(midi_path, wav_path, sample_rate=48000, soundfont=None, timeout_s=600):
    """Render with the `fluidsynth` program and a SoundFont (realistic General MIDI sound).

    FluidSynth plays the file as a General MIDI synth does: each channel the program its
    program changes select, channel 9 (MIDI channel 10) the SoundFont's drum kit.
    """
    sr = check_int("sample_rate", sample_rate, 8000, 192000)
    missing = fluidsynth_missing(soundfont)
    if missing:
        raise OstinatoError(missing)
    exe, sf2 = shutil.which("fluidsynth"), soundfont or default_soundfont()
    open_midi(midi_path)  # a clear error before fluidsynth's own
    cmd = [exe, "-ni", "-q", "-F", os.fspath(wav_path), "-r", str(sr), sf2, os.fspath(midi_path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise OstinatoError(f"fluidsynth took longer than {timeout_s} s") from exc
    if res.returncode != 0 or not os.path.isfile(wav_path):
        raise OstinatoError(f"fluidsynth failed ({res.returncode}): {(res.stderr or res.stdout).strip()[:300]}")
