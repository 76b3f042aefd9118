"""minik-metrics-server: the resource metrics API (metrics.k8s.io) behind the aggregation layer."""
