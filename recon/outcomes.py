"""The outcomes of reconciliation (mission.md): every record that enters leaves with exactly one of them."""
from enum import Enum


class Outcome(str, Enum):
    MATCHED = "MATCHED"                      # 对平: key, amount and status agree
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"      # 金额不符
    STATUS_MISMATCH = "STATUS_MISMATCH"      # 状态不符
    COUNTERPARTY_ONLY = "COUNTERPARTY_ONLY"  # 对方有我方无 (长款)
    LEDGER_ONLY = "LEDGER_ONLY"              # 我方有对方无 (短款)
    DUPLICATE = "DUPLICATE"                  # 重复
    PENDING = "PENDING"                      # 挂账/跨日待对: may still match on a later day
    QUARANTINED = "QUARANTINED"              # unreadable or failed a rule; kept with its reason, never matched

    @property
    def is_break(self) -> bool:
        return self in BREAKS


BREAKS = frozenset({Outcome.AMOUNT_MISMATCH, Outcome.STATUS_MISMATCH, Outcome.COUNTERPARTY_ONLY,
                    Outcome.LEDGER_ONLY, Outcome.DUPLICATE})
BREAKS_SQL = "(" + ", ".join(f"'{o.value}'" for o in Outcome if o in BREAKS) + ")"
"""The break outcomes as an SQL list, for `outcome IN {BREAKS_SQL}`."""


class Side(str, Enum):
    COUNTERPARTY = "counterparty"
    LEDGER = "ledger"
