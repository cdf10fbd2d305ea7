"""Tests of the OAMN pipeline in examples/oamn."""
