"""sorex algos package."""
