"""Application factory: wires settings, storage, retrieval and channels into one FastAPI app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import bot.actions  # noqa: F401  (registers the custom actions)
from bot.action_server import router as action_router
from bot.answers import KBAnswerer
from bot.appointments import Appointments
from bot.audit import AuditLog
from bot.checklists import ChecklistStore
from bot.dialogue import Dialogue
from bot.escalation import EscalationService
from bot.live import LocalHub
from bot.notifier import OutboxNotifier
from bot.queues import QueueConfig
from bot.rasa_client import RasaClient
from bot.service import ChatService
from bot.transcripts import TranscriptStore
from bot.video import VideoService
from connectors.web import errors
from connectors.web.checklist_pages import router as checklist_router
from connectors.web.ratelimit import TokenBucket
from connectors.web.routes import STATIC_DIR
from connectors.web.routes import router as web_router
from connectors.web.video_routes import router as video_router
from console import auth as console_auth
from console.auth_routes import router as console_auth_router
from console.canned import CannedReplies
from console.desk import Desk
from console.desk_routes import STATIC as CONSOLE_STATIC
from console.desk_routes import router as desk_router
from console.routes import router as console_router
from console.supervisor_routes import router as supervisor_router
from console.video_routes import router as console_video_router
from knowledge_base import files
from knowledge_base.embedding_model import embedding_cache
from knowledge_base.retrieval import Calibration, Retriever
from knowledge_base.store import KBStore
from zhixun.database import make_engine
from zhixun.middleware import BodySizeLimit
from zhixun.settings import Settings, get_settings

log = logging.getLogger(__name__)
KB_MEDIA_DIR = Path(files.PACKAGE_DIR) / "media"


SEED_AUTHOR = "seed"


def seed_knowledge_base(store: KBStore, data_dir: Path) -> None:
    """Load the curated entries shipped with the code: all of them into an empty database; later, new
    shipped entries and updates to entries no curator has edited since (a curator's edit always wins)."""
    shipped = files.load_directory(data_dir, require_coverage=False)
    authors = store.last_authors()
    fresh = [e for e in shipped if authors.get(e.id, SEED_AUTHOR) == SEED_AUTHOR]
    result = store.save(fresh, author=SEED_AUTHOR, note=f"shipped entries from {data_dir}")
    if result.created or result.updated:
        log.info("knowledge base: %d shipped entries added, %d updated", result.created, result.updated)


def build_retriever(settings: Settings, store: KBStore) -> Retriever:
    cache = embedding_cache(settings.retrieval.model_dir, settings.retrieval.index_dir)
    return Retriever(
        store.all, store.revision, cache, Calibration.load(), max_candidates=settings.retrieval.max_candidates
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Background duty of every worker: move long-waiting escalations to the general queue, and end video
    calls that were abandoned (their recording is kept)."""

    async def overflow() -> None:
        while True:
            await asyncio.sleep(app.state.settings.escalation.overflow_check_seconds)
            for duty in (app.state.escalations.overflow, app.state.video.sweep):
                try:
                    await anyio.to_thread.run_sync(duty)
                except Exception:  # a database hiccup must not end the loop
                    log.exception("background duty %s failed", duty.__qualname__)

    task = asyncio.create_task(overflow())
    try:
        yield
    finally:
        task.cancel()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    kb_store, transcripts = KBStore(engine), TranscriptStore(engine)
    kb_store.create_tables()
    transcripts.create_tables()
    audit = AuditLog(engine)
    audit.create_tables()
    seed_knowledge_base(kb_store, settings.kb_data_dir)
    retriever = build_retriever(settings, kb_store)

    app = FastAPI(title="智询 Zhixun", version="0.1.0", description="政务服务咨询助手 API", lifespan=_lifespan)
    app.state.settings = settings
    app.state.kb_store, app.state.transcripts, app.state.retriever = kb_store, transcripts, retriever
    app.state.audit = audit
    answerer = KBAnswerer(retriever)
    app.state.hub = LocalHub()
    escalations = EscalationService(
        engine,
        transcripts,
        QueueConfig.load(settings.escalation.queues_file),
        app.state.hub,
        retriever.department,
        settings.escalation.timezone,
    )
    escalations.create_tables()
    app.state.escalations = escalations
    app.state.desk = Desk(escalations, transcripts, retriever, audit)
    app.state.notifier = OutboxNotifier(engine)
    app.state.notifier.create_tables()
    app.state.video = VideoService(
        engine, transcripts, app.state.hub, escalations, app.state.notifier, settings.video, settings.public_base_url
    )
    app.state.video.create_tables()
    app.state.canned = CannedReplies(engine)
    app.state.canned.create_tables()
    app.state.dialogue = Dialogue(
        retriever=retriever,
        answerer=answerer,
        kb_store=kb_store,
        escalations=escalations,
        checklists=ChecklistStore(engine),
        appointments=Appointments(engine, settings.appointments.halls_file, settings.appointments.timezone),
    )
    app.state.action_token = settings.rasa.action_token
    rasa = RasaClient(settings.rasa.server_url) if settings.rasa.enabled else None
    app.state.chat_service = ChatService(transcripts, answerer, escalations, rasa)
    app.state.rate_limiter = TokenBucket(settings.chat.rate_per_second, settings.chat.rate_burst)
    errors.install(app)
    console_auth.install(app, engine, settings, audit)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=64 * 1024,
        # Recording chunks: the route checks its own limit and says why; this is the outer guard.
        larger={r"/api/console/video/[0-9a-f]+/chunks": 2 * settings.video.max_chunk_bytes},
    )
    app.include_router(web_router)
    app.include_router(console_router)
    app.include_router(console_auth_router)
    app.include_router(desk_router)
    app.include_router(video_router)
    app.include_router(console_video_router)
    app.include_router(supervisor_router)
    app.include_router(action_router)
    app.include_router(checklist_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/console/static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    app.mount("/kb-media", StaticFiles(directory=KB_MEDIA_DIR), name="kb-media")

    @app.get("/health", tags=["ops"])
    def health() -> dict:
        return {
            "status": "ok",
            "kb_entries": len(retriever.index.entries),
            "kb_revision": retriever.revision,
            "dialogue": "rasa" if rasa is not None and rasa.reachable() else "kb_only",
        }

    return app
