"""Shared fixtures: the shipped model (and a theme model built on it), a real JACK server
for MIDI tests, and the ALSA sequencer check."""
import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

from engine import DEFAULT_MODEL
from realtime.jack import JackConfig, JackServer


def _missing(reason):
    """Fail under CI (the Makefile installs jackd2 there), else skip with the reason."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: the Makefile must install it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def jack_server():
    """A JACK server of the test session's own: ``jackd -R -d dummy`` (48 kHz, 256-frame
    periods; realtime scheduling where the machine allows it, else ``--no-realtime``)
    under a unique name, stopped at the end of the test session.  Without realtime
    scheduling a loaded machine makes clients miss cycles, and JACK drops their MIDI."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        _missing("jackd/jack_lsp not installed (Debian package jackd2)")
    # A server of our own, by a name nobody else uses: a shared "default" server can be
    # stopped by whichever test run started it while another still needs it.
    # JACK_DEFAULT_SERVER tells libjack (rtmidi, PortAudio, jack_lsp, subprocesses) which.
    name = f"ostinato-tests-{uuid.uuid4().hex[:8]}"
    before = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        with JackServer(JackConfig(server=name, realtime=True)) as server:
            yield server
            # PortAudio's JACK host API asserts at process exit if its server is gone
            # first: let it go while jackd still runs.
            sd = sys.modules.get("sounddevice")
            if sd is not None:
                sd._terminate()
    finally:
        if before is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = before


@pytest.fixture(scope="session")
def alsa_seq():
    """Skips the test when this machine has no ALSA sequencer (containers rarely do)."""
    if not os.path.exists("/dev/snd/seq"):
        pytest.skip("no ALSA sequencer here: /dev/snd/seq is missing")


@pytest.fixture
def unique_name():
    """A JACK-safe client/port name no other test (or engineer) on this server uses."""
    return f"ostinato-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def model_path():
    """The shipped default model (OSTINATO_TEST_MODEL overrides it while developing)."""
    path = Path(os.environ.get("OSTINATO_TEST_MODEL") or DEFAULT_MODEL)
    if not path.exists():
        pytest.fail(f"{path} is missing: the repository ships it (git lfs is not used)")
    return path


def _theme_model(model_path, folder, positions_per_bar=0):
    import torch

    from engine.training.model import load_model
    from engine.theme.model import ThemeConfig, ThemeVAE, save_theme

    model, vocab, spec, meta = load_model(model_path)
    torch.manual_seed(5)
    vae = ThemeVAE.from_plain(model, ThemeConfig(z_dim=16, enc_embed=16, enc_hidden=32,
                                                 positions_per_bar=positions_per_bar))
    with torch.no_grad():
        for k in range(model.cfg.layers):
            vae.decoder.gate_weights(k).normal_(0, 0.5)
            vae.decoder.init_h[k].weight.normal_(0, 0.5)
            if positions_per_bar:
                vae.decoder.code_weights(k).normal_(0, 0.5)
    path = folder / "theme.npz"
    save_theme(path, vae, vocab, spec, info=meta.get("info"))
    return path


def _grown_ensemble(folder, **blocks):
    """The shipped ensemble as ``ostinato train --init`` starts one told more control
    blocks (``blocks``: ControlSpec fields), the new blocks' weights then made random (a
    trained one's are not zero), so that asking for them audibly changes the music."""
    import torch

    from dataclasses import replace

    from engine import DEFAULT_ENSEMBLE
    from engine.training.model import ModelConfig, MusicLSTM, load_model, save_model
    from engine.training.train import start_from

    _, vocab, spec, meta = load_model(DEFAULT_ENSEMBLE)
    told = replace(spec, **blocks)
    if told == spec:
        return DEFAULT_ENSEMBLE
    cfg = ModelConfig(**dict(meta["config"], n_controls=told.size))
    model = MusicLSTM(cfg)
    start_from(model, DEFAULT_ENSEMBLE, cfg, vocab, told)
    torch.manual_seed(5)
    with torch.no_grad():
        model.lstm.weight_ih_l0[:, -(told.size - spec.size):].normal_(0, 1.0)
    path = folder / "ensemble.npz"
    save_model(path, model, vocab, told, info=meta.get("info"))
    return path


@pytest.fixture(scope="session")
def styled_ensemble(tmp_path_factory):
    """The shipped ensemble told styles (``engine.controls.STYLES``), random style weights."""
    from engine.controls import STYLES
    return _grown_ensemble(tmp_path_factory.mktemp("styled"), styles=tuple(STYLES))


@pytest.fixture(scope="session")
def parted_ensemble(tmp_path_factory):
    """The shipped ensemble told the voices' densities (``ControlSpec.parts``), random
    weights for them."""
    return _grown_ensemble(tmp_path_factory.mktemp("parted"), parts=True)


@pytest.fixture(scope="session")
def theme_model(model_path, tmp_path_factory):
    """The shipped model as a theme model's decoder (``engine.theme.model``), its z weights
    random (a trained one's are not zero), so a theme audibly changes the music."""
    return _theme_model(model_path, tmp_path_factory.mktemp("theme"))


@pytest.fixture(scope="session")
def conductor_model(model_path, tmp_path_factory):
    """``theme_model`` with a conductor: a bias per beat of the theme (W_u random too)."""
    return _theme_model(model_path, tmp_path_factory.mktemp("conductor"), positions_per_bar=4)

