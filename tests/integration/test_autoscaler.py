"""Instance pool with autoscale on the real daemon: one tiny member, a CPU burner in it,
the monitor's samples -> the pool grows to two (the new member joins the pool's load
balancer); the burner stops -> it shrinks back to one. Rule windows are seconds here."""
from __future__ import annotations

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import InvalidSpec

BURN = "(while :; do :; done) >/dev/null 2>&1 </dev/null & echo $! > /tmp/burn.pid"


def _ops(cloud, pool: str) -> list[dict]:
    return [op for op in cloud.inventory.operations(500)
            if op["kind"] == "ipool" and op["name"] == pool]


def _wait(cloud, predicate, timeout: float, what: str) -> None:
    """wait_for, telling on a timeout what the autoscaler last decided and saw."""
    try:
        wait_for(predicate, timeout, what)
    except pytest.fail.Exception:
        last = [(round(t), d.action, d.reason) for t, _p, d in
                cloud.autoscaler.decisions[-3:]]
        pytest.fail(f"timed out waiting for {what}; last decisions {last}; latest samples "
                    f"{cloud.monitor.latest}")


def test_bad_pool_input_is_refused_and_changes_nothing(cloud):
    before = len(cloud.inventory.operations(1000))
    for kwargs, match in ((dict(min_size=3, max_size=2, scale_out="cpu>50% for 10s"),
                           "more than --max"),
                          (dict(scale_out="cpu>>50% for 10s"), "is not a rule"),
                          (dict(scale_out="load>5 for 10s"), "is not monitored"),
                          (dict(scale_in="cpu>5% for 10s"), "must compare with <"),
                          (dict(size=3, min_size=1, max_size=2), "outside --min"),
                          (dict(lb="lb-none"), "does not exist")):
        with pytest.raises((InvalidSpec, LookupError), match=match):
            cloud.ipools.create("lbx", "tiny", "t.nano", "nbcloud", kwargs.pop("size", 1),
                                **kwargs)
    assert not cloud.provider.exists("lbx-1")
    assert not any(p.name == "lbx" for p in cloud.ipools.list())
    assert len(cloud.inventory.operations(1000)) == before


def test_pool_scales_out_under_a_cpu_burner_and_back_in(cloud):
    for name in ("lbp-1", "lbp-2"):
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
    lb = cloud.lbs.create("lb-pool", "nbcloud", 8090, member_port=80)
    try:
        pool = cloud.ipools.create("lbp", "tiny", "c.nano", "nbcloud", 1, lb="lb-pool",
                                   scale_out="cpu>20% for 6s", scale_in="cpu<8% for 6s",
                                   min_size=1, max_size=2)
        assert pool.members == ["lbp-1"] and lb.members == ["lbp-1"]
        assert "lbp-1" in cloud.monitor.watched and cloud.monitor.running
        cloud.instances.get("lbp-1").ssh(BURN)

        _wait(cloud, lambda: pool.size == 2 and not cloud.autoscaler.busy, 150,
              "the pool to scale out to 2")
        assert pool.members == ["lbp-1", "lbp-2"]
        assert lb.members == ["lbp-1", "lbp-2"]          # the new member joined the lb
        assert cloud.provider.state("lbp-2") == "running"
        out = [op for op in _ops(cloud, "lbp") if op["verb"] == "scale"]
        assert out and "autoscale out: cpu>20% for 6s" in out[0]["detail"], out[:1]

        cloud.instances.get("lbp-1").ssh("kill $(cat /tmp/burn.pid)")
        _wait(cloud, lambda: pool.size == 1 and not cloud.autoscaler.busy, 90,
              "the pool to scale back in to 1")
        assert pool.members == ["lbp-1"] and lb.members == ["lbp-1"]
        assert not cloud.provider.exists("lbp-2")
        scales = [op["detail"] for op in _ops(cloud, "lbp") if op["verb"] == "scale"]
        assert "autoscale in: cpu<8% for 6s" in scales[0] and "2 -> 1" in scales[0]
        # the decisions and their reasons are in the operations log
        assert any(op["verb"] == "autoscale" for op in _ops(cloud, "lbp"))
        # at --max the rule holds but nothing grows; at --min likewise
        assert all(d.size <= 2 for _t, p, d in cloud.autoscaler.decisions
                   if p == "lbp")
    finally:
        if any(p.name == "lbp" for p in cloud.ipools.list()):
            cloud.ipools.delete("lbp")
        cloud.lbs.delete("lb-pool")
    assert not cloud.provider.exists("lbp-1")
