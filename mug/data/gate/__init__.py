"""The data gate: scan the shards, validate the sample table with Great Expectations against thresholds.yaml
(checks holds the gate's types), and write its page (report)."""
