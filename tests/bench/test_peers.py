"""The peers' benchmark (bench/peers.py): the table's rows, Centrifugo's configuration, the
seed's source, skipping what cannot be built, and the ratio to the best peer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import peers
from bench.run import parse_args


def case(key: str) -> peers.Case:
    return next(c for c in peers.CASES if c.key == key)


def test_the_table_has_the_issues_rows() -> None:
    assert [(c.scenario, c.window, c.broker, c.publish) for c in peers.CASES] == [
        ("F1", 2, "memory", "ws"),
        ("F1", 10, "memory", "ws"),
        ("F1", 10, "redis", "ws"),
        ("F1", 10, "redis", "http-pool"),
        ("F1", 10, "redis", "http-pipe"),
        ("F2", 0, "redis", "http"),
        ("C1", 0, "redis", "http"),
    ]
    assert len({c.key for c in peers.CASES}) == len(peers.CASES)


def test_the_seed_runs_only_on_redis_and_http_publish() -> None:
    runs = {c.key for c in peers.CASES if peers.serves("seed", c)}
    assert runs == {"F1-w10-redis-pool8", "F1-w10-redis-pipe", "F2-redis-http", "C1-redis"}
    assert all(peers.serves("centrifugo", c) and peers.serves("realtime", c) for c in peers.CASES)


def test_cases_are_chosen_by_scenario_and_key() -> None:
    assert [c.key for c in peers.select_cases(["F2", "C1"])] == ["F2-redis-http", "C1-redis"]
    keys = "F1-w2-memory-ws, F2-redis-http"
    assert [c.key for c in peers.select_cases(["F1"], keys)] == ["F1-w2-memory-ws"]
    with pytest.raises(SystemExit, match="unknown case"):
        peers.select_cases(["F1"], "F9")


def test_peers_are_named_and_checked() -> None:
    assert peers.parse_peers("Centrifugo, seed,seed") == ["centrifugo", "seed"]
    with pytest.raises(SystemExit, match="unknown peer"):
        peers.parse_peers("socketio")


def test_centrifugo_config_is_open_for_the_benchmark_only() -> None:
    cfg = peers.centrifugo_config(8123, None)
    assert cfg["http_server"] == {"address": "127.0.0.1", "port": 8123}
    assert cfg["client"]["insecure"] is True
    assert cfg["http_api"]["insecure"] is True
    ns = cfg["channel"]["without_namespace"]
    assert ns["allow_publish_for_client"] is True
    assert "engine" not in cfg  # memory
    redis = peers.centrifugo_config(8123, "redis://127.0.0.1:6400/0")
    assert redis["engine"] == {"type": "redis", "redis": {"address": ["redis://127.0.0.1:6400/0"]}}


def test_peer_servers_are_pinned_with_one_go_thread(tmp_path: Path) -> None:
    exe = tmp_path / "bin"
    srv, path = peers.peer_server("centrifugo", exe, None, "0", tmp_path)
    assert path == "/connection/websocket"
    assert srv.env["GOMAXPROCS"] == "1" and srv.cpu == "0"
    conf = Path(srv.cmd[srv.cmd.index("--config") + 1])
    assert f'"port": {srv.port}' in conf.read_text()
    seed, path = peers.peer_server("seed", exe, "redis://127.0.0.1:6400/0", "0", tmp_path)
    assert path == "/ws"
    assert seed.env["GOMAXPROCS"] == "1"
    assert seed.env["REDIS_ADDR"] == "127.0.0.1:6400"
    assert seed.env["SERVER_ADDR"] == f"127.0.0.1:{seed.port}"
    with pytest.raises(ValueError, match="Redis"):
        peers.peer_server("seed", exe, None, "0", tmp_path)
    # Given after run.scenario_args' own flags, these win (Go's flag package keeps the last).
    assert peers.url_args(srv, "/connection/websocket", "centrifugo") == [
        "-proto",
        "centrifugo",
        "-url",
        f"ws://127.0.0.1:{srv.port}/connection/websocket",
        "-pub-url",
        f"ws://127.0.0.1:{srv.port}/connection/websocket",
    ]


def test_seed_source_kinds(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "cmd" / "server").mkdir(parents=True)
    (tree / "go.mod").write_text("module x\n")
    assert peers.seed_source_kind(tree) == "tree"
    bare = tmp_path / "bare"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    assert peers.seed_source_kind(bare) == "git"
    with pytest.raises(peers.Skip, match="neither"):
        peers.seed_source_kind(tmp_path)


def test_without_go_the_peers_are_skipped_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(peers, "CACHE", tmp_path)
    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    built = peers.build_peers(["centrifugo", "seed"], tmp_path)
    assert built == {}
    err = capsys.readouterr().err
    assert "skipping centrifugo: no Go toolchain" in err
    assert "skipping seed: no Go toolchain" in err


def test_a_cached_centrifugo_is_not_built_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    exe = tmp_path / f"centrifugo-{peers.CENTRIFUGO_VERSION}" / "centrifugo"
    exe.parent.mkdir()
    exe.write_text("")
    monkeypatch.setattr(peers.shutil, "which", lambda name: None)  # a build would fail
    assert peers.centrifugo_binary(tmp_path) == exe


def test_a_failed_build_is_a_skip_naming_the_error(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "cmd" / "server").mkdir(parents=True)
    (tree / "go.mod").write_text("module x\n\ngo 1.22\n")
    (tree / "cmd" / "server" / "main.go").write_text("package main\nfunc main() { nope }\n")
    if peers.shutil.which("go") is None:
        pytest.skip("no Go toolchain")
    with pytest.raises(peers.Skip, match=r"building the Go seed failed: .*nope"):
        peers.seed_binary(tree, tmp_path / "cache")


def run_result(deliveries: float | None = None, error: str = "") -> dict[str, Any]:
    r: dict[str, Any] = {"loadgen": {"deliveries_per_s": deliveries}}
    if error:
        r["error"] = error
    return r


def test_ratio_is_to_the_best_peer_in_the_metrics_direction() -> None:
    assert peers.best_peer({"realtime": 5, "centrifugo": 3, "seed": 4}, "higher") == ("seed", 4)
    assert peers.best_peer({"realtime": 5, "centrifugo": 3, "seed": 4}, "lower") == (
        "centrifugo",
        3,
    )
    assert peers.best_peer({"realtime": 5, "centrifugo": None, "seed": None}, "higher") is None
    assert peers.best_peer({"realtime": 5, "centrifugo": 3}, "-") is None

    cases = {
        "F1-w10-redis-pipe": {
            "targets": {
                "realtime": {"runs": [run_result(100), run_result(300), run_result(200)]},
                "centrifugo": {"runs": [run_result(50), run_result(999, error="died")]},
                "seed": {"runs": [run_result(80)]},
            }
        }
    }
    rows = peers.summarize(cases, [case("F1-w10-redis-pipe")])
    row = next(r for r in rows if r["metric"] == "deliveries/s")
    assert row["realtime"] == 200  # the median
    assert row["centrifugo"] == 50  # a failed run is not a figure
    assert row["best_peer"] == "seed"
    assert row["ratio"] == pytest.approx(2.5)


def test_the_runner_takes_peers_options() -> None:
    args = parse_args(["--peers", "centrifugo,seed", "--seed-source", "/x", "--cases", "C1-redis"])
    assert (args.peers, args.seed_source, args.cases) == ("centrifugo,seed", Path("/x"), "C1-redis")
