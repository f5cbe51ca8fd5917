"""The task-run client: what a flow's task calls at its start (pull, fetch, env, run)."""
