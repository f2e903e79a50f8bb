"""sorex tca package."""
