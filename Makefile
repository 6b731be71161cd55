# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs influvision, runs the example end to end
#   make test   creates .venv (if needed), installs, runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	# These pin old releases or the GUI build of OpenCV in their metadata; their real needs are declared in
	# pyproject.toml (core, and the optional extras yolo and ocr, installed here so the tests cover them).
	$(BIN)/pip install --quiet --no-deps facenet-pytorch==2.6.0 trackers==2.6.1 ultralytics==8.4.190 \
		rapidocr-onnxruntime==1.4.4
	$(BIN)/pip install --quiet -e ".[dev,yolo,ocr]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check influvision tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) out
