"""A WSGI app that answers at once (a body the size of the action's answer): what an HTTP
server alone costs per request (bench/bench_overhead_split.py)."""
BODY = b'{"following": "' + b"a" * 12000 + b'"}'


def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
