"""Rasa's training data is well-formed, and the held-out intent set stays independent of it."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bot.rasa_training import RASA_BIN, RASA_ENV, TRAINING_DIR, build_data, latest_model
from knowledge_base.schema import normalise_question
from tests.test_dev_set import bigrams
from zhixun.settings import PROJECT_DIR

HELD_OUT = Path(__file__).resolve().parent / "data" / "nlu_heldout.yml"
DOMAIN = TRAINING_DIR.parent / "domain.yml"
STORIES = Path(__file__).resolve().parent / "rasa" / "test_stories.yml"


def examples(path: Path) -> list[tuple[str, str]]:
    out = []
    for block in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("nlu", []):
        if "intent" not in block:  # regex and lookup blocks hold patterns, not examples
            continue
        for line in str(block.get("examples", "")).splitlines():
            if line.strip():
                out.append((block["intent"], line.strip().removeprefix("- ")))
    return out


def test_every_intent_has_enough_hand_written_examples():
    counts = Counter(intent for intent, _ in examples(TRAINING_DIR / "nlu.yml"))
    intents = yaml.safe_load(DOMAIN.read_text(encoding="utf-8"))["intents"]
    for intent in intents:
        if intent not in {"nlu_fallback", "ask_service"}:
            assert counts[intent] >= 30, intent


def test_ask_service_examples_come_from_the_kb(tmp_path: Path):
    data_dir = build_data(tmp_path)
    generated = examples(data_dir / "kb_ask_service.yml")
    assert len(generated) >= 400 and {i for i, _ in generated} == {"ask_service"}


def test_held_out_set_is_not_copied_from_training(tmp_path: Path):
    data_dir = build_data(tmp_path)
    trained = [text for path in data_dir.glob("*.yml") for _, text in examples(path)]
    exact = {normalise_question(t) for t in trained}
    grams = [bigrams(t) for t in trained if len(normalise_question(t)) >= 6]
    held = examples(HELD_OUT)
    assert Counter(i for i, _ in held).most_common()[-1][1] >= 15
    # Very short replies (您好, 是的, 算了) are the same words whoever writes them.
    leaks = [t for _, t in held if len(normalise_question(t)) >= 4 and normalise_question(t) in exact]
    for _, text in held:
        mine = bigrams(text)
        if len(mine) >= 5 and any(len(mine & g) / len(mine | g) >= 0.8 for g in grams):
            leaks.append(text)
    assert not leaks, leaks


@pytest.mark.slow
def test_rasa_validates_the_data_and_passes_the_test_stories(tmp_path: Path):
    """`rasa data validate` finds no inconsistency; `rasa test core` passes every test story."""
    model = latest_model(PROJECT_DIR / "models" / "rasa")
    assert model is not None, "no trained Rasa model: run `make setup`"
    data_dir = build_data(tmp_path / "build")
    env = {**os.environ, **RASA_ENV}
    common = ["--domain", str(DOMAIN), "--config", str(PROJECT_DIR / "config.yml")]
    check = subprocess.run(
        [str(RASA_BIN), "data", "validate", *common, "--data", str(data_dir), "--fail-on-warnings"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    out = tmp_path / "results"
    run = subprocess.run(
        [str(RASA_BIN), "test", "core", "--model", str(model), "--stories", str(STORIES), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    failed = (out / "failed_test_stories.yml").read_text(encoding="utf-8")
    assert "story:" not in failed, failed
