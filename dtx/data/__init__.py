"""Readers for the texts and labelled pairs users have (and the real data sets scripts/get_data.sh puts in data/)."""
