"""A Metaflow flow whose step gets its dependencies and the team's ``etl`` from packyard.

The step asks packyard's Python API for an environment with ``requirements.txt`` resolved
against the namespace's index (``Client.environment``, as ``packyard env``: resolved once,
built once per machine, shared with other workers as a bundle, reused while the index is
unchanged) and runs ``transform.py`` in it. Metaflow's own process needs nothing but
``metaflow`` and the packyard client (``pip install packyard``).

    export PACKYARD_URL=https://packyard.example.com PACKYARD_TOKEN=...
    python flow.py run                       # first run: the environment is built
    python flow.py run --day 1/2/2025        # later runs: "(reused)"
"""

import os
import subprocess

from metaflow import FlowSpec, Parameter, step

from packyard import Client

HERE = os.path.dirname(os.path.abspath(__file__))


class SalesFlow(FlowSpec):
    packyard_namespace = Parameter("packyard_namespace", default="company.sales", help="Namespace whose index to use")
    day = Parameter("day", default="12/24/2024", help="Day to report (month/day/year)")

    @step
    def start(self):
        requirements = os.path.join(HERE, "requirements.txt")
        with Client() as packyard:  # PACKYARD_URL, PACKYARD_TOKEN
            env = packyard.environment(self.packyard_namespace, requirement_files=[requirements])
        how = "reused" if env.reused else "unpacked from the shared bundle" if env.from_bundle else "built"
        print(f"environment {env.key[:12]} ({how})")
        transform = [str(env.python), os.path.join(HERE, "transform.py"), self.day]
        self.report = subprocess.run(transform, check=True, capture_output=True, text=True).stdout.strip()
        self.next(self.end)

    @step
    def end(self):
        print(self.report)


if __name__ == "__main__":
    SalesFlow()
