# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The pinned stack of this Python line (constraints/py3.11.txt: the CI stack; py3.12.txt: the
# newest lines). `make test CONSTRAINTS=` resolves pyproject.toml's ranges afresh instead.
PY_LINE := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
CONSTRAINTS ?= $(wildcard constraints/py$(PY_LINE).txt)
# The extras make test installs: the test tools, and Beam for the Beam build tests.
EXTRAS ?= test,beam
# The current stack (README, "Tests"): `make test-current` = make test on this interpreter.
PYTHON_CURRENT ?= python3.12

.PHONY: venv demo test test-current test-gpu-stack lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]' $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	touch $(STAMP)

DEMO_DATA := data
# ResNet18 in JAX on the CPU, 3 epochs at batch 8: ~9 min of the 15-minute budget on 2 cores
# (README, "What make demo does"). A 3-epoch run is too short for the full recipe's regularisers:
# Mixup and SpecAugment slow fitting and pay off over the recipe's 30 epochs, so the demo turns
# them off, and halves AdamW's learning rate for its batch of 8 (the default 1e-3 is for 64).
DEMO_MODEL ?= resnet18
DEMO_EPOCHS ?= 3
DEMO_BATCH ?= 8
DEMO_FLAGS ?= --lr=5e-4 --mixup_alpha=0 --num_time_masks=0 --num_freq_masks=0
DEMO_RUN := runs/demo/$(DEMO_MODEL)

# Build the synthetic corpus (Spleeter-separated vocals), train one JAX model on the CPU, evaluate it.
demo: venv
	$(BIN)/python -m shared_data.build --config=synthetic --data_dir=$(DEMO_DATA) \
		--gallery=$(DEMO_DATA)/gallery.png
	$(BIN)/python -m jax_impl.train --model=$(DEMO_MODEL) --dataset=synthetic \
		--data_dir=$(DEMO_DATA) --workdir=$(DEMO_RUN) --epochs=$(DEMO_EPOCHS) \
		--batch_size=$(DEMO_BATCH) --log_every=5 $(DEMO_FLAGS)
	$(BIN)/python -m jax_impl.evaluate --members=$(DEMO_RUN) --data_dir=$(DEMO_DATA) \
		--dataset=synthetic --out=$(DEMO_RUN)/eval

test: venv
	$(BIN)/python -m pytest -q

# Without the beam extra: apache-beam caps numpy below 2.5, the current stack's numpy.
test-current:
	$(MAKE) test PYTHON=$(PYTHON_CURRENT) VENV=.venv312 EXTRAS=test

# The GPU image's JAX line (jax 0.11.2, constraints/gpu-image.txt) on Python 3.12, on the CPU.
test-gpu-stack:
	$(MAKE) test PYTHON=$(PYTHON_CURRENT) VENV=.venv-gpu-stack EXTRAS=test \
		CONSTRAINTS=constraints/gpu-image.txt

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .venv312 .venv-gpu-stack build *.egg-info
