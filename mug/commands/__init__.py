"""Sub-commands of the `mug` CLI, one module per command; each has `add_command(subparsers)`."""
