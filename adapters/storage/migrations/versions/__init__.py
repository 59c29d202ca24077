"""Revisions: node_NNNN (branch ``node``) and office_NNNN (branch ``office``)."""
