"""Reads workers/threads from gunicorn.conf.py, so the benches start what `make run` starts."""
import runpy
from pathlib import Path

_conf = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
WORKERS, THREADS = _conf["workers"], _conf["threads"]
print(f"gunicorn.conf.py: worker_class={_conf['worker_class']} workers={WORKERS} threads={THREADS}")
