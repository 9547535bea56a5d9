"""Instance pool with autoscale on the real daemon: one tiny member serving its hostname, a
CPU burner in it, the monitor's samples -> the pool grows to two, and HAProxy itself (its
health checks, the requests it answers) sends to the new member; still under load at --max
it holds; the burner stops -> it shrinks back to one, HAProxy sends to it alone, and idle
at --min it holds. Rule windows are seconds here."""
from __future__ import annotations

import pytest
from tests.waiting import wait_for

from nbcloud.core.errors import InvalidSpec
from tests.integration.test_loadbalancers import USER_DATA, _get

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


def _held(cloud, pool: str, words: str) -> bool:
    return any(p == pool and d.action == "hold" and words in d.reason
               for _t, p, d in cloud.autoscaler.decisions)


def _answers(lb, n: int = 20) -> set[str]:
    """Who answers `n` requests through the balancer (HAProxy on the gateway)."""
    return {_get(f"http://{lb.address}/") for _ in range(n)} - {""}


def test_pool_scales_out_under_a_cpu_burner_and_back_in(cloud):
    for name in ("lbp-1", "lbp-2"):
        if cloud.provider.exists(name):
            cloud.instances.delete(name)
    lb = cloud.lbs.create("lb-pool", "nbcloud", 8090, member_port=80)
    try:
        pool = cloud.ipools.create("lbp", "tiny", "c.nano", "nbcloud", 1, lb="lb-pool",
                                   user_data=USER_DATA,
                                   scale_out="cpu>20% for 6s", scale_in="cpu<8% for 6s",
                                   min_size=1, max_size=2)
        assert pool.members == ["lbp-1"] and lb.members == ["lbp-1"]
        assert "lbp-1" in cloud.monitor.watched and cloud.monitor.running
        wait_for(lambda: _answers(lb) == {"lbp-1"}, 90, "HAProxy to answer from lbp-1")
        cloud.instances.get("lbp-1").ssh(BURN)

        _wait(cloud, lambda: pool.size == 2 and not cloud.autoscaler.busy, 150,
              "the pool to scale out to 2")
        assert pool.members == ["lbp-1", "lbp-2"]
        assert lb.members == ["lbp-1", "lbp-2"]          # the new member joined the lb
        assert cloud.provider.state("lbp-2") == "running"
        out = [op for op in _ops(cloud, "lbp") if op["verb"] == "scale"]
        assert out and "autoscale out: cpu>20% for 6s" in out[0]["detail"], out[:1]
        # HAProxy itself: its health checks see the new member UP, and it answers
        wait_for(lambda: lb.health() == {"lbp-1": "UP", "lbp-2": "UP"}, 90,
                 "HAProxy's checks to see both members UP")
        wait_for(lambda: _answers(lb) == {"lbp-1", "lbp-2"}, 60,
                 "HAProxy to answer from both members")
        # still under load at --max: the rule holds, nothing grows
        _wait(cloud, lambda: _held(cloud, "lbp", "at --max 2"), 90, "a hold at --max 2")
        assert pool.size == 2 and not cloud.provider.exists("lbp-3")

        cloud.instances.get("lbp-1").ssh("kill $(cat /tmp/burn.pid)")
        _wait(cloud, lambda: pool.size == 1 and not cloud.autoscaler.busy, 90,
              "the pool to scale back in to 1")
        assert pool.members == ["lbp-1"] and lb.members == ["lbp-1"]
        assert not cloud.provider.exists("lbp-2")
        assert lb.health() == {"lbp-1": "UP"} and _answers(lb) == {"lbp-1"}
        scales = [op["detail"] for op in _ops(cloud, "lbp") if op["verb"] == "scale"]
        assert "autoscale in: cpu<8% for 6s" in scales[0] and "2 -> 1" in scales[0]
        # idle at --min: the scale-in rule holds, nothing shrinks
        _wait(cloud, lambda: _held(cloud, "lbp", "at --min 1"), 90, "a hold at --min 1")
        assert pool.size == 1 and cloud.provider.state("lbp-1") == "running"
        # the decisions and their reasons are in the operations log
        assert any(op["verb"] == "autoscale" for op in _ops(cloud, "lbp"))
    finally:
        if any(p.name == "lbp" for p in cloud.ipools.list()):
            cloud.ipools.delete("lbp")
        cloud.lbs.delete("lb-pool")
    assert not cloud.provider.exists("lbp-1")
