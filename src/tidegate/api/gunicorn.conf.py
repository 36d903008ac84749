"""Gunicorn settings for Tidegate's API: Uvicorn workers (the `uvicorn-worker` package).

`tidegate api` loads this file and then applies its own flags on top. Used directly, it is
the same server:

    gunicorn -c "$(python -c 'import tidegate.api, os; print(os.path.dirname(tidegate.api.__file__))')/gunicorn.conf.py" \
        'tidegate.api.app:create_app()'

Every value below can be overridden with the environment variable named beside it (Gunicorn
also reads GUNICORN_CMD_ARGS). `kill -HUP <master pid>` reloads gracefully: new workers start,
then the old ones finish their requests and exit.
"""

import os

# -- where and how many ----------------------------------------------------------------------
bind = [f"{os.environ.get('TIDEGATE_HOST', '127.0.0.1')}:{os.environ.get('TIDEGATE_PORT', '8000')}"]
worker_class = "uvicorn_worker.UvicornWorker"
# One worker per core is enough: each serves many requests at once on its event loop.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))

# -- time ------------------------------------------------------------------------------------
# A worker that does not check in for this long is killed and replaced. Event streams do not
# count against it (the event loop keeps answering while a stream is open).
timeout = int(os.environ.get("TIDEGATE_API_TIMEOUT_S", "30"))
# On stop or HUP, open requests (and SSE streams, which clients resume with Last-Event-ID)
# get this long before the worker exits.
graceful_timeout = int(os.environ.get("TIDEGATE_API_GRACEFUL_TIMEOUT_S", "10"))
keepalive = 5  # above NGINX's default upstream keepalive_timeout would leak sockets; see deploy/

# -- recycling -------------------------------------------------------------------------------
# Restart each worker after about this many requests, the jitter keeping them from all
# restarting at once (a slow leak in a dependency then never grows without bound). 0: never.
max_requests = int(os.environ.get("TIDEGATE_API_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("TIDEGATE_API_MAX_REQUESTS_JITTER", "1000"))

# -- logs ------------------------------------------------------------------------------------
accesslog = os.environ.get("TIDEGATE_API_ACCESS_LOG", "-") or None  # "-": stdout; "": off
errorlog = "-"
loglevel = "info"

# -- proxies ---------------------------------------------------------------------------------
# NGINX (deploy/nginx.conf) sets X-Forwarded-For/-Proto; trust it from these addresses.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


# -- hooks -----------------------------------------------------------------------------------
def on_starting(server):  # type: ignore[no-untyped-def]
    # Several workers each count their own requests: count in files that /metrics sums up
    # (prometheus_client's multiprocess mode), set up before the first worker forks.
    if server.cfg.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from pathlib import Path

        from tidegate.adapters.metrics import use_multiprocess_dir

        data_dir = Path(os.environ.get("TIDEGATE_DATA_DIR", ".tidegate"))
        use_multiprocess_dir(data_dir.resolve() / f"metrics-api-{os.getpid()}")


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    # Tidegate's own lines in TIDEGATE_LOG_FORMAT, redacted, like the workers' and beat's.
    from tidegate import logs

    logs.configure(os.environ.get("TIDEGATE_LOG_FORMAT", "text"))


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    # A dead worker's gauges must not be summed any more (its counters still are).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
