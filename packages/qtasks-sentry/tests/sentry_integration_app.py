"""Run by test_sentry_integration in a fresh interpreter: `python sentry_integration_app.py MODE`.

`QtasksIntegration.setup_once` patches qtasks once per process, so each scenario gets its own
process. Prints one JSON object with what the capturing transport received.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import sentry_sdk
from sentry_sdk.transport import Transport

from qtasks import QueueTasks
from qtasks.sentry import QtasksIntegration, SentryPlugin


class Capture(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Any] = []

    def capture_envelope(self, envelope: Any) -> None:
        self.envelopes.append(envelope)


def make_app(name: str) -> Any:
    app = QueueTasks(name=name, broker_url=f"memory://{name}")

    @app.task(name="boom", retry=1)
    def boom() -> None:
        raise ValueError(f"boom in {name}")

    return app


def run(app: Any) -> str:
    with app:
        task = app.add_task("boom", timeout=10)
    return str(task.status)  # leaving `with app` drains: every trigger has run


def main() -> None:
    mode = sys.argv[1]
    before = make_app("before")  # made before sentry_sdk.init, like a module-level app
    transport = Capture()
    integration = QtasksIntegration(report_retries=mode == "report_retries")
    sentry_sdk.init(
        dsn="https://public@sentry.example/1",
        transport=transport,
        traces_sample_rate=1.0,
        integrations=[integration],
    )
    after = make_app("after")
    if mode == "with_explicit_plugin":
        # Its own option says to report retries; the integration's options apply (README).
        after.add_plugin(SentryPlugin(report_retries=True))
    statuses = [run(before), run(after)]
    with sentry_sdk.isolation_scope() as scope:
        scope.clear_breadcrumbs()
        after.add_task("boom")
        sentry_sdk.capture_message("after enqueue")
    if mode == "client_without_integration":
        transport.envelopes.clear()
        sentry_sdk.init(
            dsn="https://public@sentry.example/1",
            transport=transport,
            traces_sample_rate=1.0,
            default_integrations=False,
        )
        statuses.append(run(make_app("later")))
    events = [e.get_event() for e in transport.envelopes if e.get_event()]
    messages = [e for e in events if "exception" not in e]
    events = [e for e in events if "exception" in e]
    transactions = [
        e.get_transaction_event() for e in transport.envelopes if e.get_transaction_event()
    ]
    print(
        json.dumps(
            {
                "statuses": statuses,
                "errors": sorted(
                    (e["exception"]["values"][0]["value"], e["tags"]["qtasks.attempt"])
                    for e in events
                ),
                "transactions": len(transactions),
                "enqueue_breadcrumbs": [
                    len([c for c in m["breadcrumbs"]["values"] if c["category"] == "qtasks"])
                    for m in messages
                ],
                "plugins": [
                    sorted(
                        name
                        for name, _ in app.plugins.pm.list_name_plugin()
                        if name == "qtasks.sentry"
                    )
                    for app in (before, after)
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
