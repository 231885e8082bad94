# Every target that runs code creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null; then echo $$p; break; fi; \
	done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench bench-replay screenshots mutate clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or 3.12 is required (durable-rules does not import on 3.13)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# The main job on the embedded defaults: 1999-2018 replayed through rails, rotation and the
# paper broker; then the story of one order the rails blocked in October 2008. Starting a run
# activates a policy set, which needs the admin role: the demo writes a local access policy
# naming the current OS user (.fugger/access.yaml, kept once written) and uses it.
demo: $(STAMP)
	$(BIN)/fugger validate policies/
	$(BIN)/fugger access init --out .fugger/access.yaml
	FUGGER_ACCESS=.fugger/access.yaml $(BIN)/fugger run --policies policies --facts examples/history.jsonl \
		--portfolio examples/portfolio.yaml --report .fugger/report
	@echo
	@echo "Why was an order blocked in October 2008?"
	@ID=$$($(BIN)/fugger audit list --kind order --status denied --from 2008-10-01 \
		--to 2008-10-31 --oldest-first --limit 1 --ids-only); \
	if [ -n "$$ID" ]; then echo "$$ fugger audit why $$ID"; $(BIN)/fugger audit why $$ID; \
	else echo "(no order was denied in October 2008)"; fi
	@echo
	@echo "Report: .fugger/report/report.html   Alerts: .venv/bin/fugger alerts"

lint: $(STAMP)
	$(BIN)/ruff check engine cli tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/fugger test policies/tests --policies policies --min-coverage 100
	$(BIN)/pytest -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# fugger run over the shipped history, this checkout against the round-1 code (built from git
# in a temporary worktree with its own venv), interleaved; slow (tens of minutes on a busy
# machine), so not part of `make bench`. REPLAY_ARGS adds e.g. --ref main --rounds 5.
bench-replay: $(STAMP)
	$(BIN)/python -m benchmarks.replay $(REPLAY_ARGS)

# The dashboard's four main pages as PNGs in docs/ (needs the system's chromium).
screenshots: $(STAMP)
	$(BIN)/python -m benchmarks.screenshots

# Mutation testing of the modules where a wrong answer costs money ([tool.mutmut] in
# pyproject.toml): slow, so not part of `make test`. MUTANTS narrows it, e.g.
# MUTANTS='engine.execution.gate.*'. Scores per module: benchmarks/mutation.json.
MUTATE_STAMP := $(VENV)/.installed-mutate
$(MUTATE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,mutate]'
	@touch $(MUTATE_STAMP)

mutate: $(MUTATE_STAMP)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/python -m benchmarks.mutation

clean:
	rm -rf $(VENV) .fugger .pytest_cache .mypy_cache .ruff_cache mutants
