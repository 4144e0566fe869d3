"""azure-keyvault-secrets and azure-mgmt-keyvault against keyvault-sim, unmodified: only the
vault URL, the credential's authority and CA trust (REQUESTS_CA_BUNDLE) differ from Azure."""
import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.keyvault import KeyVaultManagementClient

from conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, TENANT_ID

SUBSCRIPTION_ID = "a2e0c0de-5e11-4a55-9a2e-000000000002"
ADMIN_OBJECT_ID = "a2e0c0de-5e11-4a55-9a2e-00000000001a"
FAST = {"_polling_interval": 0.05}


def credential(azsim, client_id=ADMIN_CLIENT_ID, secret=ADMIN_CLIENT_SECRET):
    return ClientSecretCredential(
        TENANT_ID, client_id, secret, authority=azsim.entra_url, disable_instance_discovery=True
    )


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def management(azsim):
    return KeyVaultManagementClient(credential(azsim), SUBSCRIPTION_ID, base_url=azsim.keyvault_mgmt_url)


def create_vault(azsim, name, policies, **properties):
    poller = management(azsim).vaults.begin_create_or_update(
        "rg-sdk",
        name,
        {
            "location": "eastus",
            "properties": {
                "tenantId": TENANT_ID,
                "sku": {"family": "A", "name": "standard"},
                "accessPolicies": policies,
                **properties,
            },
        },
        polling_interval=0.05,
    )
    return poller.result()


def all_secret_permissions(object_id):
    return {"tenantId": TENANT_ID, "objectId": object_id, "permissions": {"secrets": ["all"]}}


def test_secret_lifecycle_with_default_client_settings(azsim):
    """The whole lifecycle on `{vault}.vault.localhost`, challenge verification on."""
    client = SecretClient(azsim.vault_url("azsim"), credential(azsim))
    name = unique("life")

    # Values long enough that finding one in the (encrypted) backup blob is no accident.
    V1, V2 = "first-value-4f1c9a0e2b", "second-value-7d3e5b1a9c"
    first = client.set_secret(name, V1, content_type="text/plain", tags={"a": "b"})
    second = client.set_secret(name, V2)
    assert first.properties.version != second.properties.version
    assert client.get_secret(name).value == V2
    assert client.get_secret(name, first.properties.version).value == V1
    got = client.get_secret(name, first.properties.version)
    assert got.properties.content_type == "text/plain" and got.properties.tags == {"a": "b"}
    assert got.id == f"{azsim.vault_url('azsim')}/secrets/{name}/{first.properties.version}"
    assert got.properties.recovery_level == "Recoverable+Purgeable"

    versions = {v.version for v in client.list_properties_of_secret_versions(name)}
    assert versions == {first.properties.version, second.properties.version}

    updated = client.update_secret_properties(name, enabled=False, tags={"x": "y"})
    assert updated.enabled is False and updated.tags == {"x": "y"}
    with pytest.raises(HttpResponseError) as disabled:
        client.get_secret(name)
    assert disabled.value.status_code == 403
    client.update_secret_properties(name, enabled=True)

    backup = client.backup_secret(name)
    assert isinstance(backup, bytes) and V2.encode() not in backup  # sealed, not plaintext

    deleted = client.begin_delete_secret(name, **FAST).result()
    assert deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    assert deleted.scheduled_purge_date > deleted.deleted_date
    client.begin_delete_secret  # the poller above finished on the first poll
    assert client.get_deleted_secret(name).name == name
    assert name in {s.name for s in client.list_deleted_secrets()}
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    with pytest.raises(ResourceExistsError):
        client.set_secret(name, "while deleted")

    recovered = client.begin_recover_deleted_secret(name, **FAST).result()
    assert recovered.name == name
    assert client.get_secret(name).value == V2

    with pytest.raises(ResourceExistsError):
        client.restore_secret_backup(backup)
    client.begin_delete_secret(name, **FAST).wait()
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)

    restored = client.restore_secret_backup(backup)
    assert restored.name == name
    assert client.get_secret(name).value == V2
    assert client.get_secret(name, first.properties.version).value == V1


def test_listing_pages_past_25_secrets(azsim):
    client = SecretClient(azsim.vault_url("azsim"), credential(azsim))
    prefix = unique("page")
    names = {f"{prefix}-{i:02}" for i in range(30)}
    for name in names:
        client.set_secret(name, "x")
    pages = list(client.list_properties_of_secrets().by_page())
    listed = {s.name for page in pages for s in page}
    assert names <= listed
    assert len(pages) >= 2
    small_pages = list(client.list_properties_of_secrets(max_page_size=7).by_page())
    assert names <= {s.name for page in small_pages for s in page}
    assert len(small_pages) >= 5


def test_default_vault_on_localhost_without_challenge_verification(azsim):
    client = SecretClient(
        f"https://localhost:{azsim.keyvault_port}", credential(azsim), verify_challenge_resource=False
    )
    name = unique("plain")
    client.set_secret(name, "on localhost")
    assert client.get_secret(name).value == "on localhost"
    # The same vault answers on its DNS name.
    named = SecretClient(azsim.vault_url("azsim"), credential(azsim))
    assert named.get_secret(name).value == "on localhost"


def test_management_creates_a_vault_and_grants_a_new_app(azsim):
    app = azsim.admin("POST", f"/admin/tenants/{TENANT_ID}/applications", {"displayName": unique("kvapp")})
    secret = azsim.admin("POST", f"/admin/tenants/{TENANT_ID}/applications/{app['appId']}/secrets", {})
    app_credential = credential(azsim, app["appId"], secret["secretText"])

    name = unique("sdkkv")[:24]
    vault = create_vault(azsim, name, [all_secret_permissions(ADMIN_OBJECT_ID)])
    assert vault.properties.provisioning_state == "Succeeded"
    assert vault.properties.vault_uri == f"{azsim.vault_url(name.lower())}/"
    assert vault.properties.soft_delete_retention_in_days == 90

    mgmt = management(azsim)
    assert name in {v.name for v in mgmt.vaults.list_by_resource_group("rg-sdk")}
    assert mgmt.vaults.get("rg-sdk", name).properties.tenant_id == TENANT_ID

    admin_client = SecretClient(vault.properties.vault_uri, credential(azsim))
    admin_client.set_secret("shared", "for the app")

    app_client = SecretClient(vault.properties.vault_uri, app_credential)
    with pytest.raises(HttpResponseError) as denied:
        app_client.get_secret("shared")
    assert denied.value.status_code == 403
    assert app["servicePrincipalId"] in str(denied.value)
    assert "secrets get permission" in str(denied.value)

    mgmt.vaults.update_access_policy(
        "rg-sdk",
        name,
        "add",
        {"properties": {"accessPolicies": [
            {"tenantId": TENANT_ID, "objectId": app["servicePrincipalId"], "permissions": {"secrets": ["get"]}}
        ]}},
    )
    assert app_client.get_secret("shared").value == "for the app"
    with pytest.raises(HttpResponseError) as still_denied:
        app_client.set_secret("shared", "overwrite")
    assert still_denied.value.status_code == 403

    availability = mgmt.vaults.check_name_availability({"name": name, "type": "Microsoft.KeyVault/vaults"})
    assert availability.name_available is False

    mgmt.vaults.delete("rg-sdk", name)
    deleted = mgmt.vaults.get_deleted(name, "eastus")
    assert deleted.properties.vault_id.endswith(f"/vaults/{name}")
    assert name in {v.name for v in mgmt.vaults.list_deleted()}
    mgmt.vaults.begin_purge_deleted(name, "eastus", polling_interval=0.05).result()
    with pytest.raises(ResourceNotFoundError):
        mgmt.vaults.get_deleted(name, "eastus")


def test_management_refuses_bad_vaults(azsim):
    with pytest.raises(HttpResponseError) as bad_name:
        create_vault(azsim, "1bad", [])
    assert bad_name.value.status_code == 400 and bad_name.value.error.code == "VaultNameNotValid"
    with pytest.raises(HttpResponseError) as bad_retention:
        create_vault(azsim, unique("ret")[:24], [], softDeleteRetentionInDays=3)
    assert bad_retention.value.status_code == 400

    name = unique("pp")[:24]
    create_vault(azsim, name, [], enablePurgeProtection=True)
    with pytest.raises(HttpResponseError) as unprotect:
        management(azsim).vaults.update("rg-sdk", name, {"properties": {"enablePurgeProtection": False}})
    assert unprotect.value.status_code == 400
