"""Batch import of suspicious records (疑点数据): a CSV or XLSX file read into rows, each row
mapped to a clue_transfer body and checked with the node's own schema, a row key per record,
the rows sent through the running node's ``refer_clues`` and a report per row.

Plain Python, no Nameko: the command line (services/cli/import_cmd.py) gives the sender its
RPC call. Columns, rules and exit status: docs/import.md.
"""
