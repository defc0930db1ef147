"""The fast tier's share of the cluster: what `cluster:nodes` reads of a node's `df`, and how it prints it."""

from __future__ import annotations

from minipaas.cluster import disks


def test_df_data_line_gives_size_and_free_in_bytes() -> None:
    text = ("Filesystem        1-blocks        Used   Available Capacity Mounted on\n"
            "overlay       105089261568 22540779520 77166239744      23% /\n")
    assert disks.parse_df(text) == disks.Disk(size=105089261568, free=77166239744)


def test_df_without_a_root_line_says_nothing() -> None:
    assert disks.parse_df("") is None
    assert disks.parse_df("df: /: No such file or directory\n") is None
    assert disks.parse_df("tmpfs 1000 10 990 1% /tmp\n") is None


def test_disk_prints_as_df_h_would() -> None:
    assert disks.human(disks.Disk(size=105089261568, free=77166239744)) == "72G free of 98G"
    assert disks.human(disks.Disk(size=8 * 2**30, free=int(1.5 * 2**30))) == "1.5G free of 8.0G"
    assert disks.human(disks.Disk(size=2**40 * 3, free=512)) == "512B free of 3.0T"
    assert disks.human(None) == "?"
