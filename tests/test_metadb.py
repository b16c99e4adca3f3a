"""The metadb on both backends: migrations, idempotent writes, the password box and cluster locks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from contracts.errors import ClusterAlreadyManaged, ClusterLocked, MasterKeyError, MetadbUnavailable
from contracts.settings import load_settings
from contracts.task_view import RecordedStatus
from metadb import clusters, credentials, hosts, locks, task_starts, tasks, users
from metadb.db import Database, MetadbUrl, redact
from metadb.migrate import applied_versions, migrate, migrations
from metadb.vault import MasterKey, Vault, load_master_key, rotate_master_key


def test_migrations_apply_once(metadb: Database) -> None:
    assert applied_versions(metadb) == {m.version for m in migrations()}
    assert migrate(metadb) == []


def test_concurrent_migrations_apply_once(metadb_url: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        db = Database(metadb_url)
        try:
            results.append(migrate(db))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migrations())]


def new_cluster(db: Database, task_id: int = 7) -> int:
    return clusters.create_cluster_record(
        db,
        name="obcluster",
        ob_cluster_id=1001,
        address="127.0.0.2",
        port=2881,
        connection_mode="direct",
        version="4.2.1.8",
        task_id=task_id,
    )


def test_cluster_record_is_idempotent_and_guarded(metadb: Database) -> None:
    cluster_id = new_cluster(metadb)
    assert new_cluster(metadb) == cluster_id
    with pytest.raises(ClusterAlreadyManaged, match="already managed here"):
        new_cluster(metadb, task_id=8)
    clusters.set_cluster_status(metadb, cluster_id, clusters.RUNNING)
    with pytest.raises(ClusterAlreadyManaged, match="RUNNING"):
        new_cluster(metadb)


def test_sync_twice_leaves_the_same_rows(metadb: Database) -> None:
    cluster_id = new_cluster(metadb)
    zones = [{"name": f"zone{i}", "region": "r", "idc": f"idc{i}", "status": "ACTIVE"} for i in (1, 2, 3)]
    servers = [
        {
            "ip": f"127.0.0.{i}",
            "rpc_port": 2882,
            "sql_port": 2881,
            "zone": f"zone{i}",
            "status": "ACTIVE",
            "with_rootserver": "NO",
            "build_version": "4.2.1.8",
        }
        for i in (1, 2, 3)
    ]
    clusters.sync_topology(metadb, cluster_id, zones, servers)
    clusters.set_server_process_info(metadb, cluster_id, "127.0.0.1", 2882, {"pid": 42})
    first = (clusters.rows_of(metadb, "zones", cluster_id), clusters.rows_of(metadb, "servers", cluster_id))
    clusters.sync_topology(metadb, cluster_id, zones, servers)
    second = (clusters.rows_of(metadb, "zones", cluster_id), clusters.rows_of(metadb, "servers", cluster_id))
    assert first == second
    assert len(first[0]) == 3 and len(first[1]) == 3
    assert any(row["process_info"] == '{"pid": 42}' for row in second[1])
    # A server that left the cluster is removed by the next sync.
    clusters.sync_topology(metadb, cluster_id, zones, servers[:2])
    assert len(clusters.rows_of(metadb, "servers", cluster_id)) == 2
    clusters.remove_cluster_record(metadb, cluster_id)
    assert clusters.get_cluster(metadb, cluster_id) is None
    assert clusters.rows_of(metadb, "servers", cluster_id) == []


def test_password_box_encrypts_at_rest(metadb: Database, vault: Vault) -> None:
    credential_id = credentials.save_credential(
        metadb, vault, kind=credentials.HOST, name="admin-ssh", username="admin", secret="Pa$$w0rd'\"\\%"
    )
    row = metadb.one("SELECT * FROM credentials WHERE id = ?", (credential_id,))
    assert row is not None and "Pa$$w0rd" not in str(row)
    assert row["secret"].startswith(f"v1:{vault.key.key_id}:")
    credential = credentials.get_credential(metadb, vault, credential_id)
    assert credential.secret == "Pa$$w0rd'\"\\%"
    assert "Pa$$" not in repr(credential)
    # The same name saved again replaces the secret under the same id.
    again = credentials.save_credential(
        metadb, vault, kind=credentials.HOST, name="admin-ssh", username="admin", secret="other"
    )
    assert again == credential_id
    assert credentials.get_credential(metadb, vault, credential_id).secret == "other"


def test_wrong_master_key_is_a_clear_error(metadb: Database, vault: Vault) -> None:
    credentials.save_credential(metadb, vault, kind=credentials.HOST, name="x", username="u", secret="s")
    stranger = Vault(MasterKey.generate())
    with pytest.raises(MasterKeyError, match="is not the one that encrypted"):
        stranger.verify(metadb)
    row = metadb.one("SELECT secret FROM credentials")
    assert row is not None
    with pytest.raises(MasterKeyError, match="encrypted with master key"):
        stranger.decrypt(row["secret"], "credential:HOST:x")


def test_key_rotation_reencrypts_every_secret(metadb: Database, vault: Vault) -> None:
    ids = [
        credentials.save_credential(
            metadb, vault, kind=credentials.HOST, name=f"h{i}", username="u", secret=f"s{i}", passphrase="pp"
        )
        for i in range(3)
    ]
    new_key = MasterKey.generate()
    assert rotate_master_key(metadb, vault, new_key) == 3
    rotated = Vault(new_key)
    rotated.verify(metadb)
    with pytest.raises(MasterKeyError):
        vault.verify(metadb)
    assert [credentials.get_credential(metadb, rotated, i).secret for i in ids] == ["s0", "s1", "s2"]
    assert credentials.get_credential(metadb, rotated, ids[0]).passphrase == "pp"


def test_lock_is_exclusive_and_idempotent(metadb: Database) -> None:
    keys = locks.lock_keys("127.0.0.2", 2881, "obcluster", 1001)
    locks.acquire(metadb, keys, 1, "wf-1", "obcluster")
    locks.acquire(metadb, keys, 1, "wf-1", "obcluster")
    with pytest.raises(ClusterLocked, match=r"cluster 127.0.0.2:2881 is locked by task 1 \(wf-1\) since "):
        locks.acquire(metadb, locks.lock_keys("127.0.0.2", 2881, None, None), 2, "wf-2", "127.0.0.2:2881")
    # The same cluster reached through another endpoint is locked by name and id.
    with pytest.raises(ClusterLocked):
        locks.acquire(metadb, locks.lock_keys("127.0.0.9", 2883, "obcluster", 1001), 2, "wf-2", "obcluster")
    assert locks.release(metadb, "wf-1") == 2
    assert locks.release(metadb, "wf-1") == 0
    locks.acquire(metadb, keys, 2, "wf-2", "obcluster")
    assert [row["workflow_id"] for row in locks.list_locks(metadb)] == ["wf-2", "wf-2"]


def test_concurrent_lockers_exactly_one_wins(metadb_url: str) -> None:
    setup = Database(metadb_url)
    migrate(setup)
    setup.close()
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def take(workflow_id: str) -> None:
        db = Database(metadb_url)
        barrier.wait()
        try:
            locks.acquire(db, locks.lock_keys("127.0.0.2", 2881, "c", 1), 1, workflow_id, "c")
            winners.append(workflow_id)
        except ClusterLocked:
            pass
        finally:
            db.close()

    threads = [threading.Thread(target=take, args=(f"wf-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_hosts_register_reserve_and_undo(metadb: Database) -> None:
    host_type = hosts.add_host_type(metadb, "standard")
    assert hosts.add_host_type(metadb, "standard") == host_type
    hosts.register_host(
        metadb, ip="127.0.0.2", ssh_port=22, kind="DEDICATED_PHYSICAL_MACHINE", publish_ports=None,
        host_type_id=host_type, credential_id=1, task_id=7,
    )  # fmt: skip
    hosts.register_host(
        metadb, ip="127.0.0.3", ssh_port=22, kind="DEDICATED_PHYSICAL_MACHINE", publish_ports=None,
        host_type_id=host_type, credential_id=1, task_id=3,
    )  # fmt: skip
    hosts.reserve_host(metadb, "127.0.0.2", 5, {"cpus": 4})
    hosts.reserve_host(metadb, "127.0.0.3", 5, {"cpus": 8})
    assert hosts.find_host(metadb, "127.0.0.2")["facts"] == {"cpus": 4}  # type: ignore[index]
    assert hosts.unreserve_hosts(metadb, 5, 7) == ["127.0.0.2"]
    assert hosts.find_host(metadb, "127.0.0.2") is None
    remaining = hosts.find_host(metadb, "127.0.0.3")
    assert remaining is not None and remaining["reserved_by_cluster_id"] is None
    with pytest.raises(ValueError, match=r"used by host 127\.0\.0\.3"):
        hosts.delete_host_type(metadb, host_type)


@pytest.mark.unit
def test_master_key_file_created_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    key = load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY_FILE": str(path)}))
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY_FILE": str(path)})) == key
    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match="make it 0600"):
        load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY_FILE": str(path)}))
    with pytest.raises(MasterKeyError, match="must hold 32 bytes"):
        load_master_key(load_settings({"OB_TAKEOVER_MASTER_KEY": "c2hvcnQ="}))


@pytest.mark.unit
def test_unreachable_mysql_metadb_names_url_without_password() -> None:
    db = Database("mysql://admin:TopSecret@127.0.0.1:1/metadb")
    with pytest.raises(MetadbUnavailable) as info:
        db.check()
    assert "TopSecret" not in str(info.value)
    assert "mysql://admin:***@127.0.0.1:1/metadb" in str(info.value)
    assert redact("mysql://a:b@h:1/d") == "mysql://a:***@h:1/d"
    assert str(MetadbUrl.parse("sqlite:///var/x.db")) == "sqlite:///var/x.db"


def test_reconnects_when_the_mysql_metadb_comes_back(tmp_path: Path) -> None:
    from tests.support.mariadb import create_database, mariadb_server

    datadir = tmp_path / "mariadb"
    with mariadb_server(datadir) as (host, port):
        db = Database(create_database(host, port, "metadb_restart"))
        migrate(db)
        hosts.add_host_type(db, "before-restart")
    with pytest.raises(MetadbUnavailable, match=r"mysql://root:\*\*\*@127\.0\.0\.1"):
        db.query("SELECT name FROM host_types")
    with mariadb_server(datadir, port=port):
        # Same connection object: the dropped connection is replaced, the rows are there once.
        assert db.query("SELECT name FROM host_types") == [{"name": "before-restart"}]
        assert hosts.add_host_type(db, "before-restart") == 1
        assert len(db.query("SELECT * FROM host_types")) == 1
    with mariadb_server(datadir, port=port):
        # A transaction that starts on a connection dropped by the restart runs on a new one.
        with db.transaction():
            hosts.add_host_type(db, "after-restart")
        assert [r["name"] for r in db.query("SELECT name FROM host_types ORDER BY id")] == [
            "before-restart",
            "after-restart",
        ]
    db.close()


def test_users_are_found_by_their_exact_name(metadb: Database) -> None:
    """A MySQL metadb's default collation matches `ADMIN` and `admin  ` to `admin`; a login under such a
    spelling is no login (on every backend), so that each spelling cannot get guesses of its own."""
    users.add_user(metadb, "admin", users.ADMIN, "Admin-pw-123")
    assert users.find_user(metadb, "admin") is not None
    for spelling in ("ADMIN", "aDmin", "admin  ", " admin"):
        assert users.find_user(metadb, spelling) is None, spelling
        assert users.authenticate(metadb, spelling, "Admin-pw-123") is None, spelling
    assert users.authenticate(metadb, "admin", "Admin-pw-123") is not None


def test_tasks_are_paged_and_filtered_in_the_metadb(metadb: Database) -> None:
    statuses = ["RUNNING", "SUCCESSFUL", "ROLLED_BACK", "ABORTED", "REJECTED"]
    for task_id in range(1, 31):
        tasks.record_task(
            metadb, task_id=task_id, workflow_id=f"takeover-10.0.0.{task_id}-2881", run_id="r", name=None,
            status=statuses[task_id % 5], cluster_id=task_id % 3 or None,
        )  # fmt: skip
    # REJECTED tasks (no workflow ran) are never listed; newest first; a page is LIMIT/OFFSET in SQL.
    assert tasks.count_tasks(metadb) == 24
    page = tasks.list_tasks(metadb, offset=5, limit=5)
    assert [row["task_id"] for row in page] == [23, 22, 21, 20, 18]
    ended = ["SUCCESSFUL", "ROLLED_BACK"]
    assert tasks.count_tasks(metadb, statuses=ended) == 12
    assert {row["status"] for row in tasks.list_tasks(metadb, statuses=ended)} == set(ended)
    assert [row["task_id"] for row in tasks.list_tasks(metadb, cluster_id=1, statuses=["RUNNING"])] == [25, 10]
    assert tasks.list_tasks(metadb, statuses=[]) == [] and tasks.count_tasks(metadb, statuses=[]) == 0


def test_a_task_is_closed_only_while_its_run_still_holds_it(metadb: Database, vault: Vault) -> None:
    """The sweep's close: the start's passwords go, the cluster's own stay, and a row that moved on (another
    run, or an end recorded meanwhile) is left as it is."""
    tasks.record_task(
        metadb, task_id=7, workflow_id="takeover-10.0.0.7-2881", run_id="run-1", name=None, status="RUNNING"
    )
    start = credentials.save_credential(
        metadb, vault, kind=credentials.CLUSTER, name="task 7: root@sys of 10.0.0.7:2881", username="root@sys",
        secret="pw", created_by_task_id=7,
    )  # fmt: skip
    own = credentials.save_credential(
        metadb, vault, kind=credentials.CLUSTER, name="c:1:ocp_monitor", username="ocp_monitor", secret="m",
        created_by_task_id=7,
    )  # fmt: skip
    assert not task_starts.close_ended(metadb, 7, "run-0", RecordedStatus.FAILED)  # another run's
    assert credentials.describe_credential(metadb, credential_id=start) is not None
    assert task_starts.close_ended(metadb, 7, "run-1", RecordedStatus.FAILED)
    assert credentials.describe_credential(metadb, credential_id=start) is None
    assert credentials.describe_credential(metadb, credential_id=own) is not None
    row = tasks.get_task(metadb, 7)
    assert row is not None and row["status"] == "FAILED"
    assert not task_starts.close_ended(metadb, 7, "run-1", RecordedStatus.ABORTED)  # closed already
    row = tasks.get_task(metadb, 7)
    assert row is not None and row["status"] == "FAILED"
