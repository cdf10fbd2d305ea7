"""Grouped triplet, mask-consistency and grader losses (OAMN §3.2-3.5); not implemented yet."""
