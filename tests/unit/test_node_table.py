"""The node-shared scenario table: aligned rows, exact contents, and a reader that refuses a
table of another cycle or one rewritten under it."""

from pathlib import Path

import numpy as np
import pytest

from marginproof.models.batch import SCENARIO_BLOCK
from marginproof.scaleout.node_table import NodeTableReader, NodeTableWriter


def test_reader_sees_the_written_table_aligned_and_padded_with_zeros(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    up = rng.normal(size=(300, 63)).astype(np.float32)
    w = NodeTableWriter(tmp_path)
    r = NodeTableReader()
    path = w.write(up, 63, cycle_no=1)
    table, n_scen, seq = r.open(path, 1)
    assert n_scen == 63 and table.shape == (300, SCENARIO_BLOCK) and table.dtype == np.float32
    assert table.ctypes.data % 64 == 0 and not table.flags.writeable
    assert np.array_equal(table[:, :63], up) and not table[:, 63:].any()
    r.check(seq)
    up2 = up[:, :40].astype(np.float64) * 2  # next cycle: other width and dtype, same file
    path2 = w.write(up2, 40, cycle_no=2)
    table2, n2, _ = r.open(path2, 2)
    assert n2 == 40 and table2.dtype == np.float64 and np.array_equal(table2[:, :40], up2)
    assert not table2[:, 40:].any()
    # a new shape is a new file (the old one is unlinked, never truncated under a reader)
    assert path2 != path and not Path(path).exists()
    assert np.array_equal(table[:, :63], up)  # the old mapping is still readable
    w.close()
    assert not Path(path2).exists()


def test_reader_refuses_another_cycle_and_detects_a_rewrite(tmp_path: Path) -> None:
    up = np.ones((10, 63), np.float32)
    w = NodeTableWriter(tmp_path)
    r = NodeTableReader()
    path = w.write(up, 63, cycle_no=5)
    with pytest.raises(RuntimeError, match="cycle 5"):
        r.open(path, 4)
    _, _, seq = r.open(path, 5)
    w.write(up * 2, 63, cycle_no=6)  # the driver moved on while a worker was still reading
    with pytest.raises(RuntimeError, match="rewritten"):
        r.check(seq)
    w.close()


def test_writer_rejects_integer_tables(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unit_pnl"):
        NodeTableWriter(tmp_path).write(np.ones((2, 3), np.int64), 3, 1)
