"""GET /metrics of a real gateway while traffic flows: each documented metric moves as it
should; who may read it (METRICS); LOG_FORMAT=json's lines.

The gateways here run in this process and share prometheus-client's default registry, so every
check compares a scrape after the traffic with one before it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.server import logs
from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async

Sample = tuple[str, frozenset[tuple[str, str]]]
SECRET = "s" * 32


def parse(text: str) -> dict[Sample, float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(gateway: Gateway, **headers: str) -> dict[Sample, float]:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        answer = await http.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return parse(answer.text)


def value(samples: Mapping[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Moves:
    """Before/after differences of one gateway's metrics."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.before: dict[Sample, float] = {}

    async def start(self) -> None:
        self.before = await scrape(self.gateway)

    async def delta(self, name: str, **labels: str) -> float:
        now = await scrape(self.gateway)
        return value(now, name, **labels) - value(self.before, name, **labels)

    async def wait(self, name: str, expected: float, **labels: str) -> None:
        async def reached() -> bool:
            return await self.delta(name, **labels) == expected

        try:
            await wait_until_async(reached, 5, message=f"{name}{labels} moved by {expected}")
        except TimeoutError:
            raise AssertionError(
                f"{name}{labels} moved by {await self.delta(name, **labels)}, not {expected}"
            ) from None


async def test_a_batch_counts_one_http_publish_per_event_published(channel: str) -> None:
    key = "k" * 32
    async with run_gateway(make_settings(API_KEYS=key)) as gw:
        moves = Moves(gw)
        await moves.start()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            events = [{"channel": channel, "event": "e", "payload": i} for i in range(3)]
            answer = await http.post(
                "/api/batch", json={"events": events}, headers={"x-api-key": key}
            )
        assert answer.status_code == 200, answer.text
        assert await moves.delta("realtime_http_publishes_total") == 3


async def test_traffic_moves_connection_subscription_message_and_presence_metrics(
    channel: str,
) -> None:
    async with run_gateway(make_settings()) as gw:
        moves = Moves(gw)
        await moves.start()
        async with (
            ws_client(gw.ws_url + "?user_id=a") as a,
            ws_client(gw.ws_url + "?user_id=b") as b,
        ):
            await moves.wait("realtime_connections", 2)
            await moves.wait("realtime_connections_opened_total", 2)
            await a.subscribe(channel)
            await b.subscribe(channel)
            assert await moves.delta("realtime_subscriptions", kind="broadcast") == 2
            assert await moves.delta("realtime_subscriptions", kind="presence") == 2
            # Two subscribers, one channel served upstream per kind.
            assert await moves.delta("realtime_channels", kind="broadcast") == 1
            assert await moves.delta("realtime_channels", kind="presence") == 1
            assert await moves.delta("realtime_presence_syncs_total") == 2
            assert await moves.delta("realtime_client_frames_total", type="subscribe") == 2

            await b.request({"type": "presence_join", "channel": channel, "payload": {}})
            assert await moves.delta("realtime_presence_members") == 1
            # The join's presence event reaches both subscribers: one message in, two out.
            await moves.wait("realtime_messages_in_total", 1, kind="presence")
            await moves.wait("realtime_messages_out_total", 2, kind="presence")
            await a.expect("presence_join", channel=channel)
            await b.expect("presence_join", channel=channel)
            # An update is no new member.
            await b.request({"type": "presence_update", "channel": channel, "payload": {"x": 1}})
            assert await moves.delta("realtime_presence_members") == 1
            await a.expect("presence_update", channel=channel)
            await b.expect("presence_update", channel=channel)

            await a.request(
                {"type": "broadcast", "channel": channel, "event": "e", "payload": {"n": 1}}
            )
            await b.expect("broadcast", channel=channel)
            await moves.wait("realtime_messages_in_total", 1, kind="broadcast")
            assert await moves.delta("realtime_messages_out_total", kind="broadcast") == 2
            assert await moves.delta("realtime_client_frames_total", type="broadcast") == 1
            assert await moves.delta("realtime_publish_latency_seconds_count") == 1
            assert await moves.delta("realtime_delivery_latency_seconds_count") == 1

            async with httpx.AsyncClient(base_url=gw.url) as http:
                answer = await http.post(
                    "/api/event", json={"channel": channel, "event": "e", "payload": 2}
                )
                assert answer.status_code == 200
            await b.expect("broadcast", channel=channel)
            assert await moves.delta("realtime_http_publishes_total") == 1
            await moves.wait("realtime_messages_in_total", 2, kind="broadcast")
            assert await moves.delta("realtime_delivery_latency_seconds_count") == 2

            await a.send("{not json")
            while (await a.recv())["type"] != "error":
                pass  # the broadcasts before it
            assert await moves.delta("realtime_client_frames_total", type="refused") == 1

            await b.request({"type": "presence_leave", "channel": channel})
            assert await moves.delta("realtime_presence_members") == 0
            await a.ws.close(1000)
            await moves.wait("realtime_connections", 1)
            await moves.wait("realtime_connections_closed_total", 1, code="1000")
            assert await moves.delta("realtime_subscriptions", kind="broadcast") == 1
            assert await moves.delta("realtime_channels", kind="broadcast") == 1
        await moves.wait("realtime_connections", 0)
        await moves.wait("realtime_subscriptions", 0, kind="broadcast")
        await moves.wait("realtime_channels", 0, kind="presence")


async def test_a_close_code_outside_the_known_ones_counts_as_other() -> None:
    async with run_gateway(make_settings()) as gw:
        moves = Moves(gw)
        await moves.start()
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            await moves.wait("realtime_connections", 1)
            await a.ws.close(4321, "bye")
        await moves.wait("realtime_connections_closed_total", 1, code="other")
        now = await scrape(gw)
        assert not any(("code", "4321") in labels for _, labels in now)


async def test_a_member_closing_without_leaving_is_no_longer_counted(channel: str) -> None:
    async with run_gateway(make_settings()) as gw:
        moves = Moves(gw)
        await moves.start()
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            await a.request({"type": "presence_join", "channel": channel, "payload": {}})
            assert await moves.delta("realtime_presence_members") == 1
        await moves.wait("realtime_presence_members", 0)


async def test_flooding_counts_a_rate_limit_close() -> None:
    settings = make_settings(WS_MAX_FRAMES_PER_SECOND="5", WS_FRAME_BURST="5")
    async with run_gateway(settings) as gw:
        moves = Moves(gw)
        await moves.start()
        async with ws_client(gw.ws_url + "?user_id=flood") as flood:
            with pytest.raises(ConnectionClosed):
                for _ in range(200):
                    await flood.send({"type": "unsubscribe", "channel": "x"})
                while True:
                    await flood.recv()
        await moves.wait("realtime_rate_limit_closes_total", 1)
        await moves.wait("realtime_connections_closed_total", 1, code="4029")


async def test_a_slow_consumer_close_is_counted() -> None:
    settings = make_settings(WS_SEND_QUEUE_SIZE="8", WS_MAX_FRAME_BYTES="200000")
    async with run_gateway(settings) as gw:
        moves = Moves(gw)
        await moves.start()
        async with (
            ws_client(gw.ws_url + "?user_id=slow", max_queue=1) as slow,
            ws_client(gw.ws_url + "?user_id=pub") as pub,
        ):
            await slow.subscribe("firehose", "broadcast")
            frame = {
                "type": "broadcast",
                "channel": "firehose",
                "event": "e",
                "payload": "x" * 100_000,
            }
            for _ in range(400):
                await pub.send(frame)
                if gw.node.connections == 1:
                    break
            await moves.wait("realtime_slow_consumer_closes_total", 1)


async def test_history_recoveries_count_hits_and_misses() -> None:
    async with run_gateway(make_settings(HISTORY_CHANNELS="hist.*")) as gw:
        moves = Moves(gw)
        await moves.start()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            answer = await http.post(
                "/api/event", json={"channel": "hist.a", "event": "e", "payload": 1}
            )
        position = answer.json()
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            since = {"offset": 0, "epoch": position["epoch"]}
            await a.send(
                {"type": "subscribe", "channel": "hist.a", "listen": ["broadcast"], "since": since}
            )
            await a.expect("subscribed", recovered=True)
            assert await moves.delta("realtime_history_recoveries_total", result="hit") == 1
            bogus = {"offset": 0, "epoch": "another-epoch"}
            await a.send(
                {"type": "subscribe", "channel": "hist.a", "listen": ["broadcast"], "since": bogus}
            )
            await moves.wait("realtime_history_recoveries_total", 1, result="miss")
            assert await moves.delta("realtime_history_recoveries_total", result="hit") == 1


async def test_liveness_probes_report_their_round_trip() -> None:
    settings = make_settings(BROKER_PROBE_INTERVAL_SECONDS="0.05")
    started = time.time()
    async with run_gateway(settings) as gw:

        async def probed() -> bool:
            now = await scrape(gw)
            stamp = value(now, "realtime_broker_probe_last_ok_timestamp_seconds", kind="broadcast")
            return stamp >= started

        await wait_until_async(probed, 5, message="a probe came back")
        now = await scrape(gw)
        trip = value(now, "realtime_broker_probe_round_trip_seconds", kind="broadcast")
        assert 0 < trip < 2


async def test_no_label_names_a_channel_or_a_user(channel: str) -> None:
    async with run_gateway(make_settings()) as gw:
        async with ws_client(gw.ws_url + "?user_id=someone-unique") as a:
            await a.subscribe(channel)
            await a.request({"type": "broadcast", "channel": channel, "event": "e", "payload": 1})
            async with httpx.AsyncClient(base_url=gw.url) as http:
                text = (await http.get("/metrics")).text
    assert channel not in text
    assert "someone-unique" not in text


# --- who may read /metrics --------------------------------------------------------------------

FORWARDED = {"X-Forwarded-For": "203.0.113.9"}  # believed: 127.0.0.1 is a trusted proxy


async def test_metrics_answer_loopback_and_refuse_others_by_default() -> None:
    async with (
        run_gateway(make_settings()) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        assert (await http.get("/metrics")).status_code == 200
        refused = await http.get("/metrics", headers=FORWARDED)
        assert refused.status_code == 403
        assert "METRICS" in refused.json()["error"]
        # A page of another site, fetched through a browser on this host: loopback, but not
        # a scraper.
        from_a_page = await http.get("/metrics", headers={"Origin": "https://evil.example"})
        assert from_a_page.status_code == 403


async def test_an_api_key_opens_metrics_to_a_remote_scraper() -> None:
    settings = make_settings(API_KEYS="k" * 32 + ":orders.*")
    async with (
        run_gateway(settings) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        keyed = {**FORWARDED, "Authorization": "Bearer " + "k" * 32}
        assert (await http.get("/metrics", headers=keyed)).status_code == 200
        wrong = {**FORWARDED, "Authorization": "Bearer " + "w" * 32}
        assert (await http.get("/metrics", headers=wrong)).status_code == 403


async def test_metrics_open_and_off() -> None:
    async with (
        run_gateway(make_settings(METRICS="open")) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        assert (await http.get("/metrics", headers=FORWARDED)).status_code == 200
    async with (
        run_gateway(make_settings(METRICS="off")) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        answer = await http.get("/metrics")
        assert answer.status_code == 404
        assert "error" in answer.json()


# --- LOG_FORMAT=json ---------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record of the ``realtime`` and ``uvicorn`` loggers, through JsonFormatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("realtime", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield out
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_json_connection_lines_carry_the_fields_and_no_token(
    json_lines: io.StringIO,
) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET)
    # uvicorn's INFO line for the upgrade too: it would carry the token.
    async with run_gateway(make_settings(JWT_SECRET=SECRET), log_level="info") as gw:
        async with connect(f"{gw.ws_url}?token={token}") as ws:
            await asyncio.sleep(0.2)  # a duration to see
            await ws.close(4321, "bye")

        def closed_line() -> bool:
            return '"ws_closed"' in json_lines.getvalue()

        await wait_until_async(closed_line, 5, message="the close line")
    text = json_lines.getvalue()
    assert token not in text
    records = [json.loads(line) for line in text.splitlines()]
    [opened] = [r for r in records if r.get("event") == "ws_open"]
    [closed] = [r for r in records if r.get("event") == "ws_closed"]
    for record in (opened, closed):
        assert record["logger"] == "realtime.connections"
        assert record["level"] == "info"
        assert record["user"] == "alice"
        assert len(record["instance"]) == 12
        assert record["message"].startswith("ws ")
        assert record["ts"].endswith("+00:00")
    assert closed["instance"] == opened["instance"]
    assert closed["code"] == 4321
    assert 0.2 <= closed["duration"] < 3
    # uvicorn's upgrade line carried the token in its query string: redacted in JSON too.
    assert any("[redacted]" in r["message"] for r in records if r["logger"] == "uvicorn.error")


def test_json_formatter_redacts_tokens_in_fields_and_tracebacks() -> None:
    formatter = logs.JsonFormatter()
    try:
        raise ValueError("GET /ws?token=secret-one")
    except ValueError:
        record = logging.LogRecord(
            "realtime",
            logging.ERROR,
            __file__,
            1,
            "saw %s",
            ("/ws?access_token=secret-two",),
            sys.exc_info(),
        )
    record.path = "/ws?token=secret-three"
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert "secret" not in line, line
    assert entry["message"] == "saw /ws?access_token=[redacted]"
    assert entry["path"] == "/ws?token=[redacted]"
    assert "ValueError" in entry["exc"]
