"""`tidegate up`: everything on one machine, supervised, from one command."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import redis

from .adapters.sql import SqlJobStore, make_engine
from .adapters.sql.migrate import upgrade
from .config import Settings, redact
from .core.keys import authenticate, create_key
from .embedded import free_port, port_is_free, redis_argv
from .supervisor import Supervisor


def _wait_for(check: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def prepare_data_dir(data_dir: Path) -> None:
    """Make the data directory private to its owner (0700 directories, 0600 files), also an
    existing one from a version that left it readable by everybody: it holds every tenant's
    inputs, results and key hashes, and the embedded Redis's data."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in [data_dir, *data_dir.rglob("*")]:
        if path.is_symlink():
            continue
        try:
            path.chmod(0o700 if path.is_dir() else 0o600)
        except PermissionError:  # not ours (another user put it there): leave it, say so
            print(f"tidegate | cannot make {path} private: not owned by this user",
                  file=sys.stderr)


def ensure_first_key(settings: Settings) -> str:
    """The install's first API key, created on first start and kept in the data directory."""
    key_file = settings.key_file
    engine = make_engine(settings.database)
    try:
        store = SqlJobStore(engine)
        if key_file.exists():
            existing = key_file.read_text().strip()
            if authenticate(store, existing, settings.secret_key):
                return existing
        # The install's first key administers it (keys, tenants, every tenant's jobs).
        plain, _ = create_key(store, tenant="default", secret=settings.secret_key,
                              scope="admin", name="first key (tidegate up)")
    finally:
        engine.dispose()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    with os.fdopen(fd, "w") as f:
        f.write(plain + "\n")
    return plain


def run_up(settings: Settings, *, flower_port: int = 0) -> int:
    data_dir = settings.data_dir.resolve()
    # Everything this process and its children (redis-server, api, worker) create from now on
    # is private: Redis's AOF and RDB files, SQLite's journal, logs in the data directory.
    os.umask(0o077)
    prepare_data_dir(data_dir)
    sup = Supervisor()
    sup.handle_signals()
    me = [sys.executable, "-m", "tidegate"]
    env: dict[str, str] = {"TIDEGATE_DATA_DIR": str(data_dir),
                           "TIDEGATE_PORT": str(settings.port), "TIDEGATE_HOST": settings.host}
    if not port_is_free(settings.port, settings.host):
        sup.say(f"tidegate | port {settings.port} is in use; pick another with --port "
                f"or TIDEGATE_PORT")
        return 2
    embedded = settings.embedded_redis
    try:
        if embedded:
            port = free_port()
            sup.add("redis", redis_argv(data_dir, port), tier=0)
            env["TIDEGATE_REDIS_URL"] = f"redis://127.0.0.1:{port}"
            sup.start(sup.children[-1])
            client = redis.Redis(port=port, socket_connect_timeout=1)
            if not _wait_for(client.ping, 20):
                sup.say("tidegate | the embedded Redis did not start")
                return 1
        settings = settings.model_copy(update={
            "redis_url": env.get("TIDEGATE_REDIS_URL", settings.redis_url)})
        engine = make_engine(settings.database)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        key = ensure_first_key(settings)
        simulated = _maybe_simulator(settings, sup, me, env)
        settings = settings.model_copy(update={
            "simulator_url": env.get("TIDEGATE_SIMULATOR_URL", settings.simulator_url)})
        # One plain Uvicorn process: quick to start and to stop with Ctrl-C on a laptop.
        sup.add("api", [*me, "api", "--server", "uvicorn"], env)
        metrics_port = settings.worker_metrics_port or free_port()
        sup.add("worker", [*me, "worker", "-c", str(settings.worker_concurrency)],
                {**env, "TIDEGATE_WORKER_METRICS_PORT": str(metrics_port)})
        sup.add("beat", [*me, "beat"], env)
        if flower_port:
            sup.add("flower", [*me, "flower", "--port", str(flower_port)], env)
        for child in sup.children:
            if child.proc is None:
                sup.start(child)
        api_url = f"http://{settings.host}:{settings.port}"
        if not _wait_for(lambda: httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200,
                         60):
            sup.say("tidegate | the API did not come up within 60 s; see its log above")
        _banner(sup, settings, api_url, key, simulated, flower_port, embedded, metrics_port)
        sup.run()
    finally:
        sup.say("tidegate | stopping...")
        sup.stop_all()
        sup.say("tidegate | stopped")
    return 0


def _maybe_simulator(settings: Settings, sup: Supervisor, me: list[str],
                     env: dict[str, str]) -> list[str]:
    """Start the provider simulator for every provider without a key. Returns their names."""
    if settings.simulator == "off":
        return []
    try:
        from .providers import simulator  # noqa: F401
    except ImportError:
        return []
    missing = [p for p, keys in (("openai", ("OPENAI_API_KEY", "OPENAI_BASE_URL")),
                                 ("anthropic", ("ANTHROPIC_API_KEY",)),
                                 ("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY")))
               if not any(os.environ.get(k) for k in keys)]
    if not missing:
        return []
    url = settings.simulator_url
    if url is None:
        port = settings.simulator_port if port_is_free(settings.simulator_port) else free_port()
        sup.add("simulator", [*me, "simulate", "--port", str(port)], {}, tier=0)
        url = f"http://127.0.0.1:{port}"
    env["TIDEGATE_SIMULATOR_URL"] = url
    return missing


def _banner(sup: Supervisor, settings: Settings, api_url: str, key: str,
            simulated: list[str], flower_port: int, embedded: bool, metrics_port: int) -> None:
    lines = [
        "",
        "Tidegate is running.",
        f"  API         {api_url}   (OpenAPI docs: {api_url}/docs)",
        f"  dashboard   {api_url}/   (sign in with the API key)",
        f"  API key     {key}",
        f"              (also in {Path(settings.key_file).resolve()})",
        f"  database    {redact(settings.database)}",
        f"  redis       {redact(settings.redis_url or '')}"
        + ("  (embedded)" if embedded else ""),
        f"  broker      {redact(settings.broker())}",
        f"  metrics     {api_url}/metrics (system), http://{settings.host}:{metrics_port}/metrics"
        " (worker)",
    ]
    if flower_port:
        lines.append(f"  flower      http://127.0.0.1:{flower_port}")
    if simulated:
        lines.append(f"  providers   SIMULATED for {', '.join(simulated)} (no API key set); "
                     "results say \"simulated\": true")
        lines.append(f"  simulator   {settings.simulator_url}   (GET /_sim/stats)")
    lines += ["", "Try:  tidegate submit echo --input '{\"text\": \"hi\", \"sleep_s\": 2}' --wait",
              "Stop: Ctrl-C", ""]
    for line in lines:
        sup.say(line)
