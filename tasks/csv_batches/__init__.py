"""The CSV batches workflow (docs/csv-batches.md): validate, fan out, schedule, recover."""
