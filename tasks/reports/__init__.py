"""reports workflow."""
