"""kvbench KV-event indexer: a stand-in for llm-d's precise prefix-cache scorer index on plain nodes.

Subscribes (ZMQ SUB, connect) to vLLM's KV-cache events and keeps a block index in memory or in
Redis/Valkey. Wire format (vllm/distributed/kv_events.py): multipart [topic, seq (8 bytes big-endian),
payload]; payload is msgpack of KVEventBatch = [ts, [event, ...], data_parallel_rank]; each event is a
tagged struct: a map {"type": "BlockStored", ...} (vLLM >= 0.12) or an array ["BlockStored", ...]
(older array_like encoding).

Index layout (the shape of llm-d-kv-cache's Redis index, pkg/kvcache/kvblock/redis.go):
  <request-key>         HASH, one field per holder "<pod>@<tier>" (value "")
  engine:<engine-key>   STRING, the request key this engine block hash maps to
The engine key is vLLM's block hash; the request key is a chained 64-bit hash of the block's token ids
and its parent's request key (what a router computes from a prompt without asking vLLM).

Status: a JSON file rewritten atomically every second (--status-file). The store password comes from the
environment variable named by --password-env, never from argv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import zmq

try:  # vLLM depends on msgspec; msgpack is the fallback for a venv without vLLM
    from msgspec.msgpack import Decoder as _MsgspecDecoder

    _decode = _MsgspecDecoder().decode
except ImportError:  # pragma: no cover
    import msgpack

    def _decode(payload: bytes) -> Any:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)


MASK64 = (1 << 64) - 1
STORED_FIELDS = ["block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium"]
REMOVED_FIELDS = ["block_hashes", "medium"]


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} kv-indexer: {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ hashing
def engine_key(value: Any) -> str:
    """vLLM's external block hash (int by default, bytes with VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0)."""
    if isinstance(value, (bytes, bytearray)):
        return str(int.from_bytes(bytes(value)[-8:], "big") & MASK64)
    return str(int(value) & MASK64)


def request_key(parent: str | None, tokens: list[int]) -> str:
    h = hashlib.sha256()
    h.update((parent or "root").encode())
    h.update(struct.pack(f">{len(tokens)}q", *tokens))
    return str(int.from_bytes(h.digest()[:8], "big"))


# ------------------------------------------------------------------------------------------------ stores
class MemoryStore:
    def __init__(self) -> None:
        self.index: dict[str, set[str]] = {}
        self.engine: dict[str, str] = {}

    def add(self, pairs: list[tuple[str, str]], holder: str) -> None:
        for ekey, rkey in pairs:
            self.engine[ekey] = rkey
            self.index.setdefault(rkey, set()).add(holder)

    def request_key_of(self, ekey: str) -> str | None:
        return self.engine.get(ekey)

    def evict(self, ekeys: list[str], holder: str) -> None:
        for ekey in ekeys:
            rkey = self.engine.get(ekey)
            if rkey is None:
                continue
            holders = self.index.get(rkey)
            if holders is not None:
                holders.discard(holder)
                if not holders:
                    del self.index[rkey]
                    self.engine.pop(ekey, None)

    def counts(self) -> dict[str, int]:
        return {"index_keys": len(self.index), "engine_keys": len(self.engine), "store_keys": 0}


class RespError(RuntimeError):
    pass


class RespClient:
    """A minimal RESP2 client (pipelined commands); enough for HSET/HDEL/SET/GET/DEL/DBSIZE/AUTH."""

    def __init__(self, url: str, password: str | None) -> None:
        if "://" not in url:
            url = "redis://" + url
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "valkey"):
            raise SystemExit(
                f"kv-indexer: unsupported store URL scheme {parsed.scheme!r} (redis:// or valkey://)"
            )
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.db = int(parsed.path.lstrip("/") or 0)
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = password or (unquote(parsed.password) if parsed.password else None)
        self.sock = socket.create_connection((self.host, self.port), timeout=10)
        self.buf = self.sock.makefile("rb")
        if self.password:
            auth = ["AUTH", self.username, self.password] if self.username else ["AUTH", self.password]
            self.pipeline([auth])
        if self.db:
            self.pipeline([["SELECT", str(self.db)]])

    @staticmethod
    def _encode(cmd: list[str]) -> bytes:
        out = [f"*{len(cmd)}\r\n".encode()]
        for arg in cmd:
            data = arg.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    def _read(self) -> Any:
        line = self.buf.readline()
        if not line:
            raise ConnectionError("store closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)
            return data[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected reply {line[:40]!r}")

    def pipeline(self, cmds: list[list[str]]) -> list[Any]:
        if not cmds:
            return []
        self.sock.sendall(b"".join(self._encode(c) for c in cmds))
        replies = [self._read() for _ in cmds]
        for reply in replies:
            if isinstance(reply, RespError):
                # never echo the command: it may be AUTH
                raise reply
        return replies


class RedisStore:
    def __init__(self, url: str, password: str | None) -> None:
        self.client = RespClient(url, password)
        self.client.pipeline([["PING"]])
        self.engine_cache: dict[str, str] = {}

    def add(self, pairs: list[tuple[str, str]], holder: str) -> None:
        cmds: list[list[str]] = []
        for ekey, rkey in pairs:
            self.engine_cache[ekey] = rkey
            cmds.append(["SET", f"engine:{ekey}", rkey])
            cmds.append(["HSET", rkey, holder, ""])
        self.client.pipeline(cmds)

    def request_key_of(self, ekey: str) -> str | None:
        rkey = self.engine_cache.get(ekey)
        if rkey is None:
            rkey = self.client.pipeline([["GET", f"engine:{ekey}"]])[0]
        return rkey

    def evict(self, ekeys: list[str], holder: str) -> None:
        found = [(e, self.request_key_of(e)) for e in ekeys]
        found = [(e, r) for e, r in found if r is not None]
        if not found:
            return
        self.client.pipeline([["HDEL", r, holder] for _, r in found])
        lengths = self.client.pipeline([["HLEN", r] for _, r in found])
        gone = [e for (e, _), n in zip(found, lengths, strict=True) if n == 0]
        if gone:
            self.client.pipeline([["DEL", f"engine:{e}"] for e in gone])
            for e in gone:
                self.engine_cache.pop(e, None)

    def counts(self) -> dict[str, int]:
        dbsize = int(self.client.pipeline([["DBSIZE"]])[0])
        engine = len(self.engine_cache)
        return {"index_keys": max(dbsize - engine, 0), "engine_keys": engine, "store_keys": dbsize}


# ------------------------------------------------------------------------------------------------ events
@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    batches: int = 0
    events: int = 0
    block_stored: int = 0
    blocks_stored: int = 0
    block_removed: int = 0
    blocks_removed: int = 0
    all_blocks_cleared: int = 0
    unknown_events: int = 0
    decode_errors: int = 0
    store_errors: int = 0
    seq_gaps: int = 0
    replayed_batches: int = 0
    last_seq: int | None = None
    topics: set[str] = field(default_factory=set)


def as_fields(event: Any, names: list[str]) -> tuple[str, dict[str, Any]]:
    if isinstance(event, dict):
        return str(event.get("type", "")), event
    if isinstance(event, (list, tuple)) and event:
        return str(event[0]), dict(zip(names, event[1:], strict=False))
    return "", {}


class Indexer:
    def __init__(self, store: MemoryStore | RedisStore, stats: Stats) -> None:
        self.store = store
        self.stats = stats
        self.pod_keys: dict[str, set[str]] = {}

    @staticmethod
    def holder_of(topic: str, medium: Any) -> tuple[str, str]:
        parts = topic.split("@")
        pod = parts[1] if len(parts) >= 3 else (topic or "unknown")
        tier = str(medium or "gpu").lower()
        return pod, f"{pod}@{tier}"

    def handle_batch(self, topic: str, payload: bytes) -> None:
        try:
            batch = _decode(payload)
            events = batch[1] if isinstance(batch, (list, tuple)) else batch.get("events", [])
        except Exception as exc:
            self.stats.decode_errors += 1
            log(f"cannot decode a batch ({type(exc).__name__})")
            return
        self.stats.batches += 1
        self.stats.topics.add(topic)
        for event in events:
            self.stats.events += 1
            try:
                self.handle_event(topic, event)
            except (OSError, RespError, ConnectionError) as exc:
                self.stats.store_errors += 1
                log(f"store error: {exc}")

    def handle_event(self, topic: str, event: Any) -> None:
        tag, _ = as_fields(event, [])
        if tag == "BlockStored":
            _, f = as_fields(event, STORED_FIELDS)
            pod, holder = self.holder_of(topic, f.get("medium"))
            hashes = [engine_key(h) for h in f.get("block_hashes") or []]
            tokens = list(f.get("token_ids") or [])
            size = int(f.get("block_size") or 0) or (len(tokens) // max(len(hashes), 1))
            parent_e = f.get("parent_block_hash")
            parent_r = self.store.request_key_of(engine_key(parent_e)) if parent_e is not None else None
            pairs: list[tuple[str, str]] = []
            for i, ekey in enumerate(hashes):
                rkey = request_key(parent_r, tokens[i * size : (i + 1) * size])
                pairs.append((ekey, rkey))
                parent_r = rkey
            self.store.add(pairs, holder)
            self.pod_keys.setdefault(holder, set()).update(hashes)
            self.stats.block_stored += 1
            self.stats.blocks_stored += len(hashes)
        elif tag == "BlockRemoved":
            _, f = as_fields(event, REMOVED_FIELDS)
            _, holder = self.holder_of(topic, f.get("medium"))
            hashes = [engine_key(h) for h in f.get("block_hashes") or []]
            self.store.evict(hashes, holder)
            self.pod_keys.get(holder, set()).difference_update(hashes)
            self.stats.block_removed += 1
            self.stats.blocks_removed += len(hashes)
        elif tag == "AllBlocksCleared":
            pod, _ = self.holder_of(topic, None)
            for holder in [h for h in self.pod_keys if h.startswith(pod + "@")]:
                self.store.evict(sorted(self.pod_keys.pop(holder)), holder)
            self.stats.all_blocks_cleared += 1
        else:
            self.stats.unknown_events += 1


def write_status(path: Path, stats: Stats, store: MemoryStore | RedisStore, args: argparse.Namespace) -> None:
    try:
        counts = store.counts()
    except (OSError, RespError, ConnectionError) as exc:
        stats.store_errors += 1
        counts = {"index_keys": -1, "engine_keys": -1, "store_keys": -1}
        log(f"store error while counting: {exc}")
    status = {
        "kind": "kvbench.kv_indexer.status",
        "store": args.store,
        "endpoint": args.endpoint,
        "topic_filter": args.topic_filter,
        "pid": os.getpid(),
        "started_at": stats.started_at,
        "updated_at": time.time(),
        **{k: v for k, v in vars(stats).items() if k not in ("topics", "started_at")},
        "topics": sorted(stats.topics),
        **counts,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def replay(ctx: zmq.Context, endpoint: str, start: int, indexer: Indexer, timeout_ms: int = 2000) -> int:
    """Ask vLLM's ROUTER replay socket for batches from `start`; returns the last seq seen (or -1)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send_multipart([b"", start.to_bytes(8, "big")])
    last = -1
    try:
        while sock.poll(timeout_ms):
            frames = sock.recv_multipart()
            if len(frames) < 4:
                break
            _, topic, seq_b, payload = frames[-4:]
            seq = int.from_bytes(seq_b, "big", signed=True)
            if seq < 0:
                break
            indexer.handle_batch(topic.decode(errors="replace"), payload)
            indexer.stats.replayed_batches += 1
            last = seq
    finally:
        sock.close()
    return last


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="kvbench KV-event indexer")
    p.add_argument("--endpoint", required=True, help="vLLM's ZMQ PUB endpoint to connect to")
    p.add_argument("--replay-endpoint", default="", help="vLLM's ZMQ replay (ROUTER) endpoint, optional")
    p.add_argument("--topic-filter", default="kv@", help="ZMQ subscription prefix")
    p.add_argument("--store", choices=["inmem", "redis", "valkey"], default="inmem")
    p.add_argument("--store-address", default="", help="redis://host:port[/db] or valkey://host:port")
    p.add_argument("--password-env", default="KV_INDEXER_STORE_PASSWORD", help="env var holding the password")
    p.add_argument("--status-file", required=True, help="JSON status, rewritten atomically every second")
    p.add_argument("--clear-store", action="store_true", help="FLUSHDB the store at start (a fresh index)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    status_path = Path(args.status_file)
    status_path.parent.mkdir(parents=True, exist_ok=True)
    store: MemoryStore | RedisStore
    if args.store == "inmem":
        store = MemoryStore()
    else:
        if not args.store_address:
            log("--store-address is required for redis/valkey")
            return 2
        try:
            store = RedisStore(args.store_address, os.environ.get(args.password_env) or None)
            if args.clear_store:
                store.client.pipeline([["FLUSHDB"]])
        except (OSError, RespError, ConnectionError) as exc:
            log(f"cannot use the {args.store} store at {args.store_address}: {exc}")
            return 3
    stats = Stats()
    indexer = Indexer(store, stats)
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, args.topic_filter.encode())
    sub.connect(args.endpoint)
    log(f"subscribed to {args.endpoint} (filter {args.topic_filter!r}), store {args.store}")
    if args.replay_endpoint:
        last = replay(ctx, args.replay_endpoint, 0, indexer)
        stats.last_seq = last if last >= 0 else None

    running = True

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    next_status = 0.0
    while running:
        if sub.poll(200):
            frames = sub.recv_multipart()
            if len(frames) != 3:
                stats.decode_errors += 1
                continue
            topic, seq_b, payload = frames
            seq = int.from_bytes(seq_b, "big")
            if stats.last_seq is not None and seq <= stats.last_seq:
                continue  # already seen through replay
            if stats.last_seq is not None and seq > stats.last_seq + 1:
                stats.seq_gaps += 1
                if args.replay_endpoint:
                    last = replay(ctx, args.replay_endpoint, stats.last_seq + 1, indexer)
                    if last >= seq:
                        stats.last_seq = last
                        continue
            indexer.handle_batch(topic.decode(errors="replace"), payload)
            stats.last_seq = seq
        now = time.time()
        if now >= next_status:
            write_status(status_path, stats, store, args)
            next_status = now + 1.0
    write_status(status_path, stats, store, args)
    log("stopped")
    sub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
