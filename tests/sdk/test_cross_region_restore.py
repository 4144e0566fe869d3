"""Cross Region Restore through the official passive-stamp client
(azure-mgmt-recoveryservicesbackup-passivestamp, what `az backup … --use-secondary-region`
uses) after a real agent backup to a GeoRedundant vault: the items and recovery points as
the secondary region holds them, the AAD properties and CRR jobs; then West Europe goes
down and the agent restores from North Europe byte for byte. An LRS vault is refused."""
import subprocess
import time
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup.passivestamp import RecoveryServicesBackupPassiveClient
from azure.mgmt.resource.resources import ResourceManagementClient

from conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, TENANT_ID, mars_agent_binary

SUBSCRIPTION_ID = "a2e0c0de-5e11-4a55-9a2e-000000000002"
SERVER = "crr01.contoso.local"


def vault_with_backup(azsim, tmp_path, cred, redundancy, crr):
    group, vault = f"rg-{uuid.uuid4().hex[:8]}", f"crr-{uuid.uuid4().hex[:8]}"
    ResourceManagementClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url).resource_groups.create_or_update(
        group, {"location": "westeurope"})
    vaults = RecoveryServicesClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url).vaults
    vaults.begin_create_or_update(group, vault, {
        "location": "westeurope", "sku": {"name": "RS0", "tier": "Standard"},
        "properties": {"redundancySettings": {"standardTierStorageRedundancy": redundancy,
                                              "crossRegionRestore": "Enabled" if crr else "Disabled"}},
    }, polling_interval=0.05).result()
    credentials = tmp_path / f"{vault}.VaultCredentials"
    azsim.run("vault-credentials", "-g", group, "-v", vault, "-o", str(credentials))
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "report.txt").write_text("cross-region\n" * 5000)
    (data / "blob.bin").write_bytes(bytes(range(256)) * 4000)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("cross region passphrase 0123456789")
    agent = [mars_agent_binary(), "--home", str(tmp_path / f"home-{vault}")]
    run = lambda *args, check=True: subprocess.run([*agent, *args], check=check, capture_output=True, text=True,
                                                   timeout=120)
    run("install", "--cache-dir", str(tmp_path / f"cache-{vault}"), "--ca-file", azsim.ca_path)
    run("register", "--vault-credentials", str(credentials), "--passphrase-file", str(passphrase),
        "--server-name", SERVER)
    run("--json", "backup", "--include", str(data))
    return group, vault, data, run


def wait_replicated(azsim, vault):
    for _ in range(200):
        status = azsim.admin("GET", "/admin/regions", base=azsim.arm_url)
        entry = next(v for v in status["vaults"] if v["name"] == vault)
        if entry["replication"]["objects"] == 0:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"replication of {vault} did not finish")


def test_cross_region_restore_with_the_passive_stamp_client(azsim, tmp_path):
    cred = ClientSecretCredential(TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, authority=azsim.entra_url,
                                  disable_instance_discovery=True)
    group, vault, data, run = vault_with_backup(azsim, tmp_path, cred, "GeoRedundant", crr=True)
    entry = wait_replicated(azsim, vault)
    assert (entry["region"], entry["secondaryRegion"]) == ("westeurope", "northeurope")

    passive = RecoveryServicesBackupPassiveClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url)
    items = list(passive.backup_protected_items_crr.list(vault, group))
    assert len(items) == 1 and items[0].properties.friendly_name
    points = list(passive.recovery_points_crr.list(vault, group, "Azure", SERVER, items[0].name))
    assert len(points) == 1
    aad = passive.aad_properties.get("northeurope")
    assert aad.properties.tenant_id == TENANT_ID
    vault_id = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}/providers/Microsoft.RecoveryServices/vaults/{vault}"
    jobs = list(passive.backup_crr_jobs.list("northeurope", {"resource_id": vault_id}))
    assert any(j.properties.operation == "Backup" for j in jobs)

    # West Europe goes down: the primary refuses, the secondary restores byte for byte.
    azsim.admin("PUT", "/admin/regions/westeurope/outage", base=azsim.arm_url)
    try:
        refused = run("backup", "--include", str(data), check=False)
        assert refused.returncode != 0 and "RegionUnavailable" in refused.stderr, refused.stderr
        target = tmp_path / "restored"
        run("restore", points[0].name, "--target", str(target), "--secondary-region")
        restored = {p.name: p.read_bytes() for p in target.rglob("*") if p.is_file()}
        assert restored == {p.name: p.read_bytes() for p in data.iterdir()}
    finally:
        azsim.admin("DELETE", "/admin/regions/westeurope/outage", base=azsim.arm_url)


def test_cross_region_restore_is_refused_for_a_locally_redundant_vault(azsim, tmp_path):
    cred = ClientSecretCredential(TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, authority=azsim.entra_url,
                                  disable_instance_discovery=True)
    group, vault, _, _ = vault_with_backup(azsim, tmp_path, cred, "LocallyRedundant", crr=False)
    passive = RecoveryServicesBackupPassiveClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url)
    with pytest.raises(HttpResponseError) as refused:
        list(passive.backup_protected_items_crr.list(vault, group))
    assert refused.value.status_code == 400 and "GeoRedundant" in str(refused.value)
