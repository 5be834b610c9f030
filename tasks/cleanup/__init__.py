"""cleanup workflow."""
