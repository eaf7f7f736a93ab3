"""`sdcli interactive`: type a prompt, look, adjust, again — over the same core as `generate`.

Only `ui` (and `completion`) import prompt_toolkit, and only once interactive mode starts: the
session state, the `/` commands and the line-by-line loop work without it (stdin not a terminal).
"""
