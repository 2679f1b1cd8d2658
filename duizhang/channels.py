"""What each channel receives: which files, in which layout, on which SFTP folder. Data only."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelFiles:
    channel: str
    ledger_channel: str
    layout: str
    name_pattern: str
    """A regex over the file name; `{yymmdd}` and `{yyyymmdd}` stand for the business date T; group `seq` is NN."""
    latest_sequence_wins: bool = True
    """UnionPay and PBOC: a higher NN for the same date is a corrected resend that replaces the earlier file."""

    def matcher(self, date: dt.date) -> re.Pattern[str]:
        return re.compile(self.name_pattern.format(yymmdd=f"{date:%y%m%d}", yyyymmdd=f"{date:%Y%m%d}") + r"$")

    def remote_dir(self, date: dt.date) -> str:
        return f"/outbox/{date:%Y%m%d}"


CHANNEL_FILES = {
    c.channel: c for c in (
        ChannelFiles("unionpay_acq", "UNIONPAY_ACQ", "unionpay.acomn", r"IND{yymmdd}(?P<seq>\d\d)ACOMN"),
    )
}
