"""Recipient CSV validation, apart from job mechanics: header and column rules (``columns``),
recipients (``recipients``: phone numbers, emails, addresses) and the country table
(``countries``)."""
