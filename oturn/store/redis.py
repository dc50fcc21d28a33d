"""A session store in Redis (asyncio only; needs the ``redis`` extra).

Shared by the nodes of a cluster: any process that reaches the server sees every
session, and the writer lease works across them. ``import oturn`` never imports this
module (nor redis); ``oturn.store.redis`` imports redis-py when it is loaded.

Layout (``P`` is the ``prefix``, ``ID`` a session id)::

    P:schema          string   layout version ("1"); another value -> SchemaVersionError
    P:sessions        zset     ID scored by updated_at
    P:session:ID      hash     created_at updated_at parent fork_seq meta(JSON) owner expires signals events
    P:signals:ID      list     one msgpack array per signal: [seq, at, type, data]; seq n at index n-1
    P:events:ID       list     one msgpack array per event: [seq, cause, at, turn, type, data]; seq n at index n-1
    P:snapshots:ID    hash     signal_seq -> msgpack [signal_seq, event_seq, at, data]; the latest 2 are kept

Every write (create, append, snapshot, fork, acquire, release, delete) is one Lua
script, so it is checked and applied in one step with nothing interleaved and no
reader ever sees half of it; the checks and error messages are the ones every store
shares (:mod:`oturn.store._checks`). Floats reach Redis as Python
``repr`` strings and are stored verbatim (Lua never formats them), so timestamps
round-trip exactly. Nothing read back is ever imported or unpickled: records are
decoded by typed msgspec decoders, and an element that does not decode (or sits at
the wrong place) raises :class:`~oturn.CorruptRecordError` naming the session and seq.

redis-py's automatic retries are turned off for the client the store creates: a retried
``append`` whose first attempt was applied but whose reply was lost would be refused as
a gap. Connection failures surface as :class:`~oturn.StoreError` instead; retry at the
caller, after re-reading :meth:`RedisStore.info`. Not for Redis Cluster (a script
touches a session's keys and the shared index together).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Final, cast

import msgspec
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from oturn._exceptions import (
    ClosedError,
    CorruptRecordError,
    SchemaVersionError,
    SessionLockedError,
    StoreError,
    UsageError,
)
from oturn.store._checks import (
    check_batch,
    check_continues,
    check_fork,
    check_lease_for_append,
    check_meta,
    check_now,
    check_prune,
    check_read,
    check_session_id,
    check_snapshot,
    check_ttl,
    no_session,
    prune_victims,
)
from oturn.store.lease import holder_is_dead
from oturn.store.records import EventRecord, SessionInfo, SignalRecord, SnapshotRecord

__all__ = ["RedisStore"]

SCHEMA_VERSION: Final = 1
SNAPSHOTS_KEPT: Final = 2

_SignalTuple = tuple[int, float, str, bytes]
_EventTuple = tuple[int, int, float, str | None, str, bytes]
_SnapshotTuple = tuple[int, int, float, bytes]

_encode = msgspec.msgpack.Encoder().encode
_decode_signal = msgspec.msgpack.Decoder(_SignalTuple).decode
_decode_event = msgspec.msgpack.Decoder(_EventTuple).decode
_decode_snapshot = msgspec.msgpack.Decoder(_SnapshotTuple).decode
_encode_meta = msgspec.json.Encoder().encode
_decode_meta = msgspec.json.Decoder(dict[str, str]).decode

# -- Lua ----------------------------------------------------------------------------------
# Scripts answer with a table whose first element says what happened; errors of the
# caller's making are not Redis errors. ARGV values that are floats are stored verbatim.

_PUSH_CHUNK: Final = 1000  # elements per RPUSH inside a script (Lua's unpack has a stack limit)

_CREATE = """
-- KEYS: session, signals, events, snapshots, index
-- ARGV: id, now, meta
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'created_at', ARGV[2], 'updated_at', ARGV[2], 'meta', ARGV[3],
  'signals', 0, 'events', 0)
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
return {'ok'}
"""

_APPEND = f"""
-- KEYS: session, signals, events, index
-- ARGV: id, owner ('' = unchecked), n_signals, first signal seq, n_events, first event seq,
--       latest at ('' = none), then the encoded signals and events
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return {{'missing'}} end
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', h, 'owner')
  if cur ~= ARGV[2] then
    return {{'locked', cur or '', redis.call('HGET', h, 'expires') or ''}}
  end
end
local ns, ne = tonumber(ARGV[3]), tonumber(ARGV[5])
local have_s = tonumber(redis.call('HGET', h, 'signals'))
local have_e = tonumber(redis.call('HGET', h, 'events'))
if ns > 0 and tonumber(ARGV[4]) ~= have_s + 1 then return {{'gap', 'signal', have_s}} end
if ne > 0 and tonumber(ARGV[6]) ~= have_e + 1 then return {{'gap', 'event', have_e}} end
local i = 8
local function push(key, n)
  local stop = i + n - 1
  while i <= stop do
    local j = math.min(i + {_PUSH_CHUNK - 1}, stop)
    redis.call('RPUSH', key, unpack(ARGV, i, j))
    i = j + 1
  end
end
push(KEYS[2], ns)
push(KEYS[3], ne)
if ns > 0 then redis.call('HINCRBY', h, 'signals', ns) end
if ne > 0 then redis.call('HINCRBY', h, 'events', ne) end
if ARGV[7] ~= '' and tonumber(ARGV[7]) > tonumber(redis.call('HGET', h, 'updated_at')) then
  redis.call('HSET', h, 'updated_at', ARGV[7])
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
end
return {{'ok'}}
"""

_SNAPSHOT = """
-- KEYS: session, snapshots, index
-- ARGV: signal_seq, event_seq, encoded snapshot, how many to keep, at, id
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local have_s = tonumber(redis.call('HGET', KEYS[1], 'signals'))
local have_e = tonumber(redis.call('HGET', KEYS[1], 'events'))
if tonumber(ARGV[1]) > have_s or tonumber(ARGV[2]) > have_e then return {'range', have_s, have_e} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if tonumber(ARGV[5]) > tonumber(redis.call('HGET', KEYS[1], 'updated_at')) then
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[5])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
end
local keep = tonumber(ARGV[4])
if redis.call('HLEN', KEYS[2]) > keep then
  local fields = redis.call('HKEYS', KEYS[2])
  table.sort(fields, function(a, b) return (tonumber(a) or -1) < (tonumber(b) or -1) end)
  for n = 1, #fields - keep do redis.call('HDEL', KEYS[2], fields[n]) end
end
return {'ok'}
"""

_FORK = f"""
-- KEYS: source session, signals, events, snapshots; new session, signals, events, snapshots; index
-- ARGV: new id, at_seq, now, source id
local at = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {{'missing'}} end
if redis.call('EXISTS', KEYS[5]) == 1 then return {{'exists'}} end
local have = tonumber(redis.call('HGET', KEYS[1], 'signals'))
if at > have then return {{'range', have}} end
-- an event is the msgpack array [seq, cause, ...]: read its two leading unsigned ints
-- (Redis 7.0's cmsgpack cannot decode the bin data that follows)
local function uint(s, pos)
  local b = s:byte(pos)
  if b < 0x80 then return b, pos + 1 end
  local width = ({{[0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8}})[b]
  if not width then error('not an unsigned int') end
  local v = 0
  for k = 1, width do v = v * 256 + s:byte(pos + k) end
  return v, pos + width + 1
end
local function cause_of(s, seq)
  if s:byte(1) ~= 0x96 then error('not an event') end
  local stored, pos = uint(s, 2)
  if stored ~= seq then error('misplaced') end
  return (uint(s, pos))
end
-- events are appended after the signals that caused them: find how many lead with cause <= at
local lo, hi = 0, tonumber(redis.call('HGET', KEYS[1], 'events'))
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  local ok, cause = pcall(cause_of, redis.call('LINDEX', KEYS[3], mid) or '', mid + 1)
  if not ok then return {{'corrupt', mid + 1}} end
  if cause <= at then lo = mid + 1 else hi = mid end
end
local nev = lo
redis.call('DEL', KEYS[6], KEYS[7], KEYS[8])
local function copy(src, dst, n)
  local start = 0
  while start < n do
    local stop = math.min(start + {_PUSH_CHUNK}, n) - 1
    redis.call('RPUSH', dst, unpack(redis.call('LRANGE', src, start, stop)))
    start = stop + 1
  end
end
copy(KEYS[2], KEYS[6], at)
copy(KEYS[3], KEYS[7], nev)
local snaps = redis.call('HGETALL', KEYS[4])
for n = 1, #snaps, 2 do
  if tonumber(snaps[n]) <= at then redis.call('HSET', KEYS[8], snaps[n], snaps[n + 1]) end
end
redis.call('HSET', KEYS[5], 'created_at', ARGV[3], 'updated_at', ARGV[3],
  'meta', redis.call('HGET', KEYS[1], 'meta') or '{{}}', 'parent', ARGV[4], 'fork_seq', at,
  'signals', at, 'events', nev)
redis.call('ZADD', KEYS[9], ARGV[3], ARGV[1])
return {{'ok', nev}}
"""

_ACQUIRE = """
-- KEYS: session
-- ARGV: owner, now, expires, holder that may be taken over ('' = none)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local cur = redis.call('HGET', KEYS[1], 'owner')
local exp = redis.call('HGET', KEYS[1], 'expires')
local live = exp and tonumber(exp) and tonumber(exp) > tonumber(ARGV[2])
if cur and cur ~= ARGV[1] and cur ~= ARGV[4] and live then
  return {'locked', cur, exp}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'expires', ARGV[3])
return {'ok'}
"""

_RELEASE = """
-- KEYS: session;  ARGV: owner
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'owner', 'expires')
  return 1
end
return 0
"""

_DELETE = """
-- KEYS: session, signals, events, snapshots, index
-- ARGV: id, then for prune: the updated_at it was chosen by and now ('' = delete whatever it is)
if ARGV[2] ~= '' then
  -- prune: spare a session updated, or leased, since it was chosen
  if redis.call('HGET', KEYS[1], 'updated_at') ~= ARGV[2] then return 0 end
  local exp = redis.call('HGET', KEYS[1], 'expires')
  if redis.call('HEXISTS', KEYS[1], 'owner') == 1 and exp and tonumber(exp) > tonumber(ARGV[3]) then return 0 end
end
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
return existed
"""


# -- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn redis-py's (and the socket layer's) failures into StoreError, keeping the cause."""
    try:
        yield
    except redis.exceptions.ConnectionError as exc:
        raise StoreError(f"Redis connection failed while {what}: {exc}") from exc
    except redis.exceptions.TimeoutError as exc:
        raise StoreError(f"Redis timed out while {what}: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise StoreError(f"Redis failed while {what}: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"Redis connection failed while {what}: {exc}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate in an id or owner cannot become a key
        raise UsageError(f"cannot store {exc.object!r} while {what}: not encodable as UTF-8") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional_float(value: Any) -> float | None:
    return float(value) if value else None


class _Row(msgspec.Struct, frozen=True):
    """A session hash, read."""

    info: SessionInfo
    updated_at_text: bytes  # as stored, for the compare-and-delete of prune
    holder: str | None
    expires: float | None

    @classmethod
    def parse(cls, session: str, fields: dict[bytes, bytes]) -> _Row:
        try:
            parent = fields.get(b"parent")
            fork_seq = fields.get(b"fork_seq")
            holder = fields.get(b"owner")
            info = SessionInfo(
                id=session,
                created_at=float(fields[b"created_at"]),
                updated_at=float(fields[b"updated_at"]),
                signals=int(fields[b"signals"]),
                events=int(fields[b"events"]),
                parent=parent.decode() if parent is not None else None,
                fork_seq=int(fork_seq) if fork_seq is not None else None,
                meta=_decode_meta(fields.get(b"meta", b"{}")),
            )
            return cls(
                info,
                fields[b"updated_at"],
                holder.decode() if holder is not None else None,
                _optional_float(fields.get(b"expires")),
            )
        except (KeyError, ValueError, UnicodeDecodeError, msgspec.DecodeError) as exc:
            raise CorruptRecordError(f"unreadable session summary ({exc!r})", session=session, seq=None) from exc


class RedisStore:
    """A :class:`~oturn.store.Store` in Redis. **asyncio only** (redis-py's asyncio client).

    Open it with ``async with RedisStore(url) as store:`` (or ``await store.open()`` /
    ``await store.close()``); nested ``async with`` blocks share one client, which closes
    when the outermost ends.

    ``url`` is a ``redis://`` / ``rediss://`` / ``unix://`` URL; ``prefix`` starts every
    key, so several stores (or applications) can share one database. ``client`` is an
    existing ``redis.asyncio.Redis`` (created with ``decode_responses=False``); the store
    then neither configures nor closes it. ``timeout`` bounds connecting and each reply
    (seconds) for the client the store creates.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "oturn",
        client: redis.asyncio.Redis | None = None,
        timeout: float | None = 10.0,
    ) -> None:
        if not prefix:
            raise UsageError("the key prefix must not be empty")
        if client is not None and client.connection_pool.connection_kwargs.get("decode_responses"):
            raise UsageError("RedisStore needs a client created with decode_responses=False (records are bytes)")
        self.url = url
        self.prefix = prefix
        self._given = client
        self._timeout = timeout
        self._client: redis.asyncio.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._entered = 0

    def __repr__(self) -> str:
        where = "client" if self._given is not None else self.url
        return f"<RedisStore {where} prefix={self.prefix!r}{'' if self._client else ' closed'}>"

    # -- opening and closing ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check the layout version (a no-op
        if open). ``SchemaVersionError`` for keys written by a newer layout, ``StoreError`` if
        the server cannot be reached."""
        if self._client is not None:
            return
        if self._given is not None:
            client = self._given
        else:
            try:
                client = redis.asyncio.Redis.from_url(
                    self.url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            except ValueError as exc:
                raise UsageError(f"not a usable Redis URL: {self.url!r} ({exc})") from exc
        scripts = {
            name: client.register_script(text)
            for name, text in (
                ("create", _CREATE),
                ("append", _APPEND),
                ("snapshot", _SNAPSHOT),
                ("fork", _FORK),
                ("acquire", _ACQUIRE),
                ("release", _RELEASE),
                ("delete", _DELETE),
            )
        }
        try:
            with _translated("opening the store"):
                await client.set(self._key("schema"), SCHEMA_VERSION, nx=True)
                found = await client.get(self._key("schema"))
            try:
                version = int(cast("bytes", found))
            except (TypeError, ValueError):
                raise StoreError(f"{self._key('schema')} holds {found!r}, not a schema version") from None
            if version != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the Redis keys under {self.prefix!r} use layout version {version}; this oturn reads "
                    f"{SCHEMA_VERSION}",
                    found=version,
                    supported=SCHEMA_VERSION,
                )
        except BaseException:
            if self._given is None:
                with contextlib.suppress(Exception):
                    await client.aclose()
            raise
        self._client, self._scripts = client, scripts

    async def close(self) -> None:
        """Close the connections the store opened (a client passed in stays open); a no-op if closed."""
        client, self._client = self._client, None
        self._entered = 0
        if client is not None and self._given is None:
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await client.aclose()

    async def __aenter__(self) -> RedisStore:
        await self.open()
        self._entered += 1
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._entered -= 1
        if self._entered <= 0:
            await self.close()

    # -- keys -------------------------------------------------------------------------------

    def _key(self, kind: str, session: str | None = None) -> str:
        return f"{self.prefix}:{kind}" if session is None else f"{self.prefix}:{kind}:{session}"

    def _session_keys(self, session: str) -> list[str]:
        return [self._key(kind, session) for kind in ("session", "signals", "events", "snapshots")]

    @property
    def _redis(self) -> redis.asyncio.Redis:
        client = self._client
        if client is None:
            raise ClosedError(f"the Redis store {self.prefix!r} is not open (use 'async with store:')")
        return client

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[Any], what: str) -> Any:
        client = self._redis
        with _translated(what):
            return await self._scripts[script](keys=keys, args=args, client=client)

    # -- sessions -------------------------------------------------------------------------

    async def create(self, session: str, *, meta: dict[str, str] | None = None, now: float) -> None:
        """Create an empty session (``UsageError`` if it exists)."""
        check_session_id(session)
        check_now(now)
        encoded_meta = _encode_meta(check_meta(meta))
        keys = [*self._session_keys(session), self._key("sessions")]
        answer = await self._run("create", keys, [session, float(now), encoded_meta], f"creating {session!r}")
        if _text(answer[0]) == "exists":
            raise UsageError(f"session {session!r} already exists in this store")

    async def info(self, session: str) -> SessionInfo | None:
        """The session's summary, or ``None`` if there is no such session."""
        with _translated(f"reading session {session!r}"):
            fields = cast("dict[bytes, bytes]", await self._redis.hgetall(self._key("session", session)))
        return _Row.parse(session, fields).info if fields else None

    async def _rows(self) -> list[_Row]:
        client = self._redis
        with _translated("listing sessions"):
            ids = [_text(member) for member in await client.zrange(self._key("sessions"), 0, -1)]
            async with client.pipeline(transaction=False) as pipe:
                for session in ids:
                    pipe.hgetall(self._key("session", session))
                found = await pipe.execute()
        return [_Row.parse(session, fields) for session, fields in zip(ids, found, strict=True) if fields]

    async def sessions(self) -> list[SessionInfo]:
        """Every session, oldest first (by creation time, then id)."""
        infos = [row.info for row in await self._rows()]
        infos.sort(key=lambda info: (info.created_at, info.id))
        return infos

    async def delete(self, session: str) -> bool:
        """Delete a session and everything it holds; ``False`` if there was none."""
        keys = [*self._session_keys(session), self._key("sessions")]
        return bool(await self._run("delete", keys, [session, "", ""], f"deleting {session!r}"))

    async def prune(self, *, older_than: float | None = None, keep: int | None = None, now: float) -> list[str]:
        """Delete sessions not updated since ``now - older_than`` seconds and/or beyond the ``keep``
        most recently updated, sparing those whose lease is live; return the deleted ids (least
        recently updated first).

        Each deletion re-checks its session in the same step: one updated or leased since the
        listing is spared.
        """
        check_prune(older_than, keep, now)
        rows = {row.info.id: row for row in await self._rows()}
        victims = prune_victims(
            ((r.info.id, r.info.created_at, r.info.updated_at, r.holder, r.expires) for r in rows.values()),
            older_than=older_than,
            keep=keep,
            now=now,
        )
        deleted: list[str] = []
        for session in victims:
            keys = [*self._session_keys(session), self._key("sessions")]
            args = [session, rows[session].updated_at_text, float(now)]
            if await self._run("delete", keys, args, f"pruning {session!r}"):
                deleted.append(session)
        return deleted

    async def fork(self, session: str, new: str, *, at_seq: int, now: float) -> None:
        """Copy signals ``1..at_seq`` (and the events and snapshots they caused) into a new session.

        The copy is one atomic step on the server (no record travels through the client).
        """
        check_session_id(new)
        check_now(now)
        if isinstance(at_seq, bool) or not isinstance(at_seq, int) or at_seq < 0:
            source = await self.info(session)
            if source is None:
                raise no_session(session)
            check_fork(session, new, at_seq, source.signals)
        keys = [*self._session_keys(session), *self._session_keys(new), self._key("sessions")]
        answer = await self._run("fork", keys, [new, at_seq, float(now), session], f"forking {session!r}")
        status = _text(answer[0])
        if status == "missing":
            raise no_session(session)
        if status == "exists":
            raise UsageError(f"cannot fork session {session!r} into {new!r}: {new!r} already exists")
        if status == "range":
            check_fork(session, new, at_seq, int(answer[1]))
        if status == "corrupt":
            raise CorruptRecordError("unreadable event while forking", session=session, seq=int(answer[1]))

    # -- ownership ----------------------------------------------------------------------------

    async def acquire(self, session: str, owner: str, *, ttl: float, now: float) -> None:
        """Take or renew the writer lease (``SessionLockedError`` if another owner holds it).

        The lease is free when nobody holds it, once it expired (``now >= expires``), or when
        its holder ("hostname:pid:random") is a process of this host that no longer exists.
        """
        check_session_id(owner)
        check_ttl(ttl)
        check_now(now)
        key = self._key("session", session)
        args: list[Any] = [owner, float(now), float(now + ttl), ""]
        answer = await self._run("acquire", [key], args, f"acquiring {session!r}")
        status = _text(answer[0])
        if status == "locked":
            holder = _text(answer[1])
            if holder_is_dead(holder):
                # compare-and-set: only that dead holder is taken over, not whoever replaced it meanwhile
                args[3] = holder
                answer = await self._run("acquire", [key], args, f"acquiring {session!r}")
                status = _text(answer[0])
        if status == "missing":
            raise no_session(session)
        if status == "locked":
            raise SessionLockedError(session, _text(answer[1]), float(answer[2]))

    async def release(self, session: str, owner: str) -> None:
        """Give the lease up (a no-op if ``owner`` does not hold it)."""
        await self._run("release", [self._key("session", session)], [owner], f"releasing {session!r}")

    # -- the log ------------------------------------------------------------------------------

    async def append(
        self, session: str, signals: Sequence[SignalRecord], events: Sequence[EventRecord], *, owner: str | None = None
    ) -> None:
        """Append a batch atomically; seqs must continue the log without gaps (``StoreError`` otherwise).

        With ``owner``, the write is refused (``SessionLockedError``) unless ``owner`` holds the
        lease (checked by name: the store has no clock, so a lapsed lease that nobody took over
        still counts).
        """
        if signals:
            check_batch(session, "signal", signals)
        if events:
            check_batch(session, "event", events)
        latest = max(
            (batch[-1].at for batch in (signals, events) if batch),  # the memory store's rule
            default=None,
        )
        args: list[Any] = [
            session,
            "" if owner is None else owner,
            len(signals),
            signals[0].seq if signals else 0,
            len(events),
            events[0].seq if events else 0,
            "" if latest is None else float(latest),
        ]
        args.extend(_encode((s.seq, s.at, s.type, s.data)) for s in signals)
        args.extend(_encode((e.seq, e.cause, e.at, e.turn, e.type, e.data)) for e in events)
        keys = [
            self._key("session", session),
            self._key("signals", session),
            self._key("events", session),
            self._key("sessions"),
        ]
        answer = await self._run("append", keys, args, f"appending to {session!r}")
        status = _text(answer[0])
        if status == "ok":
            return
        if status == "missing":
            raise no_session(session)
        if status == "locked":
            check_lease_for_append(session, owner, _text(answer[1]) or None, _optional_float(answer[2]))
        if status == "gap":
            kind = _text(answer[1])
            first = (signals if kind == "signal" else events)[0].seq
            check_continues(session, kind, first, int(answer[2]))
        raise StoreError(f"unexpected answer from the append script: {answer!r}")

    async def snapshot(self, session: str, record: SnapshotRecord) -> None:
        """Keep a snapshot (the latest two, by ``signal_seq``, are kept; one at the same seq is replaced).

        Refused (``UsageError``) unless the signals and events it follows are stored.
        """
        if record.signal_seq < 0 or record.event_seq < 0:
            check_snapshot(session, record.signal_seq, record.event_seq, 0, 0)
        blob = _encode((record.signal_seq, record.event_seq, record.at, record.data))
        keys = [self._key("session", session), self._key("snapshots", session), self._key("sessions")]
        args = [record.signal_seq, record.event_seq, blob, SNAPSHOTS_KEPT, float(record.at), session]
        answer = await self._run("snapshot", keys, args, f"writing a snapshot of {session!r}")
        status = _text(answer[0])
        if status == "missing":
            raise no_session(session)
        if status == "range":
            check_snapshot(session, record.signal_seq, record.event_seq, int(answer[1]), int(answer[2]))

    async def latest_snapshot(self, session: str) -> SnapshotRecord | None:
        """The snapshot with the highest ``signal_seq``, if any."""
        with _translated(f"reading snapshots of {session!r}"):
            stored = cast("dict[bytes, bytes]", await self._redis.hgetall(self._key("snapshots", session)))
        if not stored:
            return None
        try:
            field, blob = max(stored.items(), key=lambda item: int(item[0]))
        except ValueError as exc:
            raise CorruptRecordError("unreadable snapshot index", session=session, seq=None) from exc
        seq = int(field)
        try:
            signal_seq, event_seq, at, data = _decode_snapshot(blob)
        except msgspec.DecodeError as exc:
            raise CorruptRecordError(f"unreadable snapshot ({exc})", session=session, seq=seq) from exc
        if signal_seq != seq:
            raise CorruptRecordError(f"snapshot filed under seq {seq} is for {signal_seq}", session=session, seq=seq)
        return SnapshotRecord(signal_seq, event_seq, at, data)

    async def _range(self, kind: str, session: str, after: int, limit: int | None) -> list[bytes]:
        check_read(after, limit)
        if limit == 0:
            return []
        stop = -1 if limit is None else after + limit - 1
        with _translated(f"reading {kind} of {session!r}"):
            found = await self._redis.lrange(self._key(kind, session), after, stop)
        return cast("list[bytes]", found)

    async def signals(self, session: str, *, after: int = 0, limit: int | None = None) -> list[SignalRecord]:
        """Signals with ``seq > after``, in order (at most ``limit``)."""
        out: list[SignalRecord] = []
        for seq, blob in enumerate(await self._range("signals", session, after, limit), start=after + 1):
            try:
                stored_seq, at, type_, data = _decode_signal(blob)
            except msgspec.DecodeError as exc:
                raise CorruptRecordError(f"unreadable signal ({exc})", session=session, seq=seq) from exc
            if stored_seq != seq:
                raise CorruptRecordError(f"signal {stored_seq} stored in place of {seq}", session=session, seq=seq)
            out.append(SignalRecord(seq, at, type_, data))
        return out

    async def events(self, session: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        """Events with ``seq > after``, in order (at most ``limit``)."""
        out: list[EventRecord] = []
        for seq, blob in enumerate(await self._range("events", session, after, limit), start=after + 1):
            try:
                stored_seq, cause, at, turn, type_, data = _decode_event(blob)
            except msgspec.DecodeError as exc:
                raise CorruptRecordError(f"unreadable event ({exc})", session=session, seq=seq) from exc
            if stored_seq != seq:
                raise CorruptRecordError(f"event {stored_seq} stored in place of {seq}", session=session, seq=seq)
            out.append(EventRecord(seq, cause, at, turn, type_, data))
        return out
