"""minik-controller-manager's node IPAM flags: on by default, with Kubernetes' flag names."""

from __future__ import annotations

from controllers.main import parse_args


def test_node_ipam_is_on_by_default_over_10_244_0_0_16_in_24s() -> None:
    args = parse_args([])
    assert args.allocate_node_cidrs is True
    assert args.cluster_cidr == "10.244.0.0/16" and args.node_cidr_mask_size == 24


def test_node_ipam_can_be_turned_off_and_given_another_range() -> None:
    args = parse_args(
        ["--allocate-node-cidrs", "false", "--cluster-cidr", "10.9.0.0/16", "--node-cidr-mask-size", "26"]
    )
    assert args.allocate_node_cidrs is False
    assert args.cluster_cidr == "10.9.0.0/16" and args.node_cidr_mask_size == 26
