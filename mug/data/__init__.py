"""Web image-text data in img2dataset's layout, by job:
- loading: loader_config (what is asked) -> loader (a worker's pipeline, the training process's `Loader`), with
  shard_reading, batching, handover, buffers, skips, tar, decode, augment, device_crop and urls;
- the data gate: scan -> validate (Great Expectations) against thresholds.yaml, its types in checks, its page
  in report;
- the synthetic corpus: synth (scenes and captions), corpus, shards;
- tokenizer_corpus (the captions a tokenizer learns from) and dvc_source (data by DVC address)."""
