"""Evidence bundles of a referral (docs/evidence.md): exported from a node's database, signed
by its agency, verified offline with nothing but the files. No framework here."""
