"""The scenario catalogue of reliability.md section 7: id -> (name, what the test injects).

Tests are named after their scenario (`test_a1_kill9_storm` is A1); the results fixture and
`scripts/chaos_report.py` read the name and the injected faults from here. Standard library only.
"""

from __future__ import annotations

SCENARIOS: dict[str, tuple[str, str]] = {
    "A1": ("kill9-storm", "SIGKILLs of threaded workers at seeded times, each respawned"),
    "A2": ("kill9-async", "SIGKILLs of async workers (concurrency 50), each respawned"),
    "A3": ("crash-windows", "os._exit(137) after claim / after exec / after ack"),
    "A4": ("pause-zombie", "SIGSTOP a worker mid-task for 3 leases, then SIGCONT"),
    "A5": ("long-task-heartbeat", "a task running 3 leases beside an idle reaping worker"),
    "A6": ("sigterm-graceful", "SIGTERM mid-run; grace 0.1 s; a second SIGTERM"),
    "A7": ("racing-reapers", "3 reapers race over 100 orphans of one dead owner"),
    "B1": ("redis-kill9-aof", "kill -9 redis (AOF always) at 40%, restart after 1 s"),
    "B2": ("redis-restart-empty", "restart redis without persistence: all data gone"),
    "B3": ("client-kill-storm", "CLIENT KILL TYPE normal every 200 ms for 3 s"),
    "B4": ("server-stall", "DEBUG SLEEP 3 (socket timeout 1 s), then CLIENT PAUSE 3000 WRITE"),
    "B5": ("proxy-faults", "proxy: 200 ms delay, 3 s blackhole, then reset"),
    "B6": ("idle-block-vs-socket-timeout", "3 s idle on an empty queue, then one task"),
    "B7": ("oom-backpressure", "maxmemory 4mb noeviction flooded with 100 KB enqueues"),
    "B8": ("eviction-policy-guard", "maxmemory-policy allkeys-lru at worker start"),
    "C1": ("unknown-task", "queue entries naming `nope` and `os.system`"),
    "C2": (
        "non-serializable-args",
        "object(), a lambda, NaN, a set and text UTF-8 refuses as arguments",
    ),
    "C3": ("malformed-injection", "bad bytes, truncated/deep/mistyped JSON, 2 MB, a pickle"),
    "C4": ("huge-payload", "10 MiB argument; 900 KiB round trip; injected 10 MiB entry"),
    "C5": ("task-raises", "ValueError with retry=3 backoff 50 ms; non-retryable; bad __str__"),
    "C6": ("task-timeout", "async and blocking sleep(2) with max_time 0.3 s"),
    "C7": ("poison-crasher", "a task that SIGKILLs its own worker, every time"),
    "D1": ("priority", "300 low then 300 high enqueued while no worker runs"),
    "D2": ("eta-under-kill", "200 tasks with eta +0.5..1.5 s; SIGKILL at 0.7 s"),
    "D3": ("prefetch-bound", "tasks of 50 ms, concurrency 4, prefetch 2; leases sampled"),
    "D4": ("cron-dedupe", "two timers (sync, async) on a 1 s cron; SIGKILL one"),
    "D5": ("key-hygiene", "SCAN of the prefix after a SIGKILL run"),
    "D6": (
        "async-cancel-crosstalk",
        "500 reads x3 through a 5-20 ms proxy, half cancelled at random",
    ),
    "D7": ("soak", "20k no-op tasks; RSS, fds and connected_clients sampled"),
    "E1": ("requirepass", "right and wrong password"),
    "E2": ("acl-least-privilege", "ACL user ~tq:* &tq:* +@all -@dangerous; a wrong prefix"),
    "E3": ("tls-rediss", "TLS port with a test CA; no CA; ssl_cert_reqs=none; redis://"),
    "E4": ("no-secrets-rendered", "a canary password through errors, logs, reprs, argv"),
    "E5": ("web-view", "no/wrong token, POST without CSRF, <script> args, URL in responses"),
    "F1": ("envelope-fuzz", "hypothesis: any bytes and any JSON object into the decoder"),
}

#: Scenarios covered by tests elsewhere in the repository (run by the same `uv run pytest`);
#: the report links them instead of this suite duplicating them.
REFERENCES: dict[str, str] = {
    "F1": "packages/qtasks-core/tests/test_envelope.py: `test_fuzz_any_bytes_decode_or_raise_"
    "decode_error`, `test_fuzz_json_objects_decode_or_raise_decode_error` (hypothesis; a typed "
    "DecodeError or a task, nothing else)",
}


def scenario_of(test_name: str) -> str | None:
    """`test_a1_kill9_storm` -> "A1"; None for helpers' tests."""
    parts = test_name.split("_")
    if len(parts) < 2 or parts[0] != "test":
        return None
    sid = parts[1].upper()
    return sid if sid in SCENARIOS else None
