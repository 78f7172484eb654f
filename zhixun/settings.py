"""One typed settings object, read from `zhixun.toml` and `ZHIXUN_*` variables.

Precedence, highest first: environment (`ZHIXUN_DATABASE_URL`, nested keys with
`__`, e.g. `ZHIXUN_CHAT__RATE_BURST`), then the config file named by
`ZHIXUN_CONFIG` (default `./zhixun.toml`), then the defaults below, which make
an embedded single-machine deployment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent


class RetrievalSettings(BaseModel):
    model_dir: Path = PROJECT_DIR / "models" / "multilingual-e5-small"
    index_dir: Path = PROJECT_DIR / "var" / "index"
    max_candidates: int = Field(default=3, ge=1, le=10)


class ChatSettings(BaseModel):
    max_text_chars: int = Field(default=2000, ge=10)
    # Per-client token bucket: sustained rate and burst.
    rate_per_second: float = 5.0
    rate_burst: int = 20


class RasaSettings(BaseModel):
    enabled: bool = True  # false: answer from the KB alone (no dialogue, no scenarios)
    manage: bool = True  # `zhixun run` starts Rasa as a child process; false: use `url` (your own Rasa)
    url: str = ""  # default http://127.0.0.1:{port}
    port: int = 5005
    models_dir: Path = PROJECT_DIR / "models" / "rasa"
    # Dialogue state store for Rasa; default a SQLite file next to the app's database.
    tracker_url: str = f"sqlite:///{PROJECT_DIR / 'var' / 'rasa' / 'tracker.db'}"
    # Shared secret Rasa sends to the app's action endpoint; `zhixun run` makes one per start if empty.
    action_token: str = ""

    @property
    def server_url(self) -> str:
        return self.url or f"http://127.0.0.1:{self.port}"


class AppointmentSettings(BaseModel):
    halls_file: Path = PROJECT_DIR / "bot" / "data" / "halls.yml"
    timezone: str = "Asia/Shanghai"


class EscalationSettings(BaseModel):
    queues_file: Path = PROJECT_DIR / "bot" / "data" / "queues.yml"
    timezone: str = "Asia/Shanghai"  # service hours are local time
    overflow_check_seconds: float = Field(default=30, gt=0)


class ConsoleSettings(BaseModel):
    session_idle_minutes: float = Field(default=30, gt=0)  # sliding: each request extends it
    session_absolute_minutes: float = Field(default=12 * 60, gt=0)  # from login, whatever the activity
    secure_cookies: bool = False  # true behind HTTPS (recommended): cookies only travel encrypted
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_client: int = Field(default=20, ge=1)
    login_window_minutes: float = Field(default=15, gt=0)


class VideoSettings(BaseModel):
    """Video callback: invitation links, WebRTC ICE servers, recordings and where invitations are also sent."""

    invite_ttl_minutes: float = Field(default=15, gt=0)  # an unused link expires after this
    # A call the agent's page stopped reporting on (browser closed, network gone) is ended and its recording
    # kept after this long without a new recording chunk.
    abandoned_minutes: float = Field(default=5, gt=0)
    # RTCPeerConnection iceServers, e.g. [{"urls": "stun:stun.example.gov.cn:3478"},
    # {"urls": ["turn:turn.example.gov.cn:3478"], "username": "u", "credential": "p"}]. Empty: one LAN/loopback.
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    recordings_dir: Path = PROJECT_DIR / "var" / "recordings"
    max_chunk_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # one MediaRecorder chunk upload
    max_recording_bytes: int = Field(default=2 * 1024**3, ge=1024)  # one call's whole recording
    # Also send the link by SMS (to a number the agent enters or the citizen's callback number) and, for
    # WeChat conversations, as a template message; both go to the outbox table for a gateway to deliver.
    sms_enabled: bool = False
    sms_template: str = "video_invite"
    wechat_enabled: bool = False
    wechat_template: str = "video_invite"


class TranscriptSettings(BaseModel):
    # `zhixun transcripts purge` deletes conversations idle longer than this (default 3 years).
    retention_days: int = Field(default=1095, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZHIXUN_", env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = f"sqlite:///{PROJECT_DIR / 'var' / 'zhixun.db'}"
    admin_token: str = Field(default="", description="Bearer token for admin APIs; empty disables them")
    kb_data_dir: Path = PROJECT_DIR / "knowledge_base" / "data"
    public_base_url: str = "http://127.0.0.1:8000"
    retrieval: RetrievalSettings = RetrievalSettings()
    chat: ChatSettings = ChatSettings()
    rasa: RasaSettings = RasaSettings()
    appointments: AppointmentSettings = AppointmentSettings()
    transcripts: TranscriptSettings = TranscriptSettings()
    console: ConsoleSettings = ConsoleSettings()
    escalation: EscalationSettings = EscalationSettings()
    video: VideoSettings = VideoSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("ZHIXUN_CONFIG", "zhixun.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file))


@lru_cache
def get_settings() -> Settings:
    return Settings()
