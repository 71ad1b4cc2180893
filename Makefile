# Ostinato: the two quick-start commands and their setup steps.
#   make demo   set everything up, then hear/see the server respond to a scripted game
#   make test   set everything up, then run the test suite (what .ci/run does)
# Other targets: serve, bench, train-default, eval-default, setup, system.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages: JACK (virtual MIDI ports and audio, no sound card needed), PortAudio
# (sounddevice), libzmq headers (C binding), Mono (C# binding), headless Godot 3
# (GDScript binding), FluidSynth and a small General MIDI SoundFont (realistic preview),
# Freedoom (its WADs hold the soundtracks the ensemble trains on, BSD-style licence), mma
# (the bands of engine/training/grooves.py).
# Audio transcription (`ostinato data --audio`): basic-pitch without its TensorFlow
# requirement (its ONNX model runs on onnxruntime, from the `audio` extra of pyproject.toml).
BASIC_PITCH := basic-pitch==0.4.0
APT_PACKAGES := jackd2 libportaudio2 libzmq3-dev gcc g++ mono-mcs mono-runtime \
                godot3-server fluidsynth timgm6mb-soundfont freedoom mma

.PHONY: demo serve test bench setup system train-default eval-default train-critic \
        train-ensemble eval-ensemble eval-transcription \
        train-adversarial quality-default train-theme eval-theme clean

demo: setup
	$(BIN)/ostinato demo

serve: setup
	$(BIN)/ostinato serve --audio --show

# lint-imports checks the layers and the absence of import circles (.importlinter).
test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q --durations=15 tests

bench: setup
	$(BIN)/ostinato bench

setup: system $(VENV)/.installed

system: .stamp-system

.stamp-system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test,audio]'
	$(BIN)/python -m pip install -q --no-deps $(BASIC_PITCH)
	$(BIN)/python -c "import torch, numba, zmq, rtmidi, mido, sounddevice, music21, symusic"
	$(BIN)/python -c "import logging; logging.disable(logging.WARNING); \
	  import onnxruntime, soundfile, librosa, mir_eval, basic_pitch.note_creation"
	@! $(BIN)/python -c "import tensorflow" 2>/dev/null || \
	  { echo "TensorFlow is installed in $(VENV): basic-pitch must come in with --no-deps"; exit 1; }
	@echo "compiling the numba kernels once (~30 s; cached in __pycache__)"
	$(BIN)/ostinato serve --midi none --events none --osc 0 --control tcp://127.0.0.1:0 \
	  --seconds 0.01 >/dev/null
	@touch $@

# The shipped model, reproduced (see engine/models/README.md).
train-default: setup
	$(BIN)/ostinato data --out data/dataset.npz --mode-augment 0.5
	$(BIN)/ostinato train --data data/dataset.npz --out runs/default --hidden 256 --layers 2 \
	  --embed 64 --steps 5000 --batch-size 32 --seq-len 128 --lr 2e-3 --eval-every 400 \
	  --valid-windows 200 --patience 6 --max-minutes 80 --threads 1 \
	  --export engine/models/default.npz

eval-default: setup
	$(BIN)/ostinato eval --json engine/models/default-eval.json --plot engine/models/default-pianoroll.png

# The ensemble model, stage 1 (issue 27; the sampler does not play its voice tokens yet, so
# its evaluation is held-out NLL against the n-gram; see engine/models/README.md).
train-ensemble: setup
	$(BIN)/ostinato data --ensemble --out data/ensemble.npz --mode-augment 0.5
	$(BIN)/ostinato train --data data/ensemble.npz --out runs/ensemble --hidden 256 --layers 2 \
	  --embed 64 --steps 5000 --batch-size 32 --seq-len 256 --lr 2e-3 --eval-every 500 \
	  --valid-windows 200 --patience 6 --max-minutes 40 --threads 1 \
	  --export engine/models/ensemble.npz

eval-ensemble: setup
	$(BIN)/ostinato eval --model engine/models/ensemble.npz --data data/ensemble.npz \
	  --likelihood-only --json engine/models/ensemble-eval.json

# basic-pitch (`ostinato data --audio`) on FluidSynth renders of held-out music, scored with
# mir_eval: onset F1 and note F1 (see engine/evaluation/transcription.py; ~1 min of CPU).
eval-transcription: setup
	$(BIN)/python -m engine.evaluation.transcription --out engine/models/transcription.json

# The shipped critic: D trained against the shipped generator as it is (no G steps), and
# the two adversarial fine-tunings compared with it (see engine/models/README.md).
train-critic: setup
	$(BIN)/ostinato adversarial --out runs/critic-mle --steps 0 --d-pretrain 2000 --lr-d 1e-3 \
	  --critic-hidden 256 --log-every 100 --threads 1 --seed 0 --export-critic engine/models/critic.npz
	$(BIN)/python -m engine.training.critics --json engine/models/critic-arch.json

train-adversarial: setup
	$(BIN)/ostinato adversarial --out runs/adv-s0 --steps 1000 --d-pretrain 300 --log-every 50 \
	  --threads 1 --seed 0
	$(BIN)/ostinato adversarial --out runs/adv-v1 --steps 1000 --d-pretrain 300 --reward linear \
	  --kl 0.5 --lr-d 2e-4 --log-every 50 --threads 1 --seed 1

# The theme VAE (issue 13, work in progress; see engine/models/README.md): the shipped generator as the
# decoder (learning at a tenth of the new weights' rate, a quarter of each batch at z = 0 so free
# composition stays within 2 %), a code per beat of the theme (the conductor), free bits 2 nats.
# 4,000 steps (32 min on one CPU thread), then resumed to 8,000 (31 min more).
THEME_TRAIN = $(BIN)/ostinato theme train --data data/dataset.npz \
	  --base engine/models/default.npz --out runs/theme --max-bars 4 --free-bits 2.0 \
	  --positions-per-bar 4 --max-minutes 80 --threads 1
train-theme: setup
	$(THEME_TRAIN) --steps 4000
	$(THEME_TRAIN) --steps 8000 --resume
	cp runs/theme/theme.npz engine/models/theme.npz

eval-theme: setup
	$(BIN)/ostinato theme eval engine/models/theme.npz --json engine/models/theme-eval.json

quality-default: setup
	$(BIN)/ostinato quality --method mle=engine/models/default.npz \
	  --method adversarial=runs/adv-s0/generator.npz \
	  --method adversarial-linear=runs/adv-v1/generator.npz \
	  --method mle+critic=engine/models/default.npz:engine/models/critic.npz:4 \
	  --temperatures 0.7,1.0,1.3 --out runs/quality
	cp runs/quality/quality.json engine/models/quality.json
	cp runs/quality/quality.png engine/models/quality.png

clean:
	rm -rf $(VENV) .stamp-system
