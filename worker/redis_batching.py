"""An asyncio Redis client that sends the commands of concurrent deliveries in one round trip.

Every command (and every MULTI/EXEC block) issued while the event loop runs one iteration — one
per delivery in flight: claim, ledger look-up, breaker, limiter, record — is queued and written
in one pipelined send on the next iteration, so sixty deliveries in flight cost one send and one
read instead of sixty of each. Each caller awaits its own reply and sees its own errors; a
coroutine's commands keep their order, and a MULTI/EXEC block stays one atomic block.

Loopback syscalls dominated a delivery's CPU cost before this (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection
from redis.exceptions import ExecAbortError, ResponseError

__all__ = ["BatchingRedis"]

_Command = tuple[tuple[Any, ...], Any]  # (arguments, options), as redis-py stacks them


@dataclass
class _Unit:
    """One awaited thing in a batch: a single command, or a MULTI/EXEC block of commands."""

    commands: Sequence[_Command]
    transaction: bool
    future: asyncio.Future[Any]
    raise_on_error: bool = True
    wire: list[tuple[Any, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        args = [command[0] for command in self.commands]
        self.wire = [("MULTI",), *args, ("EXEC",)] if self.transaction else args


class BatchingRedis(aioredis.Redis):
    """`redis.asyncio.Redis` whose commands and transactions are coalesced per loop iteration.

    Use it from one event loop only (the worker's loop thread). WATCH, scripts queued on a
    pipeline and non-transactional pipelines fall back to redis-py's own round trip.
    """

    def __init__(self, *args: Any, max_batch: int = 512, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list[_Unit] = []
        self._flush_scheduled = False
        self._max_batch = max_batch
        self._sending: set[asyncio.Task[None]] = set()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Queue one command for the next batch; return its parsed reply or raise its error."""
        return await self._submit([(args, options)], transaction=False)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        """Return a pipeline whose MULTI/EXEC block joins the next batch when executed."""
        return _BatchedPipeline(self, transaction, shard_hint)

    def _submit(
        self, commands: Sequence[_Command], *, transaction: bool, raise_on_error: bool = True
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        unit = _Unit(commands, transaction, loop.create_future(), raise_on_error)
        self._pending.append(unit)
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return unit.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)  # keep a reference until it is done
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Unit]) -> None:
        try:
            conn: Connection = await self.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException as error:  # Redis unreachable, or cancelled
            _fail(batch, error)
            if not isinstance(error, Exception):
                raise
            return
        try:
            await conn.retry.call_with_retry(
                lambda: self._exchange(conn, [u for u in batch if not u.future.done()]),
                lambda _: conn.disconnect(),
            )
        except BaseException as error:  # retries exhausted, or cancelled
            _fail(batch, error)
            if not isinstance(error, Exception):
                raise
        finally:
            await self.connection_pool.release(conn)

    async def _exchange(self, conn: Connection, batch: list[_Unit]) -> None:
        await conn.send_packed_command(conn.pack_commands(a for u in batch for a in u.wire))
        for unit in batch:
            if unit.transaction:
                reply = await self._read_transaction(conn, unit)
            else:
                reply = await self._read_single(conn, unit.commands[0])
            if unit.future.done():  # the caller gave up (cancelled)
                continue
            if isinstance(reply, Exception):
                unit.future.set_exception(reply)
            else:
                unit.future.set_result(reply)

    async def _read_single(self, conn: Connection, command: _Command) -> Any:
        args, options = command
        try:
            return await self.parse_response(conn, args[0], **options)
        except ResponseError as error:
            return error

    async def _read_transaction(self, conn: Connection, unit: _Unit) -> Any:
        """Read MULTI's, each QUEUED and EXEC's replies, as redis-py's transaction does."""
        errors: list[tuple[int, ResponseError]] = []
        try:
            await self.parse_response(conn, "_")
        except ResponseError as error:
            errors.append((0, error))
        for index, _ in enumerate(unit.commands):
            try:
                await self.parse_response(conn, "_")
            except ResponseError as error:
                errors.append((index, error))
        try:
            replies = await self.parse_response(conn, "_")
        except ExecAbortError as error:
            return errors[0][1] if errors else error
        for index, failure in errors:
            replies.insert(index, failure)
        if unit.raise_on_error:
            for reply in replies:
                if isinstance(reply, ResponseError):
                    return reply
        return [await self._callback(r, c) for r, c in zip(replies, unit.commands, strict=True)]

    async def _callback(self, reply: Any, command: _Command) -> Any:
        args, options = command
        if isinstance(reply, Exception) or args[0] not in self.response_callbacks:
            return reply
        options = {k: v for k, v in options.items() if k != "keys"}
        parsed = self.response_callbacks[args[0]](reply, **options)
        return await parsed if inspect.isawaitable(parsed) else parsed


class _BatchedPipeline(Pipeline):
    """A redis-py pipeline whose transaction is sent with the owner's next batch."""

    def __init__(self, owner: BatchingRedis, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(owner.connection_pool, owner.response_callbacks, transaction, shard_hint)
        self._owner = owner

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run the queued commands as one MULTI/EXEC block in the next batch."""
        batchable = self.is_transaction and not self.watching and not self.scripts
        if not batchable or not self.command_stack:
            return await super().execute(raise_on_error)
        try:
            stack = list(self.command_stack)
            future = self._owner._submit(stack, transaction=True, raise_on_error=raise_on_error)
            replies: list[Any] = await future
            return replies
        finally:
            await self.reset()  # type: ignore[no-untyped-call]


def _fail(batch: list[_Unit], error: BaseException) -> None:
    for unit in batch:
        if unit.future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            unit.future.cancel()
        else:
            unit.future.set_exception(error)
