"""How `import` reads a bucket Scalar's Cassy wrote: each node prefix's files split into the
snapshot's and the incremental ones, manifests noticed, a cluster's nodes and keyspaces."""

from __future__ import annotations

from pathlib import Path

from cassy_scheduler.cassyimport import _clusters, _groups
from cassy_scheduler.storage import FilesystemStorage

PREFIX = "node-backup/prod-0b1c9a4e-1111-2222-3333-444455556666/snap-1"


def test_files_are_split_by_what_holds_them(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path, durable=False)
    keys = [
        f"{PREFIX}/10.0.0.1/shop/orders-0a1b/snapshots/snap-1/nb-1-big-Data.db",
        f"{PREFIX}/10.0.0.1/shop/orders-0a1b/snapshots/snap-1/manifest.json",
        f"{PREFIX}/10.0.0.1/shop/orders-0a1b/backups/nb-2-big-Data.db",
        f"{PREFIX}/10.0.0.1/shop/orders-0a1b/backups/.orders_by_day/nb-3-big-Data.db",
        f"{PREFIX}/10.0.0.1/system/local-7ad5/snapshots/snap-1/nb-4-big-Data.db",
        f"{PREFIX}/10.0.0.2/shop/orders-0a1b/snapshots/snap-1/nb-1-big-Data.db",
        f"{PREFIX}/10.0.0.2/upload-manifests/1700000000000-node_snapshot.json",
        "cluster-backup/prod-0b1c9a4e-1111-2222-3333-444455556666/snap-2/pause.json",
    ]
    for key in keys:
        storage.put_bytes(key, b"x")

    groups = _groups(storage, None)

    cluster = "prod-0b1c9a4e-1111-2222-3333-444455556666"
    first = groups[("node-backup", cluster, "snap-1", "10.0.0.1")]
    assert sorted(i.key.split("/", 4)[4] for i in first.snapshot) == [
        "shop/orders-0a1b/snapshots/snap-1/manifest.json",
        "shop/orders-0a1b/snapshots/snap-1/nb-1-big-Data.db",
        "system/local-7ad5/snapshots/snap-1/nb-4-big-Data.db",
    ]
    assert sorted(i.key.split("/", 4)[4] for i in first.incremental) == [
        "shop/orders-0a1b/backups/.orders_by_day/nb-3-big-Data.db",
        "shop/orders-0a1b/backups/nb-2-big-Data.db",
    ]
    assert not first.has_snapshot_manifest
    assert groups[("node-backup", cluster, "snap-1", "10.0.0.2")].has_snapshot_manifest
    assert len(groups) == 2  # the pause report is no node's

    found = _clusters(groups)[cluster]
    assert found.nodes == {"10.0.0.1", "10.0.0.2"}
    assert found.keyspaces == {"shop", "system"}
    assert set(_groups(storage, "other-cluster")) == set()
