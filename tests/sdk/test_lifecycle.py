"""The vault's lifecycle through azure-mgmt-recoveryservicesbackup after a real agent
backup: a policy bound to the item, recovery points with expiry and retention tags, the
security PIN, deferred delete (soft delete) and undelete."""
import json
import subprocess
import uuid

from azure.identity import ClientSecretCredential
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.recoveryservicesbackup import models
from azure.mgmt.resource.resources import ResourceManagementClient

from conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, TENANT_ID, mars_agent_binary
from test_backup_views import SUBSCRIPTION_ID, agent_binary

SERVER = "mars02.contoso.local"


def test_policy_expiry_pin_deferred_delete_and_undelete(azsim, tmp_path):
    cred = ClientSecretCredential(
        TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, authority=azsim.entra_url, disable_instance_discovery=True
    )
    group, vault = f"rg-{uuid.uuid4().hex[:8]}", f"life-{uuid.uuid4().hex[:8]}"
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
    data.mkdir()
    (data / "a.txt").write_text("lifecycle\n" * 100)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("lifecycle passphrase 0123456789")
    agent = [agent_binary(), "--home", str(tmp_path / "home")]
    run = lambda *args: subprocess.run([*agent, *args], check=True, capture_output=True, text=True, timeout=120)
    run("install", "--cache-dir", str(tmp_path / "cache"), "--ca-file", azsim.ca_path)
    run("register", "--vault-credentials", str(credentials), "--passphrase-file", str(passphrase), "--server-name", SERVER)
    run("--json", "backup", "--include", str(data))

    bk = RecoveryServicesBackupClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url)
    policies = {p.name for p in bk.backup_policies.list(vault, group, filter="backupManagementType eq 'MAB'")}
    assert "DefaultPolicy" in policies
    item = list(bk.backup_protected_items.list(vault, group, filter="backupManagementType eq 'MAB'"))[0]
    assert "/" not in item.name
    assert item.properties.policy_name == "DefaultPolicy"
    point = list(bk.recovery_points.list(vault, group, "Azure", SERVER, item.name))[0]
    assert point.properties.recovery_point_properties.rule_name == "Daily"
    assert point.properties.recovery_point_properties.expiry_time  # 30 days by DefaultPolicy

    # A longer policy, bound through the item (as Configure Backup does).
    long_policy = bk.protection_policies.get(vault, group, "DefaultPolicy")
    long_policy.properties.retention_policy.daily_schedule.retention_duration.count = 90
    saved = bk.protection_policies.create_or_update(vault, group, "Quarterly", long_policy)
    bound = bk.protected_items.begin_create_or_update(
        vault, group, "Azure", SERVER, item.name,
        models.ProtectedItemResource(properties=models.MabFileFolderProtectedItem(policy_id=saved.id)),
        polling_interval=0.05,
    ).result()
    assert bound.properties.policy_name == "Quarterly"
    later = list(bk.recovery_points.list(vault, group, "Azure", SERVER, item.name))[0]
    assert later.properties.recovery_point_properties.expiry_time > point.properties.recovery_point_properties.expiry_time

    pin = bk.security_pins.get(vault, group)
    assert len(pin.security_pin) == 6 and pin.expiry_time_in_utc_ticks > 0

    # Stop backup and delete data: soft delete keeps it for 14 days, undelete brings it back.
    bk.protected_items.delete(vault, group, "Azure", SERVER, item.name)
    deleted = bk.protected_items.get(vault, group, "Azure", SERVER, item.name)
    assert deleted.properties.is_scheduled_for_deferred_delete is True
    assert deleted.properties.deferred_delete_time_in_utc is not None
    assert deleted.properties.protection_state == "ProtectionStopped"
    undeleted = bk.protected_items.begin_create_or_update(
        vault, group, "Azure", SERVER, item.name,
        models.ProtectedItemResource(properties=models.MabFileFolderProtectedItem(is_rehydrate=True)),
        polling_interval=0.05,
    ).result()
    assert undeleted.properties.is_scheduled_for_deferred_delete is False
    assert len(list(bk.recovery_points.list(vault, group, "Azure", SERVER, item.name))) == 1
