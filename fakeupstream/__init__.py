"""A fake DumplingAI upstream: a real HTTP server for tests, benchmarks and `make demo`.

    with FakeDumpling().start() as fake:
        fake.add_key("k")
        fake.seed("somehandle", 45)
        fake.set_deviations("inclusive_min_time")  # optional: break a documented behaviour
        requests.post(fake.url + "/api/v1/get-tiktok-user-following", ...)
"""
from .accounts import make_account
from .core import API_PATH, FakeDumpling, RecordedRequest
from .deviations import Deviation

__all__ = ["API_PATH", "Deviation", "FakeDumpling", "RecordedRequest", "make_account"]
