"""compose/grafana-dashboard.json and compose/alerts.yml parse, and name only metrics the
gateway serves (neither is run against a Grafana or Prometheus here: docs/operations.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from realtime import metrics

ROOT = Path(__file__).resolve().parent.parent
# A family's samples: counters as _total, histograms as _bucket/_sum/_count.
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")


def served() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and hasattr(value, "_name"):
            for family in describe():
                names |= {family.name + suffix for suffix in SUFFIXES}
    return names


def named(expr: str) -> set[str]:
    return set(re.findall(r"\brealtime_[a-z_]+", expr))


def test_the_dashboard_is_json_naming_served_metrics() -> None:
    dashboard = json.loads((ROOT / "compose" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*map(named, exprs))
    assert used - served() == set()
    # Every documented metric has a panel.
    documented = named((ROOT / "docs" / "operations.md").read_text())
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert {n for n in documented if n in served()} - families - used == set()


def test_the_alert_rules_are_yaml_naming_served_metrics() -> None:
    rules = yaml.safe_load((ROOT / "compose" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs
    assert set().union(*map(named, exprs)) - served() == set()


def families() -> set[str]:
    """Each metric's family name (a counter's without ``_total``)."""
    return {n for n in served() if not n.endswith(SUFFIXES[1:])}


def test_every_served_metric_is_documented() -> None:
    documented = named((ROOT / "docs" / "operations.md").read_text())
    missing = {n for n in families() if n not in documented and n + "_total" not in documented}
    assert missing == set()
