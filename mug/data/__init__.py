"""Web image-text data: synthetic scenes now; shards, loaders and validation build on it."""
