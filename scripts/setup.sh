#!/usr/bin/env bash
# Installs what is missing, and nothing else: the app venv (.venv), the embedding
# model folder, and (with --test) Debian's chromium for the browser tests.
# Re-running is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.zhixun-installed
want_stamp=$(cat requirements/app.lock requirements/dev.txt pyproject.toml | sha256sum | cut -c1-16)

if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want_stamp" ]; then
  echo "== installing the app environment into $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # torch first: the CPU wheel on this disk; otherwise pip pulls a multi-GB CUDA build.
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/app.lock -r requirements/dev.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .
  echo "$want_stamp" > "$STAMP"
fi

"$VENV/bin/python" -m knowledge_base.embedding_model models/multilingual-e5-small

# Rasa lives in its own venv: its pins (TensorFlow 2.12, numpy 1.23, SQLAlchemy 1.4, pydantic 1) clash with the app's.
RASA_VENV=.venv-rasa
RASA_STAMP=$RASA_VENV/.zhixun-installed
rasa_stamp=$(sha256sum requirements/rasa.lock | cut -c1-16)
if [ ! -x "$RASA_VENV/bin/rasa" ] || [ "$(cat "$RASA_STAMP" 2>/dev/null)" != "$rasa_stamp" ]; then
  echo "== installing Rasa 3.6 into $RASA_VENV"
  [ -x "$RASA_VENV/bin/python" ] || "$PYTHON" -m venv "$RASA_VENV"
  # rasa/rasa-sdk declare python<3.11 but run on 3.11; everything else comes from the verified lock.
  "$RASA_VENV/bin/pip" install -q --disable-pip-version-check --ignore-requires-python --no-deps rasa==3.6.21 rasa-sdk==3.6.2
  "$RASA_VENV/bin/pip" install -q --disable-pip-version-check -r requirements/rasa.lock
  echo "$rasa_stamp" > "$RASA_STAMP"
fi

# Trains only when config, domain, training data or the KB's questions changed (model named by their hash).
mkdir -p var/log
if ! "$VENV/bin/python" -m bot.rasa_training > var/log/rasa-train.log 2>&1; then
  tail -30 var/log/rasa-train.log >&2
  echo "!! rasa training failed (full log: var/log/rasa-train.log)" >&2
  exit 1
fi
tail -1 var/log/rasa-train.log

if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "!! chromium is missing and cannot be installed here: browser tests will fail" >&2
  fi
fi
