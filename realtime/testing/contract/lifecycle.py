"""Contract cases: closing, starting against a down server, building from the settings."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from realtime.brokers.base import Broker
from realtime.config import load_settings
from realtime.errors import BrokerError, ConfigError
from realtime.testing.contract.base import ContractBase, Inbox


class LifecycleCases(ContractBase):
    @pytest.mark.asyncio
    async def test_close_twice_and_publish_after_close_raises(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        a, _ = await started()
        await a.close()
        await a.close()
        with pytest.raises(BrokerError):
            await a.publish("broadcast", channel, b"too late")

    @pytest.mark.asyncio
    async def test_close_leaves_no_resource_warning_and_no_task(self, channel) -> None:  # type: ignore[no-untyped-def]
        before = asyncio.all_tasks()

        async def use_and_close() -> None:
            broker = await self.make_broker()
            inbox = Inbox()
            await broker.start(inbox)
            await self._until(lambda: broker.ready, self.timeout, "broker ready after start")
            await broker.subscribe("broadcast", channel)
            await broker.publish("broadcast", channel, b"x")
            await inbox.wait_for(lambda: bool(inbox.items), self.timeout)
            await broker.close()

        def leftover() -> set[asyncio.Task[Any]]:
            return {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}

        with _resource_warnings() as caught:
            await use_and_close()  # the broker is garbage once this returns
            await self._until(lambda: not leftover(), self.timeout, "no task left after close()")
        assert caught == []

    @pytest.mark.asyncio
    async def test_start_against_a_down_server_is_bounded(self) -> None:
        async def start_and_close() -> None:
            broker = await self.make_unreachable_broker()
            try:
                await asyncio.wait_for(broker.start(Inbox()), self.start_timeout)
            except BrokerError:
                pass  # allowed: the gateway then exits with this error's one line
            except TimeoutError:
                pytest.fail(
                    f"start() against a down server did not return within "
                    f"{self.start_timeout:g}s: the gateway would exit (START_TIMEOUT_SECONDS)"
                )
            else:
                assert not broker.ready, "ready with nothing to connect to"
            finally:
                await broker.close()

        with _resource_warnings() as caught:
            await start_and_close()
        assert caught == []

    # --- settings -------------------------------------------------------------------------------

    def _settings(self, env: Mapping[str, str]) -> Any:
        if self.plugin is None:
            pytest.skip("this backend's test names no plugin (what its entry point names)")
        return load_settings({"PRESENCE_STORE": "memory", **env}, env_file=None)

    def test_from_settings_builds_a_broker_and_drops_it_cleanly(self) -> None:
        settings = self._settings(self.good_settings)
        # The gateway builds the broker once to check the settings before binding its port,
        # and drops it unstarted: that must cost nothing and leave nothing open.
        with _resource_warnings() as caught:
            broker = self.plugin.from_settings(settings)
            assert isinstance(broker, Broker)
            del broker
        assert caught == []

    def test_from_settings_names_each_bad_variable(self) -> None:
        if not self.bad_settings:
            pytest.skip("this backend's test lists no bad_settings")
        for variable, env in self.bad_settings.items():
            settings = self._settings({**self.good_settings, **env})
            with pytest.raises(ConfigError) as info:
                self.plugin.from_settings(settings)
            assert info.value.variable == variable, str(info.value)
            assert "\n" not in str(info.value), "the gateway prints it as one line"


@contextmanager
def _resource_warnings() -> Iterator[list[str]]:
    """Collect the ResourceWarnings (unclosed sockets, transports, clients) raised in the
    block and by a collection at its end, whatever the warning filters say."""
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always", ResourceWarning)
        yield caught
        gc.collect()
    caught.extend(str(r.message) for r in records if issubclass(r.category, ResourceWarning))
