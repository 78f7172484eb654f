"""Video callback: an agent holding a conversation invites the citizen to a recorded WebRTC call.

One row per invitation in `video_calls`. The link carries a random token of which only the SHA-256 is
stored; opening the link shows the recording notice, and only on consent is the token claimed, by one
conditional `UPDATE … WHERE used_at IS NULL AND expires_at > now`, so a link opens once, before it
expires, and only for the call (and conversation) it was made for. The claim hands the citizen's page a
fresh key for the signalling socket, so the link itself is worthless afterwards.

Signalling (offer / answer / ICE) goes over the live hub's topic `video:<call id>`: each side's socket
publishes what it receives and forwards what the other side published, so the two sockets may sit on
different workers once the hub is shared. The agent's browser records the call and uploads it in
chunks; hang-up finalises the file with its size, duration and SHA-256. Every step — invitation,
consent, start, stop, recording — is a transcript line (published on the conversation's topic).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import WebSocket, WebSocketDisconnect
from sqlalchemy import DateTime, Float, Integer, String, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.escalation import AgentRef, EscalationService
from bot.live import LocalHub, conversation_topic
from bot.notifier import Notifier
from bot.transcripts import Base, Role, TranscriptLine, TranscriptStore
from zhixun.settings import VideoSettings

Side = Literal["agent", "citizen"]
SIGNAL_TYPES = frozenset({"hello", "here", "offer", "answer", "ice", "hangup"})
MAX_SIGNAL_CHARS = 64 * 1024
# Recording container by upload content type (parameters such as codecs= are ignored).
RECORDING_TYPES = {"video/webm": "webm", "audio/webm": "webm", "video/mp4": "mp4"}


def video_topic(call_id: str) -> str:
    return f"video:{call_id}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class VideoError(Exception):
    """Something the caller cannot do now; `code` is for programs, `message` for the person."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class VideoCallRow(Base):
    __tablename__ = "video_calls"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex, also names the recording
    escalation_id: Mapped[int] = mapped_column(Integer, index=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    agent: Mapped[str] = mapped_column(String(64), index=True)
    agent_name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the link's token
    citizen_key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # given out on claim
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # consent
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # connected
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    recording_file: Mapped[str | None] = mapped_column(String(80), nullable=True)  # name in the recordings dir
    recording_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    recording_chunks: Mapped[int] = mapped_column(Integer, default=0)  # the next chunk's expected seq
    recording_bytes: Mapped[int] = mapped_column(Integer, default=0)
    recording_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    recording_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


@dataclass(frozen=True)
class VideoCall:
    id: str
    escalation_id: int
    conversation_id: str
    agent: str
    agent_name: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    recording_file: str | None
    recording_type: str | None
    recording_chunks: int
    recording_bytes: int
    recording_duration_s: float | None
    recording_sha256: str | None

    @classmethod
    def of(cls, row: VideoCallRow) -> VideoCall:
        data = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        for name in ("created_at", "expires_at", "used_at", "started_at", "ended_at"):
            data[name] = _utc(data[name])
        return cls(**data)

    @property
    def finalised(self) -> bool:
        return self.recording_sha256 is not None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("created_at", "expires_at", "used_at", "started_at", "ended_at"):
            data[name] = data[name].isoformat() if data[name] else None
        return data


@dataclass(frozen=True)
class Invitation:
    call: VideoCall
    url: str  # carries the token: shown to the citizen once, never stored
    notified: tuple[str, ...]  # channels the link was also sent on


@dataclass(frozen=True)
class Claim:
    call: VideoCall
    key: str  # the citizen page's credential for the signalling socket


REFUSALS = {
    "unknown_link": "这个视频通话链接无效，请核对链接是否完整，或回到咨询页面请工作人员重新发送。",
    "link_used": "这个视频通话链接已经使用过了。链接仅限使用一次，如需再次通话，请回到咨询页面请工作人员重新发送。",
    "link_expired": "这个视频通话链接已过期。请回到咨询页面，请工作人员重新发送邀请。",
    "wrong_conversation": "这个视频通话链接不属于您当前的咨询会话，无法打开。",
    "call_ended": "这次视频通话已经结束。如需再次通话，请回到咨询页面联系工作人员。",
}


class VideoService:
    def __init__(
        self,
        engine: Engine,
        transcripts: TranscriptStore,
        hub: LocalHub,
        escalations: EscalationService,
        notifier: Notifier,
        settings: VideoSettings,
        public_base_url: str,
    ):
        self.engine, self.transcripts, self.hub, self.escalations = engine, transcripts, hub, escalations
        self.notifier, self.settings = notifier, settings
        self.public_base_url = public_base_url.rstrip("/")
        self.recordings_dir = Path(settings.recordings_dir)
        self._file_lock = threading.Lock()

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine, tables=[Base.metadata.tables["video_calls"]])
        self.recordings_dir.mkdir(parents=True, exist_ok=True)

    # Agent: invite ----------------------------------------------------------------------------------

    def invite(self, escalation_id: int, agent: AgentRef, phone: str | None = None) -> Invitation:
        """A new single-use link for the conversation the agent holds; earlier unused links stop working."""
        escalation = self.escalations.get(escalation_id)
        if escalation is None:
            raise VideoError("unknown_escalation", "找不到这个会话。")
        if escalation.status != "active" or escalation.agent != agent.username:
            raise VideoError("not_yours", "这个会话不在您的接待中，不能发起视频通话。")
        now = _now()
        token = secrets.token_urlsafe(32)
        minutes = self.settings.invite_ttl_minutes
        row = VideoCallRow(
            id=uuid.uuid4().hex,
            escalation_id=escalation.id,
            conversation_id=escalation.conversation_id,
            agent=agent.username,
            agent_name=agent.display_name,
            token_hash=_digest(token),
            created_at=now,
            expires_at=now + dt.timedelta(minutes=minutes),
            recording_chunks=0,
            recording_bytes=0,
        )
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.execute(
                update(VideoCallRow)
                .where(
                    VideoCallRow.escalation_id == escalation.id,
                    VideoCallRow.used_at.is_(None),
                    VideoCallRow.expires_at > now,
                )
                .values(expires_at=now)
            )
            session.add(row)
        call = VideoCall.of(row)
        url = f"{self.public_base_url}/video/{token}"
        shown = int(minutes) if float(minutes).is_integer() else minutes
        notified = self._notify(call, url, shown, phone or escalation.callback_phone)
        text = (
            f"工作人员{agent.display_name}邀请您进行视频通话，请在{shown}分钟内点击链接进入：{url}"
            "（链接仅限本次会话使用一次；通话将被录音录像）"
        )
        rich = {
            "type": "buttons",
            "text": "视频通话邀请",
            "buttons": [{"title": "进入视频通话", "url": url, "bind_conversation": True}],
        }
        self._log(
            call,
            "agent",
            text,
            "video_invite",
            {
                "agent": agent.username,
                "agent_name": agent.display_name,
                "expires_at": call.expires_at.isoformat(),
                "notified": list(notified),
                "rich": [rich],
            },
        )
        return Invitation(call, url, notified)

    def _notify(self, call: VideoCall, url: str, minutes: float, phone: str | None) -> tuple[str, ...]:
        params = {
            "url": url,
            "agent_name": call.agent_name,
            "minutes": minutes,
            "expires_at": call.expires_at.isoformat(),
        }
        sent = []
        if self.settings.sms_enabled and phone:
            self.notifier.send("sms", phone, self.settings.sms_template, params)
            sent.append("sms")
        conversation = self.transcripts.conversation(call.conversation_id)
        if (
            self.settings.wechat_enabled
            and conversation is not None
            and conversation.channel.startswith("wechat")
            and conversation.sender
        ):
            self.notifier.send("wechat", conversation.sender, self.settings.wechat_template, params)
            sent.append("wechat")
        return tuple(sent)

    # Citizen: open, consent, signal ------------------------------------------------------------------

    def check_link(self, token: str, conversation_id: str | None = None) -> VideoCall:
        """The call a link opens, if it would open now (nothing changes); VideoError with the reason if not."""
        with Session(self.engine) as session:
            row = session.scalar(select(VideoCallRow).where(VideoCallRow.token_hash == _digest(token)))
            call = VideoCall.of(row) if row else None
        return self._refuse_unless_open(call, conversation_id)

    def claim(self, token: str, conversation_id: str | None = None) -> Claim:
        """The citizen consented: use up the link (exactly once) and give the page its socket key."""
        key = secrets.token_urlsafe(32)
        now = _now()
        conditions = [
            VideoCallRow.token_hash == _digest(token),
            VideoCallRow.used_at.is_(None),
            VideoCallRow.ended_at.is_(None),
            VideoCallRow.expires_at > now,
        ]
        if conversation_id is not None:
            conditions.append(VideoCallRow.conversation_id == conversation_id)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            taken = session.execute(
                update(VideoCallRow).where(*conditions).values(used_at=now, citizen_key_hash=_digest(key))
            ).rowcount  # type: ignore[attr-defined]  # a CursorResult for UPDATE
            row = session.scalar(select(VideoCallRow).where(VideoCallRow.token_hash == _digest(token)))
            call = VideoCall.of(row) if row else None
        if not taken or call is None:
            self._refuse_unless_open(call, conversation_id)
            raise VideoError("link_used", REFUSALS["link_used"])  # lost a race with another opening
        self._log(call, "system", "市民已阅读录音录像告知并同意，正在进入视频通话", "video_consent", {})
        return Claim(call, key)

    def _refuse_unless_open(self, call: VideoCall | None, conversation_id: str | None) -> VideoCall:
        if call is None:
            raise VideoError("unknown_link", REFUSALS["unknown_link"])
        if conversation_id is not None and conversation_id != call.conversation_id:
            raise VideoError("wrong_conversation", REFUSALS["wrong_conversation"])
        if call.used_at is not None:
            raise VideoError("link_used", REFUSALS["link_used"])
        if call.ended_at is not None:
            raise VideoError("call_ended", REFUSALS["call_ended"])
        if call.expires_at <= _now():
            raise VideoError("link_expired", REFUSALS["link_expired"])
        return call

    def citizen_call(self, call_id: str, key: str) -> VideoCall | None:
        """The call a claimed key opens the signalling socket of, while it has not ended."""
        call = self.get(call_id)
        if call is None or call.ended_at is not None or not key:
            return None
        with Session(self.engine) as session:
            stored = session.scalar(select(VideoCallRow.citizen_key_hash).where(VideoCallRow.id == call_id))
        return call if stored and secrets.compare_digest(stored, _digest(key)) else None

    # Agent: the call and its recording ---------------------------------------------------------------

    def get(self, call_id: str) -> VideoCall | None:
        with Session(self.engine) as session:
            row = session.get(VideoCallRow, call_id)
            return VideoCall.of(row) if row else None

    def calls_for(self, escalation_id: int) -> list[VideoCall]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(VideoCallRow)
                .where(VideoCallRow.escalation_id == escalation_id)
                .order_by(VideoCallRow.created_at)
            )
            return [VideoCall.of(row) for row in rows]

    def agent_call(self, call_id: str, agent: AgentRef) -> VideoCall:
        call = self.get(call_id)
        if call is None:
            raise VideoError("unknown_call", "找不到这次视频通话。")
        if call.agent != agent.username:
            raise VideoError("not_your_call", "这次视频通话不是您发起的。")
        return call

    def start(self, call_id: str, agent: AgentRef) -> VideoCall:
        """Both sides connected (reported by the agent's page); logged once."""
        self.agent_call(call_id, agent)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            first = session.execute(
                update(VideoCallRow)
                .where(
                    VideoCallRow.id == call_id,
                    VideoCallRow.started_at.is_(None),
                    VideoCallRow.used_at.is_not(None),
                    VideoCallRow.ended_at.is_(None),
                )
                .values(started_at=_now())
            ).rowcount  # type: ignore[attr-defined]
            call = VideoCall.of(session.get_one(VideoCallRow, call_id))
        if first:
            self._log(call, "system", "视频通话已接通，本次通话正在录音录像", "video_start", {"agent": agent.username})
        elif call.used_at is None or call.ended_at is not None:
            raise VideoError("not_connected", "市民尚未进入通话，或通话已结束。")
        return call

    def add_chunk(self, call_id: str, agent: AgentRef, seq: int, content_type: str, data: bytes) -> VideoCall:
        """Append one recorder chunk. Chunks come in order from 0; a repeated one (a retry whose answer was
        lost) is ignored, a gap is refused."""
        call = self.agent_call(call_id, agent)
        kind = content_type.partition(";")[0].strip().lower()
        if kind not in RECORDING_TYPES:
            raise VideoError("unsupported_type", "录像格式不受支持（仅支持 video/webm、audio/webm、video/mp4）。")
        if call.ended_at is not None:
            raise VideoError("call_ended", "通话已结束，不能再上传录像。")
        if call.used_at is None:
            raise VideoError("not_connected", "市民尚未进入通话。")
        if call.recording_type is not None and call.recording_type != kind:
            raise VideoError("type_changed", "同一次录像的格式必须一致。")
        if not data:
            raise VideoError("empty_chunk", "录像片段为空。")
        if seq < call.recording_chunks:
            return call
        if seq > call.recording_chunks:
            raise VideoError("chunk_out_of_order", f"录像片段顺序不对：应为第{call.recording_chunks}段。")
        if call.recording_bytes + len(data) > self.settings.max_recording_bytes:
            raise VideoError("recording_too_large", "录像超过了允许的最大长度，请结束通话。")
        name = f"{call.id}.{RECORDING_TYPES[kind]}"
        with self._file_lock, Session(self.engine, expire_on_commit=False) as session, session.begin():
            claimed = session.execute(
                update(VideoCallRow)
                .where(
                    VideoCallRow.id == call_id,
                    VideoCallRow.recording_chunks == seq,
                    VideoCallRow.ended_at.is_(None),
                )
                .values(
                    recording_chunks=seq + 1,
                    recording_bytes=VideoCallRow.recording_bytes + len(data),
                    recording_type=kind,
                    recording_file=name,
                )
            ).rowcount  # type: ignore[attr-defined]
            if not claimed:  # a parallel upload of the same chunk won
                return self.agent_call(call_id, agent)
            # Written inside the transaction: if the write fails, the row does not count the chunk.
            with open(self._partial(name), "ab") as out:
                out.write(data)
            row = session.get_one(VideoCallRow, call_id)
            return VideoCall.of(row)

    def finish(self, call_id: str, agent: AgentRef, duration_s: float | None = None) -> VideoCall:
        """Hang up: end the call, finalise the recording (checksum, duration) and attach it to the transcript.
        A second call returns the finished call unchanged."""
        call = self.agent_call(call_id, agent)
        now = _now()
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            ended = session.execute(
                update(VideoCallRow)
                .where(VideoCallRow.id == call_id, VideoCallRow.ended_at.is_(None))
                .values(ended_at=now)
            ).rowcount  # type: ignore[attr-defined]
        if not ended:
            return self.get(call_id) or call
        self.hub.publish(video_topic(call_id), {"type": "hangup", "from": "server"})
        call = self.get(call_id) or call
        wall = (now - call.started_at).total_seconds() if call.started_at else 0.0
        if call.started_at is not None:
            self._log(
                call,
                "system",
                f"视频通话已结束，通话时长{_clock(wall)}",
                "video_stop",
                {"agent": agent.username, "wall_s": round(wall, 1)},
            )
        elif call.used_at is None:
            self._log(call, "system", "视频通话邀请已取消", "video_stop", {"agent": agent.username, "cancelled": True})
        else:
            self._log(call, "system", "视频通话未能接通，已结束", "video_stop", {"agent": agent.username})
        if not call.recording_file or not call.recording_bytes:
            return call
        # The recorder's own clock, when given and plausible; else the time between connect and hang-up.
        limit = (now - call.created_at).total_seconds() + 5
        duration = duration_s if duration_s is not None and 0 <= duration_s <= limit else wall
        partial, final = self._partial(call.recording_file), self.recordings_dir / call.recording_file
        with self._file_lock:
            partial.replace(final)
        digest, size = _sha256(final)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get_one(VideoCallRow, call_id)
            row.recording_sha256, row.recording_duration_s, row.recording_bytes = digest, round(duration, 2), size
        call = VideoCall.of(row)
        self._log(
            call,
            "system",
            "本次视频通话的录音录像已保存备查",
            "recording",
            {
                "call_id": call.id,
                "file": call.recording_file,
                "bytes": size,
                "duration_s": call.recording_duration_s,
                "sha256": digest,
                "content_type": call.recording_type,
            },
        )
        return call

    def sweep(self) -> list[VideoCall]:
        """End calls nobody will end: an unused invitation past its expiry, or a call whose agent page went
        silent (no recording chunk for `abandoned_minutes`). The recording so far is kept and attached, as
        on a normal hang-up; several workers sweeping at once end each call once (finish is conditional)."""
        now = _now()
        quiet = dt.timedelta(minutes=self.settings.abandoned_minutes)
        with Session(self.engine) as session:
            open_calls = [
                VideoCall.of(r) for r in session.scalars(select(VideoCallRow).where(VideoCallRow.ended_at.is_(None)))
            ]
        ended = []
        for call in open_calls:
            if call.used_at is None:
                stale = call.expires_at < now
            else:
                last = call.started_at or call.used_at
                partial = self._partial(call.recording_file) if call.recording_file else None
                if partial is not None and partial.exists():
                    last = max(last, dt.datetime.fromtimestamp(partial.stat().st_mtime, dt.UTC))
                stale = now - last > quiet
            if stale:
                ended.append(self.finish(call.id, AgentRef(call.agent, call.agent_name)))
        return ended

    def recording_path(self, call: VideoCall) -> Path | None:
        if not call.finalised or not call.recording_file:
            return None
        path = self.recordings_dir / call.recording_file
        return path if path.is_file() else None

    # -------------------------------------------------------------------------------------------------

    def _partial(self, name: str) -> Path:
        return self.recordings_dir / f"{name}.part"

    def _log(self, call: VideoCall, role: Role, text: str, event: str, detail: dict[str, Any]) -> TranscriptLine:
        conversation = self.transcripts.conversation(call.conversation_id)
        line = self.transcripts.append(
            call.conversation_id,
            conversation.channel if conversation else "web",
            role,
            text,
            payload={"event": event, "escalation_id": call.escalation_id, "call_id": call.id, **detail},
        )
        self.hub.publish(conversation_topic(call.conversation_id), {"type": "line", "line": line.to_json()})
        return line


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}分{rest}秒" if minutes else f"{rest}秒"


def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while block := source.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


async def relay(
    hub: LocalHub,
    call_id: str,
    side: Side,
    receive: Callable[[], Awaitable[str | None]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Carry one side's signalling: frames it sends are published on the call's topic, the other side's
    (and the server's hang-up) are forwarded to it. `receive` returns None when the socket closed."""
    async with hub.subscribe(video_topic(call_id)) as subscription:

        async def forward() -> None:
            while True:
                event = await subscription.get()
                if event.get("from") != side:
                    await send({key: value for key, value in event.items() if key != "topic"})

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(forward)
            hub.publish(video_topic(call_id), {"type": "hello", "from": side})
            while True:
                text = await receive()
                if text is None:
                    break
                frame = _signal(text)
                if frame is not None:
                    hub.publish(video_topic(call_id), {"type": frame["type"], "from": side, "data": frame.get("data")})
            hub.publish(video_topic(call_id), {"type": "bye", "from": side})
            tasks.cancel_scope.cancel()


def _signal(text: str) -> dict[str, Any] | None:
    if len(text) > MAX_SIGNAL_CHARS:
        return None
    try:
        frame = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(frame, dict) or frame.get("type") not in SIGNAL_TYPES:
        return None
    return frame


async def relay_socket(socket: WebSocket, hub: LocalHub, call_id: str, side: Side) -> None:
    """`relay` over an accepted WebSocket, until either side leaves."""

    async def receive() -> str | None:
        try:
            return await socket.receive_text()
        except (WebSocketDisconnect, RuntimeError, KeyError):
            return None

    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await relay(hub, call_id, side, receive, socket.send_json)
