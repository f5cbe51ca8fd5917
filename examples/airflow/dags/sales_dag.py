"""A daily DAG whose tasks get the team's ``etl`` from packyard, in the two usual ways.

- ``report``: a Python task whose work runs in packyard's cached environment (``packyard run``);
- ``report_venv``: Airflow's own virtualenv task, installing from the namespace's index.

The callables live in ``packyard_tasks.py`` (no Airflow imports), next to this file in the
DAGs folder. The Airflow Variable ``packyard_url`` holds packyard's address.
"""

from datetime import datetime

from airflow.sdk import dag, task  # Airflow 3; on Airflow 2: from airflow.decorators import dag, task
from packyard_tasks import sales_report, standardize_in_virtualenv

PACKYARD_INDEX = "{{ var.value.packyard_url }}/company.sales/simple/"
DAY = "{{ macros.ds_format(ds, '%Y-%m-%d', '%m/%d/%Y') }}"


@dag(schedule="@daily", start_date=datetime(2024, 12, 1), catchup=False, tags=["packyard"])
def sales():
    task(task_id="report")(sales_report)(DAY)
    task.virtualenv(
        task_id="report_venv",
        requirements=["etl==0.1.0"],
        index_urls=[PACKYARD_INDEX],
        venv_cache_path="/tmp/airflow-venvs",
    )(standardize_in_virtualenv)(DAY)


sales()
