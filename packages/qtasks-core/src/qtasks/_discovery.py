"""Entry-point discovery: which components are installed, and which one serves a URL.

Entry points are read once per process (`functools.cache`, as OpenTelemetry does) and loaded
lazily: nothing is imported until a name is asked for. `cache_clear()` is for tests that install
distributions at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

# Python 3.10+ has the selection API (`group=`) in the stdlib, so no backport is needed;
# duplicates that older stdlibs report for one distribution are folded below.
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as _entry_points
from typing import Any
from urllib.parse import urlsplit

from qtasks.exc import ComponentNotFoundError

log = logging.getLogger("qtasks.discovery")

GROUPS = {
    "brokers": "qtasks.brokers",
    "storages": "qtasks.storages",
    "configs": "qtasks.global_configs",
    "workers": "qtasks.workers",
    "starters": "qtasks.starters",
    "timers": "qtasks.timers",
}

FIRST_PARTY_HINTS = {
    "SyncRedisBroker": "qtasks-redis",
    "AsyncRedisBroker": "qtasks-redis",
    "SyncRedisStorage": "qtasks-redis",
    "AsyncRedisStorage": "qtasks-redis",
    "SyncRedisGlobalConfig": "qtasks-redis",
    "AsyncRedisGlobalConfig": "qtasks-redis",
    "SyncTimer": "qtasks-timer",
    "AsyncTimer": "qtasks-timer",
    "OpenTelemetryPlugin": "qtasks-otel",
    "SentryPlugin": "qtasks-sentry",
}


@cache
def entry_points(group: str) -> tuple[EntryPoint, ...]:
    """Entry points of `group`; when two distributions register one name, the first wins."""
    seen: dict[str, EntryPoint] = {}
    for ep in _entry_points(group=group):
        if ep.name in seen:
            if seen[ep.name].value != ep.value:
                log.warning(
                    "entry point %s:%s registered twice (%s, %s); using the first",
                    group,
                    ep.name,
                    seen[ep.name].value,
                    ep.value,
                )
            continue
        seen[ep.name] = ep
    return tuple(seen.values())


def cache_clear() -> None:
    entry_points.cache_clear()
    _load.cache_clear()


def names(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group))


@cache
def _load(group: str, name: str) -> Any:
    for ep in entry_points(group):
        if ep.name == name:
            return ep.load()
    raise KeyError(name)


def load(group: str, name: str) -> Any:
    """Load entry point `name` of `group`; an ImportError that names the distribution to
    install when a first-party name is missing."""
    try:
        return _load(group, name)
    except KeyError:
        hint = FIRST_PARTY_HINTS.get(name)
        if hint is not None:
            raise ModuleNotFoundError(
                f"{name} is provided by the {hint} distribution, which is not installed: "
                f"pip install {hint}",
                name=hint.replace("-", "."),
            ) from None
        raise


def facade_getattr(module: str, group: str, name: str) -> Any:
    """PEP 562 `__getattr__` body of the facade packages (`qtasks.brokers`, ...)."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return load(group, name)
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None


def facade(
    module: str, group: str, namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 `__getattr__` and `__dir__` for a facade package: names of installed components
    resolve through `group`; `dir()` lists the module's own names and the installed ones."""

    def getattr_(name: str) -> Any:
        return facade_getattr(module, group, name)

    def dir_() -> list[str]:
        return sorted({*namespace, *names(group)})

    return getattr_, dir_


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ComponentNotFoundError(f"URL {redact_url(url)!r} has no scheme (like redis://)")
    return scheme


def component_for_url(group: str, url: str, is_async: bool) -> Any:
    """The installed class of `group` registered for `url`'s scheme and the given flavour."""
    scheme = scheme_of(url)
    known: set[str] = set()
    for ep in entry_points(group):
        try:
            cls = _load(group, ep.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            log.warning("component %s:%s failed to load: %s", group, ep.name, exc)
            continue
        schemes = tuple(getattr(cls, "url_schemes", ()))
        known.update(schemes)
        if scheme in schemes and bool(getattr(cls, "is_async", False)) == is_async:
            return cls
    installed = ", ".join(f"{s}://" for s in sorted(known)) or "none"
    raise ComponentNotFoundError(
        f"no installed {group.rsplit('.', maxsplit=1)[-1]} handles {scheme}:// URLs "
        f"(installed schemes: {installed})"
    )


def has_scheme(group: str, scheme: str) -> bool:
    for ep in entry_points(group):
        try:
            cls = _load(group, ep.name)
        except Exception:  # noqa: BLE001 - a broken plugin must not hide the others
            continue
        if scheme in tuple(getattr(cls, "url_schemes", ())):
            return True
    return False


def redact_url(url: str | None) -> str:
    """`redis://user:secret@host/0` -> `redis://user:***@host/0` (kombu's maybe_sanitize_url)."""
    if not url:
        return str(url)
    parts = urlsplit(url)
    if parts.password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]  # as written: `.port` raises on a bad port
    cred = f"{user}:***" if parts.password is not None else user
    netloc = f"{cred}@{host}" if cred else host
    return parts._replace(netloc=netloc).geturl()
