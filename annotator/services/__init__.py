"""Writes: every change to the database (and the media files that go with it), one module per area.
Import a function from the module that holds it; nothing is re-exported here.

- jobs:        job_create (validate, store, enqueue on commit)
- job_kinds:   the table of job kinds: kind -> runner, validator
- job_runs:    the worker side: job_run, shard_run, shards_merge (called by annotator.tasks)
- job_state:   a job row's state: claim, heartbeat, progress, cancel, finish, stale sweep
- patches:     the patch-extraction job
- patch_data:  a dataset's patches as arrays for mining/ (the row -> tensor edge)
- training:    the training job
- mining:      the mining job (single pass, shards, merge) and storing its units
- versioned:   save_versioned: optimistic concurrency + history for every label
- annotations: unit annotations and consensus (the survey)
- fractures:   hip-fracture descriptor labels
"""
