from apiserver.etcd import grpc_target, prefix_end


def test_grpc_target_single_and_many_members() -> None:
    assert grpc_target("http://127.0.0.1:2379") == "127.0.0.1:2379"
    assert grpc_target("http://10.0.0.1:2379,http://10.0.0.2:22379") == "ipv4:10.0.0.1:2379,10.0.0.2:22379"
    assert grpc_target("http://localhost:2379,http://127.0.0.1:2380") == "ipv4:127.0.0.1:2379,127.0.0.1:2380"
    assert grpc_target("127.0.0.1") == "127.0.0.1:2379"


def test_prefix_end() -> None:
    assert prefix_end(b"/registry/core/pods/") == b"/registry/core/pods0"
    assert prefix_end(b"a\xff") == b"b"
