"""HTML pages, one module per area: pages (dashboard, datasets, jobs, models), units (survey), fractures."""
