"""The dashboard in headless Chromium (Debian's, driven by Playwright with `executable_path`),
served by uvicorn on a free loopback port, over a Redis that real workers filled.

Skipped when no Chromium is installed, unless $QTASKS_REQUIRE_BROWSER is set (as .ci/run does),
where a missing browser fails instead. Writes the README's screenshots to docs/screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webview_support import CANARY, Filled, Served, WorkerProcess
from webview_worker_app import APP_NAME

from qtasks.testing.redis_server import RedisServer
from qtasks.webview import Settings, Target, create_app

pytestmark = [pytest.mark.browser, pytest.mark.redis]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REQUIRE_ENV = "QTASKS_REQUIRE_BROWSER"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


def _browser_or_skip() -> None:
    problem = None
    if not os.path.exists(CHROMIUM):
        problem = f"no Chromium at {CHROMIUM}: apt-get install chromium, or set $CHROMIUM_PATH"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (uv sync --all-packages)"
    if problem is not None:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{problem} (${REQUIRE_ENV} is set)", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def chromium() -> str:
    _browser_or_skip()
    return CHROMIUM


@pytest.fixture(scope="module")
def served(chromium: str, filled: Filled, secret_redis: RedisServer) -> Iterator[Served]:
    settings = Settings(poll_interval=0.3)
    with Served(create_app(Target(APP_NAME, secret_redis.url), settings)) as served:
        yield served


@pytest.fixture(scope="module")
def browser(chromium: str, served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


@pytest.fixture
def worker(secret_redis: RedisServer, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker process that knows every task, `later` included (the fixed deploy)."""
    proc = WorkerProcess(secret_redis.url, tmp_path / "worker.log", fixed=True)
    yield proc
    proc.stop()


def test_overview_shows_the_counts_and_updates_live(
    page: Any, served: Served, filled: Filled, secret_redis: RedisServer, worker: WorkerProcess
) -> None:
    from playwright.sync_api import expect

    page.goto(served.base + "/")
    expect(page.locator("#count-success")).to_have_text("6")
    expect(page.locator("#count-error")).to_have_text("4")
    expect(page.locator("#count-retry")).to_have_text("1")
    expect(page.locator("#count-cancel")).to_have_text("1")
    expect(page.locator("#count-dead")).to_have_text("1")
    expect(page.locator("#count-queued")).to_have_text("1")
    expect(page.locator("#queues-body")).to_contain_text("nobody-listens")
    # The worker process registers itself; the page shows it without a reload.
    expect(page.locator("#workers-body")).to_contain_text(str(worker.proc.pid), timeout=15_000)
    expect(page.locator("#live-status")).to_contain_text("live")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "webview-overview.png"), full_page=True)
    assert CANARY not in page.content()

    # More tasks finish: the counts move with no navigation.
    from qtasks import QueueTasks
    from qtasks.configs.config import QueueConfig

    producer = QueueTasks(
        name=APP_NAME, broker_url=secret_redis.url, config=QueueConfig(enqueue_unknown_tasks=True)
    )
    tasks = [producer.add_task("add", i, 1, timeout=10) for i in range(3)]
    assert all(t is not None and t.status == "success" for t in tasks)
    url = page.url
    expect(page.locator("#count-success")).to_have_text("9", timeout=10_000)
    expect(page.locator("#count-last-hour")).to_have_text("13")
    assert page.url == url


def test_filtering_finds_a_task(page: Any, served: Served, filled: Filled) -> None:
    from playwright.sync_api import expect

    page.goto(served.base + "/tasks")
    page.select_option("select[name=status]", "error")
    page.fill("input[name=task_name]", "boom")
    page.click("button:has-text('Filter')")
    rows = page.locator("#tasks-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator(f"tr[data-uuid='{filled.errors[1]}']")).to_contain_text("boom")

    page.fill("input[name=q]", filled.xss[:8])
    page.select_option("select[name=status]", "")
    page.fill("input[name=task_name]", "")
    page.click("button:has-text('Filter')")
    expect(rows).to_have_count(1)
    page.click(f"tr[data-uuid='{filled.xss}'] a")
    expect(page.locator("#task-uuid")).to_have_text(filled.xss)


def test_failed_task_shows_its_traceback(page: Any, served: Served, filled: Filled) -> None:
    from playwright.sync_api import expect

    page.goto(f"{served.base}/tasks/{filled.flaky_child}")
    expect(page.locator("#task-status")).to_have_text("error")
    traceback = page.locator("#task-traceback")
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("RuntimeError: flaky always fails")
    expect(page.locator("#retry-chain li")).to_have_count(2)
    page.screenshot(path=str(SCREENSHOTS / "webview-task.png"), full_page=True)


def test_retry_from_the_dead_letter_page_reruns_it(
    page: Any, served: Served, filled: Filled, worker: WorkerProcess
) -> None:
    from playwright.sync_api import expect

    page.goto(served.base + "/dead")
    row = page.locator(f"tr[data-uuid='{filled.dead}']")
    expect(row).to_contain_text("unknown_task")
    row.locator("button:has-text('Retry')").click()
    expect(page.locator(".flash")).to_have_text("The task was sent to run again.")
    expect(page.locator(f"tr[data-uuid='{filled.dead}']")).to_have_count(0)
    # The worker that knows `later` runs it: later(4) == 40.
    page.goto(f"{served.base}/tasks/{filled.dead}")
    expect(page.locator("#task-status")).to_have_text("success", timeout=15_000)
    expect(page.locator("#task-result")).to_have_text("40")
    expect(page.locator("#task-worker")).not_to_have_text("—")


def test_script_in_task_args_is_shown_as_text(page: Any, served: Served, filled: Filled) -> None:
    from playwright.sync_api import expect

    for path in (f"/tasks/{filled.xss}", "/tasks?task_name=echo"):
        page.goto(served.base + path)
        expect(page.locator("main")).to_contain_text("<script>window.__qtasks_xss = 1")
        assert page.evaluate("typeof window.__qtasks_xss") == "undefined"
        assert "pwned" not in page.title()
        assert page.dialogs == []
    expect(page.locator("#task-args")).to_have_count(0)  # on the list page now
    page.goto(f"{served.base}/tasks/{filled.xss}")
    expect(page.locator("#task-args")).to_contain_text("<script>")
    expect(page.locator("#task-result")).to_contain_text("</script>")
