# Two entry points from the README: `make demo` and `make test`. Everything else is a helper.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DB ?= sample.duckdb

.PHONY: install demo test lint fmt type bench clean

$(BIN)/mtalens: pyproject.toml requirements.lock setup.py parsers/_pfscan.c
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,spark]'
	# flanker rebuilds its grammar tables (noisily) on first import: do it once, here
	$(BIN)/python -c "import flanker.addresslib.address, flanker.mime" >/dev/null 2>&1
	touch $@

install: $(BIN)/mtalens

demo: install
	rm -f $(DB) $(DB).wal
	$(BIN)/mtalens ingest --db $(DB) --year 2026 --timezone UTC sample_logs/postfix
	$(BIN)/mtalens bounces ingest --db $(DB) sample_logs/bounces
	$(BIN)/mtalens reports ingest --db $(DB) sample_logs/reports
	$(BIN)/mtalens report --db $(DB)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check parsers pipeline tests bench
	$(BIN)/ruff format --check parsers pipeline tests bench

fmt: install
	$(BIN)/ruff format parsers pipeline tests bench

type: install
	rm -rf build/typecheck && mkdir -p build/typecheck/mtalens
	ln -s $(CURDIR)/parsers $(CURDIR)/pipeline build/typecheck/mtalens/
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/bench_ingest.py

clean:
	rm -rf $(VENV) *.egg-info $(DB)
