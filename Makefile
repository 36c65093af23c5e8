# The README's quick start: `make quickstart` (set up + run the main job) and `make test` (set up + tests).
.PHONY: venv quickstart select-example test test-fast bench

# Extra arguments: `make test` gives them to tests/run_streams.py (pytest's own, --junit-dir DIR as .ci/run does,
# --serial); `make test-fast` to pytest.
PYTEST_ARGS ?=

venv:
	bash .ci/setup-venv

quickstart: venv
	.venv/bin/crowdselect run examples/quickstart.yaml --out runs/quickstart

# Selection alone on the example crowd (24 real instructions, judged; see examples/crowd.yaml): no generation.
select-example: venv
	.venv/bin/crowdselect select --config examples/crowd.yaml --input examples/crowd.jsonl \
	  --k 8 --clusters 4 --out runs/select-example

test: venv
	.venv/bin/python -m ruff check crowdselect jobs tests bench examples
	.venv/bin/python tests/run_streams.py $(PYTEST_ARGS)

# The quick loop while editing: ruff + tests/unit (no Ray, no models; well under a minute).
test-fast: venv
	.venv/bin/python -m ruff check crowdselect jobs tests bench examples
	.venv/bin/python -m pytest tests/unit $(PYTEST_ARGS)

bench: venv
	.venv/bin/python bench/e2e_bench.py
	.venv/bin/python bench/select_bench.py --quick
	.venv/bin/python bench/select_executors.py --quick
	.venv/bin/python bench/generate_bench.py
	.venv/bin/python bench/train_bench.py
