# Two commands set everything up on a fresh machine:  make demo  and  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ganscan-installed

.PHONY: demo test bench allocator browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q -e '.[evidence]' || echo "note: c2pa-python did not install; C2PA is reported as 'not checked'"
	touch $(STAMP)

# tcmalloc makes PyTorch CPU inference several times faster and steadier on small machines;
# ganscan uses it automatically when present. Without root or apt the system allocator is used.
allocator:
	@ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1)); } || \
	  echo "note: libtcmalloc-minimal4 not installed; ganscan falls back to the system allocator (slower on CPU)"

# The HTML report is tested in a real headless browser: Debian's chromium, installed when run as root
# with apt-get; otherwise the two browser tests are skipped, with this note saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)); } || \
	  echo "note: chromium could not be installed (needs root and apt-get); the HTML-report browser tests are skipped"

demo: $(STAMP) allocator
	$(BIN)/ganscan scan examples/

test: $(STAMP) allocator browser
	$(BIN)/python -m pytest

TCMALLOC := $(firstword $(wildcard /usr/lib/*/libtcmalloc_minimal.so.4))

bench: $(STAMP) allocator
	LD_PRELOAD=$(TCMALLOC) $(BIN)/python -m pytest tests/benchmarks -s -q -p no:cacheprovider --override-ini addopts=

clean:
	rm -rf $(VENV) build *.egg-info
