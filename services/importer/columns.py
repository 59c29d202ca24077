"""The columns of a suspicious-records file (docs/import.md): each with its Chinese and
English header, whether every file must have it, and the header line read into column keys."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from services.protocol import rules

from .errors import FileRefused


@dataclass(frozen=True)
class Column:
    key: str            # the English header, and how code names the column
    zh: str             # the Chinese header
    required: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.zh} ({self.key})"


COLUMNS = (
    Column("record_no", "疑点编号", required=True),
    Column("institution_name", "定点机构名称", required=True),
    Column("institution_credit_code", "机构统一社会信用代码"),
    Column("institution_code", "机构编码"),
    Column("person_name", "参保人姓名"),
    Column("person_id_number", "身份证号", aliases=("参保人身份证号",)),
    Column("person_role", "人员类别"),
    Column("amount", "涉及金额", aliases=("涉及金额(元)",)),
    Column("amount_fen", "涉及金额(分)"),
    Column("rule_hit", "违规规则", required=True),
    Column("period_from", "疑点期间起", required=True),
    Column("period_to", "疑点期间止", required=True),
    Column("summary", "疑点描述", required=True),
    Column("title", "线索标题"),
    Column("legal_basis", "法律依据"),
    Column("team_reported_at", "专班报告时间"),
    Column("approved_by", "审批人"),
    Column("approved_at", "审批时间"),
    Column("transfer_letter_file", "移送书文件", required=True),
    Column("investigation_report_file", "调查报告文件", required=True),
    Column("other_evidence_files", "其他证据文件"),
    Column("remarks", "备注"),  # the clerk's own notes: read, never sent
)
BY_KEY = {column.key: column for column in COLUMNS}
# One of these gives the amount: yuan as a decimal string, or whole fen.
AMOUNT_COLUMNS = ("amount", "amount_fen")


def _normal(header: str) -> str:
    """Full-width brackets and letters as Excel users type them, spaces and case ignored."""
    return "".join(unicodedata.normalize("NFKC", header).split()).lower()


_HEADERS = {_normal(name): column.key for column in COLUMNS for name in (column.key, column.zh, *column.aliases)}


def label(key: str | None) -> str:
    """How a report names a column: ``涉及金额 (amount)``; ``-`` for none."""
    if key is None:
        return "-"
    column = BY_KEY.get(key)
    return column.label if column else key


def resolve_header(cells: list[str]) -> list[str | None]:
    """The column key of each header cell (None for a blank trailing cell); refuses unknown,
    repeated and missing columns, naming them, so that no value is silently dropped."""
    keys: list[str | None] = []
    unknown, seen, repeated = [], {}, []
    for cell in cells:
        text = (cell or "").strip()
        if not text:
            keys.append(None)
            continue
        key = _HEADERS.get(_normal(text))
        if key is None:
            unknown.append(text)
        elif key in seen:
            repeated.append(f"{seen[key]} / {text}")
        else:
            seen[key] = text
        keys.append(key)
    if unknown:
        raise FileRefused(rules.IMPORT_COLUMNS, f"unknown column(s): {', '.join(unknown)} (the columns are listed "
                                                f"in docs/import.md; a misspelt header would drop its values)")
    if repeated:
        raise FileRefused(rules.IMPORT_COLUMNS, f"column(s) given twice: {', '.join(repeated)}")
    missing = [BY_KEY[key].label for key in BY_KEY if BY_KEY[key].required and key not in seen]
    if not any(key in seen for key in AMOUNT_COLUMNS):
        missing.append(f"{BY_KEY['amount'].label} or {BY_KEY['amount_fen'].label}")
    if missing:
        raise FileRefused(rules.IMPORT_COLUMNS, f"missing column(s): {', '.join(missing)}")
    if all(key in seen for key in AMOUNT_COLUMNS):
        raise FileRefused(rules.IMPORT_COLUMNS, f"give {BY_KEY['amount'].label} or {BY_KEY['amount_fen'].label}, "
                                                f"not both")
    return keys
