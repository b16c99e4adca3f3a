"""A simulated OceanBase 4.x cluster for tests and demos.

It speaks the real MySQL wire protocol (mysql-mimic) on one loopback address per server, keeps the
cluster's state in SQLite, answers OceanBase's system views and statements, is strict about what it
does not know, and lets tests inject faults through a control HTTP API. It can also run an OBProxy in front
of the cluster (obsim.proxy) and present the cluster as a standby.
"""
