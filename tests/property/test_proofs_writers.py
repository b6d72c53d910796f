"""Property: what the input-log writers accept, the epoch computation accepts (issue 19).

Random balances (any sign, any number of decimals, declared or undeclared assets) and
positions (valid names, malformed names, unpriceable instruments, excess decimals): each is
either refused by the writer -- nothing written -- or written, and then the epoch at the next
cut computes. A writer never signs what the committed path would refuse.

Sizes stay within a venue's range (|balance| <= 1e7 units, |quantity| <= 1e7): the format's
*aggregate* capacity (sums over accounts below 2^64 atoms in format v2) depends on every
account of the epoch and is checked at the cut, where ``compute_epoch`` refuses it naming the
tree level (docs/proofs.md, Limitations).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import given, settings
from hypothesis import strategies as st

from marginproof.errors import InputError
from marginproof.io.formats import load_market
from marginproof.proofs.epoch import EngineInfo, compute_epoch
from marginproof.proofs.errors import VerificationError
from marginproof.storage.proofstore import (
    InputLogWriter,
    ProofStore,
    default_params,
    new_epoch_secret,
)

ROOT = Path(__file__).resolve().parents[2]
MARKET = load_market(ROOT / "examples" / "market_btc_2022-04-15.json")
SCALES = {"BTC": 8, "ETH": 9, "USDC": 6, "USDT": 6, "DOGE": 8}
ENGINE = EngineInfo("test-engine/1", "0" * 64)
NAMES = ["BTC-PERPETUAL", "ETH-PERPETUAL", "BTC_USDC-PERPETUAL", "FOO-BAR", "btc-perpetual",
         "BTC-29APR22-40000-C", "BTC-29APR22-155000-C", "SOL-PERPETUAL", "BTC-29APR22", ""]

amounts = st.builds(lambda m, e, s: s * Decimal(m).scaleb(-e),
                    st.integers(0, 10**7), st.integers(0, 12), st.sampled_from([1, -1]))
balances = st.dictionaries(st.sampled_from(["a", "b"]),
                           st.dictionaries(st.sampled_from(sorted(SCALES)), amounts,
                                           min_size=1, max_size=3), min_size=1, max_size=2)
positions = st.dictionaries(st.sampled_from(["a", "b"]),
                            st.dictionaries(st.sampled_from(NAMES),
                                            st.builds(lambda m, e: Decimal(m).scaleb(-e),
                                                      st.integers(-10**7, 10**7),
                                                      st.integers(0, 10)),
                                            min_size=1, max_size=3), min_size=1, max_size=2)


@settings(max_examples=40)
@given(bal=balances, pos=positions)
def test_what_a_writer_accepts_the_epoch_computes(bal: dict, pos: dict) -> None:  # type: ignore[type-arg]
    with TemporaryDirectory() as tmp:
        store = ProofStore(Path(tmp) / "mp")
        keys = store.operator_keys(create=True)
        w = InputLogWriter(store, keys)
        w.append_genesis()
        w.append_params(default_params("standard", depth_min=2, privacy=False))
        w.append_market(MARKET)
        for write in (lambda: w.append_positions(pos), lambda: w.append_balances(bal, SCALES)):
            n = len(store.entries())
            try:
                write()
            except (InputError, VerificationError):
                assert len(store.entries()) == n  # refused: nothing written
        w.append_balances({"z": {"USDC": "1000"}}, SCALES)  # the epoch has an account
        w.cut(1, MARKET.timestamp.isoformat().replace("+00:00", "Z"))
        res = compute_epoch(store.entries(), 1, new_epoch_secret(keys, 1), None, ENGINE)
        assert "z" in res.account_ids
