"""The metadata database: managed clusters, hosts, credentials, locks and tasks.

Two backends share one schema: SQLite (the embedded default) and any MySQL-protocol database
(MySQL, MariaDB, an OceanBase MySQL tenant) through pymysql.
"""
