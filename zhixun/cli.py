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


def _transcript_stores(settings: Settings):
    from bot.audit import AuditLog
    from bot.transcripts import TranscriptStore

    engine = _engine(settings)
    store, audit = TranscriptStore(engine), AuditLog(engine)
    store.create_tables()
    audit.create_tables()
    return store, audit


def _cli_client() -> str:
    import socket

    return f"cli:{socket.gethostname()}"


def transcripts_export(args: argparse.Namespace) -> int:
    store, audit = _transcript_stores(get_settings())
    lines = store.export(since=args.since, until=args.until)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for line in lines:
            out.write(json.dumps((line.masked() if args.mask else line).to_json(), ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    detail = {
        "since": args.since.isoformat() if args.since else None,
        "until": args.until.isoformat() if args.until else None,
        "lines": len(lines),
        "masked": args.mask,
        "out": args.out,
    }
    audit.record(args.actor, "export", "transcripts", role="operator", detail=detail, client=_cli_client())
    print(f"exported {len(lines)} transcript lines", file=sys.stderr)
    return 0


def transcripts_verify(args: argparse.Namespace) -> int:
    store, _ = _transcript_stores(get_settings())
    try:
        report = store.verify(args.conversation)
    except KeyError:
        print(f"no such conversation: {args.conversation}", file=sys.stderr)
        return 1
    for problem in report.problems:
        print(problem, file=sys.stderr)
    checked = f"{report.conversations} conversation(s), {report.lines} line(s)"
    if report.legacy_lines:
        checked += f", {report.legacy_lines} of them written before hash chaining (not verifiable)"
    if report.ok:
        print(f"ok: {checked}")
        return 0
    first = report.problems[0]
    print(
        f"FAILED: {len(report.problems)} problem(s) in {checked}; "
        f"first bad entry: conversation {first.conversation_id} seq {first.seq} ({first.kind})",
        file=sys.stderr,
    )
    return 1


def transcripts_purge(args: argparse.Namespace) -> int:
    settings = get_settings()
    store, audit = _transcript_stores(settings)
    before = args.before or dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.transcripts.retention_days)
    purged = store.purge(before, audit, args.actor, client=_cli_client())
    print(
        f"purged {purged.conversations} conversation(s) ({purged.lines} line(s)) last active before "
        f"{before.isoformat()}; the audit log is kept"
    )
    return 0


def _console_stores(settings: Settings):
    from bot.audit import AuditLog
    from console.accounts import AccountStore

    engine = _engine(settings)
    accounts, audit = AccountStore(engine), AuditLog(engine)
    accounts.create_tables()
    audit.create_tables()
    return engine, accounts, audit


def _new_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("password (again): ") != password:
        print("the passwords differ; nothing was changed", file=sys.stderr)
        return None
    return password


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def console_add_user(args: argparse.Namespace) -> int:
    _, accounts, audit = _console_stores(get_settings())
    if accounts.by_username(args.username) is not None:
        print(f"account {args.username!r} already exists", file=sys.stderr)
        return 1
    password = _new_password(args)
    if password is None:
        return 1
    try:
        account = accounts.create(
            args.username,
            args.name,
            password,
            args.role,
            departments=_ids(args.departments),
            permissions=_ids(args.permissions),
            capacity=args.capacity,
        )
    except ValueError as exc:  # includes AccountExists (a parallel add-user)
        print(exc, file=sys.stderr)
        return 1
    detail = {"change": "account_created", "role": account.role, "departments": list(account.departments)}
    audit.record(
        args.actor, "edit", f"account:{account.username}", role="operator", detail=detail, client=_cli_client()
    )
    print(f"created {account.role} {account.username} ({account.display_name})")
    return 0


def console_list_users(_: argparse.Namespace) -> int:
    _, accounts, _audit = _console_stores(get_settings())
    print("username\tname\trole\tdepartments\tcapacity\tstatus\tactive")
    for a in accounts.list():
        departments = ",".join(a.departments) or "-"
        print(f"{a.username}\t{a.display_name}\t{a.role}\t{departments}\t{a.capacity}\t{a.status}\t{a.active}")
    return 0


def console_set_password(args: argparse.Namespace) -> int:
    from console.sessions import SessionStore

    settings = get_settings()
    engine, accounts, audit = _console_stores(settings)
    account = accounts.by_username(args.username)
    if account is None:
        print(f"no account {args.username!r}", file=sys.stderr)
        return 1
    password = _new_password(args)
    if password is None:
        return 1
    try:
        accounts.set_password(account.username, password)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    minutes = dt.timedelta(minutes=1)
    sessions = SessionStore(
        engine, settings.console.session_idle_minutes * minutes, settings.console.session_absolute_minutes * minutes
    )
    sessions.delete_for_account(account.id)
    detail = {"change": "password_set"}
    audit.record(
        args.actor, "edit", f"account:{account.username}", role="operator", detail=detail, client=_cli_client()
    )
    print(f"password changed for {account.username}; their console sessions were ended")
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
    p.add_argument("--mask", action="store_true", help="mask ID card and phone numbers")
    p.add_argument("--actor", default=getpass.getuser(), help="recorded in the audit log as who exported")
    p.set_defaults(handler=transcripts_export)
    p = tr.add_parser("verify", help="check the hash chains (exit 1 naming the first bad entry)")
    p.add_argument("--conversation", help="only this conversation id")
    p.set_defaults(handler=transcripts_verify)
    p = tr.add_parser("purge", help="delete conversations idle longer than transcripts.retention_days (audited)")
    p.add_argument("--before", type=_date, help="instead: conversations last active before this date (UTC)")
    p.add_argument("--actor", default=getpass.getuser(), help="recorded in the audit log as who purged")
    p.set_defaults(handler=transcripts_purge)

    con = sub.add_parser("console", help="agent console accounts").add_subparsers(dest="console_command", required=True)
    p = con.add_parser("add-user", help="create a console account (asks for the password twice)")
    p.add_argument("username")
    p.add_argument("--name", required=True, help="name shown to citizens, e.g. 王芳")
    p.add_argument("--role", choices=["agent", "supervisor", "admin"], default="agent")
    p.add_argument("--departments", default="", help="comma-separated queue/department ids, e.g. general,police")
    p.add_argument("--permissions", default="", help="comma-separated extra permissions, e.g. view_pii")
    p.add_argument("--capacity", type=int, default=3, help="most chats at once (default 3)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--actor", default=getpass.getuser(), help="recorded in the audit log as who made the change")
    p.set_defaults(handler=console_add_user)
    p = con.add_parser("list-users", help="list console accounts")
    p.set_defaults(handler=console_list_users)
    p = con.add_parser("set-password", help="set an account's password and end its sessions")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--actor", default=getpass.getuser(), help="recorded in the audit log as who made the change")
    p.set_defaults(handler=console_set_password)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
