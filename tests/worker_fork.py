"""A warm parent that forks real Celery workers in a fraction of a second, for tests that kill many.

Starting a worker costs ~9 s on two cores, nearly all of it importing torch and the services
(`annotator.tasks`); a fault-injection test that SIGKILLs dozens of workers cannot pay that each time.
This process imports them once and forks a worker per request: each child is a session and process
group of its own running `config.celery.app.worker_main` with the command line of `worker_argv` (the
solo pool `make worker` starts), so a SIGKILL of its group is what the OOM killer does to a worker.

Protocol (one JSON object a line): stdin `{"name", "log", "settings"}` forks a worker named `name`
logging to `log`, with these Django settings overridden; stdout answers `{"pid": …}`. EOF ends it.
Nothing here touches torch, the database or the broker before forking (no thread, pool or connection
for a child to inherit); the children are reaped by the kernel (SIGCHLD ignored).
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _child(request: dict) -> None:
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    from django.conf import settings

    for name, value in request.get("settings", {}).items():
        setattr(settings, name, value)
    from config.celery import app, worker_argv

    argv = worker_argv(request["name"])
    app.worker_main(argv[argv.index("worker") :])


def main() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    import annotator.tasks  # noqa: F401  (torch and every service: what makes a cold start slow)

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)
            finally:
                os._exit(0)
        print(json.dumps({"pid": pid}), flush=True)


if __name__ == "__main__":
    main()
