"""The shipped Grafana dashboard and Prometheus config only name metrics (and labels) that
Tidegate really exports: a renamed metric breaks this test, not somebody's chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import tidegate.adapters.metrics
import tidegate.llm.metrics  # noqa: F401  (registers the gateway's counters)
from tidegate.adapters.metrics import SystemCollector
from tidegate.api.event_metrics import DeliveriesCollector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tidegate.json"
METRIC = re.compile(r"\btidegate_[a-z0-9_]+\b")
BY = re.compile(r"\bby\s*\(([^)]*)\)")


class _Stats:
    queues = [{"name": "high", "ready": 1, "unacked": 0}]
    workers = [{"name": "w1"}]


def _lane() -> dict:
    return {"lane": "openai:gpt-4o-mini", "in_flight": 1, "waiting": {"high": 1},
            "usage_1m": {"requests": 3}, "limits": {"rpm": 60}, "rate_factor": 1.0,
            "paused_for_s": 0.0}


def exported() -> dict[str, set[str]]:
    """Every sample name Tidegate exports (API, workers, system gauges), with its labels."""
    families = list(REGISTRY.collect())
    families += SystemCollector(counts=lambda: {"queued": 1}, queues=_Stats,
                                lanes=lambda: [_lane()]).collect()
    families += DeliveriesCollector(lambda: {"delivered": 1}).collect()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",), "summary": ("_count", "_sum")}
    names: dict[str, set[str]] = {}
    for fam in families:
        labels = set(getattr(fam, "_labelnames", ()))
        labels |= {k for s in fam.samples for k in s.labels}
        for suffix in suffixes.get(fam.type, ("",)):
            names[fam.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for metric in REGISTRY._collector_to_names:  # labelled metrics with no sample yet
        if hasattr(metric, "_labelnames"):
            for name in REGISTRY._collector_to_names[metric]:
                names.setdefault(name, set()).update(metric._labelnames)
                if name.endswith("_bucket"):
                    names[name].add("le")
    return names


def queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in board["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    return exprs


def test_the_dashboard_is_valid_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "tidegate" and board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("expr", queries())
def test_every_metric_and_label_the_dashboard_queries_exists(expr: str) -> None:
    names = exported()
    used = METRIC.findall(expr)
    assert used, expr
    missing = [m for m in used if m not in names]
    assert not missing, f"{expr}: not exported: {missing}"
    labels = set().union(*(names[m] for m in used))
    for group in BY.findall(expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            assert label in labels, f"{expr}: no metric in it has the label {label!r}"


def test_the_contract_names_are_all_charted() -> None:
    charted = {m for e in queries() for m in METRIC.findall(e)}
    for name in ("tidegate_jobs_submitted_total", "tidegate_jobs_completed_total",
                 "tidegate_jobs_failed_total", "tidegate_jobs_retried_total",
                 "tidegate_job_duration_seconds_bucket", "tidegate_http_requests_total",
                 "tidegate_http_request_duration_seconds_bucket", "tidegate_llm_tokens_total",
                 "tidegate_llm_cost_usd_total"):
        assert name in charted, name


def test_the_prometheus_config_scrapes_the_api_and_the_workers() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"tidegate-api", "tidegate-workers"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]
