"""CSV batches workflow."""
