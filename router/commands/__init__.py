"""Sub-commands of the `sorex` CLI: each module exposes register(subparsers)."""
