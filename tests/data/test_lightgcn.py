from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from recsys.data.lightgcn import load_lightgcn, read_lightgcn_file
from recsys.errors import InputError

GOWALLA = Path("/work/shared/datasets/gowalla")


def test_tiny_file_round_trip(tmp_path: Path) -> None:
    train = tmp_path / "train.txt"
    train.write_text("0 3 1\n1 2\n\n4\n2 0 5 6\n")
    test = tmp_path / "test.txt.gz"
    test.write_bytes(gzip.compress(b"0 7\n3 1 2\n"))
    s = load_lightgcn(train, test)
    assert s.n_users == 5  # user 4 is listed with no items and still counts
    assert s.n_items == 8
    np.testing.assert_array_equal(s.train_user, [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(s.train_item, [3, 1, 2, 0, 5, 6])
    np.testing.assert_array_equal(s.test_user, [0, 3, 3])
    np.testing.assert_array_equal(s.test_item, [7, 1, 2])
    assert s.train_user.dtype == np.int64 and s.test_item.dtype == np.int64


@pytest.mark.parametrize("content,bad", [("0 1 2\n1 x 3\n", "'x'"), ("0 1\n1 -2\n", "'-2'")])
def test_bad_line_is_named(tmp_path: Path, content: str, bad: str) -> None:
    f = tmp_path / "train.txt"
    f.write_text(content)
    with pytest.raises(InputError, match=rf"train.txt: line 2: .*{bad}"):
        read_lightgcn_file(f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_lightgcn(tmp_path / "nope.txt", tmp_path / "nope2.txt")


@pytest.mark.skipif(not GOWALLA.exists(), reason="Gowalla not available")
def test_gowalla_counts() -> None:
    s = load_lightgcn(GOWALLA / "train.txt.gz", GOWALLA / "test.txt.gz")
    assert (s.n_users, s.n_items) == (29858, 40981)
    assert len(s.train_user) == len(s.train_item) == 810128
    assert len(s.test_user) == len(s.test_item) == 217242
