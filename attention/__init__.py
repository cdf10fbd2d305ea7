"""RGA-S relation-aware spatial attention mask layer (OAMN paper §3.2); not implemented yet."""
