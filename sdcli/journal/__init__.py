"""The run journal: what a run of many units planned and what became of each unit, in SQLite
beside the history, so a run stopped by Ctrl-C, a crash, `kill -9` or a reboot can be resumed
(`generate --resume`, `sdcli resume`) and does only what is not done, each unit saved once."""
