"""CloudWatch's query API (GetMetricData, GetMetricStatistics, ListMetrics) over shoal's samples: `operations`
answers them, `wire` speaks CloudWatch's protocols (RPC v2 CBOR, JSON 1.0, query) on the server's port."""
