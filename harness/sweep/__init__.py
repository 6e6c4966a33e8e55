"""Running a sweep: Hydra glue (the task, the sweeper's body, planned cells handed to a
launcher), baselines, the parent's sweep, one cell end to end in worker processes, progress
lines, the closing summary and the hand-over to whatever reports on a sweep's end."""
