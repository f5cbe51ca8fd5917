"""The sales flow's script, kept as a Kestra namespace file of company.sales."""

import sys

import etl.utils

print("sales:", etl.utils.standardize_date_format(sys.argv[1]), "python:", sys.prefix)
