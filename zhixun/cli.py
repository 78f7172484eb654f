"""`zhixun` command line: one entry point with subcommands, like `rasa`."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from knowledge_base import files
from zhixun.settings import Settings, get_settings


def _engine(settings: Settings):
    from zhixun.database import make_engine

    return make_engine(settings.database_url)


def _report(problems: Sequence[files.Problem], count: int) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s); nothing was changed", file=sys.stderr)
        return 1
    print(f"ok: {count} entries")
    return 0


def _read_paths(paths: Sequence[str]) -> tuple[list[files.SourcedEntry], list[files.Problem]]:
    sourced: list[files.SourcedEntry] = []
    problems: list[files.Problem] = []
    for path in paths:
        good, bad = files.read_file(Path(path))
        sourced.extend(good)
        problems.extend(bad)
    return sourced, problems


def kb_validate(args: argparse.Namespace) -> int:
    if not args.paths:
        try:
            return _report([], len(files.load_directory(get_settings().kb_data_dir)))
        except files.KBValidationError as exc:
            return _report(exc.problems, 0)
    sourced, problems = _read_paths(args.paths)
    problems.extend(files.cross_check(sourced, known_ids=files.coverage_ids()))
    return _report(problems, len(sourced))


def kb_import(args: argparse.Namespace) -> int:
    """Validate everything first; write only if all of it is good (one transaction)."""
    from knowledge_base.store import KBStore

    settings = get_settings()
    store = KBStore(_engine(settings))
    store.create_tables()
    if args.paths:
        sourced, problems = _read_paths(args.paths)
        current = {e.id for e in store.all()} | set(files.coverage_ids())
        problems.extend(files.cross_check(sourced, known_ids=current))
        entries = [s.entry for s in sourced]
    else:
        try:
            entries, problems = files.load_directory(settings.kb_data_dir, require_coverage=False), []
        except files.KBValidationError as exc:
            entries, problems = [], exc.problems
    if problems:
        return _report(problems, 0)
    result = store.save(entries, author=args.author, note=args.note)
    print(f"imported: {result.created} new, {result.updated} updated, {result.unchanged} unchanged")
    return 0


def kb_export(args: argparse.Namespace) -> int:
    from knowledge_base.store import KBStore

    entries = KBStore(_engine(get_settings())).all()
    text = files.dump_entries(entries)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"exported {len(entries)} entries to {args.out}", file=sys.stderr)
    return 0


def transcripts_export(args: argparse.Namespace) -> int:
    from bot.transcripts import TranscriptStore

    store = TranscriptStore(_engine(get_settings()))
    store.create_tables()
    lines = store.export(since=args.since, until=args.until)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for line in lines:
            out.write(json.dumps(line.to_json(), ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {len(lines)} transcript lines", file=sys.stderr)
    return 0


def start_rasa(settings: Settings, app_port: int):
    """Start the supervised Rasa child; app workers find its token in the environment."""
    import os
    import secrets

    from bot.rasa_process import RasaLaunch, RasaProcess
    from bot.rasa_training import PROJECT_DIR, latest_model

    model = latest_model(settings.rasa.models_dir)
    if model is None:
        print("no trained Rasa model: run `make setup`; answering from the KB alone", file=sys.stderr)
        return None
    token = settings.rasa.action_token or secrets.token_urlsafe(24)
    os.environ["ZHIXUN_RASA__ACTION_TOKEN"] = token
    get_settings.cache_clear()  # the app (and any worker process) reads the token from the environment
    process = RasaProcess(RasaLaunch.for_app(settings.rasa, model, app_port, token, PROJECT_DIR / "var"))
    process.start()
    return process


def run(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    port = args.port or settings.port
    rasa = start_rasa(settings, port) if settings.rasa.enabled and settings.rasa.manage else None
    try:
        _serve(uvicorn, args, settings)
    finally:
        if rasa is not None:
            rasa.stop()
    return 0


def _serve(uvicorn, args: argparse.Namespace, settings: Settings) -> None:
    uvicorn.run(
        "zhixun.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        ws_max_size=64 * 1024,
        proxy_headers=True,
        log_level="info",
    )


def _date(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zhixun", description="智询 Zhixun government-service assistant")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="start the service (web chat on http://HOST:PORT/)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(handler=run)

    kb = sub.add_parser("kb", help="knowledge base").add_subparsers(dest="kb_command", required=True)
    p = kb.add_parser("validate", help="check YAML entries (all of the KB data dir by default)")
    p.add_argument("paths", nargs="*", help="files to check alone (related ids checked against coverage.tsv)")
    p.set_defaults(handler=kb_validate)
    p = kb.add_parser("import", help="validate, then load YAML entries into the database (new version per change)")
    p.add_argument("paths", nargs="*", help="files to import (default: the whole KB data dir)")
    p.add_argument("--author", default=getpass.getuser(), help="recorded as who made this version")
    p.add_argument("--note", default="", help="why (kept with each new version)")
    p.set_defaults(handler=kb_import)
    p = kb.add_parser("export", help="write the database's entries as YAML")
    p.add_argument("out", nargs="?", default="-", help="output file (default: stdout)")
    p.set_defaults(handler=kb_export)

    tr = sub.add_parser("transcripts", help="conversation transcripts").add_subparsers(
        dest="transcripts_command", required=True
    )
    p = tr.add_parser("export", help="write transcript lines as JSONL")
    p.add_argument("--since", type=_date, help="from this date (UTC, inclusive)")
    p.add_argument("--until", type=_date, help="up to this date (UTC, exclusive)")
    p.add_argument("--out", default="-", help="output file (default: stdout)")
    p.set_defaults(handler=transcripts_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
