"""The format engine: counterparty file layouts as data (`formats/specs/`), one generic engine per framing.

`formats.registry` lists every layout by its dotted name and dispatches `read` / `write` / `read_to_parquet` on the
layout's framing: `fixed_width`, `delimited`, `xml`, `excel`. The field types, records and control totals a
layout is declared with are in `formats.layout`; what a reader returns is `formats.result.ReadResult`; the
errors are in `formats.errors` (record faults are quarantined, file faults raise a `FileRejected` subclass).
`formats` imports nothing else of duizhang's.
"""
