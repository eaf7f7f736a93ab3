"""Names as people type them, checked against the server's lists: `lookup` resolves and
suggests, `request` checks a job's names before sending it, `answer` checks what the server used.
"""
