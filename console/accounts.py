"""Console accounts (agents, supervisors, admins): roles, permissions and argon2id passwords."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import JSON, Boolean, DateTime, Integer, String, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.transcripts import Base

Role = Literal["agent", "supervisor", "admin"]
Status = Literal["online", "busy", "away", "offline"]
ROLES: tuple[Role, ...] = get_args(Role)
STATUSES: tuple[Status, ...] = get_args(Status)

PERMISSIONS = frozenset({"chat", "supervise", "view_pii", "export", "edit_kb", "manage_accounts"})
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "agent": frozenset({"chat"}),
    "supervisor": frozenset({"chat", "supervise", "view_pii", "export", "edit_kb"}),
    "admin": PERMISSIONS,
}
ALL_QUEUES_ROLES = frozenset({"supervisor", "admin"})
MIN_PASSWORD_LENGTH = 8
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    departments: Mapped[list[str]] = mapped_column(JSON, default=list)
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)  # on top of the role's
    capacity: Mapped[int] = mapped_column(Integer, default=3)
    status: Mapped[str] = mapped_column(String(16), default="offline")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Account:
    """A console user as the rest of the code sees it (never with the password hash)."""

    id: int
    username: str
    display_name: str
    role: Role
    departments: tuple[str, ...]
    extra_permissions: tuple[str, ...]
    capacity: int
    status: Status
    active: bool
    created_at: dt.datetime

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS[self.role] | frozenset(self.extra_permissions)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def serves(self, department: str) -> bool:
        """Whether this account sees the queue of `department` (supervisors and admins see all)."""
        return self.role in ALL_QUEUES_ROLES or department in self.departments

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "departments": list(self.departments),
            "permissions": sorted(self.permissions),
            "capacity": self.capacity,
            "status": self.status,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
        }


class AccountExists(ValueError):
    pass


def normalise_username(username: str) -> str:
    return username.strip().lower()


def _account(row: AccountRow) -> Account:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return Account(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=row.role,  # type: ignore[arg-type]  # checked on the way in
        departments=tuple(row.departments or ()),
        extra_permissions=tuple(row.permissions or ()),
        capacity=row.capacity,
        status=row.status,  # type: ignore[arg-type]
        active=row.active,
        created_at=created,
    )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password too short (at least {MIN_PASSWORD_LENGTH} characters)")


class AccountStore:
    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None):
        self.engine = engine
        self.hasher = hasher or PasswordHasher()  # argon2id with the library's current recommended parameters

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    def create(
        self,
        username: str,
        display_name: str,
        password: str,
        role: Role,
        departments: tuple[str, ...] | list[str] = (),
        permissions: tuple[str, ...] | list[str] = (),
        capacity: int = 3,
    ) -> Account:
        username = normalise_username(username)
        if not _USERNAME.match(username):
            raise ValueError(f"invalid username {username!r}: 2-64 of a-z 0-9 . _ @ -, starting with a letter or digit")
        if not display_name.strip():
            raise ValueError("display name is empty")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        unknown = set(permissions) - PERMISSIONS
        if unknown:
            raise ValueError(f"unknown permission(s): {', '.join(sorted(unknown))}")
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        _check_password(password)
        row = AccountRow(
            username=username,
            display_name=display_name.strip(),
            password_hash=self.hasher.hash(password),
            role=role,
            departments=[d.strip() for d in departments if d.strip()],
            permissions=sorted(set(permissions)),
            capacity=capacity,
            status="offline",
            active=True,
            created_at=dt.datetime.now(dt.UTC),
        )
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                session.add(row)
        except IntegrityError:
            raise AccountExists(f"account {username!r} already exists") from None
        return _account(row)

    def get(self, account_id: int) -> Account | None:
        with Session(self.engine) as session:
            row = session.get(AccountRow, account_id)
            return _account(row) if row is not None else None

    def by_username(self, username: str) -> Account | None:
        with Session(self.engine) as session:
            row = session.scalar(select(AccountRow).where(AccountRow.username == normalise_username(username)))
            return _account(row) if row is not None else None

    def list(self) -> list[Account]:
        with Session(self.engine) as session:
            return [_account(row) for row in session.scalars(select(AccountRow).order_by(AccountRow.username))]

    def authenticate(self, username: str, password: str) -> Account | None:
        """The active account with this password, or None; rehashes a hash made with outdated parameters."""
        with Session(self.engine) as session:
            row = session.scalar(select(AccountRow).where(AccountRow.username == normalise_username(username)))
            if row is None or not row.active:
                self._verify(self._dummy_hash, password)  # same work as a real check: no timing hint of who exists
                return None
            if not self._verify(row.password_hash, password):
                return None
            if self.hasher.check_needs_rehash(row.password_hash):
                row.password_hash = self.hasher.hash(password)
                session.commit()
            return _account(row)

    def set_password(self, username: str, password: str) -> Account:
        _check_password(password)
        with Session(self.engine) as session, session.begin():
            row = session.scalar(select(AccountRow).where(AccountRow.username == normalise_username(username)))
            if row is None:
                raise KeyError(username)
            row.password_hash = self.hasher.hash(password)
            return _account(row)

    def set_status(self, account_id: int, status: Status) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        with Session(self.engine) as session, session.begin():
            row = session.get(AccountRow, account_id)
            if row is None:
                raise KeyError(account_id)
            row.status = status

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @cached_property
    def _dummy_hash(self) -> str:
        return self.hasher.hash("not a real password")
