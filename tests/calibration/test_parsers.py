from pathlib import Path

import pytest

from calibration.parsers import parse_nccl_tests, read_microbench, read_nccl_tests
from hw_models.errors import ClusterSimError

LOGS = Path(__file__).resolve().parents[2] / "calibration/reference/echo_nccl_tests"


@pytest.mark.parametrize("n,rows", [(2, 28), (8, 28), (16, 25)])
def test_real_logs(n, rows):
    df = read_nccl_tests(LOGS / f"azure_a100_40gb_all_reduce_{n}gpu.log")
    assert len(df) == rows and df.n_ranks[0] == n and df.op[0] == "all_reduce"
    # algbw = size / time (nccl-tests units): check the last row against its own columns.
    last = df.iloc[-1]
    assert last.size_bytes / last.oop_time_us / 1e3 == pytest.approx(last.oop_algbw_gb_s, rel=0.01)


def test_root_column_and_srun_prefix():
    text = ("0: #  size count type redop root time algbw busbw #wrong time algbw busbw #wrong\n"
            "0:  1024 256 float sum 0 10.0 0.10 0.10 0 11.0 0.09 0.09 0\n"
            "0:  2048 512 float sum 0 12.0 0.17 0.17 0 13.0 0.16 0.16 0\n"
            "0: # Avg bus bandwidth    : 0.1\n")
    df = parse_nccl_tests(text, "broadcast_perf.log")
    assert list(df.root) == [0, 0] and list(df.ip_time_us) == [11.0, 13.0]
    assert df.op[0] == "broadcast"


def test_empty_and_truncated():
    with pytest.raises(ClusterSimError, match="no nccl-tests result rows"):
        parse_nccl_tests("", "empty.log")
    full = (LOGS / "azure_a100_40gb_all_reduce_2gpu.log").read_text().splitlines()
    with pytest.raises(ClusterSimError, match="truncated"):
        parse_nccl_tests("\n".join(full[:20]), "cut.log")
    cut_mid_row = "\n".join(full[:20] + [full[20][:30]])
    with pytest.raises(ClusterSimError, match="fields"):
        parse_nccl_tests(cut_mid_row, "cut.log")


def test_microbench_csv_missing_columns(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text("suite,op,dtype\nkernels,gemm,fp32\n")
    with pytest.raises(ClusterSimError, match="missing column"):
        read_microbench(p)
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ClusterSimError, match="empty"):
        read_microbench(tmp_path / "e.csv")
    with pytest.raises(ClusterSimError, match="is a directory; give a CSV file"):
        read_microbench(tmp_path)           # was "does not exist"


VIDUR_NET = LOGS.parent / "vidur/network"


def test_vidur_network_csv():
    from calibration.parsers import read_vidur_network
    df = read_vidur_network(VIDUR_NET / "a100_dgx_all_reduce.csv")
    assert set(df.op) == {"all_reduce"}
    assert sorted({(g, p) for g, p in zip(df.gpus, df.gpus_per_node, strict=True)}) == [
        (2, 1), (2, 2), (4, 2), (4, 4), (8, 4), (8, 8), (16, 8)]
    # The CSV's last 8-GPU row: 64 MiB in 0.675 ms (median), 2(n-1)/n S / t = 174 GB/s bus
    # bandwidth, under the A100's 240 GB/s NCCL-rated NVLink: sizes are bytes.
    row = df[(df.gpus == 8) & (df.gpus_per_node == 8)].iloc[-1]
    assert row.size_bytes == 64 << 20 and row.time_us == pytest.approx(675.0)
    assert row.time_min_us <= row.time_us <= row.time_max_us
    assert set(read_vidur_network(VIDUR_NET / "h100_dgx_send_recv.csv").op) == {"send_recv"}


def test_vidur_network_bad_files(tmp_path):
    from calibration.parsers import read_vidur_network
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "cols.csv").write_text("size,num_workers\n1024,2\n")
    for name, needle in (("empty.csv", "empty CSV"), ("cols.csv", "devices_per_node"),
                         ("none.csv", "does not exist")):
        with pytest.raises(ClusterSimError, match=needle):
            read_vidur_network(tmp_path / name)
