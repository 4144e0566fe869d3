"""azure-mgmt-resource, azure-mgmt-recoveryservices and azure-mgmt-recoveryservicesbackup
against vault-server, unmodified: only base_url, the credential's authority and CA trust
differ from Azure."""
import base64
import datetime
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.recoveryservices import RecoveryServicesClient
from azure.mgmt.recoveryservicesbackup import RecoveryServicesBackupClient
from azure.mgmt.resource.resources import ResourceManagementClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, TENANT_ID

SUBSCRIPTION_ID = "a2e0c0de-5e11-4a55-9a2e-000000000002"
FAST = {"polling_interval": 0.05}


def credential(azsim):
    return ClientSecretCredential(
        TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, authority=azsim.entra_url, disable_instance_discovery=True
    )


def clients(azsim):
    cred = credential(azsim)
    return (
        ResourceManagementClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url),
        RecoveryServicesClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url),
        RecoveryServicesBackupClient(cred, SUBSCRIPTION_ID, base_url=azsim.arm_url),
    )


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def group(azsim):
    resources, _, _ = clients(azsim)
    name = unique("rg")
    created = resources.resource_groups.create_or_update(name, {"location": "westeurope", "tags": {"suite": "sdk"}})
    assert created.name == name and created.properties.provisioning_state == "Succeeded"
    assert resources.resource_groups.check_existence(name) is True
    return name


def create_vault(rs, group, name, **properties):
    body = {
        "location": "westeurope",
        "sku": {"name": "RS0", "tier": "Standard"},
        "properties": {"publicNetworkAccess": "Enabled", **properties},
    }
    return rs.vaults.begin_create_or_update(group, name, body, **FAST).result()


def test_resource_groups(azsim, group):
    resources, _, _ = clients(azsim)
    assert group in {g.name for g in resources.resource_groups.list()}
    assert resources.resource_groups.get(group).tags == {"suite": "sdk"}
    assert resources.resource_groups.check_existence(unique("missing")) is False
    with pytest.raises(ResourceNotFoundError):
        resources.resource_groups.get(unique("missing"))
    resources.resource_groups.begin_delete(group, **FAST).result()
    assert resources.resource_groups.check_existence(group) is False


def test_vault_lifecycle_redundancy_and_immutability(azsim, group):
    _, rs, _ = clients(azsim)
    with pytest.raises(HttpResponseError) as no_group:
        create_vault(rs, unique("missing"), "vault1")
    assert no_group.value.error.code == "ResourceGroupNotFound"

    name = unique("vault")
    vault = create_vault(
        rs, group, name, securitySettings={"immutabilitySettings": {"state": "Unlocked"}}
    )
    assert vault.properties.provisioning_state == "Succeeded"
    assert vault.properties.redundancy_settings.standard_tier_storage_redundancy == "GeoRedundant"
    assert vault.properties.public_network_access == "Enabled"
    assert vault.properties.private_endpoint_state_for_backup == "None"
    assert rs.vaults.get(group, name).id.endswith(f"/vaults/{name}")
    assert name in {v.name for v in rs.vaults.list_by_resource_group(group)}
    assert name in {v.name for v in rs.vaults.list_by_subscription_id()}

    lrs = rs.vaults.begin_update(
        group, name, {"properties": {"redundancySettings": {"standardTierStorageRedundancy": "LocallyRedundant"}}}, **FAST
    ).result()
    assert lrs.properties.redundancy_settings.standard_tier_storage_redundancy == "LocallyRedundant"
    with pytest.raises(HttpResponseError) as bad_redundancy:
        rs.vaults.begin_update(
            group, name, {"properties": {"redundancySettings": {"standardTierStorageRedundancy": "Tape"}}}, **FAST
        ).result()
    assert bad_redundancy.value.status_code == 400

    unlocked_to_disabled = rs.vaults.begin_update(
        group, name, {"properties": {"securitySettings": {"immutabilitySettings": {"state": "Disabled"}}}}, **FAST
    ).result()
    assert unlocked_to_disabled.properties.security_settings.immutability_settings.state == "Disabled"
    rs.vaults.begin_update(
        group, name, {"properties": {"securitySettings": {"immutabilitySettings": {"state": "Unlocked"}}}}, **FAST
    ).result()
    locked = rs.vaults.begin_update(
        group, name, {"properties": {"securitySettings": {"immutabilitySettings": {"state": "Locked"}}}}, **FAST
    ).result()
    assert locked.properties.security_settings.immutability_settings.state == "Locked"
    for back in ("Unlocked", "Disabled"):
        with pytest.raises(HttpResponseError) as refused:
            rs.vaults.begin_update(
                group, name, {"properties": {"securitySettings": {"immutabilitySettings": {"state": back}}}}, **FAST
            ).result()
        assert refused.value.status_code == 400
        assert "Locked" in refused.value.message

    available = rs.recovery_services.check_name_availability(
        group, "westeurope", {"type": "Microsoft.RecoveryServices/Vaults", "name": name}
    )
    assert available.name_available is False and available.reason == "AlreadyExists"
    assert rs.recovery_services.check_name_availability(
        group, "westeurope", {"type": "Microsoft.RecoveryServices/Vaults", "name": unique("free")}
    ).name_available is True

    rs.vaults.begin_delete(group, name, **FAST).result()
    with pytest.raises(ResourceNotFoundError):
        rs.vaults.get(group, name)


def test_identity_certificate_usages_and_extended_info(azsim, group):
    _, rs, _ = clients(azsim)
    name = unique("idvault")
    vault = rs.vaults.begin_create_or_update(
        group, name, {"location": "westeurope", "sku": {"name": "Standard"}, "identity": {"type": "SystemAssigned"}}, **FAST
    ).result()
    assert vault.identity.type == "SystemAssigned"
    assert uuid.UUID(vault.identity.principal_id) and vault.identity.tenant_id == TENANT_ID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Windows Azure Tools")])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256())
    )
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    uploaded = rs.vault_certificates.create(
        group, name, f"{name}-cred", {"properties": {"authType": "AAD", "certificate": der}}
    )
    assert uploaded.properties.auth_type == "AzureActiveDirectory"
    assert uploaded.properties.aad_tenant_id == TENANT_ID
    assert uploaded.properties.aad_authority == azsim.entra_url
    assert uuid.UUID(uploaded.properties.service_principal_client_id)
    assert uploaded.properties.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()

    usages = {u.name.value: u.current_value for u in rs.usages.list_by_vaults(group, name)}
    assert usages["MABContainersCount"] == 0 and usages["MABProtectedItemCount"] == 0

    with pytest.raises(ResourceNotFoundError):
        rs.vault_extended_info.get(group, name)
    info = rs.vault_extended_info.create_or_update(
        group, name, {"properties": {"integrityKey": "J09wzS27fnJ+Wjot7xO5wA==", "algorithm": "None"}}
    )
    assert info.integrity_key == "J09wzS27fnJ+Wjot7xO5wA=="
    assert rs.vault_extended_info.get(group, name).algorithm == "None"
    rs.registered_identities.delete(group, name, "never-registered")


def test_backup_configuration_policies_and_empty_views(azsim, group):
    _, rs, bk = clients(azsim)
    name = unique("bkvault")
    create_vault(rs, group, name)

    storage = bk.backup_resource_storage_configs_non_crr.get(name, group)
    assert storage.properties.storage_type == "GeoRedundant"
    assert storage.properties.storage_type_state == "Unlocked"
    bk.backup_resource_storage_configs_non_crr.patch(
        name, group, {"properties": {"storageType": "LocallyRedundant", "storageTypeState": "Unlocked"}}
    )
    assert bk.backup_resource_storage_configs_non_crr.get(name, group).properties.storage_model_type == "LocallyRedundant"
    assert rs.vaults.get(group, name).properties.redundancy_settings.standard_tier_storage_redundancy == "LocallyRedundant"

    config = bk.backup_resource_vault_configs.get(name, group)
    assert config.properties.soft_delete_feature_state == "Enabled"
    updated = bk.backup_resource_vault_configs.update(name, group, {"properties": {"softDeleteFeatureState": "Disabled"}})
    assert updated.properties.soft_delete_feature_state == "Disabled"

    policy = {
        "properties": {
            "backupManagementType": "MAB",
            "schedulePolicy": {
                "schedulePolicyType": "SimpleSchedulePolicy",
                "scheduleRunFrequency": "Daily",
                "scheduleRunTimes": ["2025-01-01T02:00:00Z", "2025-01-01T14:00:00Z"],
            },
            "retentionPolicy": {
                "retentionPolicyType": "LongTermRetentionPolicy",
                "dailySchedule": {
                    "retentionTimes": ["2025-01-01T02:00:00Z"],
                    "retentionDuration": {"count": 30, "durationType": "Days"},
                },
            },
        }
    }
    saved = bk.protection_policies.create_or_update(name, group, "NightlyFiles", policy)
    assert type(saved.properties).__name__ == "MabProtectionPolicy"
    got = bk.protection_policies.get(name, group, "NightlyFiles")
    assert type(got.properties.schedule_policy).__name__ == "SimpleSchedulePolicy"
    assert type(got.properties.retention_policy).__name__ == "LongTermRetentionPolicy"
    assert got.properties.retention_policy.daily_schedule.retention_duration.count == 30
    listed = list(bk.backup_policies.list(name, group, filter="backupManagementType eq 'MAB'"))
    assert sorted(p.name for p in listed) == ["DefaultPolicy", "NightlyFiles"]

    too_short = {**policy}
    too_short["properties"] = {**policy["properties"], "retentionPolicy": {
        "retentionPolicyType": "LongTermRetentionPolicy",
        "dailySchedule": {"retentionTimes": ["2025-01-01T02:00:00Z"], "retentionDuration": {"count": 3, "durationType": "Days"}},
    }}
    with pytest.raises(HttpResponseError) as refused:
        bk.protection_policies.create_or_update(name, group, "TooShort", too_short)
    assert refused.value.status_code == 400 and "7 to 9999" in refused.value.message

    assert list(bk.backup_protection_containers.list(name, group, filter="backupManagementType eq 'MAB'")) == []
    assert list(bk.backup_protected_items.list(
        name, group, filter="backupManagementType eq 'MAB' and itemType eq 'FileFolder'")) == []
    assert list(bk.backup_jobs.list(name, group, filter="backupManagementType eq 'MAB'")) == []
    with pytest.raises(ResourceNotFoundError):
        bk.job_details.get(name, group, str(uuid.uuid4()))


def test_key_vault_through_the_one_arm_endpoint(azsim, group):
    from azure.mgmt.keyvault import KeyVaultManagementClient

    kv = KeyVaultManagementClient(credential(azsim), SUBSCRIPTION_ID, base_url=azsim.arm_url)
    name = unique("armkv")[:24]
    vault = kv.vaults.begin_create_or_update(group, name, {
        "location": "westeurope",
        "properties": {"tenantId": TENANT_ID, "sku": {"family": "A", "name": "standard"}, "accessPolicies": []},
    }, **FAST).result()
    assert vault.properties.vault_uri == f"{azsim.vault_url(name.lower())}/"
    assert name in {v.name for v in kv.vaults.list_by_resource_group(group)}


def test_azsim_vault_credentials_command_downloads_the_file(azsim, group, tmp_path):
    import re

    _, rs, _ = clients(azsim)
    name = unique("credvault")
    create_vault(rs, group, name)
    output = tmp_path / "vault.VaultCredentials"
    azsim.run("vault-credentials", "-g", group, "-v", name, "-o", str(output))
    xml = output.read_text()
    field = lambda tag: re.search(f"<{tag}>(.*?)</{tag}>", xml, re.S).group(1)
    assert field("ResourceName") == name and field("ResourceGroup") == group
    assert field("SubscriptionId") == SUBSCRIPTION_ID and field("AadTenantId") == TENANT_ID
    assert field("AadAuthority") == azsim.entra_url
    pem = base64.b64decode(field("ManagementCert")).decode()
    assert "BEGIN CERTIFICATE" in pem and "BEGIN PRIVATE KEY" in pem

    missing = azsim.run("vault-credentials", "-g", group, "-v", "nosuchvault", "-o", str(tmp_path / "x"),
                        check=False)
    assert missing.returncode != 0 and "was not found" in missing.stderr
