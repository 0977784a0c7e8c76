"""MUG: multi-modal generative vision pre-training on web image-text pairs."""
