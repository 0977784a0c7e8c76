# The two commands of the README: `make demo` (the main job) and `make test` (what CI runs).
# Both bootstrap .venv on a fresh machine; later runs reuse it until pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The torch builds that install from the local wheel store on our machines (a CUDA build that runs on CPU).
TORCH  := $(if $(filter aarch64,$(shell uname -m)),torch==2.9.1 torchvision==0.24.1,torch==2.14.1 torchvision==0.29.1)
export WANDB_MODE ?= offline
export DVC_NO_ANALYTICS := 1

.PHONY: install lock data demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	$(BIN)/pip check
	touch $(STAMP)

# Re-pin requirements.lock to what .venv holds now (after changing dependencies in pyproject.toml).
lock: install
	{ sed -n '1,2p' requirements.lock; $(BIN)/pip freeze --exclude-editable \
	  | grep -viE '^(torch|torchvision|triton|nvidia-|cuda-)' | sort -f; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

# The sample web corpus, pulled from the DVC remote committed in the repo (no network).
data: install
	test -d data/train || $(BIN)/dvc pull -q

# The main job: the mug-pretrain pipeline run locally through kfp.local on the DVC sample (gate -> pretrain ->
# evaluate -> register if it beats production), CPU, tiny preset.
demo: data
	$(BIN)/mug pipelines run-local mug-pretrain

test: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

# The inner loop: everything but the tests marked slow (pipeline runs, DDP, compile, DVC clones), under 2 minutes.
test-fast: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check mug tests benchmarks

bench: install
	$(BIN)/python benchmarks/train_step.py --presets tiny,ref-64 --markdown

clean:
	rm -rf $(VENV) runs dist build *.egg-info
