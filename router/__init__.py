"""sorex router package."""
