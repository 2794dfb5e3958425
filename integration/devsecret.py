"""`python -m integration.devsecret FOLDER`: print this machine's development SECRET_KEY.

`make run` / `make demo` (scripts/run.sh) use it when SECRET_KEY is unset: a random key is
generated once and kept in FOLDER/secret_key (file 0600, folder 0700), so no data on any
machine is protected by a value published in the repository.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path


def ensure_secret(folder: Path) -> str:
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / "secret_key"
    if not path.exists():
        tmp = folder / f".secret_key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process just wrote
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    os.chmod(path, 0o600)
    return path.read_text().strip()


if __name__ == "__main__":
    print(ensure_secret(Path(sys.argv[1] if len(sys.argv) > 1 else "instance")))
