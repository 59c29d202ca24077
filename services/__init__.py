"""cluebus services: domain, handlers, Nameko services, dependency providers and the CLI."""
