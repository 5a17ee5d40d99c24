"""Task middlewares: `TaskMiddleware(task_executor)` called before or after a task runs.

Attach per task (`@app.task(middlewares_before=[M])`) or app-wide
(`app.add_middleware(M, position="before")`). A middleware may change the executor it receives
(`self.task_executor.args`, `.kwargs`); on the asyncio app `__call__` may be a coroutine.
"""

from __future__ import annotations

from typing import Any


class BaseMiddleware:
    def __init__(self, task_executor: Any) -> None:
        self.task_executor = task_executor

    def __call__(self) -> Any:
        return None


TaskMiddleware = BaseMiddleware
