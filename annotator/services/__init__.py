"""Writes. One module per entity; import the functions from here."""
