"""Trigger names by family, as `Literal` types: mypy rejects a misspelled trigger at the
call site. `tests` check these lists against `qtasks.hookspecs`."""

from __future__ import annotations

from typing import Literal

AppTrigger = Literal[
    "qtasks_add_task_before_broker",
    "qtasks_add_task_after_broker",
    "qtasks_get",
    "qtasks_stop",
    "qtasks_ping",
    "qtasks_flush_all",
    "qtasks_cancel",
]
BrokerTrigger = Literal[
    "broker_listen_start",
    "broker_add_worker",
    "broker_add_before",
    "broker_add_after",
    "broker_get",
    "broker_update",
    "broker_start",
    "broker_stop",
    "broker_remove_finished_task",
    "broker_running_older_tasks",
    "broker_flush_all",
    "broker_task_recovered",
    "broker_task_dead",
]
StorageTrigger = Literal[
    "storage_add",
    "storage_get",
    "storage_get_all",
    "storage_update",
    "storage_remove_finished_task",
    "storage_start",
    "storage_stop",
    "storage_add_process",
    "storage_running_older_tasks",
    "storage_delete_finished_tasks",
    "storage_flush_all",
]
GlobalConfigTrigger = Literal[
    "global_config_set",
    "global_config_get",
    "global_config_get_all",
    "global_config_get_match",
    "global_config_start",
    "global_config_stop",
    "global_config_set_status",
]
WorkerTrigger = Literal[
    "worker_add",
    "worker_execute_before",
    "worker_execute_after",
    "worker_run_task_before",
    "worker_task_error_retry",
    "worker_remove_finished_task",
    "worker_start",
    "worker_stop",
    "worker_task_success",
    "worker_task_error",
    "worker_task_cancel",
]
ExecutorTrigger = Literal[
    "task_executor_args_replace",
    "task_executor_before_execute",
    "task_executor_run_task",
    "task_executor_run_task_gen",
    "task_executor_run_task_trigger_error",
    "task_executor_after_execute",
    "task_executor_after_execute_result_replace",
    "task_executor_middlewares_execute",
    "task_executor_decode",
    "task_executor_task_close",
]
StarterTrigger = Literal[
    "starter_start",
    "starter_stop",
]
StatsTrigger = Literal["stats_inspect",]
TimerTrigger = Literal[
    "timer_start",
    "timer_stop",
    "timer_add_task_before",
    "timer_add_task_after",
]

FAMILIES: dict[str, object] = {
    "app": AppTrigger,
    "broker": BrokerTrigger,
    "storage": StorageTrigger,
    "global_config": GlobalConfigTrigger,
    "worker": WorkerTrigger,
    "executor": ExecutorTrigger,
    "starter": StarterTrigger,
    "stats": StatsTrigger,
    "timer": TimerTrigger,
}
