"""File store for the proofs layer (shell): input log, epochs, epoch log, keys, executors.

Directory layout (``DIR`` is ``marginproof prove --out DIR``)::

    DIR/operator/         PRIVATE  operator.key, source.key (Ed25519 seeds, hex), master_secret
    DIR/input_log/        PRIVATE  entries.jsonl: signed canonical entries, one per line;
                          sth/NNNNNNNN.json: signed input-log tree head at each cut
    DIR/epochs/NNNNNN/    record.json (public signed record), privacy.bundle (public),
                          tree/*.npy (operator: leaves and levels), auditor_bundle.json
                          (sealed for the auditor: epoch secret), proofs/<id>.json|.bin (users)
    DIR/epoch_log/        PUBLIC   records.jsonl (signed records in order), sth/NNNNNN.json
    DIR/public/           PUBLIC   keys.jsonl (the input log's keys entries, for verifiers)

Writer interface for the real-time service (:class:`InputLogWriter`): ``append_params``,
``append_market``, ``append_positions``, ``append_balances``, ``cut``. Entries are appended
under an exclusive ``flock``; nothing is ever rewritten. ``proof_for_account(epoch_dir, id)`` is
what the service calls to answer a user's request for their own proof.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import math
import os
import platform
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from multiprocessing import get_context, resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.config.params import config_dir, load_toml
from marginproof.errors import InputError
from marginproof.market.snapshot import MarketSnapshot
from marginproof.proofs import merklelog
from marginproof.proofs.encoding import (
    canon,
    decimal_string,
    float_to_decimal,
    parse_canonical,
    parse_decimal,
    parse_strict,
)
from marginproof.proofs.epoch import (
    ENGINE_VERSION,
    EngineInfo,
    EpochResult,
    lock_hash,
    proof_from_tree,
)
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.inclusion import InclusionProof
from marginproof.proofs.inputlog import (
    LogEntry,
    keys_body,
    make_sth,
    parse_entry,
    parse_keys,
    sign_entry,
)
from marginproof.proofs.leaves import market_body
from marginproof.proofs.privacy import (
    PrivacyTree,
    commitment_levels,
    parse_bundle,
    private_section,
)
from marginproof.proofs.records import parse_record
from marginproof.proofs.signing import CTX_LOG_ENTRY, SigningKey, verify_signature
from marginproof.proofs.sumtree import SumTree, format_for_spec, hash_rows
from marginproof.proofs.tags import account_nonce, epoch_secret, tag_from_nonce

PIN_PACKAGES = ("marginproof", "numpy", "numba", "llvmlite", "scipy", "pandas",
                "py_lets_be_rational", "rbcl", "cryptography")


# -- environment pins ---------------------------------------------------------------------------
def environment_pins() -> dict[str, str]:
    """Everything outside the code that could change a float on the committed path."""
    pins = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": platform.system(),
        "libc": "-".join(platform.libc_ver()),
    }
    for pkg in PIN_PACKAGES:
        try:
            pins[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pins[pkg] = "absent"
    return pins


def engine_info() -> EngineInfo:
    """The running engine: version string and lock hash of :func:`environment_pins`."""
    return EngineInfo(f"{ENGINE_VERSION} marginproof/{metadata.version('marginproof')}",
                      lock_hash(environment_pins()))


# -- parallel executors (injected into the pure core) -------------------------------------------
def _hash_shm(name_in: str, name_out: str, lo: int, hi: int, width: int) -> None:
    shm_in = SharedMemory(name=name_in)
    shm_out = SharedMemory(name=name_out)
    try:
        rows = np.ndarray((hi - lo, width), dtype=np.uint8, buffer=shm_in.buf,
                          offset=lo * width)
        out = np.ndarray((hi - lo, 32), dtype=np.uint8, buffer=shm_out.buf, offset=lo * 32)
        out[:] = hash_rows(rows)
        del rows, out
    finally:
        shm_in.close()
        shm_out.close()


class ProcessHasher:
    """Spread the tree's hashing loop over processes through shared memory.

    The parent hashes one chunk itself while ``workers - 1`` pool processes hash the others;
    levels below ``min_rows`` rows stay in the parent. Results are identical to
    :func:`hash_rows` (same bytes, same order).
    """

    def __init__(self, workers: int = 2, min_rows: int = 8192, start_method: str = "fork",
                 parent_share: float | None = None) -> None:
        self.workers = max(1, workers)
        self.parent_share = (0.8 / self.workers if parent_share is None else parent_share)
        self.min_rows = min_rows
        self._pool: Executor | None = None
        self._start = start_method
        self._shm: list[SharedMemory] = []

    def __enter__(self) -> ProcessHasher:
        if self.workers > 1:
            # start the resource tracker *before* forking so workers share it; otherwise each
            # worker's own tracker unlinks the shared segments when the worker exits
            resource_tracker.ensure_running()
            self._pool = ProcessPoolExecutor(self.workers - 1, mp_context=get_context(self._start))
            # warm the pool so process start-up is not charged to the first level
            list(self._pool.map(abs, range(self.workers - 1)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for s in self._shm:
            s.close()
            s.unlink()
        self._shm.clear()

    def _buffers(self, n_in: int, n_out: int) -> tuple[SharedMemory, SharedMemory]:
        if not self._shm or self._shm[0].size < n_in or self._shm[1].size < n_out:
            for s in self._shm:
                s.close()
                s.unlink()
            self._shm = [SharedMemory(create=True, size=max(n_in, 1)),
                         SharedMemory(create=True, size=max(n_out, 1))]
        return self._shm[0], self._shm[1]

    def alloc(self, n: int, width: int) -> NDArray[np.uint8]:
        """A row buffer in shared memory: rows packed here are hashed without a copy."""
        if self._pool is None or n < self.min_rows:
            return np.empty((n, width), dtype=np.uint8)
        shm_in, _ = self._buffers(n * width, n * 32)
        return np.ndarray((n, width), dtype=np.uint8, buffer=shm_in.buf)

    def __call__(self, rows: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Digests of every row; with the pool, a view into shared memory valid until the next
        call (the core copies it out at once)."""
        n, width = rows.shape
        if self._pool is None or n < self.min_rows:
            return hash_rows(rows)
        shm_in, shm_out = self._buffers(rows.nbytes, n * 32)
        src = np.ndarray(rows.shape, dtype=np.uint8, buffer=shm_in.buf)
        if src.__array_interface__["data"][0] != rows.__array_interface__["data"][0]:
            src[:] = rows  # not packed in place
        # the parent also packs the next level, so it takes a smaller share of the hashing
        first = int(n * self.parent_share)
        rest = np.linspace(first, n, self.workers).astype(int)
        bounds = np.concatenate([[0], rest])
        futs = [self._pool.submit(_hash_shm, shm_in.name, shm_out.name, int(bounds[k]),
                                  int(bounds[k + 1]), width) for k in range(1, self.workers)]
        out = np.ndarray((n, 32), dtype=np.uint8, buffer=shm_out.buf)
        out[: bounds[1]] = hash_rows(src[: bounds[1]])
        for f in futs:
            f.result()
        return out


class ProcessMapper:
    """``map`` over a process pool (privacy proofs), order preserved."""

    def __init__(self, workers: int = 2, start_method: str = "fork") -> None:
        self.workers = max(1, workers)
        self._start = start_method
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ProcessMapper:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context(self._start))
            list(self._pool.map(abs, range(self.workers)))  # fork now, before numba threads
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __call__(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if self._pool is None or len(items) < 8:
            return [fn(x) for x in items]
        chunk = max(1, len(items) // (self.workers * 8))
        return list(self._pool.map(fn, items, chunksize=chunk))


# -- files --------------------------------------------------------------------------------------
def write_canonical(path: Path, obj: Any) -> None:
    """Write canonical JSON plus a newline, atomically (temp file then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(canon(obj) + b"\n")
    os.replace(tmp, path)


def read_bytes(path: Path) -> bytes:
    """File bytes; a missing or unreadable file is an :class:`InputError` (exit 2)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(str(path), "file not found") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc}") from None


def _private_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_entries(path: Path) -> list[LogEntry]:
    """Every entry of an ``entries.jsonl`` (strict; line numbers in errors)."""
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(read_bytes(path).split(b"\n")):
        if line:
            out.append(parse_entry(line, f"{path.name}:{i + 1}"))
    return out


@dataclass(frozen=True)
class OperatorKeys:
    """The operator's private material (never published)."""

    operator: SigningKey
    source: SigningKey
    master_secret: bytes


class ProofStore:
    """One venue's proofs directory (see module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # paths
    @property
    def entries_path(self) -> Path:
        return self.root / "input_log" / "entries.jsonl"

    def epoch_dir(self, epoch: int) -> Path:
        return self.root / "epochs" / f"{epoch:06d}"

    @property
    def epoch_log_path(self) -> Path:
        return self.root / "epoch_log" / "records.jsonl"

    @property
    def keys_path(self) -> Path:
        return self.root / "public" / "keys.jsonl"

    # operator keys
    def operator_keys(self, create: bool = False) -> OperatorKeys:
        d = self.root / "operator"
        names = ("operator.key", "source.key", "master_secret")
        if not all((d / n).exists() for n in names):
            if not create:
                raise InputError(str(d), "no operator keys here (run `marginproof prove` first)")
            for n in names:
                _private_file(d / n, secrets.token_bytes(32).hex().encode() + b"\n")
            os.chmod(d, 0o700)
        vals = [bytes.fromhex(read_bytes(d / n).decode().strip()) for n in names]
        return OperatorKeys(SigningKey(vals[0]), SigningKey(vals[1]), vals[2])

    # input log
    def entries(self) -> list[LogEntry]:
        return read_entries(self.entries_path)

    def append(self, kind: str, body: Mapping[str, Any], key: SigningKey) -> LogEntry:
        """Append one signed entry (``seq`` = current size) under an exclusive lock.

        The entry is checked first (:func:`marginproof.proofs.epoch.check_entry`): what the
        epoch computation would refuse is never written, so the append-only log stays
        provable. Raises ``InputError`` / ``VerificationError`` naming the field.
        """
        from marginproof.proofs.epoch import check_entry

        with _locked(self.entries_path):
            entries = self.entries()
            seq = len(entries)
            e = sign_entry(kind, seq, body, key)
            check_entry(entries, e)
            with open(self.entries_path, "ab") as fh:
                fh.write(e.to_bytes() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        if kind == "keys":
            self.keys_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.keys_path, "ab") as fh:
                fh.write(e.to_bytes() + b"\n")
        return e

    # epoch log
    def signed_records(self) -> list[Any]:
        if not self.epoch_log_path.exists():
            return []
        return [parse_canonical(line, f"records.jsonl:{i + 1}")
                for i, line in enumerate(read_bytes(self.epoch_log_path).split(b"\n")) if line]

    def sths(self) -> list[Any]:
        d = self.root / "epoch_log" / "sth"
        if not d.exists():
            return []
        return [parse_strict(read_bytes(p), p.name) for p in sorted(d.glob("*.json"))]

    def append_record(self, signed: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
        """Append a signed record to the epoch log and publish the new signed tree head."""
        with _locked(self.epoch_log_path):
            recs = self.signed_records() + [dict(signed)]
            with open(self.epoch_log_path, "ab") as fh:
                fh.write(canon(signed) + b"\n")
            leaves = [merklelog.leaf_hash(canon(s)) for s in recs]
            epoch = int(signed["record"]["header"]["epoch"])
            sth = make_sth("epoch", len(leaves), merklelog.root_of(leaves), epoch, key)
            write_canonical(self.root / "epoch_log" / "sth" / f"{len(leaves):06d}.json", sth)
        return sth

    def publish_input_sth(self, sth: Mapping[str, Any]) -> None:
        """Write a signed input-log tree head (one per cut)."""
        size = int(sth["sth"]["size"])
        write_canonical(self.root / "input_log" / "sth" / f"{size:08d}.json", sth)

    def input_sths(self) -> list[Any]:
        d = self.root / "input_log" / "sth"
        if not d.exists():
            return []
        return [parse_strict(read_bytes(p), p.name) for p in sorted(d.glob("*.json"))]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[str]:
        """RFC 9162 consistency proof between two sizes of the epoch log (hex), for light
        clients that only keep tree heads."""
        leaves = [merklelog.leaf_hash(canon(s)) for s in self.signed_records()]
        n = len(leaves) if new_size is None else new_size
        return [h.hex() for h in merklelog.consistency_proof(leaves[:n], old_size)]

    def record(self, epoch: int) -> Any:
        return parse_canonical(read_bytes(self.epoch_dir(epoch) / "record.json"),
                               f"epochs/{epoch:06d}/record.json")

    # saving an epoch
    def save_epoch(self, res: EpochResult, signed: Mapping[str, Any], ep_secret: bytes,
                   write_proofs: bool) -> Path:
        d = self.epoch_dir(int(res.header["epoch"]))
        if (d / "record.json").exists():
            raise InputError(str(d), "epoch already proven (records are append-only)")
        t = d / "tree"
        t.mkdir(parents=True, exist_ok=True)
        np.save(t / "tags.npy", res.tree.tags)
        np.save(t / "values.npy", res.tree.values)
        np.save(t / "hashes.npy", res.tree.hashes)
        np.save(t / "sums.npy", res.tree.sums)
        write_canonical(t / "meta.json", {"spec": res.tree.fmt.spec,
                                          "hdr_hash": res.hdr_hash.hex(),
                                          "depth": str(res.tree.depth)})
        _private_file(d / "auditor_bundle.json", canon(
            {"epoch": res.header["epoch"], "epoch_secret": ep_secret.hex()}) + b"\n")
        if res.privacy is not None:
            (d / "privacy.bundle").write_bytes(res.privacy.bundle_bytes())
        if res.reserves is not None:  # public: anyone re-checks the verdict from it
            write_canonical(d / "reserves.json", res.reserves.body)
        if write_proofs:
            for aid in res.account_ids:
                p = res.proof_for(aid, ep_secret)
                stem = _safe_name(aid)
                _private_file(d / "proofs" / f"{stem}.json", p.to_json() + b"\n")
                _private_file(d / "proofs" / f"{stem}.bin", p.to_binary())
        write_canonical(d / "record.json", signed)
        return d


def _safe_name(account_id: str) -> str:
    """File name for an account id (hex if it has characters unsafe in paths)."""
    ok = account_id.replace("-", "").replace("_", "").replace(".", "").isalnum()
    return account_id if ok and account_id.isascii() and not account_id.startswith(".") else \
        "id-" + account_id.encode().hex()


def load_tree(epoch_dir: Path) -> SumTree:
    """The operator's stored tree (levels memory-mapped: a proof reads D rows)."""
    t = epoch_dir / "tree"
    meta = parse_canonical(read_bytes(t / "meta.json"), "tree/meta.json")
    return SumTree(format_for_spec(meta["spec"]), bytes.fromhex(meta["hdr_hash"]),
                   int(meta["depth"]), np.load(t / "tags.npy", mmap_mode="r"),
                   np.load(t / "values.npy", mmap_mode="r"),
                   np.load(t / "hashes.npy", mmap_mode="r"), np.load(t / "sums.npy", mmap_mode="r"))


def load_epoch_secret(epoch_dir: Path) -> bytes:
    b = parse_canonical(read_bytes(epoch_dir / "auditor_bundle.json"), "auditor_bundle.json")
    return bytes.fromhex(b["epoch_secret"])


def proof_for_account(epoch_dir: str | Path, account_id: str) -> InclusionProof:
    """The private inclusion proof of ``account_id`` (what the service serves to its owner).

    Reads the stored tree (memory-mapped) and the epoch secret; with the privacy layer, adds the
    user's blinds, range proof and commitment path.
    """
    d = Path(epoch_dir)
    ep_secret = load_epoch_secret(d)
    tree = load_tree(d)
    nonce = account_nonce(ep_secret, account_id)
    try:
        index = tree.find(tag_from_nonce(nonce, account_id))
    except KeyError:
        raise InputError("account_id", f"no account {account_id!r} in {d.name}") from None
    record = parse_record(parse_canonical(read_bytes(d / "record.json"), "record.json"))
    priv = None
    if record.privacy is not None:
        priv = private_section(_privacy_tree(d.resolve()), ep_secret, index)
    return proof_from_tree(tree, record.epoch, index, account_id, nonce, priv)


@functools.lru_cache(maxsize=4)
def _privacy_tree(epoch_dir: Path) -> PrivacyTree:
    """Commitment tree of an epoch, rebuilt from its bundle once and kept (a serving process
    answers many users from the same epoch)."""
    hdr, depth, base, leaves = parse_bundle(read_bytes(epoch_dir / "privacy.bundle"))
    return PrivacyTree(hdr, depth, base, tuple(leaves), commitment_levels(hdr, leaves), (0, 0, 0))


def published_keys(path: Path, trust: str | None = None) -> dict[str, bytes]:
    """Operator keys from a published ``keys.jsonl``: the genesis entry is self-signed (and, with
    ``trust``, must be that key), each rotation is signed by an operator key of the previous set.
    Returns the union over history, since records of older epochs stay valid."""
    entries = read_entries(path)
    if not entries:
        raise InputError(str(path), "no keys entries")
    current: dict[str, tuple[str, bytes]] = {}
    ops: dict[str, bytes] = {}
    for i, e in enumerate(entries):
        if e.kind != "keys":
            raise InputError(f"keys[{i}]", "keys.jsonl may only hold keys entries")
        keys = parse_keys(e.body, f"keys[{i}]")
        signer = (keys if i == 0 else current).get(e.source)
        if signer is None or signer[0] != "operator":
            raise VerificationError(f"keys[{i}].source", "keys entry not signed by an operator "
                                                         "key of the previous key set")
        if i == 0 and trust is not None and e.source != trust:
            raise VerificationError("keys[0].source", "genesis key is not the trusted key")
        verify_signature(signer[1], CTX_LOG_ENTRY, canon(e.unsigned_obj()), e.sig,
                         f"keys[{i}].sig")
        current = keys
        ops.update({k: raw for k, (role, raw) in keys.items() if role == "operator"})
    return ops


# -- writer for the service and the example ------------------------------------------------
def exact_decimal(x: Any, scale: int, field: str, *, signed: bool = False,
                  up: bool = False) -> str:
    """Canonical decimal string of ``x`` (int, str, ``Decimal``, ``Fraction`` or float) at most
    ``scale`` decimals; more is refused unless ``up`` (then it rounds toward +infinity).

    A float is read as its shortest round-trip decimal (``repr``): ``0.1`` is ``"0.1"``, not
    the 55 digits of its binary value. Booleans, NaN and infinities are refused.
    """
    from decimal import Decimal
    from fractions import Fraction

    if isinstance(x, bool) or not isinstance(x, (int, float, str, Decimal, Fraction)):
        raise InputError(field, f"must be a number, got {type(x).__name__}")
    if isinstance(x, float):
        if not math.isfinite(x):
            raise InputError(field, f"must be finite, got {x!r}")
        v = Fraction(Decimal(repr(x)))
    elif isinstance(x, str):
        v = parse_decimal(x, field, signed=True)
    elif isinstance(x, Decimal):
        if not x.is_finite():
            raise InputError(field, f"must be finite, got {x!r}")
        v = Fraction(x)
    else:
        v = Fraction(x)
    if v < 0 and not signed:
        raise InputError(field, f"must not be negative, got {x!r}")
    scaled = v * 10**scale
    if scaled.denominator != 1:
        if not up:
            raise InputError(field, f"{x!r} has more than {scale} decimals (excess precision is "
                                    "refused, never rounded)")
        scaled = Fraction(math.ceil(scaled))
    return decimal_string(scaled / 10**scale, scale)



class InputLogWriter:
    """Small append-only interface the real-time service writes epochs through.

    Market floats are frozen to decimal strings at the price scale here (the committed path
    only ever sees the logged strings; that one representation step is the stated rule for
    market data); positions and balances with more decimals than their declared scale are
    refused (balances: or rounded by the stated rule, ``rounding="up"``). Every entry is
    checked before it is signed (:meth:`ProofStore.append`).
    """

    def __init__(self, store: ProofStore, keys: OperatorKeys) -> None:
        self.store = store
        self.keys = keys

    def append_genesis(self) -> LogEntry:
        return self.store.append("keys", keys_body([("operator", self.keys.operator),
                                                    ("source", self.keys.source)]),
                                 self.keys.operator)

    def append_params(self, body: Mapping[str, Any]) -> LogEntry:
        return self.store.append("params", body, self.keys.source)

    def append_market(self, market: MarketSnapshot) -> LogEntry:
        return self.store.append("market", market_body(market), self.keys.source)

    def append_positions(self, positions: Mapping[str, Mapping[str, Any]],
                         scale: int = 8) -> LogEntry:
        """Positions per account; a quantity with more than ``scale`` decimals is refused."""
        accts = [{"account": a, "positions": [
            {"instrument": n, "quantity": exact_decimal(q, scale, f"positions.{a}.{n}",
                                                        signed=True)}
            for n, q in sorted(pos.items())]} for a, pos in sorted(positions.items())]
        return self.store.append("positions", {"accounts": accts}, self.keys.source)

    def append_balances(self, balances: Mapping[str, Mapping[str, Any]],
                        scales: Mapping[str, int], rounding: str = "refuse") -> LogEntry:
        """Balances per account at each asset's declared scale.

        ``rounding="refuse"`` (default): excess precision is an error naming the field.
        ``rounding="up"``: the one stated rule that never favours the venue: the signed balance
        rounds toward +infinity, so a credit (a liability of the venue) rounds up and a debt
        (what the user owes) rounds down in size. 10,000 credits of 12.5 sats commit 130,000.
        """
        if rounding not in ("refuse", "up"):
            raise InputError("rounding", "must be 'refuse' or 'up'")
        accts = []
        for a, bal in sorted(balances.items()):
            row = {}
            for k, v in sorted(bal.items()):
                f = f"balances.{a}.{k}"
                if k not in scales:
                    raise InputError(f, "asset has no declared scale")
                row[k] = exact_decimal(v, scales[k], f, signed=True, up=rounding == "up")
            accts.append({"account": a, "balances": row})
        return self.store.append("balances", {"accounts": accts}, self.keys.source)

    def append_recalibration(self, model: str, reason: str) -> LogEntry:
        """A model recalibration: seeds the committed path's Monte Carlo scenarios."""
        return self.store.append("recalibration", {"model": model, "reason": reason},
                                 self.keys.source)

    def append_reserves(self, body: Mapping[str, Any]) -> LogEntry:
        """The epoch's attested reserves (:mod:`marginproof.proofs.reserves`)."""
        return self.store.append("reserves", body, self.keys.source)

    def cut(self, epoch: int, timestamp: str) -> LogEntry:
        return self.store.append("cut", {"epoch": str(epoch), "timestamp": timestamp},
                                 self.keys.source)


def default_params(model: str = "grid", *, depth_min: int = 10, privacy: bool = True,
                   range_base: int = 16, liabilities: bool = True,
                   venue: str = "marginproof-example", fmt: str = "marginproof/proofs/v2"
                   ) -> dict[str, Any]:
    """A ``params`` body from the shipped configs (model TOML, collateral haircuts)."""
    from marginproof.models.registry import model_class

    cls = model_class(model)
    toml_path = config_dir() / cls.default_config
    text = read_bytes(toml_path).decode("utf-8")
    m = cls()
    haircuts = load_toml(config_dir() / "collateral.toml")["haircuts"]
    scales = {"BTC": 8, "ETH": 9, "USDC": 6, "USDT": 6}
    return {
        "venue": venue,
        "format": fmt,
        "quote": {"symbol": "USD", "scale": "6"},
        "assets": [{"symbol": a, "scale": str(s),
                    "haircut": float_to_decimal(float(haircuts[a]), 6, f"haircuts.{a}")}
                   for a, s in scales.items()],
        "liabilities": liabilities,
        "depth_min": str(depth_min),
        "model": {"name": model, "params_toml": text, "params_hash": m.params_hash},
        "privacy": {"enabled": privacy, "range_base": str(range_base)},
        "prices": {"scale": "12"},
        "quantities": {"scale": "8"},
        "stress": {"scenarios": model_stress_scenarios(cls.default_config)},
        "reserves": {"max_block_age_s": "86400"},
    }


def model_stress_scenarios(config_name: str) -> list[dict[str, Any]]:
    """Venue stress scenarios from the model in force: the corners of its own scenario grid
    (every underlying at minus / plus its price range, vols up by its vol range), and the crash
    at twice the range. Models without a grid get the grid model's ranges."""
    cfg = load_toml(config_dir() / config_name)
    grid = cfg.get("grid") or load_toml(config_dir() / "models" / "grid.toml")["grid"]
    ranges = {str(k): float(v) for k, v in grid["price_range"].items()}
    default = ranges.pop("default", 0.25)
    up = 1.0 + float(grid.get("vol_range_up", 0.5))

    def dec(x: float) -> str:
        return float_to_decimal(x, 6, "stress")

    def scen(name: str, k: float) -> dict[str, Any]:
        return {"name": name, "moves": {u: dec(max(k * r, -0.95)) for u, r in sorted(
            ranges.items())}, "default_move": dec(max(k * default, -0.95)), "iv_mult": dec(up)}

    return [scen("crash: every underlying -1x its range, vols up", -1.0),
            scen("rally: every underlying +1x its range, vols up", 1.0),
            scen("crash: every underlying -2x its range, vols up", -2.0)]


def new_epoch_secret(keys: OperatorKeys, epoch: int) -> bytes:
    """Epoch secret of ``epoch`` from the operator's master secret."""
    return epoch_secret(keys.master_secret, epoch)
