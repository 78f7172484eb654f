"""Intent accuracy of the trained Rasa model on the held-out set (`rasa test nlu`), as a table.

The held-out set (tests/data/nlu_heldout.yml) was written by someone who never
saw the training data; tests/test_nlu_data.py keeps it that way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.rasa_training import RASA_BIN, RASA_ENV, latest_model
from zhixun.settings import PROJECT_DIR

HELD_OUT = PROJECT_DIR / "tests" / "data" / "nlu_heldout.yml"


def run(model: Path, data: Path = HELD_OUT) -> dict:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [str(RASA_BIN), "test", "nlu", "--nlu", str(data), "--model", str(model), "--out", out],
            check=True,
            cwd=out,
            env={**os.environ, **RASA_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        report = json.loads((Path(out) / "intent_report.json").read_text())
        errors = json.loads((Path(out) / "intent_errors.json").read_text())
    return {"report": report, "errors": errors}


def main() -> int:
    model = latest_model(PROJECT_DIR / "models" / "rasa")
    if model is None:
        print("no trained Rasa model: run `make setup`", file=sys.stderr)
        return 1
    result = run(model)
    report = result["report"]
    rows = sorted(
        (
            (k, v)
            for k, v in report.items()
            if isinstance(v, dict) and k not in ("macro avg", "weighted avg", "micro avg")
        ),
        key=lambda kv: kv[1]["f1-score"],
    )
    print(f"Intent classification, held-out set ({HELD_OUT.name}), model {model.name}\n")
    print(f"{'intent':<20} {'F1':>6} {'prec':>6} {'recall':>6} {'n':>4}")
    for name, v in rows:
        print(f"{name:<20} {v['f1-score']:6.3f} {v['precision']:6.3f} {v['recall']:6.3f} {v['support']:4d}")
    macro = report["macro avg"]
    print(f"{'macro avg':<20} {macro['f1-score']:6.3f} {macro['precision']:6.3f} {macro['recall']:6.3f}")
    print(f"accuracy {report['accuracy']:.3f}\n\nMost confident mistakes:")
    worst = sorted(result["errors"], key=lambda e: -e["intent_prediction"]["confidence"])[:12]
    for e in worst:
        print(
            f"  {e['intent']:>18} → {e['intent_prediction']['name']:<18} {e['intent_prediction']['confidence']:.2f}  {e['text']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
