"""What a run leaves behind: the harness clock, the raw request events, the versioned
result file a worker hands back (with upgrades from older versions) and the files of a cell's
directory."""
