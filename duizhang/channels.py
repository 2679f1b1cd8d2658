"""What each channel receives: which files, in which layout, on which SFTP folder, and which reconciliation uses
each kind. Data only."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FileKind:
    kind: str
    """A short name (`acomn`, `3102`, ...), recorded in the parse manifest."""
    layout: str
    name_pattern: str
    """A regex over the file name; `{yymmdd}` and `{yyyymmdd}` stand for the business date T; group `seq` is NN."""
    reconciled_by: tuple[str, ...] = ()
    """The reconciliations (recon/channels.py) whose counterparty side this kind is; empty: received and parsed
    only (UnionPay's ERRN, answered by the disputes step)."""
    amount_field: str = "amount_fen"
    """The detail field holding the record's amount in fen (counted for conservation, also when quarantined)."""

    def matcher(self, date: dt.date) -> re.Pattern[str]:
        return re.compile(self.name_pattern.format(yymmdd=f"{date:%y%m%d}", yyyymmdd=f"{date:%Y%m%d}") + r"$")


@dataclass(frozen=True)
class ChannelFiles:
    channel: str
    ledger_channel: str
    kinds: tuple[FileKind, ...]
    latest_sequence_wins: bool = False
    """UnionPay and PBOC: a higher NN for the same date is a corrected resend that replaces the earlier file (per
    kind). Batch channels: every batch of the day counts; NN numbers batches."""

    def matcher(self, date: dt.date) -> re.Pattern[str]:
        """One regex matching any of the channel's file names (without the `seq` group: see `kind_matching`)."""
        return re.compile("|".join(f"(?:{k.matcher(date).pattern.replace('(?P<seq>', '(?:')})" for k in self.kinds))

    def kind_matching(self, name: str, date: dt.date) -> tuple[FileKind, re.Match[str]]:
        for k in self.kinds:
            if m := k.matcher(date).match(name.removesuffix(".gz")):
                return k, m
        raise KeyError(f"{self.channel}: {name} is not a file this channel receives")

    def remote_dir(self, date: dt.date) -> str:
        return f"/outbox/{date:%Y%m%d}"

    def reconciliations(self) -> list[str]:
        """The reconciliations of the channel's files, the channel's own first (tips: tips, tips_3111)."""
        names = [r for k in self.kinds for r in k.reconciled_by]
        return sorted(set(names), key=lambda r: (r != self.channel, r))

    @property
    def layout(self) -> str:
        """The layout of the channel's first kind (the one most tools mean by "the channel's file")."""
        return self.kinds[0].layout


CHANNEL_FILES = {
    c.channel: c for c in (
        ChannelFiles("unionpay_acq", "UNIONPAY_ACQ", (
            FileKind("acomn", "unionpay.acomn", r"IND{yymmdd}(?P<seq>\d\d)ACOMN", ("unionpay_acq",)),
            FileKind("errn", "unionpay.errn", r"IND{yymmdd}(?P<seq>\d\d)ERRN"),
        ), latest_sequence_wins=True),
        ChannelFiles("cnaps2", "CNAPS", (
            FileKind("dzmx", "pboc.cnaps2_dzmx", r"CNAPS2_DZMX_\d{{12}}_{yyyymmdd}_(?P<seq>\d\d)\.txt", ("cnaps2",),
                     amount_field="amount"),
        ), latest_sequence_wins=True),
        ChannelFiles("tips", "TIPS", (
            # a pack may be entrusted on an earlier date than the day it is executed: any EntrustDate
            FileKind("3102", "tips.3102", r"TIPS_3102_\w{{11}}_\d{{8}}_\d{{8}}\.xml", ("tips",), "TraAmt"),
            FileKind("3111", "tips.3111", r"TIPS_3111_\d{{12}}_{yyyymmdd}_\d{{4}}_\d+\.xml", ("tips_3111",),
                     "TraAmt"),
        )),
        ChannelFiles("housing_fund", "HOUSING_FUND", (
            FileKind("bdc_bat", "housing_fund.bdc_bat", r"BDC_BAT_\d{{16,35}}\.DAT", ("housing_fund",),
                     "amount"),
        )),
        ChannelFiles("utility", "UTILITY", (
            FileKind("dk", "utility.dk", r"DK_\w{{8}}_{yyyymmdd}_(?P<seq>\d\d)\.txt", ("utility",)),
        )),
        ChannelFiles("payroll", "PAYROLL", (
            FileKind("batch_xlsx", "payroll.batch_xlsx", r"DF_\w{{10}}_{yyyymmdd}_(?P<seq>\d\d)\.xlsx", ("payroll",)),
            FileKind("batch_csv", "payroll.batch_csv", r"DF_\w{{10}}_{yyyymmdd}_(?P<seq>\d\d)\.csv", ("payroll",)),
        )),
    )
}
