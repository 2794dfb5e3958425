"""A fake DumplingAI upstream: a real HTTP server for tests, benchmarks and `make demo`.

    with FakeDumpling().start() as fake:
        fake.add_key("k")
        fake.seed("somehandle", 45)
        requests.post(fake.url + "/api/v1/get-tiktok-user-following", ...)
"""
from .accounts import make_account
from .core import API_PATH, FakeDumpling, RecordedRequest

__all__ = ["API_PATH", "FakeDumpling", "RecordedRequest", "make_account"]
