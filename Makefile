# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

DEMO_DATA := data
# The LSTM by default: JAX trains ResNet18 at ~1 sample/s on 2 CPU cores (README, "What make demo
# does"). `make demo DEMO_MODEL=resnet18 DEMO_EPOCHS=6 DEMO_BATCH=8` on a GPU or a bigger machine.
DEMO_MODEL ?= lstm
DEMO_EPOCHS ?= 12
DEMO_BATCH ?= 32
DEMO_RUN := runs/demo/$(DEMO_MODEL)

# Build the synthetic corpus (Spleeter-separated vocals), train one JAX model on the CPU, evaluate it.
demo: venv
	$(BIN)/python -m shared_data.build --config=synthetic --data_dir=$(DEMO_DATA) \
		--gallery=$(DEMO_DATA)/gallery.png
	$(BIN)/python -m jax_impl.train --model=$(DEMO_MODEL) --dataset=synthetic \
		--data_dir=$(DEMO_DATA) --workdir=$(DEMO_RUN) --epochs=$(DEMO_EPOCHS) \
		--batch_size=$(DEMO_BATCH) --log_every=5
	$(BIN)/python -m jax_impl.evaluate --members=$(DEMO_RUN) --data_dir=$(DEMO_DATA) \
		--dataset=synthetic --out=$(DEMO_RUN)/eval

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
