"""Readers for the texts and labelled pairs users have (and the real data sets in ../shared/data)."""
