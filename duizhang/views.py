"""Views for the analysts' common questions, created in `warehouse.duckdb` over the published tables.

Each entry: name -> (tables it needs, SELECT). Listed by `duizhang sql --help` and in the README."""

ANALYST_VIEWS = {
    "breaks": ({"recon_result"}, """
        SELECT channel, business_date, side, outcome, amount_fen, reason, match_ref, record_ref, journal_no,
               account_masked, account_hash, source_file, source_line
        FROM recon_result
        WHERE outcome IN ('AMOUNT_MISMATCH', 'STATUS_MISMATCH', 'COUNTERPARTY_ONLY', 'LEDGER_ONLY', 'DUPLICATE')"""),
    "open_items": ({"recon_result"}, """
        SELECT r.channel, r.business_date, r.side, r.match_ref, r.record_ref, r.amount_fen, r.origin_date,
               r.business_date - r.origin_date AS age_days, r.reason, r.account_masked
        FROM recon_result r
        WHERE r.outcome = 'PENDING'
          AND r.business_date = (SELECT max(business_date) FROM recon_result x WHERE x.channel = r.channel)"""),
}
