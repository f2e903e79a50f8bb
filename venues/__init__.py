"""sorex venues package."""
