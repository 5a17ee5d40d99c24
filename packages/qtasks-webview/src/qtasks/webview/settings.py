"""What the dashboard serves, where, and who may see it.

Secrets (the Redis URL's password, the token, the basic-auth password) come from the
environment or from files, never from argv, which every user of the machine can read in `ps`.
The rule Flower broke (CVE-2022-30034) is enforced here: binding anywhere but the loopback
interface without a token or a password is refused.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "QTASKS_WEBVIEW_TOKEN"
PASSWORD_ENV = "QTASKS_WEBVIEW_PASSWORD"
REDIS_URL_ENV = "QTASKS_BROKER_URL"
"""The same variable the apps read, so one environment serves the worker and the dashboard."""

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class InsecureBindError(ValueError):
    """Binding beyond the loopback interface without authentication."""


@dataclass(frozen=True)
class Target:
    """Which app's Redis data to show. `url` is a secret: it is never rendered."""

    name: str
    url: str = field(repr=False)
    prefix: str | None = None
    config_name: str | None = None


@dataclass(frozen=True)
class Auth:
    """Credentials a request must present (none: loopback only)."""

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.password is not None

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 16:
            raise ValueError("the token must have at least 16 characters")
        if self.password is not None and not self.password:
            raise ValueError("the basic-auth password must not be empty")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both a user name and a password")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    auth: Auth = field(default_factory=Auth)
    read_only: bool = False
    """Hide and refuse the actions (cancel, retry, purge)."""
    poll_interval: float = 2.0
    """Seconds between the pages' refreshes of their JSON endpoint."""
    allowed_hosts: tuple[str, ...] = ()
    """Extra Host header names accepted without auth (a local reverse proxy)."""
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Key of the CSRF tokens; per process, so a restart invalidates open forms."""

    def check_bind(self) -> None:
        """Refuse a non-loopback address without a token or a password."""
        if not self.auth.enabled and not is_loopback(self.host):
            raise InsecureBindError(
                f"refusing to serve on {self.host!r} without authentication: set "
                f"${TOKEN_ENV} (or --token-file), or --user with ${PASSWORD_ENV} "
                "(or --password-file); without them the dashboard only binds 127.0.0.1"
            )


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve anywhere


def read_secret(path: str | None, env: str) -> str | None:
    """A secret from a file (first line) or else from the environment; None if neither."""
    if path:
        text = Path(path).read_text(encoding="utf-8").splitlines()
        value = text[0].strip() if text else ""
        if not value:
            raise ValueError(f"{path} is empty")
        return value
    value = os.environ.get(env, "").strip()
    return value or None
