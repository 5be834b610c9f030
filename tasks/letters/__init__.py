"""letters workflow."""
