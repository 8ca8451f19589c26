"""The tools around the runtime: the `incidentflow` command (each service contributes its
own commands), the local stack (`make up`), the dev inbox, and the sandboxes tests and
benchmarks run in. The runtime (`incidentflow/`) imports nothing from here nor from
`services/`."""
