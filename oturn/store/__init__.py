"""Session stores: the protocol, its records, and the stores (memory, SQLite, Redis; loaded on use)."""

from oturn.store.protocol import Store
from oturn.store.records import EventRecord, SessionInfo, SignalRecord, SnapshotRecord

__all__ = ["EventRecord", "SessionInfo", "SignalRecord", "SnapshotRecord", "Store"]
