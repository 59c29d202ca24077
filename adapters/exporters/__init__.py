"""Exporters: the office's statistics (报表台账) as CSV and Excel workbooks.

They only format the figures of ``services.office.stats.StatsReport``; the definitions of the
figures live there. Money is written in yuan computed exactly from integer fen.
"""
