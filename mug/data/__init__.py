"""Web image-text data in img2dataset's layout, a package per job: loading (shards -> batches), gate (the data
gate) and synthetic (the sample corpus); beside them tokenizer_corpus (the captions a tokenizer learns from) and
dvc_source (data by DVC address)."""
