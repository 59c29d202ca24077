"""Body contracts, one module per family of kinds."""
