"""The step's work, run in the environment packyard made (etl and tabulate come from there)."""

import sys

import etl.utils
from tabulate import tabulate

day = sys.argv[1]
print(tabulate([[day, etl.utils.standardize_date_format(day)]], headers=["raw", "standard"]))
