"""The sales DAG's task callables, kept free of Airflow imports.

So they can be tested and reused without Airflow (the test suite calls them directly: see
examples/airflow/README.md). The DAG file wraps them in Airflow tasks.
"""

import subprocess

REPORT = "import sys, etl.utils; print(etl.utils.standardize_date_format(sys.argv[1]))"


def sales_report(day: str, namespace: str = "company.sales") -> str:
    """Run the report in packyard's cached environment with ``etl``; return what it printed.

    ``Client.env`` (``packyard env``) resolves ``etl`` against the namespace's index once,
    builds the environment once per worker (or unpacks the one another worker shared) and
    reuses it while the index is unchanged. PACKYARD_URL and PACKYARD_TOKEN come from the
    worker's environment.
    """
    from packyard import Client  # the worker's packyard client; the virtualenv task below needs none

    with Client() as packyard:
        python = packyard.env(namespace, "etl")
    cmd = [str(python), "-c", REPORT, day]
    report = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    print(report)
    return report


def standardize_in_virtualenv(day: str) -> str:
    """The body of the ``@task.virtualenv`` task: it runs in the virtualenv Airflow made with pip
    from the namespace's index (``index_urls``), so everything it imports is imported here."""
    import etl.utils

    return etl.utils.standardize_date_format(day)
