"""The CSV batches workflow (SPEC §4): validate, fan out, schedule, recover."""
