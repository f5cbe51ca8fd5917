"""Small, pure helpers that every flow of the team uses."""


def standardize_date_format(value: str) -> str:
    """12/24/2024 -> 2024-12-24 (month/day/year, as the source systems write dates)."""
    month, day, year = value.split("/")
    return f"{year}-{int(month):02d}-{int(day):02d}"
