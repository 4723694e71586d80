"""The real node's settings that keep traffic on the machine, and what it says when it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from devservices import cassandra, node
from devservices.process import cache_dir


def test_pods_get_no_route_out_and_nothing_is_masqueraded(tmp_path: Path) -> None:
    bridge = node._cni_config(tmp_path)["plugins"][0]  # type: ignore[index]
    assert bridge["type"] == "bridge"
    assert bridge["ipMasq"] is False
    assert bridge["isDefaultGateway"] is False
    assert bridge["ipam"]["routes"] == [{"dst": node.SERVICE_CIDR}]
    assert "0.0.0.0/0" not in str(bridge)


def test_the_egress_rule_drops_what_leaves_the_bridge() -> None:
    rule = node._EGRESS_RULE
    assert rule[:5] == ("FORWARD", "-i", node.BRIDGE, "!", "-o") and "DROP" in rule


def test_kubelet_gives_pods_no_outside_resolver_and_never_collects_imported_images(tmp_path: Path) -> None:
    config = node._kubelet_config(tmp_path)
    assert config["resolvConf"] == ""
    assert config["clusterDNS"] == [node.DNS_SERVICE_IP]
    assert config["imageGCHighThresholdPercent"] == 100


def test_coredns_forwards_nothing_outside_the_cluster() -> None:
    assert "forward" not in node._COREFILE
    assert f"kubernetes {node.CLUSTER_DOMAIN}" in node._COREFILE


def test_a_host_without_the_pieces_is_told_what_to_build(tmp_path: Path) -> None:
    problems = node.host_problems(assets=tmp_path / "assets", images=tmp_path / "images")
    text = "; ".join(problems)
    assert "kubelet (scripts/build-envtest.sh all node)" in text
    for image in node.IMAGES:
        assert f"the {image} image (scripts/build-images.sh {image})" in text


def test_an_image_archive_is_found_through_its_current_file(tmp_path: Path) -> None:
    assert node.image_archive("headrace", tmp_path) is None
    (tmp_path / "headrace-abc.tar").write_bytes(b"")
    (tmp_path / "headrace.current").write_text("headrace-abc.tar\n")
    assert node.image_archive("headrace", tmp_path) == tmp_path / "headrace-abc.tar"


def test_the_cassandra_image_runs_the_suites_settings_for_a_pod(tmp_path: Path) -> None:
    if not (cache_dir() / f"cassandra-{cassandra.DEFAULT_VERSION}" / ".complete").exists():
        pytest.skip("needs Cassandra's jars (scripts/fetch-cassandra.sh)")
    cassandra.write_image_config(tmp_path)
    settings = (tmp_path / "cassandra.yaml").read_text()
    assert cassandra.POD_IP_PLACEHOLDER in settings and cassandra.SEEDS_PLACEHOLDER in settings
    assert '"cdc_enabled": true' in settings
    assert '"/var/lib/cassandra/cdc_raw"' in settings
    options = (tmp_path / "jvm.options").read_text().split()
    assert options[-1] == cassandra.DAEMON_CLASS
    assert "-Dcassandra.ring_delay_ms=5000" in options
    assert "ConsoleAppender" in (tmp_path / "logback.xml").read_text()
