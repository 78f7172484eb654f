"""Assemble Rasa's training data, and train a model only when that data changed.

ask_service examples come from the knowledge base (a few questions per entry,
chosen for variety); everything else is hand-written under `training_data/`.
The model file is named by a hash of everything that shapes it, so set-up
re-trains exactly when the inputs change and otherwise costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from knowledge_base import files
from knowledge_base.schema import Entry, normalise_question
from zhixun.settings import PROJECT_DIR

TRAINING_DIR = PROJECT_DIR / "training_data"
CONFIG = PROJECT_DIR / "config.yml"
DOMAIN = PROJECT_DIR / "domain.yml"
ENDPOINTS = PROJECT_DIR / "endpoints.yml"
CREDENTIALS = PROJECT_DIR / "credentials.yml"
RASA_LOCK = PROJECT_DIR / "requirements" / "rasa.lock"
ADDONS = PROJECT_DIR / "rasa_addons"
RASA_BIN = PROJECT_DIR / ".venv-rasa" / "bin" / "rasa"
QUESTIONS_PER_ENTRY = 3

# PYTHONPATH lets Rasa import our custom components (rasa_addons/), and only those: the app's packages need pydantic 2.
RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONWARNINGS": "ignore",
    "PYTHONPATH": str(PROJECT_DIR),
}


def service_examples(entries: Iterable[Entry], per_entry: int = QUESTIONS_PER_ENTRY) -> list[str]:
    """A varied few questions per item: its first (canonical), its shortest and its longest."""
    examples: dict[str, str] = {}
    for entry in entries:
        by_length = sorted(entry.questions, key=len)
        picks = [entry.questions[0], by_length[0], by_length[-1], *entry.questions[1:]]
        chosen = 0
        for question in picks:
            key = normalise_question(question)
            if chosen == per_entry:
                break
            if key not in examples:
                examples[key] = question
                chosen += 1
    return list(examples.values())


def hand_written_examples() -> set[str]:
    seen: set[str] = set()
    for path in sorted(TRAINING_DIR.glob("*.yml")):
        for block in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("nlu", []):
            for line in str(block.get("examples", "")).splitlines():
                seen.add(normalise_question(line.strip().removeprefix("- ")))
    return seen


def build_data(out_dir: Path, kb_dir: Path | None = None) -> Path:
    """Copy the hand-written data and add the generated ask_service file; returns the data dir."""
    data_dir = out_dir / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    for path in sorted(TRAINING_DIR.glob("*.yml")):
        shutil.copy(path, data_dir / path.name)
    entries = files.load_directory(kb_dir or files.DATA_DIR, require_coverage=False)
    taken = hand_written_examples()
    examples = [q for q in service_examples(entries) if normalise_question(q) not in taken]
    body = "".join(f"      - {_yaml_scalar(q)}\n" for q in examples)
    (data_dir / "kb_ask_service.yml").write_text(
        '# Generated from the knowledge base by bot/rasa_training.py; do not edit.\nversion: "3.1"\nnlu:\n'
        f"  - intent: ask_service\n    examples: |\n{body}",
        encoding="utf-8",
    )
    return data_dir


def _yaml_scalar(text: str) -> str:
    return " ".join(text.split())


def content_hash(data_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in [CONFIG, DOMAIN, RASA_LOCK, *sorted(ADDONS.glob("*.py")), *sorted(data_dir.glob("*.yml"))]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def model_path(models_dir: Path, digest: str) -> Path:
    return models_dir / f"zhixun-{digest}.tar.gz"


def ensure_model(models_dir: Path, build_dir: Path, *, force: bool = False) -> Path:
    """Train unless a model for exactly these inputs already exists."""
    data_dir = build_data(build_dir)
    target = model_path(models_dir, content_hash(data_dir))
    if target.exists() and not force:
        print(f"rasa model up to date: {target.name}")
        return target
    print(f"training rasa model {target.name} (inputs changed)", flush=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(RASA_BIN),
        "train",
        "--config",
        str(CONFIG),
        "--domain",
        str(DOMAIN),
        "--data",
        str(data_dir),
        "--out",
        str(models_dir),
        "--fixed-model-name",
        target.name.removesuffix(".tar.gz"),
    ]
    subprocess.run(command, check=True, cwd=build_dir, env={**os.environ, **RASA_ENV})
    print(f"trained rasa model {target.name}")
    for old in models_dir.glob("zhixun-*.tar.gz"):
        if old != target:
            old.unlink()
    return target


def latest_model(models_dir: Path) -> Path | None:
    models = sorted(models_dir.glob("zhixun-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


if __name__ == "__main__":
    force = "--force" in sys.argv
    ensure_model(PROJECT_DIR / "models" / "rasa", PROJECT_DIR / "var" / "rasa", force=force)
