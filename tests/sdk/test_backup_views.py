"""After a real mars-agent backup, azure-mgmt-recoveryservicesbackup sees the registered
server, the protected item, the jobs and the recovery points, with MARS's types."""
import json
import os
import subprocess
import uuid

from azure.identity import ClientSecretCredential
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.resource.resources import ResourceManagementClient

from conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, TENANT_ID, mars_agent_binary

SUBSCRIPTION_ID = "a2e0c0de-5e11-4a55-9a2e-000000000002"


def agent_binary():
    return mars_agent_binary()


def test_backup_views_after_an_agent_backup(azsim, tmp_path):
    cred = ClientSecretCredential(
        TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, authority=azsim.entra_url, disable_instance_discovery=True
    )
    group, vault = f"rg-{uuid.uuid4().hex[:8]}", f"views-{uuid.uuid4().hex[:8]}"
    ResourceManagementClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url).resource_groups.create_or_update(
        group, {"location": "westeurope"}
    )
    RecoveryServicesClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url).vaults.begin_create_or_update(
        group, vault, {"location": "westeurope", "sku": {"name": "RS0", "tier": "Standard"}, "properties": {}},
        polling_interval=0.05,
    ).result()

    credentials = tmp_path / "vault.VaultCredentials"
    azsim.run("vault-credentials", "-g", group, "-v", vault, "-o", str(credentials))
    data = tmp_path / "data"
    (data / "docs").mkdir(parents=True)
    (data / "docs" / "a.txt").write_text("hello views\n" * 100)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("views passphrase 0123456789")
    agent = [agent_binary(), "--home", str(tmp_path / "home")]
    run = lambda *args: subprocess.run([*agent, *args], check=True, capture_output=True, text=True, timeout=120)
    run("install", "--cache-dir", str(tmp_path / "cache"), "--ca-file", azsim.ca_path)
    run("register", "--vault-credentials", str(credentials), "--passphrase-file", str(passphrase), "--server-name", "mars01.contoso.local")
    report = json.loads(run("--json", "backup", "--include", str(data)).stdout)[0]
    assert report["status"] == "Completed"

    bk = RecoveryServicesBackupClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url)
    containers = list(bk.backup_protection_containers.list(vault, group, filter="backupManagementType eq 'MAB'"))
    assert [c.name for c in containers] == ["mars01.contoso.local"]
    assert type(containers[0].properties).__name__ == "MabContainer"
    assert containers[0].properties.protected_item_count == 1

    items = list(bk.backup_protected_items.list(vault, group, filter="backupManagementType eq 'MAB' and itemType eq 'FileFolder'"))
    assert len(items) == 1
    item = items[0]
    assert type(item.properties).__name__ == "MabFileFolderProtectedItem"
    assert item.properties.friendly_name == str(data.resolve())
    assert item.properties.last_backup_status == "Completed"
    assert item.properties.extended_info.recovery_point_count == 1

    jobs = list(bk.backup_jobs.list(vault, group, filter="backupManagementType eq 'MAB'"))
    assert [type(j.properties).__name__ for j in jobs] == ["MabJob"]
    assert jobs[0].properties.operation == "Backup" and jobs[0].properties.status == "Completed"
    assert bk.job_details.get(vault, group, jobs[0].name).properties.mab_server_name == "mars01.contoso.local"

    points = list(bk.recovery_points.list(vault, group, "Azure", "mars01.contoso.local", item.name))
    assert len(points) == 1 and type(points[0].properties).__name__ == "GenericRecoveryPoint"
    assert points[0].name == report["recoveryPoint"]
