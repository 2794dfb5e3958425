"""Settings, read from the environment in one place (CONTRACT.md, "Configuration")."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Only for tests and one-off scripts: `make run` / `make demo` generate a random SECRET_KEY
# once and keep it in instance/secret_key (integration/devsecret.py).
DEV_SECRET = "dev-only-secret-do-not-use-in-production"
MIN_SECRET_LENGTH = 32


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


@dataclass(frozen=True)
class Settings:
    dumpling_base_url: str = "https://app.dumplingai.com"
    database_url: str = f"sqlite:///{ROOT / 'instance' / 'app.db'}"
    secret_key: str = DEV_SECRET
    environment: str = "development"
    page_size: int = 30                 # `count` asked of the upstream when refreshing a watch
    page_cap: int = 10                  # most pages one refresh or one action call may read
    refresh_window_seconds: int = 60    # trigger calls inside it share one upstream refresh
    poll_interval_seconds: int = 300    # worker: how often a watch with subscriptions is refreshed
    allow_private_webhook_targets: bool = False
    auth_cache_seconds: int = 6 * 3600  # how long a successful auth test is remembered
    upstream_connect_timeout: float = 3.05
    upstream_read_timeout: float = 12.0
    upstream_total_seconds: float = 25.0  # all attempts of one upstream call, inside Zapier's 30 s
    upstream_retries: int = 2
    action_max_limit: int = 1000
    action_budget_seconds: float = 20.0  # wall clock for all pages of one action call (Zapier stops at 30 s)
    journal_retention_days: int = 30
    journal_max_events: int = 1000
    lease_seconds: float = 10.0  # a refresh's lease, renewed while it runs (integration/leases.py)
    worker_concurrency: int = 32  # bench_worker: 32 sustains ~55 refreshes/s at 0.5 s upstream latency
    probe_api_key: str = field(default="", repr=False)  # DUMPLING_API_KEY: only `python -m integration.probe`
    # h4: hardening of subscriptions, unknown keys, idle watches and secret rotation
    old_secret_keys: tuple[str, ...] = ()   # previous SECRET_KEYs, during a rotation
    max_subscriptions_per_key: int = 100
    auth_negative_cache_seconds: int = 60   # a refused key (or address) is answered 401 without asking upstream
    watch_idle_days: int = 30               # a watch nobody used for this long is deleted
    # web process (h2): bounds, logging, rotation, metrics
    log_level: str = "INFO"
    max_body_bytes: int = 64 * 1024             # larger request bodies get a 413 before they are read
    action_fast_path: bool = True                # the action's plain calls skip Flask (integration/api/action_path.py)
    upstream_max_bytes: int = 5 * 1024 * 1024   # larger upstream answers are a 502 (malformed)
    metrics_dir: str = ""                       # PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py)
    # Worker (integration/worker.py, sendgate.py): loop timing, metrics, fairness between customers.
    worker_idle_seconds: float = 0.5   # how long an idle loop sleeps (a finished job wakes it earlier)
    worker_claim_seconds: float = 60.0  # a delivery claim; a send's deadline is min(15 s, half of it)
    worker_metrics_port: int | None = None  # serve /metrics on this port when set
    worker_metrics_host: str = "127.0.0.1"  # metrics are not public unless asked for
    max_sends_per_owner: int = 4   # sends in flight per customer (per worker process)
    max_sends_per_host: int = 16   # sends in flight per webhook target host (per worker process)
    target_host_rps: float = 50.0  # requests per second to one target host (per worker process); 0: no limit
    # Unfollow detection (h8, integration/sweeps.py): a sweep reads at most this many pages of 100.
    sweep_page_cap: int = 100
    sweep_retry_minutes: int = 60  # an interrupted sweep is tried again after this (nothing was emitted)
    max_crowds_per_key: int = 100  # "followed by many" definitions one key may have (integration/crowds.py)
    # Unit cost (issue 14): database connections per process, sized to its threads (0: automatic).
    db_pool_size: int = 0
    gunicorn_threads: int = 128  # GUNICORN_THREADS, also read by gunicorn.conf.py for gunicorn itself
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        s = cls(
            dumpling_base_url=env.get("DUMPLING_BASE_URL", cls.dumpling_base_url).rstrip("/"),
            database_url=env.get("DATABASE_URL") or cls.database_url,
            secret_key=env.get("SECRET_KEY") or DEV_SECRET,
            environment=env.get("APP_ENV", "development"),
            page_size=_int("PAGE_SIZE", cls.page_size),
            page_cap=_int("PAGE_CAP", cls.page_cap),
            refresh_window_seconds=_int("REFRESH_WINDOW_SECONDS", cls.refresh_window_seconds),
            poll_interval_seconds=_int("POLL_INTERVAL_SECONDS", cls.poll_interval_seconds),
            allow_private_webhook_targets=env.get("ALLOW_PRIVATE_WEBHOOK_TARGETS") == "1",
            auth_cache_seconds=_int("AUTH_CACHE_SECONDS", cls.auth_cache_seconds),
            upstream_read_timeout=_float("UPSTREAM_READ_TIMEOUT", cls.upstream_read_timeout),
            upstream_total_seconds=_float("UPSTREAM_TOTAL_SECONDS", cls.upstream_total_seconds),
            lease_seconds=_float("LEASE_SECONDS", cls.lease_seconds),
            worker_concurrency=_int("WORKER_CONCURRENCY", cls.worker_concurrency),
            probe_api_key=env.get("DUMPLING_API_KEY", ""),
            action_budget_seconds=_float("ACTION_BUDGET_SECONDS", cls.action_budget_seconds),
            old_secret_keys=tuple(k for k in env.get("OLD_SECRET_KEYS", "").split(",") if k),
            max_subscriptions_per_key=_int("MAX_SUBSCRIPTIONS_PER_KEY", cls.max_subscriptions_per_key),
            auth_negative_cache_seconds=_int("AUTH_NEGATIVE_CACHE_SECONDS", cls.auth_negative_cache_seconds),
            watch_idle_days=_int("WATCH_IDLE_DAYS", cls.watch_idle_days),
            log_level=(env.get("LOG_LEVEL") or cls.log_level).upper(),
            max_body_bytes=_int("MAX_BODY_BYTES", cls.max_body_bytes),
            action_fast_path=env.get("ACTION_FAST_PATH", "1") != "0",
            upstream_max_bytes=_int("UPSTREAM_MAX_BYTES", cls.upstream_max_bytes),
            metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR", ""),
            worker_idle_seconds=_float("WORKER_IDLE_SECONDS", cls.worker_idle_seconds),
            worker_claim_seconds=_float("WORKER_CLAIM_SECONDS", cls.worker_claim_seconds),
            worker_metrics_port=_int("WORKER_METRICS_PORT", 0) or None,
            worker_metrics_host=env.get("WORKER_METRICS_HOST") or cls.worker_metrics_host,
            max_sends_per_owner=_int("MAX_SENDS_PER_OWNER", cls.max_sends_per_owner),
            max_sends_per_host=_int("MAX_SENDS_PER_HOST", cls.max_sends_per_host),
            target_host_rps=_float("TARGET_HOST_RPS", cls.target_host_rps),
            sweep_page_cap=_int("SWEEP_PAGE_CAP", cls.sweep_page_cap),
            sweep_retry_minutes=_int("SWEEP_RETRY_MINUTES", cls.sweep_retry_minutes),
            max_crowds_per_key=_int("MAX_CROWDS_PER_KEY", cls.max_crowds_per_key),
            db_pool_size=_int("DB_POOL_SIZE", cls.db_pool_size),
            gunicorn_threads=_int("GUNICORN_THREADS", cls.gunicorn_threads),
        )
        known = {f.name for f in fields(cls)}
        s = replace(s, **{k: v for k, v in overrides.items() if k in known})
        s.validate()
        return s

    def validate(self) -> None:
        if self.environment != "development" and self.secret_key == DEV_SECRET:
            raise RuntimeError("SECRET_KEY must be set outside development (APP_ENV != development)")
        if self.environment != "development" and len(self.secret_key) < MIN_SECRET_LENGTH:
            raise RuntimeError(f"SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters outside development "
                               "(APP_ENV != development); generate one with: python -c 'import secrets; "
                               "print(secrets.token_urlsafe(48))'")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise RuntimeError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        if self.max_body_bytes < 1024 or self.upstream_max_bytes < 1024:
            raise RuntimeError("MAX_BODY_BYTES and UPSTREAM_MAX_BYTES must be at least 1024")
        if not 1 <= self.page_size <= 100:
            raise RuntimeError("PAGE_SIZE must be between 1 and 100")
        if self.max_subscriptions_per_key < 1 or self.watch_idle_days < 1 or self.auth_negative_cache_seconds < 0:
            raise RuntimeError("MAX_SUBSCRIPTIONS_PER_KEY and WATCH_IDLE_DAYS must be at least 1, "
                               "AUTH_NEGATIVE_CACHE_SECONDS at least 0")
