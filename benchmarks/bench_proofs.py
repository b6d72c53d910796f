"""Proofs layer: sum tree over 1e6 accounts, inclusion-proof verify, proof size, L5 rates.

Run: ``python benchmarks/bench_proofs.py [--quick] [--json PATH]``. Every ratio is measured in
this run against a baseline measured here too:

* tree build: numpy-packed levels + tight ``hashlib`` loop (1 and 2 processes) vs the plain
  per-node Python build (:func:`reference_root`) on the same leaves; the hashing roofline is
  ``hashlib`` SHA-256 throughput on one large buffer (no per-call overhead), and the tree's
  hashed bytes per second are reported as a fraction of it;
* inclusion proof: pure-Python path verification (D = 20, F = 4), median of many runs;
* L5: commitments + aggregated base-16 range proofs (2 values per account: mm and coll - mm) vs
  the bit-by-bit CDS range proof of spec section 8, per 64-bit value, single core; then the
  full 10,000-account run on both cores (prove) and batched verification.

Absolute times depend on machine load (printed); the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _roofline import write_json  # noqa: E402

from marginproof.proofs.bitrange import prove_bits, verify_bits  # noqa: E402
from marginproof.proofs.epoch import proof_from_tree, tag_all  # noqa: E402
from marginproof.proofs.group import L, NonceStream, commit  # noqa: E402
from marginproof.proofs.inclusion import proof_from_binary, recompute_root  # noqa: E402
from marginproof.proofs.privacy import (  # noqa: E402
    _LeafJob,
    _prove_leaf,
    statement_commitments,
    statement_context,
)
from marginproof.proofs.rangeproof import (  # noqa: E402
    RangeProof,
    prove_range,
    verify_range_batch,
)
from marginproof.proofs.sumtree import (  # noqa: E402
    FORMAT_V1,
    FORMAT_V2,
    arrange_leaves,
    build_sum_tree,
    depth_for,
    reference_root,
)
from marginproof.proofs.tags import pad_secret, pad_tag  # noqa: E402
from marginproof.storage.proofstore import ProcessHasher, ProcessMapper  # noqa: E402

BASE = 16  # the default range-proof base (privacy.DEFAULT_BASE)


def _load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"


def hash_roofline_bytes_per_s() -> float:
    """SHA-256 throughput of hashlib on a 64 MB buffer (best of 3)."""
    buf = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        hashlib.sha256(buf).digest()
        best = min(best, time.perf_counter() - t)
    return len(buf) / best


def bench_tree(n: int, res: dict[str, object], with_reference: bool) -> tuple:
    print(f"\n== sum tree over {n:,} accounts (F = 6: assets, liabs, im, mm, short, stress; "
          "format v2) ==")
    rng = np.random.default_rng(1)
    assets = rng.integers(0, 10**12, n, dtype=np.uint64)
    liabs = rng.integers(0, 10**10, n, dtype=np.uint64)
    mm = rng.integers(0, 10**12, n, dtype=np.uint64)
    im = mm + mm // 4
    need = mm + liabs
    short = np.where(need > assets, need - assets, 0).astype(np.uint64)
    stress = (short // 3).astype(np.uint64)
    values = np.stack([assets, liabs, im, mm, short, stress], axis=1)
    ids = [f"acct-{i:07d}" for i in range(n)]
    es = hashlib.sha256(b"bench epoch secret").digest()
    t = time.perf_counter()
    tags1 = tag_all(es, ids)
    t_tags1 = time.perf_counter() - t
    with ProcessMapper(2) as mapper:
        t = time.perf_counter()
        tags2 = tag_all(es, ids, mapper)
        t_tags2 = time.perf_counter() - t
    assert tags1 == tags2
    real = np.frombuffer(tags2, np.uint8).reshape(n, 32)
    depth = depth_for(n, 10)
    t = time.perf_counter()
    ps = pad_secret(es)
    pads = np.frombuffer(b"".join(pad_tag(ps, j) for j in range((1 << depth) - n)),
                         np.uint8).reshape(-1, 32)
    tags, vals, _ = arrange_leaves(real, values, pads)
    t_sort = time.perf_counter() - t
    hdr = hashlib.sha256(b"header").digest()
    t_b1 = t_b2 = np.inf
    for _ in range(2):  # best of two: the first 2-process run also maps the shared buffers
        t = time.perf_counter()
        tree1 = build_sum_tree(FORMAT_V2, hdr, tags, vals)
        t_b1 = min(t_b1, time.perf_counter() - t)
    with ProcessHasher(2) as hasher:
        for _ in range(2):
            t = time.perf_counter()
            tree2 = build_sum_tree(FORMAT_V2, hdr, tags, vals, hasher)
            t_b2 = min(t_b2, time.perf_counter() - t)
    assert tree1.root_hash == tree2.root_hash and tree1.root_sums == tree2.root_sums
    slots = 1 << depth
    hashed = slots * (65 + 48) + (slots - 1) * (1 + 2 * (32 + 48))
    roof = hash_roofline_bytes_per_s()
    print(f"slots 2^{depth} = {slots:,} ({slots - n:,} padding)   [{_load()}]")
    print(f"tags (2 HMAC-SHA256 + 1 SHA-256 per id): 1 process {t_tags1:.2f} s, "
          f"2 processes {t_tags2:.2f} s")
    print(f"pad + sort by tag: {t_sort:.2f} s")
    print(f"tree build (leaf + node hashing, sums; best of 2): 1 process {t_b1:.2f} s, "
          f"2 processes {t_b2:.2f} s")
    print(f"  hashing roofline (hashlib one-shot): {roof / 1e6:.0f} MB/s; tree hashed "
          f"{hashed / 1e6:.0f} MB -> {hashed / t_b2 / roof:.0%} of one core's roofline on 2 cores")
    total2 = t_tags2 + t_sort + t_b2
    print(f"  tags + sort + build on 2 cores: {total2:.2f} s   (issue 23 target <= 0.6 s)")
    calls = 4 * n + slots + (slots - 1)
    print(f"  floor: {calls / 1e6:.1f} M hashlib calls (4 per tag, 1 per leaf and node) x "
          f"~0.5-0.8 us per call = {calls * 0.5e-6 / 2:.2f}-{calls * 0.8e-6 / 2:.2f} s on 2 cores"
          " before packing and sorting: the 0.6 s target needs a batched native hasher")
    res.update(tree_accounts=n, tree_build_1p_s=t_b1, tree_build_2p_s=t_b2,
               tree_tags_1p_s=t_tags1, tree_tags_2p_s=t_tags2, tree_sort_s=t_sort,
               tree_total_2p_s=total2, tree_fraction_of_hash_roofline=hashed / t_b2 / roof)
    if with_reference:
        leaves = [(tags[i].tobytes(), [int(x) for x in vals[i]]) for i in range(slots)]
        t = time.perf_counter()
        ref = reference_root(FORMAT_V2, hdr, leaves)
        t_ref = time.perf_counter() - t
        assert ref == (tree2.root_hash, tree2.root_sums)
        print(f"plain per-node Python build (reference twin, same leaves): {t_ref:.2f} s -> "
              f"speed-up {t_ref / t_b1:.1f}x (1 process), {t_ref / t_b2:.1f}x (2 processes); "
              "same root")
        res.update(tree_reference_s=t_ref, tree_speedup_vs_naive=t_ref / t_b2)
    return tree2, depth


def bench_inclusion(tree, depth: int, res: dict[str, object]) -> None:
    print(f"\n== one inclusion proof (D = {depth}, F = 6) ==")
    idx = [int(i) for i in np.random.default_rng(2).integers(0, 1 << depth, 64)]
    proofs = [proof_from_tree(tree, 1, i) for i in idx]
    bins = [p.to_binary() for p in proofs]
    times, times_dec = [], []
    for _ in range(40):
        for p, b in zip(proofs, bins, strict=True):
            t = time.perf_counter()
            recompute_root(p)
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            recompute_root(proof_from_binary(b))
            times_dec.append(time.perf_counter() - t)
    med = statistics.median(times)
    med_dec = statistics.median(times_dec)
    size = len(bins[0])
    js = len(proofs[0].to_json())
    print(f"path verify (range checks + {depth + 1} SHA-256): median {med * 1e6:.1f} us "
          f"(issue 23 target <= 20 us); decode binary + verify {med_dec * 1e6:.1f} us")
    floor = 32 + 8 * 6 + depth * (32 + 8 * 6)  # tag, leaf values, one hash + sums per level
    print(f"binary proof {size:,} B (format v2), JSON {js:,} B; layout floor (tag + leaf + "
          f"D x (hash + F sums), no header) {floor:,} B -> {size / floor:.3f}x the floor")
    print(f"  same leaf in the spec's v1 layout (u128 sums): {FORMAT_V1.proof_size(6, depth):,} B;"
          f" with K = 4 asset vectors (F = 14): v2 {FORMAT_V2.proof_size(14, depth):,} B, "
          f"v1 {FORMAT_V1.proof_size(14, depth):,} B")
    res.update(inclusion_verify_us=med * 1e6, inclusion_decode_verify_us=med_dec * 1e6,
               proof_binary_bytes=size, proof_json_bytes=js,
               proof_v1_bytes=FORMAT_V1.proof_size(6, depth), proof_floor_bytes=floor)


def bench_privacy(n_accounts: int, res: dict[str, object], n_single: int,
                  n_baseline: int) -> None:
    print(f"\n== L5: commitments + range proofs, {n_accounts:,} accounts "
          "(4 x 64-bit values each: mm, liabs, assets, assets - liabs - mm) ==")
    rng = np.random.default_rng(3)
    es = hashlib.sha256(b"bench privacy").digest()
    hdr = hashlib.sha256(b"hdr").digest()
    mm = [int(x) for x in rng.integers(0, 10**12, n_accounts)]
    liabs = [int(x) for x in rng.integers(0, 10**10, n_accounts)]
    coll = [m + lb + int(x) for m, lb, x in zip(mm, liabs, rng.integers(0, 10**12, n_accounts),
                                                 strict=True)]
    for k in range(0, n_accounts, 20):
        coll[k] = mm[k] // 2  # some accounts in shortfall (flagged statement)
    jobs = [_LeafJob(es, hdr, hashlib.sha256(b"t%d" % i).digest(), coll[i], liabs[i], mm[i], BASE)
            for i in range(n_accounts)]
    # single core, per 64-bit value; the baseline is interleaved with ours so both see the
    # same machine load (the box is shared), and medians are compared
    _prove_leaf(jobs[0])
    single, tp_ours = [], []
    tb_p, tb_v = [], []
    every = max(1, n_single // n_baseline)
    for k, j in enumerate(jobs[:n_single]):
        t = time.perf_counter()
        single.append(_prove_leaf(j))
        tp_ours.append((time.perf_counter() - t) / 4)
        if k % every == 0 and len(tb_p) < n_baseline:
            v, r = int(rng.integers(0, 2**63)), int(rng.integers(1, 2**62)) * 7919 % L
            c = commit(v, r)
            t = time.perf_counter()
            bp = prove_bits(v, r, c, b"ctx", NonceStream(os.urandom(32)))
            tb_p.append(time.perf_counter() - t)
            t = time.perf_counter()
            verify_bits(bp, c, b"ctx")
            tb_v.append(time.perf_counter() - t)
    t_prove1 = 4 * statistics.median(tp_ours)
    items = [(lf.proof, statement_commitments(lf.coms, lf.flag),
              statement_context(hdr, lf.tag, lf.flag)) for lf in single]
    t = time.perf_counter()
    verify_range_batch(items, os.urandom(32))
    t_ver1 = (time.perf_counter() - t) / n_single
    bp_s, bv_s = statistics.median(tb_p), statistics.median(tb_v)
    per_val_p, per_val_v = t_prove1 / 4, t_ver1 / 4
    size = RangeProof.size(BASE, 4)
    print(f"[{_load()}]")
    print(f"bit-by-bit CDS baseline, one 64-bit value: prove {bp_s * 1e3:.1f} ms, verify "
          f"{bv_s * 1e3:.1f} ms, {64 * 160:,} B")
    print(f"base-{BASE} aggregated proof, per 64-bit value (single core; includes the 2 "
          f"commitments): prove {per_val_p * 1e3:.2f} ms ({bp_s / per_val_p:.1f}x faster), "
          f"batched verify {per_val_v * 1e3:.2f} ms ({bv_s / per_val_v:.1f}x faster)")
    print(f"  proof {size:,} B per account = {size / 4:,.0f} B per value "
          f"({64 * 160 / (size / 4):.1f}x smaller); + 96 B of commitments")
    # other bases, small sample, single core
    for base in (2, 4):
        vals = [mm[1], coll[1] - mm[1]]
        bl = [12345, 67890]
        coms = [commit(v, b) for v, b in zip(vals, bl, strict=True)]
        prove_range(vals, bl, coms, b"ctx", NonceStream(os.urandom(32)), base)
        t = time.perf_counter()
        ps = [prove_range(vals, bl, coms, b"ctx%d" % k, NonceStream(os.urandom(32)), base)
              for k in range(8)]
        tp = (time.perf_counter() - t) / 8 / 2
        t = time.perf_counter()
        verify_range_batch([(p, coms, b"ctx%d" % k) for k, p in enumerate(ps)], os.urandom(32))
        tv = (time.perf_counter() - t) / 8 / 2
        print(f"  base {base:>2}: prove {tp * 1e3:.2f} ms, batched verify (8 proofs) "
              f"{tv * 1e3:.2f} ms per value, {RangeProof.size(base, 2) / 2:,.0f} B per value")
    # full run on both cores
    with ProcessMapper(2) as mapper:
        t = time.perf_counter()
        leaves = mapper(_prove_leaf, jobs)
        t_prove = time.perf_counter() - t
        items = [(lf.proof, statement_commitments(lf.coms, lf.flag),
                  statement_context(hdr, lf.tag, lf.flag)) for lf in leaves]
        half = len(items) // 2
        chunks = [items[:half], items[half:]]
        t = time.perf_counter()
        mapper(_verify_chunk, chunks)
        t_ver = time.perf_counter() - t
    flagged = sum(lf.flag for lf in leaves)
    rate_p = n_accounts / t_prove
    rate_v = n_accounts / t_ver
    rate_1 = 1.0 / t_prove1
    base_rate = 1.0 / (2 * bp_s)  # accounts/s for the bit-by-bit baseline, one core
    print(f"{n_accounts:,} accounts, 2 processes: commit + prove {t_prove:.1f} s "
          f"({rate_p:,.0f} accounts/s), batched verify {t_ver:.1f} s ({rate_v:,.0f} accounts/s);"
          f" {flagged} flagged (mm - coll proven instead)   [{_load()}]")
    print(f"  one process (median above): {rate_1:,.0f} accounts/s -> parallel speed-up "
          f"{rate_p / rate_1:.2f}x on this (shared) machine; bit-by-bit baseline, one process: "
          f"{base_rate:.1f} accounts/s")
    venue_scale(rate_p, res)
    d = depth_for(n_accounts, 10)
    print(f"  a padded tree of 2^{d} slots proves {1 << d:,} leaves: about "
          f"{(1 << d) / rate_p:.0f} s on 2 cores at this rate")
    res.update(l5_accounts=n_accounts, l5_prove_s=t_prove, l5_verify_s=t_ver,
               l5_prove_accounts_per_s=rate_p, l5_prove_accounts_per_s_1p=rate_1,
               l5_verify_accounts_per_s=rate_v,
               l5_prove_ms_per_value=per_val_p * 1e3, l5_verify_ms_per_value=per_val_v * 1e3,
               bitproof_prove_ms=bp_s * 1e3, bitproof_verify_ms=bv_s * 1e3,
               l5_prove_speedup_vs_bits=bp_s / per_val_p,
               l5_verify_speedup_vs_bits=bv_s / per_val_v, l5_proof_bytes_per_account=size)


def venue_scale(rate_2p: float, res: dict[str, object]) -> None:
    """Issue 23 target: 1e6 accounts in <= 10 min (>= 2,000 accounts/s). Per-operation cost
    times the count per account shows where the floor is with libsodium's encoded-point API."""
    from marginproof.proofs.group import add, base_mul, generator_h, mul

    h = generator_h()
    p = base_mul(12345)
    n = 300
    t = time.perf_counter()
    for k in range(n):
        mul(2**200 + k, h)
    t_mul = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for k in range(n):
        base_mul(2**200 + k)
    t_base = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        add(p, h)
    t_add = (time.perf_counter() - t) / n
    # per account (base 16, m = 4, so N = 64 digits): counted from rangeproof.prove_range and
    # privacy._prove_leaf: variable-base: alpha H, rho H, 64 s_i G_i, 16 tau_k H, tau_s H,
    # 3 blinds -> 86; fixed-base: 16 q_k G, t_s G, 3 values -> 20; additions ~151
    n_mul, n_base, n_add = 86, 20, 151
    per = n_mul * t_mul + n_base * t_base + n_add * t_add
    floor_rate = 2.0 / per
    print(f"venue scale: variable-base mult {t_mul * 1e6:.0f} us, fixed-base {t_base * 1e6:.0f} us,"
          f" point add {t_add * 1e6:.0f} us (libsodium decodes and re-encodes every point: "
          f"~3 inverse square roots per add)   [{_load()}]")
    print(f"  per account {n_mul} x {t_mul * 1e6:.0f} + {n_base} x {t_base * 1e6:.0f} + "
          f"{n_add} x {t_add * 1e6:.0f} us = {per * 1e3:.1f} ms -> floor {floor_rate:,.0f} "
          f"accounts/s on 2 cores (measured {rate_2p:,.0f}); 1e6 accounts: "
          f"{1e6 / floor_rate / 60:.0f} min at the floor vs the 10 min target: NOT reachable "
          "with this group backend (needs MSM in extended coordinates, not in any library here)")
    res.update(venue_mul_us=t_mul * 1e6, venue_base_us=t_base * 1e6, venue_add_us=t_add * 1e6,
               venue_per_account_ms=per * 1e3, venue_floor_accounts_per_s=floor_rate,
               venue_1e6_minutes_at_floor=1e6 / floor_rate / 60)


def _verify_chunk(items: list) -> int:
    verify_range_batch(items, os.urandom(32))
    return len(items)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller workloads")
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    ap.add_argument("--parts", default="tree,privacy",
                    help="comma-separated: tree (with inclusion proofs), privacy")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    res: dict[str, object] = {}
    print(f"bench_proofs: Python {sys.version.split()[0]}, {_load()}")
    if "tree" in parts:
        n = 100_000 if args.quick else 1_000_000
        tree, depth = bench_tree(n, res, with_reference=True)
        bench_inclusion(tree, depth, res)
        del tree
    if "privacy" in parts:
        if args.quick:
            bench_privacy(400, res, n_single=40, n_baseline=4)
        else:
            bench_privacy(10_000, res, n_single=100, n_baseline=10)
    write_json(res, args.json)


if __name__ == "__main__":
    main()
