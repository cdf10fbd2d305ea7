"""Complete pipelines composed from the four oamn packages (run from the repository root)."""
