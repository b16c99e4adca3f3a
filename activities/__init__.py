"""Activities of ob-takeover: the real work of each subtask, on the cluster and on its hosts."""
