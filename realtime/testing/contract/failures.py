"""Contract cases that stop and start the server: refusal while down, recovery after."""

from __future__ import annotations

import asyncio

import pytest

from realtime.errors import BrokerError
from realtime.testing.contract.base import ContractBase
from realtime.testing.waiting import wait_until_async


class FailureCases(ContractBase):
    @pytest.mark.asyncio
    async def test_publish_to_a_stopped_server_raises(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        a, _ = await started()
        await self.stop_server()
        try:

            async def refused() -> bool:
                try:
                    await asyncio.wait_for(
                        a.publish("broadcast", channel, b"x"), self.recovery_timeout
                    )
                except BrokerError:
                    return True
                return False

            # Some clients buffer briefly; within the bound, a publish must be refused.
            await wait_until_async(
                refused,
                self.recovery_timeout,
                interval=0.2,
                message="a publish refused with the MQ down",
            )
            await self._until(lambda: not a.ready, self.recovery_timeout, "not ready while down")
        finally:
            await self.start_server()

    @pytest.mark.asyncio
    async def test_recovers_after_server_restart(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        await b.subscribe("broadcast", channel)
        await self.stop_server()
        await self._until(lambda: not b.ready, self.recovery_timeout, "subscriber not ready")
        await self.start_server()
        await self._until(lambda: a.ready and b.ready, self.recovery_timeout, "ready again")
        sent = 0

        async def delivered() -> bool:
            nonlocal sent
            await a.publish("broadcast", channel, b"after %d" % sent)
            sent += 1
            arrived: bool = await inbox.arrived(lambda: bool(inbox.on("broadcast", channel)), 0.5)
            return arrived

        # Publishing resumes by itself; the subscription was restored without our help.
        await wait_until_async(
            delivered,
            self.recovery_timeout,
            interval=0.2,
            ignore=(BrokerError,),
            message="a delivery after the restart",
        )
        assert inbox.on("broadcast", channel)[0].startswith(b"after ")
