"""The harness of minik's tests and benchmarks; no shipped component imports it.

* ``processes``: real etcd, ``minik-apiserver``, kubelet and component processes on free ports,
  over TLS, each component with its own identity;
* ``certs``: the session's CA and the certificates of the admin, components, kubelets and users;
* ``host``: free ports and /24s on this host, removing what a node left in Docker;
* ``images``: the busybox test image, built locally from busybox-static;
* ``api``: API objects as tests write them and the common calls through an ``httpx.Client``;
* ``wait``: ``wait_for`` and unique names;
* ``prereq``: what a test needs from the machine (root, Docker, iptables, kubectl, busybox, Docker
  Compose), skipped locally with what to install and failed when ``CI=true``; ``kubectl_path()``
  finds the one kubectl every test runs.
"""
