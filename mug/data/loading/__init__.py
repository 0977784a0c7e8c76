"""Loading img2dataset shards for training and evaluation: loader_config (what is asked) -> loader (a worker's
pipeline and the training process's `Loader`), with shard_reading (shard order, tar reading, mixtures), tar, urls,
decode, augment, batching (a batch's fields), handover and buffers (shared memory), skips and device_crop."""
