"""services/protocol/rules.py is exactly docs/protocol.md section 18, and the code base names
every rule code through it.

- The three sets equal the codes of the three tables of section 18 (the first code of each
  row; a section without a table: every code of its prose), and ``ANSWERED`` reads as the
  "answered" column of 18.1 does, and as the test vectors' ``authenticated`` flags do.
- No string literal of a rule code is left in services/, adapters/ or schemas/ (outside
  rules.py); every class's ``rule`` attribute names a constant of rules.py; no call that
  carries a rule (``Rejection``, ``ComposeError``, ``PublishFailed``, ``reject``,
  ``quarantine``..., or any ``rule=``) is given a literal code; every class with a ``rule`` is
  raised somewhere; and every code of rules.py is named somewhere in the code base (no code
  documented but never produced).
- rules.py stays a leaf that adapters/ and schemas/ can import without a cycle.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.bodies.receipts import REASON_CODE
from services.protocol import rules

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
VECTORS = ROOT / "docs" / "protocol-vectors.json"
RULES_PY = ROOT / "services" / "protocol" / "rules.py"
RULES_MODULE = "services.protocol.rules"
SCANNED = ("services", "adapters", "schemas")
# Code that names rule codes as the expectations of test vectors, not as rules it produces.
NOT_PRODUCING = {Path("services/protocol/vectors.py")}

CODE = re.compile(r"`([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)`")


# -- docs/protocol.md section 18 --------------------------------------------------------------
def _section(text: str, start: str, end: str) -> str:
    begin = text.index(start)
    stop = text.find(end, begin + len(start))
    return text[begin:stop if stop != -1 else len(text)]


def _rows(section: str) -> list[list[str]]:
    """The body rows of the section's table, as cells."""
    rows = []
    for line in section.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue  # the separator row
        rows.append(cells)
    return rows[1:]  # without the header


def _codes(section: str) -> set[str]:
    rows = _rows(section)
    if rows:
        codes = []
        for cells in rows:
            found = CODE.search(cells[0])
            assert found, f"table row without a code: {cells}"
            codes.append(found.group(1))
        assert len(codes) == len(set(codes)), f"a code is listed twice: {codes}"
        return set(codes)
    return set(CODE.findall(section))


TEXT = PROTOCOL_MD.read_text(encoding="utf-8")
SECTION_18 = _section(TEXT, "\n## 18. Rule codes", "\n## 19.")
SECTION_18_1 = _section(SECTION_18, "\n### 18.1 ", "\n### 18.2 ")
SECTION_18_2 = _section(SECTION_18, "\n### 18.2 ", "\n### 18.3 ")
SECTION_18_3 = _section(SECTION_18, "\n### 18.3 ", "\n## ")


@pytest.mark.parametrize("section, expected, name", [
    (SECTION_18_1, rules.PROTOCOL_RULES, "PROTOCOL_RULES"),
    (SECTION_18_2, rules.NODE_RULES, "NODE_RULES"),
    (SECTION_18_3, rules.LOCAL_RULES, "LOCAL_RULES"),
], ids=["18.1", "18.2", "18.3"])
def test_each_set_is_exactly_its_table(section, expected, name):
    documented = _codes(section)
    assert len(documented) >= 4, "the section's codes were not found: has its layout changed?"
    assert documented - expected == set(), f"documented in docs/protocol.md but not in rules.{name}"
    assert expected - documented == set(), f"in rules.{name} but not documented in docs/protocol.md"


def test_the_three_sets_are_disjoint_and_all_rules_is_their_union():
    assert not rules.PROTOCOL_RULES & rules.NODE_RULES
    assert not rules.PROTOCOL_RULES & rules.LOCAL_RULES
    assert not rules.NODE_RULES & rules.LOCAL_RULES
    assert rules.ALL_RULES == rules.PROTOCOL_RULES | rules.NODE_RULES | rules.LOCAL_RULES
    assert len(rules.ALL_RULES) == len(rules.PROTOCOL_RULES) + len(rules.NODE_RULES) + len(rules.LOCAL_RULES)


def test_every_constant_is_named_after_its_code_and_in_a_set():
    constants = {name: value for name, value in vars(rules).items()
                 if name.isupper() and isinstance(value, str) and "." in value}
    for name, code in constants.items():
        assert name == code.upper().replace(".", "_"), f"{name} = {code!r}: name it {code.upper().replace('.', '_')}"
        # A code may travel in a receipt's reason_codes: it must be one the schema accepts.
        assert REASON_CODE.match(code), code
    assert len(set(constants.values())) == len(constants), "two constants share a code"
    assert set(constants.values()) == rules.ALL_RULES


# -- the "answered" column of 18.1 -------------------------------------------------------------
def _answered_value(cells: list[str]):
    """The rules.py value the table's "answered" text says, with the steps that allow it."""
    code, steps, answered = CODE.search(cells[0]).group(1), cells[1], cells[2]
    step_numbers = {int(s) for s in re.findall(r"\d+", steps)}
    if answered == "no":
        assert max(step_numbers) <= 8, f"{code}: unanswered yet found after authentication ({steps})"
        return rules.NO
    if answered == "yes":
        assert min(step_numbers) >= 9, f"{code}: answered yet found before authentication ({steps})"
        return rules.YES
    if answered.startswith("no (yes "):
        assert min(step_numbers) <= 8 and 16 in step_numbers, (code, steps)
        return rules.WHEN_OPENING_SEALED_BODY
    if answered.startswith("yes, but quarantined when the sender is the unknown agency"):
        return rules.YES_UNLESS_SENDER_UNKNOWN
    raise AssertionError(f"{code}: the answered column {answered!r} has no value in rules.py")


def test_answered_reads_as_the_table_column():
    rows = _rows(SECTION_18_1)
    assert rows and all(len(cells) == 4 for cells in rows)
    documented = {CODE.search(cells[0]).group(1): _answered_value(cells) for cells in rows}
    assert rules.ANSWERED == documented
    assert set(rules.ANSWERED) == rules.PROTOCOL_RULES
    assert set(rules.ANSWERED.values()) == {rules.NO, rules.YES, rules.WHEN_OPENING_SEALED_BODY,
                                            rules.YES_UNLESS_SENDER_UNKNOWN}


def test_answered_agrees_with_the_test_vectors():
    """A vector's ``authenticated`` flag is whether its rejection is answered."""
    invalid = json.loads(VECTORS.read_text(encoding="utf-8"))["invalid"]
    assert len(invalid) >= 20
    seen = set()
    for vector in invalid:
        rule, authenticated = vector["expected_rule"], vector["authenticated"]
        assert rule in rules.PROTOCOL_RULES, f"{vector['name']}: {rule} is no protocol rule"
        answered = rules.ANSWERED[rule]
        if answered == rules.NO:
            assert authenticated is False, vector["name"]
        elif answered in (rules.YES, rules.YES_UNLESS_SENDER_UNKNOWN):
            assert authenticated is True, vector["name"]
        seen.add((answered, authenticated))
    # Both sides of the conditional value occur among the vectors.
    assert {(rules.WHEN_OPENING_SEALED_BODY, False), (rules.WHEN_OPENING_SEALED_BODY, True)} <= seen


# -- the source tree ---------------------------------------------------------------------------
# Calls whose arguments carry a rule code (by the called name, a function or a method).
RULE_CALLS = {"Rejection", "ComposeError", "PublishFailed", "Refused", "reject", "quarantine",
              "quarantine_into"}


def _module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(module: str | None, level: int, package: str) -> str:
    if not level:
        return module or ""
    base = package.split(".")[: len(package.split(".")) - level + 1]
    return ".".join(base + ([module] if module else []))


class _Scan(ast.NodeVisitor):
    """What one module does with rule codes."""

    def __init__(self, path: Path, source: str):
        self.path = path
        package = _module_name(path)
        self.package = package if path.name == "__init__.py" else package.rpartition(".")[0]
        self.tree = ast.parse(source, str(path))
        self.module_aliases: set[str] = set()       # names bound to services.protocol.rules
        self.constant_aliases: dict[str, str] = {}  # local name -> constant of rules.py
        self.literals: list[tuple[int, str]] = []   # known codes written as literals
        self.literal_arguments: list[tuple[int, str]] = []  # code-shaped literals given to rule calls
        self.rule_attributes: list[tuple[int, str, ast.expr]] = []  # (line, class, value)
        self.rule_calls = 0
        self.named: set[str] = set()                # codes this module names through rules.py
        self.raised: set[str] = set()               # class names raised here
        self.docstrings = {id(node.body[0].value) for node in ast.walk(self.tree)
                           if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                           and node.body and isinstance(node.body[0], ast.Expr)
                           and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == RULES_MODULE and alias.asname:
                        self.module_aliases.add(alias.asname)
            elif isinstance(node, ast.ImportFrom):
                module = _absolute(node.module, node.level, self.package)
                for alias in node.names:
                    if module == RULES_MODULE:
                        self.constant_aliases[alias.asname or alias.name] = alias.name
                    elif f"{module}.{alias.name}" == RULES_MODULE:
                        self.module_aliases.add(alias.asname or alias.name)
        self.visit(self.tree)

    def resolve(self, node: ast.expr) -> str | None:
        """The code an expression names through rules.py, if it does."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in self.module_aliases:
            return getattr(rules, node.attr, None)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and ast.unparse(node.value) == RULES_MODULE:
            return getattr(rules, node.attr, None)
        if isinstance(node, ast.Name) and node.id in self.constant_aliases:
            return getattr(rules, self.constant_aliases[node.id], None)
        return None

    def visit_Attribute(self, node):
        code = self.resolve(node)
        if code is not None:
            self.named.add(code)
        self.generic_visit(node)

    def visit_Name(self, node):
        code = self.resolve(node)
        if code is not None:
            self.named.add(code)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and id(node) not in self.docstrings and node.value in rules.ALL_RULES:
            self.literals.append((node.lineno, node.value))

    def visit_ClassDef(self, node):
        for statement in node.body:
            if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "rule" for t in statement.targets):
                self.rule_attributes.append((statement.lineno, node.name, statement.value))
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) \
                    and statement.target.id == "rule" and isinstance(statement.value, ast.Constant) \
                    and isinstance(statement.value.value, str):  # not a dataclass's ``rule: str | None = None``
                self.rule_attributes.append((statement.lineno, node.name, statement.value))
        self.generic_visit(node)

    def visit_Raise(self, node):
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name):
            self.raised.add(exc.id)
        elif isinstance(exc, ast.Attribute):
            self.raised.add(exc.attr)
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        arguments = []
        if name in RULE_CALLS:
            self.rule_calls += 1
            arguments += list(node.args) + [k.value for k in node.keywords]
        arguments += [k.value for k in node.keywords if k.arg == "rule"]
        for argument in arguments:
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str) \
                    and REASON_CODE.match(argument.value):
                self.literal_arguments.append((argument.lineno, argument.value))
        self.generic_visit(node)


def _scan_tree() -> list[_Scan]:
    scans = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative == RULES_PY.relative_to(ROOT):
                continue
            scans.append(_Scan(relative, path.read_text(encoding="utf-8")))
    return scans


SCANS = _scan_tree()


def _problems(scans: list[_Scan]) -> list[str]:
    problems = []
    for scan in scans:
        for line, code in scan.literals:
            problems.append(f"{scan.path}:{line}: the literal {code!r}: use rules.{code.upper().replace('.', '_')}")
        for line, code in scan.literal_arguments:
            if code not in rules.ALL_RULES:
                problems.append(f"{scan.path}:{line}: {code!r} is given as a rule but is no code of rules.py")
        for line, cls, value in scan.rule_attributes:
            if scan.resolve(value) is None:
                problems.append(f"{scan.path}:{line}: {cls}.rule = {ast.unparse(value)} names no constant of rules.py")
    return problems


def test_no_rule_code_is_written_as_a_literal():
    assert _problems(SCANS) == []


def test_the_scan_sees_the_places_that_produce_codes():
    """Guards against a scan that finds nothing (and so passes whatever the code does)."""
    attributes = [entry for scan in SCANS for entry in scan.rule_attributes]
    assert len(attributes) >= 25
    assert sum(scan.rule_calls for scan in SCANS) >= 20
    by_path = {str(scan.path): scan for scan in SCANS}
    assert {"JSON_MALFORMED", "SIGNATURE_INVALID", "BODY_SEALED"} <= {
        ast.unparse(value).rpartition(".")[2] for _, _, value in by_path["adapters/crypto/exceptions.py"].rule_attributes}
    assert rules.CLOCK_SKEW in by_path["services/protocol/verify.py"].named
    assert rules.RECEIPT_WRONG_SENDER in by_path["services/handlers/receiving.py"].named


def test_the_scan_catches_literals():
    """The checks above, run on code that breaks each of them."""
    bad = _Scan(Path("services/handlers/example.py"), '''
from services.protocol import rules
from services.protocol.rules import KEY_REVOKED as REVOKED


class Fine(Exception):
    """Raised as key.revoked (a docstring may name a code)."""
    rule = REVOKED


class Annotated(Exception):
    rule: str = "key.expired"


class Literal(Exception):
    rule = "signature.invalid"


class Unknown(Exception):
    rule = "made.up"


def f(raw):
    raise Rejection("clock.skew", "late", authenticated=True)


def g(self, raw):
    ok = rules.BODY_INVALID
    return self.quarantine(raw, "not.documented", "detail"), ReceiveOutcome("x", rule="also.undocumented")
''')
    problems = "\n".join(_problems([bad]))
    assert "Fine" not in problems
    assert "'signature.invalid'" in problems and "Literal.rule" in problems
    assert "Unknown.rule = 'made.up'" in problems
    assert "'key.expired'" in problems and "Annotated.rule" in problems
    assert "'key.revoked'" not in problems
    assert "'clock.skew'" in problems
    assert "'not.documented' is given as a rule" in problems
    assert "'also.undocumented' is given as a rule" in problems
    assert bad.named == {rules.KEY_REVOKED, rules.BODY_INVALID}


def test_every_documented_code_is_produced_somewhere():
    named = set().union(*(scan.named for scan in SCANS if scan.path not in NOT_PRODUCING))
    assert rules.ALL_RULES - named == set(), "documented (rules.py, protocol.md §18) but named by no code"


def test_every_class_with_a_rule_is_raised():
    raised = set().union(*(scan.raised for scan in SCANS))
    never = sorted(f"{scan.path}: {cls}" for scan in SCANS for _, cls, _ in scan.rule_attributes
                   if cls not in raised)
    assert never == [], "exception classes that nothing raises"


# -- where rules.py lives ----------------------------------------------------------------------
@pytest.mark.parametrize("path", ["services/protocol/rules.py", "services/protocol/__init__.py",
                                  "services/__init__.py"])
def test_rules_is_a_leaf_module(path):
    """adapters/ and schemas/ import rules.py: it, and the packages above it, import nothing."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    imports = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports == []


def test_the_lowest_layers_import_only_the_rule_codes_of_services():
    code = ("import sys, adapters.crypto.exceptions, adapters.storage.exceptions, schemas.exceptions; "
            "print(sorted(m for m in sys.modules if m == 'services' or m.startswith('services.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(sorted(["services", "services.protocol", RULES_MODULE]))
