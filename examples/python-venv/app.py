"""Prints a small table with a package that only the builder installed."""
import sys

from tabulate import tabulate

rows = [["python", sys.version.split()[0]], ["venv", sys.prefix]]
print("python venv example")
print(tabulate(rows, headers=["what", "value"], tablefmt="github"))
