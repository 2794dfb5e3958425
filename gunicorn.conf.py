"""gunicorn settings for `web` (Procfile, `make run`).

The work is I/O-bound: each request mostly waits on DumplingAI (up to seconds).
Threads are cheap waiting slots, so: one process per core (2 here) and many threads
each. Measured in bench/bench_concurrency.py: 200 concurrent clients against an
upstream answering in 1 s need >= 200 slots; 2 x 128 threads leaves headroom.
"""
import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
# gthread that gives a thread to a connection only once its request head has arrived, so slow
# clients cannot hold the threads (integration/http_worker.py, bench/bench_slowloris.py).
worker_class = "integration.http_worker.HeadBufferingWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "128"))
backlog = 2048
timeout = 60          # above the upstream client's 25 s bound and a trigger's 25 s wait
graceful_timeout = 30
keepalive = 5
accesslog = None      # the app logs one JSON line per request (with the key redacted)
loglevel = os.environ.get("LOG_LEVEL", "info").lower()  # gunicorn's own lines; the app reads it in Settings
# gunicorn 27 opens a control socket (~/.gunicorn/gunicorn.ctl) that can stop or reconfigure
# the server; nothing here uses it, so it does not exist.
control_socket_disable = True
_created_metrics_dir = None


def on_starting(server):
    # Prometheus: every worker writes its metrics to a shared folder that /metrics reads.
    global _created_metrics_dir
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _created_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prom-")


def on_exit(server):
    # The folder we created holds one file per worker pid ever started: remove it with us.
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
