"""Commands that run Tidegate's processes: up, api, worker, beat, flower, db."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import console, fail, settings_or_exit, setup_logging

if TYPE_CHECKING:
    from ..config import Settings

PortOpt = Annotated[int | None, typer.Option("--port", "-p", help="API port [env: TIDEGATE_PORT]")]
DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="where the embedded Redis, SQLite and the API key live "
    "[env: TIDEGATE_DATA_DIR]")]


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel="Run")(up)
    app.command(rich_help_panel="Run")(api)
    app.command(rich_help_panel="Run")(worker)
    app.command(rich_help_panel="Run")(beat)
    from .flower import flower

    app.command(rich_help_panel="Run")(flower)
    from ..providers.simulator.cli import simulate

    app.command(rich_help_panel="Run")(simulate)
    db = typer.Typer(help="Database migrations.", no_args_is_help=True)
    db.command("upgrade")(db_upgrade)
    db.command("current")(db_current)
    app.add_typer(db, name="db", rich_help_panel="Admin")
    from . import admin

    admin.register(app)


def up(port: PortOpt = None, data_dir: DataDirOpt = None,
       concurrency: Annotated[int | None, typer.Option(
           help="jobs one worker runs at once [env: TIDEGATE_WORKER_CONCURRENCY]")] = None,
       flower_port: Annotated[int, typer.Option(
           help="also run Flower on this port (0: don't)")] = 0) -> None:
    """Run everything on this machine: Redis (embedded unless TIDEGATE_REDIS_URL is set),
    the database migrations, the API, a worker for high/medium/low, the scheduler and the
    provider simulator. Ctrl-C stops it all."""
    from ..up import run_up

    settings = settings_or_exit(port=port, data_dir=data_dir, worker_concurrency=concurrency)
    raise SystemExit(run_up(settings, flower_port=flower_port))


def api(host: Annotated[str | None, typer.Option(help="[env: TIDEGATE_HOST]")] = None,
        port: PortOpt = None,
        workers: Annotated[int | None, typer.Option(
            help="API processes; about one per core [env: WEB_CONCURRENCY, default 1]")] = None,
        timeout: Annotated[int | None, typer.Option(
            help="seconds a silent worker lives before Gunicorn replaces it "
            "[env: TIDEGATE_API_TIMEOUT_S, default 30]")] = None,
        graceful_timeout: Annotated[int | None, typer.Option(
            help="seconds open requests get on stop or HUP "
            "[env: TIDEGATE_API_GRACEFUL_TIMEOUT_S, default 10]")] = None,
        max_requests: Annotated[int | None, typer.Option(
            help="recycle a worker after about this many requests, 0: never "
            "[env: TIDEGATE_API_MAX_REQUESTS, default 10000]")] = None,
        max_requests_jitter: Annotated[int | None, typer.Option(
            help="random extra requests per worker, so they don't all recycle at once "
            "[env: TIDEGATE_API_MAX_REQUESTS_JITTER, default 1000]")] = None,
        access_log: Annotated[str | None, typer.Option(
            help="access log file, '-' for stdout, '' for none "
            "[env: TIDEGATE_API_ACCESS_LOG, default -]")] = None,
        server: Annotated[str, typer.Option(
            help="gunicorn, or uvicorn: one plain Uvicorn process (what `tidegate up` runs)")]
        = "gunicorn") -> None:
    """Serve the HTTP API: Gunicorn with Uvicorn workers, configured by the package's
    gunicorn.conf.py and these flags. `kill -HUP` on the master reloads gracefully."""
    if server not in ("gunicorn", "uvicorn"):
        fail(f"unknown --server {server!r}; use gunicorn or uvicorn")
    settings = settings_or_exit(host=host, port=port)
    setup_logging(settings)
    _warn_if_evicting(settings)
    # Workers rebuild Settings from the environment; pass the CLI overrides on.
    os.environ["TIDEGATE_HOST"], os.environ["TIDEGATE_PORT"] = settings.host, str(settings.port)
    if server == "uvicorn":
        import uvicorn

        from ..logs import uvicorn_log_config

        uvicorn.run("tidegate.api.app:create_app", factory=True, host=settings.host,
                    port=settings.port, workers=workers or 1, log_level="info",
                    timeout_graceful_shutdown=graceful_timeout or 10, proxy_headers=True,
                    log_config=uvicorn_log_config(settings.log_format))
        return
    from ..api.gunicorn_app import serve

    host_part = f"[{settings.host}]" if ":" in settings.host else settings.host
    serve(bind=[f"{host_part}:{settings.port}"], workers=workers, timeout=timeout,
          graceful_timeout=graceful_timeout, max_requests=max_requests,
          max_requests_jitter=max_requests_jitter,
          accesslog=access_log,
          proc_name="tidegate-api")


def worker(queues: Annotated[str, typer.Option(
               "--queues", "-Q", help="comma-separated queues to consume")] = "high,medium,low",
           concurrency: Annotated[int | None, typer.Option(
               "--concurrency", "-c", help="jobs at once [env: TIDEGATE_WORKER_CONCURRENCY]")]
           = None,
           pool: Annotated[str | None, typer.Option(
               help="threads (default: LLM jobs wait on I/O), prefork or solo "
               "[env: TIDEGATE_WORKER_POOL]")] = None,
           autoscale: Annotated[str | None, typer.Option(
               help="MAX,MIN processes, grown and shrunk with the load (prefork; picks it "
               "when no pool is given) [env: TIDEGATE_WORKER_AUTOSCALE]")] = None,
           max_tasks_per_child: Annotated[int | None, typer.Option(
               help="replace a prefork child after this many jobs "
               "[env: TIDEGATE_WORKER_MAX_TASKS_PER_CHILD]")] = None,
           max_memory_per_child: Annotated[int | None, typer.Option(
               help="KiB: replace a prefork child after a job leaves it above this "
               "resident memory [env: TIDEGATE_WORKER_MAX_MEMORY_PER_CHILD_KB]")] = None,
           prefetch_multiplier: Annotated[int | None, typer.Option(
               help="messages held per free slot [env: TIDEGATE_WORKER_PREFETCH_MULTIPLIER, "
               "default 1]")] = None,
           name: Annotated[str | None, typer.Option(help="worker node name")] = None,
           loglevel: Annotated[str, typer.Option(help="log level")] = "INFO",
           check: Annotated[bool, typer.Option(
               "--check", help="don't run a worker: exit 0 if a worker on this host said it "
               "is alive within the last few seconds, 1 if not (a container health check)")]
           = False) -> None:
    """Run a Celery worker consuming the given priority queues. It checks its configuration
    (job modules, TIDEGATE_LLM_CONFIG, providers) first and refuses to start on a mistake.
    Presets per priority: `-Q high -c 10`, `-Q medium -c 5`, `-Q low -c 20`."""
    from ..core.errors import ConfigurationError
    from ..core.statuses import QUEUES

    settings = settings_or_exit(
        worker_concurrency=concurrency, worker_pool=pool, worker_autoscale=autoscale,
        worker_max_tasks_per_child=max_tasks_per_child,
        worker_max_memory_per_child_kb=max_memory_per_child,
        worker_prefetch_multiplier=prefetch_multiplier)
    if check:
        raise SystemExit(_check_worker_alive(settings))
    from ..worker.app import create_worker_app
    from ..worker.options import choose_pool, worker_argv
    from ..worker.runtime import check_configuration

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(QUEUES))
    if not wanted or unknown:
        fail(f"unknown queue(s) {', '.join(unknown) or '(none given)'}; use high, medium, low")
    node = name or f"tidegate-{'-'.join(wanted)}-{os.getpid()}@{socket.gethostname()}"
    try:
        settings = choose_pool(settings)
        argv = worker_argv(settings, queues=wanted, node=node, loglevel=loglevel)
        check_configuration(settings)
    except ConfigurationError as exc:
        fail(f"refusing to start the worker: {exc.message}")
    setup_logging(settings, loglevel)
    _warn_if_evicting(settings)
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        from ..adapters.metrics import process_registry, use_multiprocess_dir

        if settings.worker_pool == "prefork" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # The jobs run in the pool's children: count in files that the parent sums up.
            use_multiprocess_dir(settings.data_dir.resolve() / f"metrics-{os.getpid()}")
        start_http_server(settings.worker_metrics_port, addr=settings.host,
                          registry=process_registry())
    create_worker_app(settings).worker_main(argv)


def _check_worker_alive(settings: Settings) -> int:
    import redis

    from ..adapters.liveness import LivenessRegistry
    from ..core.errors import ConfigurationError

    host = socket.gethostname()
    try:
        client = redis.Redis.from_url(settings.state_redis(), socket_timeout=3,
                                      socket_connect_timeout=3)
        alive = sorted(o for o in LivenessRegistry(client).fresh() if o.startswith(f"{host}/"))
        client.close()
    except ConfigurationError as exc:
        fail(exc.message)
    except redis.RedisError as exc:
        fail(f"cannot reach the shared Redis: {type(exc).__name__}: {exc}")
    if not alive:
        fail(f"no worker process on {host} said it is alive in the last few seconds")
    console.print(f"alive on {host}: {len(alive)} worker process(es) "
                  f"(pids {', '.join(o.rsplit('/', 1)[1] for o in alive)})")
    return 0


def beat() -> None:
    """Run the scheduler: the sweep that re-sends stranded jobs, and the retention purge.
    Start as many as you like; one leads, the others stand by."""
    from ..worker.scheduler import run_scheduler

    settings = settings_or_exit()
    setup_logging(settings)
    _warn_if_evicting(settings)
    run_scheduler(settings)


def _warn_if_evicting(settings: Settings) -> None:
    from ..adapters.redis_policy import warn_if_evicting

    if not settings.embedded_redis:
        warn_if_evicting(settings)


def db_upgrade() -> None:
    """Apply the database migrations (`tidegate up` does this by itself)."""
    from ..adapters.sql import make_engine
    from ..adapters.sql.migrate import current, upgrade
    from ..config import redact

    settings = settings_or_exit()
    engine = make_engine(settings.database)
    try:
        upgrade(engine)
        console.print(f"database {redact(settings.database)} at revision {current(engine)}")
    except Exception as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()


def db_current() -> None:
    """Print the database's migration revision."""
    from ..adapters.sql import make_engine
    from ..adapters.sql.migrate import current

    engine = make_engine(settings_or_exit().database)
    console.print(current(engine) or "(empty database)")
    engine.dispose()
