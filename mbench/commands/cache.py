"""`mbench cache ls|verify|gc`: inspect, check and clean the embedding store (no torch import)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mbench.engine.cache import store_root
from mbench.engine.cache.store import STORED_DTYPES, EmbeddingStore, StoreEntry, human_bytes
from mbench.errors import MbenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands ls, verify and gc, each taking --cache-dir."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="mbench cache directory (default: $MBENCH_CACHE or ~/.cache/mbench); embeddings live in <cache-dir>/embeddings",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("ls", parents=[common], help="list entries: model, role, items, dim, dtype, shards, size, created")
    verify = sub.add_parser("verify", parents=[common], help="re-check every shard's checksum and shape (exit 2 if any is corrupted)")
    verify.add_argument("--repair", action="store_true", help="delete corrupted shards so the next run recomputes them")
    gc = sub.add_parser("gc", parents=[common], help="remove temp files of killed writers, quarantined shards and stale or chosen entries")
    gc.add_argument("--older-than-days", type=float, default=None, help="also remove incomplete entries idle for this many days")
    gc.add_argument("--tmp-grace-minutes", type=float, default=60.0, help="temp/orphan files older than this are removed even if their writer may live (default 60)")
    gc.add_argument("--key", action="append", default=[], help="remove this entry (a key or a unique prefix, as `ls` shows); repeatable")
    gc.add_argument(
        "--dtype", choices=sorted(STORED_DTYPES), action="append", default=[],
        help="remove every entry stored in this dtype, e.g. float16: the fp16 copies earlier mbench versions "
             "kept (no run reuses them) and those of --store-dtype fp16; repeatable",
    )
    gc.add_argument("--all", action="store_true", help="remove every entry")
    gc.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")


def _store(args: argparse.Namespace) -> EmbeddingStore:
    return EmbeddingStore(store_root(args.cache_dir))


def run(args: argparse.Namespace) -> int:
    """Dispatch to ls, verify or gc."""
    store = _store(args)
    return {"ls": _ls, "verify": _verify, "gc": _gc}[args.action](store, args)


def _ls(store: EmbeddingStore, args: argparse.Namespace) -> int:
    from tabulate import tabulate

    entries = store.entries()
    if not entries:
        print(f"no embeddings under {store.root}")
        return 0
    rows, total = [], 0
    for entry in entries:
        done = sum(entry.check_shard(i, verify=False).status == "ok" for i in range(entry.n_shards))
        size = entry.size_bytes()
        total += size
        meta = entry.meta
        rows.append(
            [
                entry.key[:12],
                meta.get("model", "?"),
                meta.get("role", "?"),
                meta.get("label", ""),
                entry.n_items,
                entry.dim if entry.dim is not None else "?",
                entry.dtype or "?",
                f"{done}/{entry.n_shards}",
                human_bytes(size),
                str(entry.manifest.get("created", ""))[:19].replace("T", " "),
            ]
        )
    headers = ["key", "model", "role", "label", "items", "dim", "dtype", "shards", "size", "created (UTC)"]
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    broken = len(store.entry_dirs()) - len(entries)
    print(f"\n{len(entries)} entries, {human_bytes(total)} under {store.root}" + (f"; {broken} without a readable manifest (see `mbench cache verify`)" if broken else ""))
    return 0


def _verify(store: EmbeddingStore, args: argparse.Namespace) -> int:
    corrupt = unrepaired = 0
    checked = 0
    for path in store.entry_dirs():
        try:
            entry = store.open(path.name)
        except MbenchError as err:
            corrupt += 1
            unrepaired += 1
            print(f"{path.name[:12]}: {err}")
            continue
        bad = []
        for index in range(entry.n_shards):
            check = entry.check_shard(index, verify=True)
            checked += check.status == "ok"
            if check.status == "corrupt":
                bad.append(check)
                print(f"{entry.key[:12]} shard {index}: {check.reason}")
        corrupt += len(bad)
        if bad and args.repair:
            for check in bad:
                _delete_shard(entry, check.index)
            print(f"{entry.key[:12]}: deleted {len(bad)} corrupted shard(s); the next run recomputes them")
        elif bad:
            unrepaired += len(bad)
    print(f"{checked} shard(s) verified, {corrupt} corrupted under {store.root}")
    if unrepaired:
        print("run `mbench cache verify --repair` to delete corrupted shards, `mbench cache gc --key KEY` for unreadable entries")
    return 2 if unrepaired else 0


def _delete_shard(entry: StoreEntry, index: int) -> None:
    entry.quarantine_shard(index)
    quarantine = entry.path / "quarantine"
    if quarantine.is_dir():
        for path in quarantine.glob(f"shard-{index:06d}-*"):
            path.unlink(missing_ok=True)


def _gc(store: EmbeddingStore, args: argparse.Namespace) -> int:
    removed: list[Path] = []
    keys = [store.resolve(k) for k in args.key]
    keys += [entry.key for entry in store.entries() if entry.dtype in args.dtype and entry.key not in keys]
    if args.all:
        keys = [p.name for p in store.entry_dirs()]
    for key in keys:
        removed.append(store.root / key)
        if not args.dry_run:
            store.remove(key)
    removed += store.gc(older_than_days=args.older_than_days, tmp_grace_s=args.tmp_grace_minutes * 60, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} path(s) under {store.root}")
    return 0
