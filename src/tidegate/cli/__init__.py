"""The `tidegate` command line: run the service (up, api, worker, beat, ...) and use it
(submit, status, jobs, cancel, retry, queues, ...)."""

from __future__ import annotations

try:
    import typer
except ModuleNotFoundError as exc:  # the client-only install
    raise SystemExit("the `tidegate` command runs the service: it needs the server extra, "
                     "`pip install 'tidegate[server]'`") from exc

from . import client, demo, schedules, serve

app = typer.Typer(
    name="tidegate", no_args_is_help=True, add_completion=False,
    help="Durable background LLM jobs. `tidegate up` runs everything on this machine; "
         "`tidegate submit echo --input '{\"text\": \"hi\"}' --wait` runs a job.",
    context_settings={"help_option_names": ["-h", "--help"]})

serve.register(app)
client.register(app)
schedules.register(app)
app.command(rich_help_panel="Use")(demo.demo)


def main() -> None:
    app()
