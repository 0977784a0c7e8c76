"""The model presets, stored as JSON data (tiny, small, base) and read by `mug.config.build_config`."""
