"""Sub-commands of the `mug` CLI, one module per group; each has `register(subparsers)`."""
