import errno

import pytest

import flux
from flux.constants import FLUX_NODEID_ANY


def test_attr_get_and_rank(instance):
    h = instance.handle()
    assert h.attr_get("rank") == "0"
    assert h.attr_get("size") == "1"
    assert h.attr_get("local-uri") == instance.uri
    major, minor, patch = h.attr_get("version").split(".")
    assert (int(major), int(minor)) >= (0, 50)


def test_unknown_service_is_enosys(instance):
    h = instance.handle()
    with pytest.raises(OSError) as ei:
        h.rpc("nosuch.method", {}).get()
    assert ei.value.errno == errno.ENOSYS
    assert ei.value.strerror == "No service matching nosuch.method is registered"


def test_connect_failure_is_enoent(tmp_path):
    with pytest.raises(OSError) as ei:
        flux.Flux(f"local://{tmp_path}/nothing-here")
    assert ei.value.errno == errno.ENOENT
    assert "Unable to connect" in ei.value.strerror


def test_ping_every_rank_of_tree(make_instance):
    inst = make_instance(5)
    h = inst.handle()
    for rank in range(5):
        resp = h.rpc("broker.ping", {"seq": rank}, nodeid=rank).get()
        assert resp["rank"] == rank and resp["seq"] == rank
    with pytest.raises(OSError) as ei:
        h.rpc("broker.ping", {}, nodeid=9).get()
    assert ei.value.errno == errno.EHOSTUNREACH
    assert h.rpc("broker.ping", {}, nodeid=FLUX_NODEID_ANY).get()["rank"] == 0
