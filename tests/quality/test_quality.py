"""Great Expectations on the sample night: the suites hold on good data, and each kind of fault stops the night
with the file, the expectation and the offending rows (card numbers masked); results land in the warehouse."""
from __future__ import annotations

import re

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from duizhang import quality
from duizhang.quality import Check, ExpectationFailed
from formats.errors import Terminal
from tests.quality.night import CHANNEL, T1


def parsed_file(wd):
    return next(wd.parsed(CHANNEL, T1).glob("IND*ACOMN.v1.parquet"))


def set_row(path, line: int, **values):
    """Rewrite one record of a Parquet file (by its `_line`), as a faulty parse or a tampered file would."""
    t = pq.read_table(path)
    hit = pc.equal(t["_line"], line)
    for col, value in values.items():
        i = t.schema.get_field_index(col)
        t = t.set_column(i, col, pc.if_else(hit, pa.scalar(value, t.schema.field(col).type), t[col]))
    pq.write_table(t, path)


def validation(wd):
    return wd.read_table("validation", CHANNEL, T1).to_pylist()


def test_sample_night_passes_and_results_are_published(wd):
    out = quality.validate(CHANNEL, T1, wd)
    assert out["failed"] == 0
    rows = validation(wd)
    assert {r["dataset"] for r in rows} == {"unionpay.acomn", "ledger.journal", "recon_result"}
    control = next(r for r in rows if r["description"] == "control total: count of detail records = flag")
    assert control["success"] and control["file"] == "IND26112101ACOMN"
    # The flag says 18: the 17 readable records and the quarantined one.
    amounts = next(r for r in rows if r["dataset"] == "unionpay.acomn" and r["column"] == "amount_fen")
    assert (amounts["element_count"], amounts["unexpected_count"]) == (17, 0)
    keys = next(r for r in rows if r["dataset"] == "recon_result" and r["description"].startswith("key"))
    assert keys["success"] and keys["element_count"] == 34
    db = wd.refresh_views()
    assert duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM validation_failures").fetchone() == (0,)


def test_amount_out_of_range_names_file_expectation_and_line_with_masked_pan(wd):
    set_row(parsed_file(wd), 5, amount_fen=0)
    with pytest.raises(ExpectationFailed) as e:
        quality.validate(CHANNEL, T1, wd)
    msg = str(e.value)
    assert isinstance(e.value, Terminal)
    assert e.value.file == "IND26112101ACOMN" and e.value.expectation == "expect_column_values_to_be_between"
    assert "amount_fen between 1 and" in msg and "line 5:" in msg and "amount_fen=0" in msg
    pan = pq.read_table(parsed_file(wd)).filter(pc.equal(pq.read_table(parsed_file(wd))["_line"], 5))["pan"][0].as_py()
    assert pan not in msg and f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}" in msg
    # Published before stopping: the report and the analysts see the failure.
    failed = [r for r in validation(wd) if not r["success"]]
    assert [(r["column"], r["unexpected_count"]) for r in failed] == [("amount_fen", 1)]


def test_unknown_code_fails_its_code_table(wd):
    set_row(parsed_file(wd), 3, msg_type="0999")
    with pytest.raises(ExpectationFailed, match=r"expect_column_values_to_be_in_set \(msg_type in its code table\)"):
        quality.validate(CHANNEL, T1, wd)


def test_control_total_disagreeing_with_the_flag_fails(wd):
    with wd.control() as db:
        db.execute("UPDATE files SET flag_records = 19")
    with pytest.raises(ExpectationFailed) as e:
        quality.validate(CHANNEL, T1, wd)
    assert e.value.expectation == "expect_column_pair_values_to_be_equal"
    assert "declared=19, computed=18" in str(e.value)


def test_duplicate_journal_key_fails_uniqueness_in_the_ledger_extract(wd):
    path = wd.ledger_extract(T1)
    t = pq.read_table(path)
    pq.write_table(pa.concat_tables([t, t.slice(2, 1)]), path)
    with pytest.raises(ExpectationFailed) as e:
        quality.validate(CHANNEL, T1, wd)
    row = t.slice(2, 1).to_pylist()[0]
    assert e.value.file == wd.ledger_extract(T1).name
    assert f"journal_no={row['journal_no']}, seq_no={row['seq_no']}" in str(e.value) and "occurrences=2" in str(e.value)
    assert f"failed on 1 of {t.num_rows + 1} rows" in str(e.value)  # one key repeated


def test_a_card_number_in_clear_in_the_results_fails(wd):
    path = wd.table_path("recon_result", CHANNEL, T1)
    t = pq.read_table(path)
    clear = pa.array(["6228480000000001234"] + t["account_masked"].to_pylist()[1:], pa.string())
    pq.write_table(t.set_column(t.schema.get_field_index("account_masked"), "account_masked", clear), path)
    with pytest.raises(ExpectationFailed, match="account_masked holds no card number in clear") as e:
        quality.validate(CHANNEL, T1, wd)
    assert "6228480000000001234" not in str(e.value) and "622848*********1234" in str(e.value)


def test_a_fault_in_the_last_records_is_found_and_counted(wd):
    set_row(parsed_file(wd), 16, amount_fen=quality.MAX_AMOUNT_FEN + 1)
    with pytest.raises(ExpectationFailed, match="line 16: ") as e:
        quality.validate(CHANNEL, T1, wd)
    amounts = next(r for r in validation(wd) if r["dataset"] == "unionpay.acomn" and r["column"] == "amount_fen")
    assert (amounts["element_count"], amounts["unexpected_count"]) == (17, 1)
    assert "expect_column_values_to_be_between" in str(e.value)


def test_suite_comes_from_the_layout_declaration():
    from formats.registry import get
    suite = quality.layout_suite(get("unionpay.acomn"), T1)
    words = [c.words for c in suite.rows]
    assert "key stan present" in words and "msg_type in its code table" in words
    assert suite.unique == ()  # a repeated UnionPay key is the DUPLICATE break, not a file fault
    assert quality.layout_suite(get("ledger.journal"), T1).unique == ("journal_no", "seq_no")


def set_rows(path, changes: dict[int, dict]):
    """Rewrite records of any Parquet file by position (results and extracts; `set_row` goes by `_line`)."""
    t = pq.read_table(path)
    for position, values in changes.items():
        for col, value in values.items():
            i = t.schema.get_field_index(col)
            column = t[col].to_pylist()
            column[position] = value
            t = t.set_column(i, col, pa.array(column, t.schema.field(col).type))
    pq.write_table(t, path)


def inject_every_kind_of_fault(wd):
    """Faults of every check type, in each dataset, with nulls the range and set checks must skip."""
    acomn = parsed_file(wd)
    set_row(acomn, 3, stan=None)                                   # a key absent
    set_row(acomn, 4, msg_type="0999")                             # a code outside its table
    set_row(acomn, 5, amount_fen=0)                                # out of range, low ...
    set_row(acomn, 6, amount_fen=quality.MAX_AMOUNT_FEN + 1)       # ... and high
    set_row(acomn, 7, amount_fen=None)                             # null: not a range fault, but a null in the
    for line in (8, 9, 10, 11, 12, 13, 14):                        # shown amount of every other offending row
        set_row(acomn, line, partial_amount_fen=-1)                # more offending rows than are shown
    journal = wd.ledger_extract(T1)
    set_rows(journal, {1: {"seq_no": None}, 2: {"acct_date": quality.dt.date(2026, 12, 25)},
                       3: {"reason_code": "E777"}, 4: {"reason_code": ""}, 5: {"dr_cr": None}})
    t = pq.read_table(journal)
    pq.write_table(pa.concat_tables([t, t.slice(6, 1), t.slice(6, 1)]), journal)   # a key three times
    results = wd.table_path("recon_result", CHANNEL, T1)
    set_rows(results, {0: {"account_masked": "6228480000000001234"},
                       1: {"account_masked": "6228480000000005678\n"},  # Python's `$` matches before a newline
                       2: {"account_masked": "x6228480000000001234"},   # not a card number alone: no fault
                       3: {"outcome": None}, 4: {"status": "X"}, 5: {"status": None},
                       6: {"business_date": quality.dt.date(2026, 11, 20)}, 7: {"origin_date": None}})
    t = pq.read_table(results)
    pq.write_table(pa.concat_tables([t, t.slice(9, 1)]), results)   # an item twice
    with wd.control() as db:
        db.execute("UPDATE files SET flag_records = 19")            # a control total off


def test_aggregates_in_duckdb_give_the_rows_gx_gives_on_the_rows(wd, monkeypatch):
    """Each row check's count and offending lines as DuckDB finds them equal GX's run on all the rows of each
    dataset: the SQL translation (nulls, NaN, bounds, regex) is the one GX applies."""
    inject_every_kind_of_fault(wd)
    runs = []
    run_suite = quality.run_suite
    monkeypatch.setattr(quality, "run_suite", lambda suite, dataset, parts, key=(): runs.append(
        (suite, dataset, parts)) or run_suite(suite, dataset, parts, key))
    with pytest.raises(ExpectationFailed) as e:
        quality.validate(CHANNEL, T1, wd)
    rows = {(r["file"], r["description"]): r for r in validation(wd)}
    judged = 0
    for suite, dataset, parts in runs:
        for part in parts:
            table = pq.read_table(part.records)
            for check in suite.rows:
                if not set(check.columns) <= set(table.column_names):
                    continue
                gx = quality._run(table.to_pandas(), [check.expectation()])[0].result
                index = pa.array(gx.get("unexpected_index_list") or [], pa.int64())[:quality.SHOW_ROWS]
                first = table.take(index)["_line"].to_pylist() if "_line" in table.column_names else []
                row = rows[part.file, check.words]
                assert (row["element_count"], row["unexpected_count"]) == (table.num_rows, gx["unexpected_count"])
                assert [int(n) for n in re.findall(r"line (\d+):", row["offending"])] == first, check.words
                judged += 1
    assert {dataset for _, dataset, _ in runs} == {"unionpay.acomn", "ledger.journal", "recon_result"}
    assert judged == sum(1 for r in rows.values() if not r["description"].startswith(("key (", "control total")))
    failed = {(r["dataset"], r["description"]): (r["unexpected_count"], r["offending"]) for r in rows.values()
              if not r["success"]}
    assert {k[0] for k in failed} == {"unionpay.acomn", "ledger.journal", "recon_result"}
    assert failed["unionpay.acomn", "key stan present"][0] == 1
    assert failed["unionpay.acomn", "amount_fen between 1 and 100000000000 fen"][0] == 2     # the null skipped
    assert failed["unionpay.acomn", "partial_amount_fen between 0 and 100000000000 fen"][0] == 7
    assert failed["unionpay.acomn", "partial_amount_fen between 0 and 100000000000 fen"][1].count("line ") == 5
    assert failed["ledger.journal", "reason_code in its code table"][0] == 1                  # "" allowed, null skipped
    assert failed["ledger.journal", "key (journal_no, seq_no) unique"][0] == 1
    assert failed["recon_result", "account_masked holds no card number in clear"][0] == 2
    assert failed["recon_result", "status is S, F, R or P"][0] == 1
    assert ("recon_result", "origin_date between 2026-10-21 and 2026-11-21") not in failed
    assert "622848*********1234" in str(e.value) and "6228480000000001234" not in str(e.value)


def test_an_expectation_without_a_sql_translation_is_refused():
    schema = pa.schema([("amount_fen", pa.int64()), ("code", pa.string())])
    with pytest.raises(NotImplementedError, match="expect_column_values_to_be_unique"):
        quality._unexpected_sql(Check("unique", "expect_column_values_to_be_unique", {"column": "code"}), schema)
    with pytest.raises(NotImplementedError, match="mostly"):
        quality._unexpected_sql(Check("in set", "expect_column_values_to_be_in_set",
                                      {"column": "code", "value_set": ["A"], "mostly": 0.9}), schema)
    with pytest.raises(TypeError, match="string column"):
        quality._unexpected_sql(Check("no match", "expect_column_values_to_not_match_regex",
                                      {"column": "amount_fen", "regex": "^1"}), schema)
