"""Plain-Python core: models, statuses, errors, ports, service and runner. Imports no framework."""
